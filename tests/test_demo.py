"""The demo is a study file (src/adlab/demo/quick.yaml, full.yaml) run by the study runner."""

import pytest

from adlab.study.spec import section_runs


@pytest.mark.parametrize("quick", [True, False])
@pytest.mark.parametrize("source", ["fashion_mnist", "digits"])
def test_the_demo_is_a_valid_study_on_either_data_set(quick, source):
    from adlab.demo import load_demo

    study = load_demo(quick, source)
    tasks = [r.config.task for r in study.runs]
    assert tasks.count("detect") == 3 and tasks.count("autoencode") == 3 and "classify" in tasks
    assert {r.config.data.name for r in study.runs} == {source, "yolo"}
    assert [tool for tool, _ in study.prepare] == ["synth-scenes", "synth-scenes"]
    sections = section_runs(study)
    assert len(sections) == 4 and sorted(n for _, names in sections for n in names) == sorted(
        [r.name for r in study.runs] + ["fusion-finetune+frozen"])
    finetune = next(r for r in study.runs if r.name == "cnn-finetune")
    assert finetune.config.model.weights == "{out}/runs/pretrain-cnn"
    assert study.runs.index(finetune) > [r.name for r in study.runs].index("pretrain-cnn")
