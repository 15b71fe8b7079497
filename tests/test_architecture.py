"""The architecture as tests: no import circle between adlab's modules, and every task in the registry
is a package with a TASK that is the task it is registered as (mypy checks each TASK against the Task
protocol statically; the layers are import-linter's contract in pyproject.toml, run by `make lint`)."""

import importlib
import sys
from pathlib import Path

import pytest

from adlab.tasks.base import Task
from adlab.taskspec import TASKS

grimp = pytest.importorskip("grimp")  # import-linter's graph library (the dev extra)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others():
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))
    graph = grimp.build_graph("adlab")
    imports = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    imports["adlab"] = set()  # the package's public API imports on first use, from the top: never a circle's part
    assert _cycles(imports) == []


def test_the_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", list(TASKS))
def test_every_registered_task_is_its_package_task(name):
    task = importlib.import_module(TASKS[name].package).TASK
    assert task.name == name
    assert isinstance(task, Task)  # every method and attribute of the protocol, at run time too


def test_the_model_sections_are_the_registered_tasks_families():
    from adlab.config import MODEL_FAMILIES, ModelConfig
    from adlab.taskspec import MODEL_KINDS

    declared = [family for spec in TASKS.values() for family in spec.families]
    assert set(MODEL_FAMILIES.values()) == set(declared)
    for key, family in MODEL_FAMILIES.items():
        assert ModelConfig.model_fields[key].annotation is family  # composed into the schema
        assert set(family.models) <= set(MODEL_KINDS)  # read by adlab's own networks only
