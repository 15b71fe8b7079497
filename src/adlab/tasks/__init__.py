"""Tasks: one package per kind of study (classify, autoencode, detect), each holding everything
about it: its training (LightningModule or ultralytics wrapper), input requirements, evaluation,
outputs, figures and resume checkpoint. `run/` drives any of them through the `Task` protocol
(tasks/base.py) without knowing which.

Adding a task = a new package exposing `TASK` (a Task) + one line in TASKS. Packages are imported
only when their task is used, so an optional engine (ultralytics for detect) costs nothing otherwise.
"""

from __future__ import annotations

import importlib

TASKS = {
    "classify": "adlab.tasks.classify",
    "autoencode": "adlab.tasks.autoencode",
    "detect": "adlab.tasks.detect",
}


def get_task(name: str):
    """The registered Task called `name`."""
    if name not in TASKS:
        from adlab.errors import ConfigError

        raise ConfigError(f"task: unknown task {name!r} (valid: {', '.join(TASKS)})")
    return importlib.import_module(TASKS[name]).TASK
