"""A study's runs as a queue in Optuna's storage, shared by any number of worker processes.

Each run of the study is enqueued once, as a WAITING trial holding its name; a worker claims one
with `ask()`, which moves it WAITING -> RUNNING atomically in the storage (never GridSampler: it
hands the same point to two workers). The storage is a journal file in the study folder by default
(Optuna's JournalFileBackend: no server, works on a shared file system), or any RDB URL.

A worker writes a heartbeat into its trial while it trains. A RUNNING trial whose heartbeat is
older than the grace period belongs to a worker that died: another worker marks it failed and
enqueues its run again, and the run continues from its last checkpoint. A run that fails by itself
(bad input) stays failed until `--retry-failed`. The worker that finds the queue empty and nothing
running makes the fusions and the report; `adlab report` can always redo the report.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from adlab import io
from adlab.errors import AdlabError, Interrupted

QUEUE_NAME = "adlab-study"
JOURNAL = "queue.journal"
READY = "queue.ready"  # written once every run is enqueued
HEARTBEAT = float(os.environ.get("ADLAB_QUEUE_HEARTBEAT", 10))  # seconds between a worker's signs of life
GRACE = float(os.environ.get("ADLAB_QUEUE_GRACE", 60))  # silence after which a running claim is a dead worker's
POLL = min(1.0, HEARTBEAT)  # a worker with nothing to claim waits for the others' last runs: that is the study's tail
THREADS_ENV = "ADLAB_WORKER_THREADS"  # torch threads of a worker started by --workers
WORKER_ENV = "ADLAB_STUDY_WORKER"  # set in workers: Lightning must not take them for DDP ranks


def open_queue(out: Path, storage: str | None = None, create: bool = True):
    """The study's queue (an Optuna study) in `storage`, by default the journal file in OUT; loading an
    existing queue writes nothing to it (`--status`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        backend = JournalFileBackend(str(out / JOURNAL))
        store = JournalStorage(backend)
    elif storage.startswith("sqlite"):
        raise AdlabError(f"--storage {storage}: SQLite can hand one run to two workers (optuna issue 4002); "
                         "use the default journal file, or a PostgreSQL / MySQL URL")
    else:
        try:
            store = optuna.storages.RDBStorage(storage)
        except Exception as exc:  # ImportError of a driver, a wrong URL, a server that does not answer
            raise AdlabError(f"--storage {storage}: cannot open ({str(exc).splitlines()[0][:200]})") from None
    try:
        return optuna.load_study(study_name=QUEUE_NAME, storage=store)
    except KeyError:  # no queue yet
        if not create:
            raise AdlabError(f"{out}: no worker queue in {storage or out / JOURNAL}") from None
        return optuna.create_study(study_name=QUEUE_NAME, storage=store, load_if_exists=True)


def enqueue_once(queue, study, out: Path, finished, say) -> None:
    """The study's data preparation steps run and every unfinished run enqueued, once, by whichever
    process gets there first (an exclusive file create, atomic on local and network file systems);
    the others wait until it is done."""
    from adlab.study.prepare import run_steps

    ready = out / READY
    if ready.is_file():
        return
    try:
        handle = os.open(out / ".queue.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        deadline = time.monotonic() + 300
        while not ready.is_file():
            if time.monotonic() > deadline:
                raise AdlabError(f"{out}: another worker started filling the queue and never finished; "
                                 f"remove {out / '.queue.lock'} and start again") from None
            time.sleep(0.5)
        return
    os.close(handle)
    run_steps(study.prepare, study.path, out, say)
    known = {t.user_attrs.get("run") for t in queue.get_trials(deepcopy=False)}
    # Longest runs first: the study ends when its last run does, and short runs fill the gaps best.
    for run in sorted(study.runs, key=_epochs, reverse=True):
        if run.name not in known and not finished(out / "runs" / run.name):
            queue.enqueue_trial({}, user_attrs={"run": run.name, "attempt": 1})
    io.write_text(ready, dt.datetime.now().isoformat(timespec="seconds") + "\n")


def _epochs(run) -> int:
    train = getattr(run.config, "train", None)
    return int(getattr(train, "epochs", 0) or 0)


@dataclass
class Claim:
    trial: object
    run: str
    attempt: int


def claim(queue) -> Claim | None:
    """A waiting run, now RUNNING for this worker; None when nothing waits. A trial created because
    another worker took the last waiting one first is closed at once (failed, marked idle)."""
    from optuna.trial import TrialState

    while queue.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial = queue.ask()
        name = trial.user_attrs.get("run")
        if name is None:
            trial.set_user_attr("idle", True)  # an empty trial, not a run: status and retries skip it
            queue.tell(trial, state=TrialState.FAIL)
            continue
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("heartbeat", time.time())
        return Claim(trial, name, int(trial.user_attrs.get("attempt", 1)))
    return None


class Heartbeat:
    """Writes the time into the claimed trial every HEARTBEAT seconds, in a thread, while a run trains."""

    def __init__(self, queue, trial):
        self.storage, self.trial_id = queue._storage, trial._trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # a storage hiccup: the next beat tries again; missing many makes the run stale
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def requeue_stale(queue) -> list[str]:
    """Runs whose worker went silent for GRACE seconds: marked failed (stale) and enqueued again,
    by exactly one worker (the storage refuses a second change of a finished trial)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    requeued = []
    now = time.time()
    for trial in queue.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.user_attrs.get("heartbeat")
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        if now - (beat if isinstance(beat, (int, float)) else started) < GRACE:
            continue
        storage = queue._storage
        try:
            storage.set_trial_user_attr(trial._trial_id, "stale", True)
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except (UpdateFinishedTrialError, RuntimeError):
            continue  # another worker got there first
        name = trial.user_attrs.get("run")
        if name:
            queue.enqueue_trial({}, user_attrs={"run": name, "attempt": int(trial.user_attrs.get("attempt", 1)) + 1})
            requeued.append(name)
    return requeued


def retry_failed(queue) -> list[str]:
    """Runs whose latest attempt failed by itself (not a dead worker's: those come back on their own)."""
    latest = latest_attempts(queue)
    names = [name for name, trial in latest.items()
             if trial.state.name == "FAIL" and not trial.user_attrs.get("stale")]
    for name in names:
        queue.enqueue_trial({}, user_attrs={"run": name, "attempt": int(latest[name].user_attrs.get("attempt", 1)) + 1})
    return names


def latest_attempts(queue) -> dict:
    """Each run's newest trial."""
    latest: dict = {}
    for trial in queue.get_trials(deepcopy=False):
        name = trial.user_attrs.get("run")
        if name and (name not in latest or trial.number > latest[name].number):
            latest[name] = trial
    return latest


def work(study, out: Path, queue, say, resume_runs: bool = True) -> tuple[int, int]:
    """Claim and make runs until none waits and none runs; returns (runs made, runs failed)."""
    from optuna.trial import TrialState

    from adlab.study.runner import headline, make_run

    made = failed = 0
    runs = {run.name: run for run in study.runs}
    total = len(study.runs)
    while True:
        for name in requeue_stale(queue):
            say(f"{name}: its worker went silent for {GRACE:.0f} s; queued again, to continue from its checkpoint")
        claimed = claim(queue)
        if claimed is None:
            if queue.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                time.sleep(POLL)  # others are still working: one of their runs may come back to the queue
                continue
            return made, failed
        run = runs.get(claimed.run)
        if run is None:  # a queue left by another version of the study file
            claimed.trial.set_user_attr("error", "not a run of this study file")
            queue.tell(claimed.trial, state=TrialState.FAIL)
            continue
        index = list(runs).index(claimed.run) + 1
        label = f"[{index}/{total}] "
        started = time.perf_counter()
        claimed.trial.set_user_attr("continued", _interrupted_before(run, out))
        try:
            with Heartbeat(queue, claimed.trial):
                metrics = make_run(run, out, resume_runs, say, label)
        except Interrupted:
            raise  # the claim stays RUNNING; its heartbeat stops and another worker takes it over
        except AdlabError as exc:
            claimed.trial.set_user_attr("error", str(exc)[:500])
            queue.tell(claimed.trial, state=TrialState.FAIL)
            say(f"{label}{claimed.run}: failed: {exc}")
            failed += 1
            continue
        claimed.trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        queue.tell(claimed.trial, 0.0)
        made += 1
        say(f"{label}{claimed.run}: {headline(run.config.task, metrics)}done in "
            f"{time.perf_counter() - started:.0f} s" + (f" (attempt {claimed.attempt})" if claimed.attempt > 1 else ""))


def _interrupted_before(run, out: Path) -> bool:
    """Whether this run continues from a checkpoint an earlier attempt left (recorded in its trial)."""
    from adlab.run.train import resumable
    from adlab.study.runner import with_study_folder

    return bool(resumable(out / "runs" / run.name, with_study_folder(run.config, out)))


def finish_once(study, out: Path, say) -> bool:
    """Fusions and the report, once: by the first worker to create OUT/.finishing (removed after) that
    finds the report older than the runs; True when the report is current."""
    from adlab.study.runner import finish, finished

    if not all(finished(out / "runs" / run.name) for run in study.runs):
        return False
    lock = out / ".finishing"
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    try:
        if not _report_current(study, out):  # another worker may have written it while this one waited
            finish(study, out, True, say)
    finally:
        lock.unlink(missing_ok=True)
    return True


def _report_current(study, out: Path) -> bool:
    """Whether OUT/report.md is newer than every run's results (a retried run makes it stale)."""
    report = out / "report.md"
    if not report.is_file():
        return False
    newest = max((out / "runs" / run.name / "metrics.json").stat().st_mtime for run in study.runs)
    return report.stat().st_mtime >= newest


def status_lines(study, out: Path, queue) -> list[str]:
    from adlab.study.runner import finished

    latest = latest_attempts(queue)  # the queue was opened with create=False: reading writes nothing
    now = time.time()
    counts = {"done": 0, "running": 0, "waiting": 0, "failed": 0, "not queued": 0}
    lines = []
    for run in study.runs:
        trial = latest.get(run.name)
        if finished(out / "runs" / run.name):
            state, detail = "done", ""
        elif trial is None:
            state, detail = "not queued", ""
        elif trial.state.name == "RUNNING":
            since = trial.datetime_start.timestamp() if trial.datetime_start else now
            beat = trial.user_attrs.get("heartbeat", since)
            state = "running"
            detail = (f" on {trial.user_attrs.get('worker', '?')} for {int(now - since)} s"
                      f" (last heartbeat {int(now - beat)} s ago)")
        elif trial.state.name == "WAITING":
            state, detail = "waiting", ""
        elif trial.state.name == "FAIL":
            state = "failed"
            detail = ": " + (trial.user_attrs.get("error") or "its worker died; queued again by the next worker")
        else:
            state, detail = "done", ""
        counts[state] += 1
        attempt = int(trial.user_attrs.get("attempt", 1)) if trial is not None else 1
        lines.append(f"  {run.name}: {state}{detail}" + (f" (attempt {attempt})" if attempt > 1 else ""))
    head = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    return [f"study {study.name} in {out}: {head}"] + lines
