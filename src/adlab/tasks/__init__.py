"""Tasks: one package per kind of study (classify, autoencode, detect), each holding everything
about it: its training (LightningModule or ultralytics wrapper), input requirements, evaluation,
outputs, figures and resume checkpoint. `run/` drives any of them through the `Task` protocol
(tasks/base.py) without knowing which.

Adding a task = a new package exposing `TASK` (a Task) + its entry in the task registry
(adlab/taskspec.py: the data, models and settings it accepts). Packages are imported only when their
task is used, so an optional engine (ultralytics for detect) costs nothing otherwise. Inside a task
package, the module holding TASK imports torch, Lightning, its engine and its own heavy modules in the
hooks that need them: reading a study's reports, plans and configs asks for a task without importing
them (seconds at every CLI start).
"""

from __future__ import annotations

import importlib

from adlab.errors import ConfigError
from adlab.taskspec import TASKS


def get_task(name: str):
    """The registered Task called `name`."""
    if name not in TASKS:
        raise ConfigError(f"task: unknown task {name!r} (valid: {', '.join(TASKS)})")
    return importlib.import_module(TASKS[name].package).TASK
