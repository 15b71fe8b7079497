"""How this process was started, read from its environment: a study worker, or one rank of a DDP job.

Below every layer that asks: the training code must not take a study worker for a DDP rank, and the
study code sets these variables in the workers it starts.
"""

from __future__ import annotations

import os

WORKER_ENV = "ADLAB_STUDY_WORKER"  # set in study workers: Lightning must not take them for DDP ranks
THREADS_ENV = "ADLAB_WORKER_THREADS"  # torch threads of a study worker


def study_worker() -> bool:
    return bool(os.environ.get(WORKER_ENV))


def launched_worker() -> bool:
    """True in a non-zero-rank process (Lightning's DDP launcher, torchrun, SLURM). Never in a study
    worker: `srun --ntasks=2 adlab study --worker` starts two independent workers, not two ranks."""
    if study_worker():
        return False
    return any(int(os.environ.get(var, "0") or 0) != 0 for var in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"))
