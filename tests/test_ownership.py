"""ownership.py, rule by rule: which folders adlab may write into, replace or adopt (docs/guarantees.md).

The unit tests below each pin one rule with an input only that rule decides, so that a mutant of
ownership.py (`make mutation`, docs/testing.md) fails one of them. The tests that go through the
real CLI end in `_with_trained_runs` where they need the shared digits runs (slow to make, so the
mutation run leaves them out with `-k`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adlab.errors import AdlabError
from adlab.ownership import (
    MARKER,
    adopt_or_create,
    canonical,
    check_output,
    marker_kind,
    prepare_output,
    read_marker,
    refuse_protected,
    write_marker,
)


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A working folder tmp/work with HOME at tmp/home (neither inside the other)."""
    (tmp_path / "work").mkdir()
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path / "work"


def user_folder(path: Path, files=("thesis.txt",)) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_text(f"the user's {name}\n")
    return path


def adlab_folder(path: Path, kind: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text(json.dumps({"kind": kind}))
    (path / "metrics.json").write_text("{}")
    return path


def listing(root: Path) -> dict:
    from checks import snapshot

    return snapshot(root)


# --- markers -----------------------------------------------------------------------------------------


def test_a_folder_without_a_marker_has_no_kind(work):
    user_folder(work / "u")
    assert read_marker(work / "u") is None and marker_kind(work / "u") is None
    assert read_marker(work / "absent") is None


def test_the_marker_record_is_read_whole(work):
    (work / "r").mkdir()
    (work / "r" / MARKER).write_text(json.dumps({"kind": "run", "adlab": "0.1.0", "config": {"a": 1}}))
    assert read_marker(work / "r") == {"kind": "run", "adlab": "0.1.0", "config": {"a": 1}}
    assert marker_kind(work / "r") == "run"


@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", '"run"', '{"kind": 3}', '{"kind": null}', '{"adlab": "0.1"}', "\udcff"]
)
def test_a_damaged_marker_means_not_adlab_s(work, text):
    (work / "r").mkdir()
    (work / "r" / MARKER).write_text(text, encoding="utf-8", errors="surrogateescape")
    assert read_marker(work / "r") is None and marker_kind(work / "r") is None


def test_a_damaged_marker_is_not_saved_by_a_legacy_one_beside_it(work):
    (work / "r").mkdir()
    (work / "r" / MARKER).write_text("{cut sho")
    (work / "r" / "demo.json").write_text('{"source": "digits"}')
    assert read_marker(work / "r") is None


def test_a_marker_that_is_a_symlink_or_a_folder_is_ignored(work):
    (work / "elsewhere.json").write_text(json.dumps({"kind": "run"}))
    (work / "s").mkdir()
    (work / "s" / MARKER).symlink_to(work / "elsewhere.json")
    assert read_marker(work / "s") is None
    (work / "d" / MARKER).mkdir(parents=True)
    assert read_marker(work / "d") is None
    # a symlinked marker is skipped, not taken as the end: a legacy marker beside it still counts
    (work / "s" / "demo.json").write_text("{}")
    assert read_marker(work / "s") == {"kind": "demo", "legacy": True}


@pytest.mark.parametrize("name, kind", [(".adlab-output.json", "data"), ("demo.json", "demo")])
def test_legacy_markers_are_recognised(work, name, kind):
    (work / "old").mkdir()
    (work / "old" / name).write_text(json.dumps({"anything": 1}))
    assert read_marker(work / "old") == {"kind": kind, "legacy": True}
    assert marker_kind(work / "old") == kind


@pytest.mark.parametrize("text", ["[]", "7", "{bad"])
def test_a_legacy_marker_that_is_not_a_mapping_is_not_adlab_s(work, text):
    (work / "old").mkdir()
    (work / "old" / "demo.json").write_text(text)
    assert read_marker(work / "old") is None


def test_the_current_marker_wins_over_a_legacy_one(work):
    (work / "r").mkdir()
    (work / "r" / MARKER).write_text(json.dumps({"kind": "study"}))
    (work / "r" / "demo.json").write_text("{}")
    assert marker_kind(work / "r") == "study"


def test_write_marker_records_kind_version_and_extras(work):
    from adlab import __version__

    (work / "r").mkdir()
    write_marker(work / "r", "run", config={"seed": 1})
    assert json.loads((work / "r" / MARKER).read_text()) == {"kind": "run", "adlab": __version__, "config": {"seed": 1}}


# --- canonical ----------------------------------------------------------------------------------------


def test_canonical_takes_dotdot_after_a_missing_folder_as_mkdir_p_will(work):
    user_folder(work / "userdir")
    assert canonical("missing/../userdir") == Path("userdir")
    assert canonical(work / "missing" / ".." / "userdir") == (work / "userdir").resolve()  # absolute stays so
    assert not (work / "missing").exists()


def test_canonical_is_relative_inside_the_working_folder_and_absolute_outside(work, tmp_path):
    assert canonical("a/b") == Path("a/b")
    assert canonical("./a/./b/") == Path("a/b")
    assert canonical(work / "a") == (work / "a").resolve()  # given absolute: stays absolute
    assert canonical(tmp_path / "elsewhere") == (tmp_path / "elsewhere").resolve()
    assert canonical("../elsewhere") == (tmp_path / "elsewhere").resolve()
    assert canonical(".") == work.resolve()  # the working folder itself: absolute, never Path(".")
    assert canonical(".").is_absolute()


def test_canonical_follows_symlinks_and_expands_home(work, tmp_path, monkeypatch):
    user_folder(tmp_path / "target")
    (work / "link").symlink_to(tmp_path / "target")
    assert canonical("link") == (tmp_path / "target").resolve()
    assert canonical("link/sub") == (tmp_path / "target" / "sub").resolve()
    assert canonical("~/x") == (tmp_path / "home" / "x").resolve()
    monkeypatch.setenv("HOME", str(work))
    assert canonical("~/x") == (work / "x").resolve()  # '~' is absolute once expanded


def test_canonical_resolves_a_symlinked_working_folder(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path / "alias")
    assert canonical("out") == Path("out")  # cwd and the path resolved alike: still relative


# --- protected folders --------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", [".", "..", "../..", "./sub/.."])
def test_the_working_folder_and_its_parents_are_refused(work, folder):
    with pytest.raises(AdlabError) as info:
        refuse_protected(Path(folder))
    assert str(info.value) == (
        f"{Path(folder)}: is the working directory or one of its parents; give an output folder of its own"
    )


def test_the_home_folder_is_refused(work, tmp_path):
    home = tmp_path / "home"
    for given in (home, Path("~"), Path("../home"), home / "sub" / ".."):
        with pytest.raises(AdlabError, match="is the home folder") as info:
            refuse_protected(given)
        assert str(given) in str(info.value)


def test_folders_beside_or_below_home_and_below_the_working_folder_are_allowed(work, tmp_path):
    for folder in (tmp_path / "home" / "runs", Path("~/runs"), Path("runs"), Path("a/b"), tmp_path / "other"):
        refuse_protected(folder)


def test_check_output_refuses_the_home_folder_even_when_empty(work, tmp_path):
    with pytest.raises(AdlabError, match="home folder"):
        check_output(tmp_path / "home", "run", overwrite=True)
    with pytest.raises(AdlabError, match="home folder"):
        prepare_output(Path("~"), "run", overwrite=True)
    assert list((tmp_path / "home").iterdir()) == []


# --- check_output / prepare_output --------------------------------------------------------------------


def test_an_absent_or_empty_folder_holds_nothing(work):
    assert check_output(work / "new", "run", overwrite=False) is False
    (work / "empty").mkdir()
    assert check_output(work / "empty", "run", overwrite=False) is False
    assert not (work / "new").exists()


def test_a_user_folder_is_refused_even_with_overwrite(work):
    user_folder(work / "u")
    for overwrite in (False, True):
        with pytest.raises(AdlabError) as info:
            check_output(Path("u"), "run", overwrite)
        assert str(info.value) == (
            "u: folder is not empty and was not made by adlab; refusing to write into it (choose another output folder)"
        )


def test_a_file_and_a_symlink_are_not_folders(work, tmp_path):
    (work / "f").write_text("mine")
    with pytest.raises(AdlabError, match="f: exists and is not a folder$"):
        check_output(Path("f"), "run", True)
    adlab_folder(tmp_path / "real", "run")
    (work / "l").symlink_to(tmp_path / "real")
    with pytest.raises(AdlabError, match=r"l: exists and is not a folder \(a symbolic link\)"):
        check_output(Path("l"), "run", True)
    (work / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(AdlabError, match="symbolic link"):
        check_output(Path("dangling"), "run", True)


def test_the_same_kind_needs_the_flag(work):
    adlab_folder(work / "r", "run")
    with pytest.raises(AdlabError) as info:
        check_output(Path("r"), "run", overwrite=False)
    assert str(info.value) == (
        "r: a run already exists here (use --overwrite to replace it, or choose another output folder)"
    )
    with pytest.raises(AdlabError, match=r"use --replace to replace it"):
        check_output(Path("r"), "run", overwrite=False, flag="--replace")
    assert check_output(Path("r"), "run", overwrite=True) is True


def test_another_kind_is_never_replaced(work):
    adlab_folder(work / "e", "evaluation")
    with pytest.raises(AdlabError) as info:
        check_output(Path("e"), "run", overwrite=True)
    assert str(info.value) == "e: holds an evaluation, not a run; choose another output folder"
    adlab_folder(work / "odd", "future-kind")
    with pytest.raises(AdlabError, match="odd: holds future-kind, not a fused run"):
        check_output(Path("odd"), "fused-run", overwrite=True)
    with pytest.raises(AdlabError, match="^e: holds an evaluation, not mystery; choose another output folder$"):
        check_output(Path("e"), "mystery", overwrite=True)  # a kind without an article is named as it is
    with pytest.raises(AdlabError, match=r"^odd: future-kind already exists here \(use --overwrite"):
        check_output(Path("odd"), "future-kind", overwrite=False)


def test_prepare_output_makes_the_folder_and_its_marker(work):
    from adlab import __version__

    out = prepare_output(Path("a/b/run"), "run", overwrite=False, config={"x": 1})
    assert out == Path("a/b/run")
    assert json.loads((work / "a/b/run" / MARKER).read_text()) == {
        "kind": "run",
        "adlab": __version__,
        "config": {"x": 1},
    }


def test_prepare_output_replaces_only_its_own_kind_with_the_flag(work):
    adlab_folder(work / "r", "run")
    (work / "r" / "old.txt").write_text("old")
    with pytest.raises(AdlabError, match=r"^r: a run already exists here \(use --overwrite to replace it"):
        prepare_output(Path("r"), "run", overwrite=False)
    with pytest.raises(AdlabError, match=r"\(use --force to replace it"):
        prepare_output(Path("r"), "run", overwrite=False, flag="--force")
    assert (work / "r" / "old.txt").is_file()
    prepare_output(Path("r"), "run", overwrite=True)
    assert sorted(p.name for p in (work / "r").iterdir()) == [MARKER]
    assert marker_kind(work / "r") == "run"


def test_prepare_output_into_an_empty_folder_keeps_it(work):
    (work / "empty").mkdir()
    assert prepare_output(Path("empty"), "data", overwrite=False) == Path("empty")
    assert marker_kind(work / "empty") == "data"


def test_prepare_output_through_missing_dotdot_is_refused_and_makes_nothing(work):
    user_folder(work / "userdir", files=("thesis.txt", "metrics.json"))
    before = listing(work)
    for kind in ("run", "evaluation", "fused-run", "data", "demo"):
        with pytest.raises(AdlabError, match="userdir: folder is not empty and was not made by adlab"):
            prepare_output(Path("missing/../userdir"), kind, overwrite=True)
    assert listing(work) == before


def test_prepare_output_writes_where_the_path_lands(work):
    """An adlab run reached through `missing/..` is replaced in place, and `missing` is not made."""
    adlab_folder(work / "r", "run")
    out = prepare_output(Path("missing/../r"), "run", overwrite=True)
    assert out == Path("r") and marker_kind(work / "r") == "run"
    assert not (work / "missing").exists()


def test_a_demo_folder_from_an_earlier_adlab_is_replaced_by_a_demo_only(work):
    (work / "d").mkdir()
    (work / "d" / "demo.json").write_text('{"source": "digits"}')
    (work / "d" / "report.md").write_text("old")
    with pytest.raises(AdlabError, match="holds a demo, not a study"):
        check_output(Path("d"), "study", overwrite=True)
    assert prepare_output(Path("d"), "demo", overwrite=True) == Path("d")
    assert not (work / "d" / "report.md").exists() and marker_kind(work / "d") == "demo"


# --- adopt_or_create ------------------------------------------------------------------------------------

LEGACY_STUDY = ("study.yaml", "runs")


def test_adopt_or_create_makes_a_new_folder_with_its_marker(work):
    assert adopt_or_create(Path("runs/studies/s"), "study", LEGACY_STUDY) is False  # parents made too
    assert marker_kind(work / "runs/studies/s") == "study"
    assert adopt_or_create(Path("s"), "study", LEGACY_STUDY) is False
    assert json.loads((work / "s" / MARKER).read_text())["kind"] == "study"
    assert "adopted" not in json.loads((work / "s" / MARKER).read_text())


def test_adopt_or_create_continues_its_own_kind_and_leaves_the_marker(work):
    (work / "s").mkdir()
    (work / "s" / MARKER).write_text(json.dumps({"kind": "study", "adlab": "0.0.1"}))
    (work / "s" / "runs").mkdir()
    assert adopt_or_create(Path("s"), "study", LEGACY_STUDY) is True
    assert json.loads((work / "s" / MARKER).read_text()) == {"kind": "study", "adlab": "0.0.1"}


def test_a_legacy_study_folder_is_adopted_and_marked(work):
    (work / "s" / "runs" / "a").mkdir(parents=True)
    (work / "s" / "study.yaml").write_text("variants: {}\n")
    (work / "s" / "report.md").write_text("kept")
    assert adopt_or_create(Path("s"), "study", LEGACY_STUDY) is True
    marker = json.loads((work / "s" / MARKER).read_text())
    assert marker["kind"] == "study" and marker["adopted"] is True
    assert (work / "s" / "report.md").read_text() == "kept" and (work / "s" / "runs" / "a").is_dir()


@pytest.mark.parametrize("present", [("study.yaml",), ("runs",), ("thesis.txt",)])
def test_a_folder_with_only_part_of_the_legacy_files_is_the_user_s(work, present):
    (work / "u").mkdir()
    for name in present:
        (work / "u" / name).mkdir() if name == "runs" else (work / "u" / name).write_text("x")
    before = listing(work)
    with pytest.raises(AdlabError, match="not made by adlab"):
        adopt_or_create(Path("u"), "study", LEGACY_STUDY)
    assert listing(work) == before


def test_legacy_files_adopt_nothing_when_none_are_named(work):
    (work / "u").mkdir()
    (work / "u" / "study.yaml").write_text("x")
    with pytest.raises(AdlabError, match="not made by adlab"):
        adopt_or_create(Path("u"), "search")


def test_adopt_or_create_refuses_another_kind_and_protected_folders(work, tmp_path):
    adlab_folder(work / "r", "run")
    with pytest.raises(AdlabError, match="holds a run, not a study"):
        adopt_or_create(Path("r"), "study", LEGACY_STUDY)
    with pytest.raises(AdlabError, match="home folder"):
        adopt_or_create(tmp_path / "home", "study", LEGACY_STUDY)
    with pytest.raises(AdlabError, match="working directory"):
        adopt_or_create(Path("."), "study", LEGACY_STUDY)
    assert not (tmp_path / "home" / MARKER).exists() and not (work / MARKER).exists()


def test_adopt_or_create_through_missing_dotdot(work):
    user_folder(work / "userdir")
    before = listing(work)
    with pytest.raises(AdlabError, match="userdir: folder is not empty"):
        adopt_or_create(Path("missing/../userdir"), "study", LEGACY_STUDY)
    assert listing(work) == before
    assert adopt_or_create(Path("missing/../fresh"), "search") is False
    assert marker_kind(work / "fresh") == "search" and not (work / "missing").exists()


# --- through the CLI: refused, nothing changed, no `missing` folder left ----------------------------------

CONFIG = "data:\n  name: digits\ntrain:\n  epochs: 1\n  progress_bar: false\n"
STUDY = "config:\n  data: {name: digits}\n  train: {epochs: 1, progress_bar: false}\nvariants:\n  a: {train.seed: 1}\n"


@pytest.fixture
def userdir(cli) -> Path:
    return user_folder(cli.root / "userdir", files=("thesis.txt", "config.yaml", "metrics.json"))


def test_train_out_through_missing_dotdot_is_refused(cli, userdir):
    (cli.root / "c.yaml").write_text(CONFIG)
    cli.refused("train", "c.yaml", "--out", "missing/../userdir", names=("userdir",))
    cli.refused("train", "c.yaml", "--out", "missing/../userdir", "--overwrite", names=("userdir",))
    assert not (cli.root / "missing").exists()


def test_study_out_through_missing_dotdot_is_refused(cli, userdir):
    (cli.root / "s.yaml").write_text(STUDY)
    cli.refused("study", "s.yaml", "--out", "missing/../userdir", names=("userdir",))
    cli.refused("study", "s.yaml", "--out", "missing/../userdir", "--resume", names=("userdir",))
    assert not (cli.root / "missing").exists()


def test_synth_scenes_out_through_missing_dotdot_is_refused(cli, userdir):
    cli.refused(
        "data", "synth-scenes", "--out", "missing/../userdir", "--images", "2", "--source", "digits", names=("userdir",)
    )
    cli.refused(
        "data",
        "synth-scenes",
        "--out",
        "missing/../userdir",
        "--images",
        "2",
        "--source",
        "digits",
        "--overwrite",
        names=("userdir",),
    )
    assert not (cli.root / "missing").exists()


def test_demo_out_onto_a_folder_adlab_did_not_make_is_refused(cli, userdir):
    cli.refused("demo", "--quick", "--out", "userdir", names=("userdir", "not made by adlab"))
    cli.refused("demo", "--quick", "--out", "missing/../userdir", names=("userdir",))
    assert not (cli.root / "missing").exists()


def test_demo_out_onto_another_kind_of_adlab_folder_is_refused(cli):
    adlab_folder(cli.root / "r", "run")
    cli.refused("demo", "--quick", "--out", "r", names=("r", "holds a run, not a demo"))


def test_an_output_in_the_home_folder_itself_is_refused(cli, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (cli.root / "c.yaml").write_text(CONFIG)
    (cli.root / "s.yaml").write_text(STUDY)
    for args in (
        ("train", "c.yaml", "--out", "~", "--overwrite"),
        ("train", "c.yaml", "--out", home),
        ("study", "s.yaml", "--out", "~"),
        ("demo", "--quick", "--out", home),
    ):
        cli.refused(*args, names=("home folder",))
    assert list(home.iterdir()) == []


@pytest.fixture
def trained(cli_runs):
    return cli_runs  # two finished runs under the working folder (tests/conftest.py)


def test_fuse_and_evaluate_out_through_missing_dotdot_are_refused_with_trained_runs(cli, userdir, trained):
    a, b = trained
    cli.refused("fuse", a, b, "--out", "missing/../userdir", names=("userdir",))
    cli.refused("fuse", a, b, "--out", "missing/../userdir", "--overwrite", names=("userdir",))
    cli.refused("evaluate", a, "--out", "missing/../userdir", names=("userdir",))
    cli.refused("evaluate", a, "--out", "missing/../userdir", "--overwrite", names=("userdir",))
    assert not (cli.root / "missing").exists()
