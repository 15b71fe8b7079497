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

A run's truth is its folder: a run whose trial says done but whose metrics.json is gone is queued
again by the next worker. Every lock file (the journal's, the one taken to fill the queue, the one
taken to write the report) records its owner; a lock whose owner died on this machine is taken over
at once, any other after Optuna's grace period without a change (the holders of the long-held locks
touch theirs every heartbeat), each with a one-line notice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import signal
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

from adlab import io
from adlab.errors import AdlabError, ConfigError, DataError, Interrupted, WorkerStopped
from adlab.run.train import resumable
from adlab.study.prepare import run_steps
from adlab.study.runs import finish, finished, headline, make_run, with_study_folder
from adlab.study.slurm import task_id

if TYPE_CHECKING:
    import optuna
    from optuna.storages.journal._file import BaseJournalFileLock


def _seconds(name: str, default: float) -> float:
    """A timing from the environment (a test hook); a bad value is refused by check_timing, not here."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return math.nan


QUEUE_NAME = "adlab-study"
JOURNAL = "queue.journal"
READY = "queue.ready"  # written once every run is enqueued
FILL_LOCK = ".enqueue"  # OUT/.enqueue.lock: held while the prepare steps run and the runs are enqueued
FINISH_LOCK = ".finishing"  # OUT/.finishing.lock: held while the fusions and the report are made
HEARTBEAT = _seconds("ADLAB_QUEUE_HEARTBEAT", 10)  # seconds between a worker's signs of life
GRACE = _seconds("ADLAB_QUEUE_GRACE", 60)  # silence after which a running claim is a dead worker's
JOURNAL_LOCK_GRACE = 30.0  # an append holds the journal's lock for milliseconds: one unchanged this long is stale
MAX_RECORD = 1 << 20  # the longest journal line adlab reads (its records are a few hundred bytes)


def poll() -> float:
    """A worker with nothing to claim waits this long for the others' last runs: that is the study's tail."""
    return min(1.0, HEARTBEAT)


def check_timing() -> None:
    """The heartbeat and grace (ADLAB_QUEUE_HEARTBEAT, ADLAB_QUEUE_GRACE) must make sense before any
    worker starts: a grace shorter than the heartbeat would take every live worker for a dead one."""
    for name, value in (("ADLAB_QUEUE_HEARTBEAT", HEARTBEAT), ("ADLAB_QUEUE_GRACE", GRACE)):
        if not (math.isfinite(value) and 0 < value <= 86400):
            raise ConfigError(
                f"{name}={os.environ.get(name, f'{value:g}')}: need a number of seconds above 0 (at most a day)"
            )
    if GRACE <= HEARTBEAT:
        raise ConfigError(
            f"ADLAB_QUEUE_GRACE={GRACE:g} must be longer than ADLAB_QUEUE_HEARTBEAT={HEARTBEAT:g}: "
            "a live worker would be taken for a dead one"
        )


# --- lock files with owners --------------------------------------------------------------------------


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


HOST, PIDNS = socket.gethostname(), _pid_namespace()
_local = threading.local()  # the lock this thread waits for in Optuna's loop (named in its notices)


class OwnedLock:
    """Optuna's lock file (an exclusive create: JournalFileOpenLock, for NFSv3 and later) holding its
    owner (pid, host, time). A lock whose owner is no longer running on this machine is taken over at
    once; any other waits in Optuna's own loop, whose grace_period takes over a lock file unchanged for
    that long. Holders of a long-held lock touch it (see `held`), so only a dead one's goes stale.
    (Optuna's lock is used inside, not inherited: importing Optuna is left to the processes that queue.)"""

    def __init__(self, target: Path, grace: float):
        self.target = str(Path(target).absolute())  # absolute: a relative one would depend on the working directory
        self.grace_period = max(3.0, grace)  # under 3 s Optuna warns
        self.path = Path(self.target + ".lock")
        self.shown = Path(f"{target}.lock")  # in messages: as the command named it

    def _optuna(self):
        from optuna.storages.journal import JournalFileOpenLock

        return JournalFileOpenLock(self.target, grace_period=math.ceil(self.grace_period))

    def release(self) -> None:
        self._optuna().release()  # RuntimeError where the lock is gone

    def acquire(self) -> bool:
        while True:
            if self._create():
                return True
            seen = self._read(self.path)
            if seen is None:  # released meanwhile
                continue
            if self.path.is_dir() and not self.path.is_symlink():
                raise DataError(f"{self.shown}: is a folder, not a lock file adlab made; remove it")
            why = self._dead_owner(seen) or self._too_old()
            if why:
                self._take_over(seen, why)
                continue
            if self.path.is_symlink():  # a symlink lock of an older adlab: Optuna's wait cannot stat it
                time.sleep(0.05)
                continue
            break
        _local.lock = self
        try:
            self._optuna().acquire()  # Optuna's wait, with its grace period; it creates an empty lock file
        finally:
            _local.lock = None
        self._write_owner(os.open(self.path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)))
        return True

    def _create(self) -> bool:
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        self._write_owner(handle)
        return True

    @staticmethod
    def _write_owner(handle: int) -> None:
        record = {
            "pid": os.getpid(),
            "host": HOST,
            "pidns": PIDNS,
            "token": uuid.uuid4().hex,
            "time": dt.datetime.now().isoformat(timespec="seconds"),
        }
        try:
            os.write(handle, json.dumps(record).encode())
        finally:
            os.close(handle)

    @staticmethod
    def _read(path: Path) -> bytes | None:
        """A lock file's bytes (b"" for a symlink, a FIFO or one still being written); None when it is gone."""
        try:
            handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return None
        except OSError:  # a symlink (O_NOFOLLOW) or something else that is not a plain file
            return b""
        try:
            return os.read(handle, 4096)
        except OSError:
            return b""
        finally:
            os.close(handle)

    @staticmethod
    def owner(seen: bytes) -> dict:
        try:
            record = json.loads(seen)
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def _dead_owner(self, seen: bytes) -> str:
        """Why the lock's owner is known to be gone ('' when it may be alive: another host, no record)."""
        owner = self.owner(seen)
        pid = owner.get("pid")
        if owner.get("host") != HOST or owner.get("pidns") != PIDNS or not isinstance(pid, int) or pid <= 0:
            return ""
        if pid == os.getpid():
            return ""
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"left by process {pid} on {HOST} (no longer running) since {owner.get('time', '?')}"
        except OSError:  # alive, another user's
            return ""
        return ""

    def _too_old(self) -> str:
        """Why the lock is stale by its age: unchanged for longer than the grace period (its holder,
        on any host, touches it more often than that while alive)."""
        try:
            age = time.time() - self.path.lstat().st_mtime
        except OSError:
            return ""
        if age <= self.grace_period:
            return ""
        owner = self.owner(self._read(self.path) or b"")
        who = f"by process {owner.get('pid')} on {owner.get('host')} " if owner else ""
        return f"left {who}unchanged for {age:.0f} s (over {self.grace_period:.0f} s)"

    def _take_over(self, seen: bytes, why: str) -> None:
        """Remove the lock seen, and only that one: moved aside, compared, put back if it changed hands."""
        aside = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        now = self._read(aside)
        if now != seen:  # another worker took it over and holds it now: give it back
            try:
                os.link(aside, self.path, follow_symlinks=False)
            except OSError:
                pass
        else:
            io.notice(f"{self.shown}: lock {why}; taken over")
        os.unlink(aside)

    def touch(self) -> None:
        try:
            os.utime(self.path, follow_symlinks=False)
        except OSError:
            pass


class _OptunaLockNotices(logging.Filter):
    """Optuna's lock messages as adlab's one-line notices, naming the lock and its owner."""

    def filter(self, record: logging.LogRecord) -> bool:
        lock = getattr(_local, "lock", None)
        text = record.getMessage()
        if lock is not None and "Forcibly releasing" in text:
            io.notice(f"{lock.shown}: lock unchanged for {lock.grace_period:.0f} s; taken over")
        elif lock is not None and "taking longer" in text:
            owner = OwnedLock.owner(lock._read(lock.path) or b"")
            who = f"process {owner.get('pid')} on {owner.get('host')}" if owner else "another process"
            io.notice(
                f"{lock.shown}: waiting for {who} to release it (taken over after {lock.grace_period:.0f} s unchanged)"
            )
        return False


logging.getLogger("optuna.storages.journal._file").addFilter(_OptunaLockNotices())


@contextmanager
def held(target: Path, grace: float | None = None):
    """The lock TARGET.lock held, touched every HEARTBEAT seconds so that waiting workers see it alive."""
    lock = OwnedLock(target, GRACE if grace is None else grace)
    lock.acquire()
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT):
            lock.touch()

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield lock
    finally:
        stop.set()
        thread.join()
        try:
            lock.release()
        except RuntimeError:  # taken over by another worker (this one was silent too long)
            pass


# --- the journal ------------------------------------------------------------------------------------


@cache
def _journal_class():
    from optuna.storages.journal import JournalFileBackend

    class Journal(JournalFileBackend):
        """Optuna's journal file with adlab's lock; a record that cannot be read is one line naming the file."""

        def __init__(self, path: Path):
            self.path = path
            # OwnedLock is Optuna's lock interface (acquire, release) without inheriting it: see its docstring
            lock = cast("BaseJournalFileLock", OwnedLock(path, JOURNAL_LOCK_GRACE))
            super().__init__(str(Path(path).absolute()), lock_obj=lock)

        def read_logs(self, log_number_from: int):
            try:
                yield from super().read_logs(log_number_from)
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, Optuna's "Invalid log format"
                raise DataError(
                    f"{self.path}: the worker queue cannot be read (written over or edited?): "
                    f"{str(exc).splitlines()[0][:200]}"
                ) from None

    return Journal


def check_journal(path: Path) -> None:
    """The journal file as untrusted input, read without writing: adlab's own plain file, every line a
    complete record. A worker writes a record in one go; a line cut short is waited for a moment."""
    import stat

    hint = "; move it away to start the queue again (finished runs are kept)"
    if path.is_symlink():
        raise DataError(f"{path}: is a symbolic link; the worker queue is written only into a file of its own{hint}")
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: is not a file{hint}")
    if info.st_nlink > 1:
        raise DataError(f"{path}: has other hard links; writing the worker queue would change them too{hint}")
    for _ in range(5):
        problem = _journal_problem(path)
        if not problem.endswith("cut short"):
            break
        time.sleep(0.4)  # a record being written right now
    if problem:
        raise DataError(f"{path}: {problem}{hint}")


def _journal_problem(path: Path) -> str:
    with open(path, "rb") as f:
        number = 0
        while True:
            line = f.readline(MAX_RECORD + 1)
            if not line:
                return ""
            number += 1
            if not line.endswith(b"\n"):
                if len(line) > MAX_RECORD:
                    return f"line {number} is over {MAX_RECORD // 1024} KiB long: not a worker queue"
                if not line.startswith(b'{"'):
                    return f"line {number} is not a queue record (damaged or edited?)"
                return f"line {number}, the last, is cut short"
            try:
                record = json.loads(line)
            except ValueError:
                return f"line {number} is not a queue record (damaged or edited?)"
            if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
                return f"line {number} is not a queue record (damaged or edited?)"


def storage_for(out: Path, storage: str | None, make: bool = True):
    """The queue's Optuna storage, checked; for the journal file, None when there is none yet and not
    `make`. Opens nothing in OUT that is not there (a refused storage leaves no folder behind)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        from optuna.storages import JournalStorage

        path = Path(out) / JOURNAL
        if os.path.lexists(path):
            check_journal(path)
        elif not make:
            return None
        try:
            return JournalStorage(_journal_class()(path))  # replays the records
        except AdlabError:
            raise
        except Exception as exc:  # records that parse but do not replay (edited by hand)
            raise DataError(
                f"{path}: the worker queue cannot be read (written over or edited?): {type(exc).__name__}"
                f"{': ' + str(exc).splitlines()[0][:200] if str(exc) else ''}"
            ) from None
    if storage.startswith("sqlite"):
        raise ConfigError(
            f"--storage {storage}: SQLite can hand one run to two workers (optuna issue 4002); "
            "use the default journal file, or a PostgreSQL / MySQL URL"
        )
    for attempt in range(6):
        try:
            # a database host that stops answering: an error after 10 s, not a worker hanging on it
            timeout = {"connect_args": {"connect_timeout": 10}} if storage.startswith("postgres") else None
            return optuna.storages.RDBStorage(_with_driver(storage), engine_kwargs=timeout)
        except Exception as exc:  # ImportError of a driver, a wrong URL, a server that does not answer
            # Workers started together on a new database all make Optuna's tables; all but one are
            # refused (a unique key of PostgreSQL's catalogue): by then the tables are there.
            racing = any(word in str(exc) for word in ("UniqueViolation", "already exists", "IntegrityError"))
            if not racing or attempt == 5:
                raise ConfigError(f"--storage {masked(storage)}: cannot open ({_first_line(exc, storage)})") from None
            time.sleep(0.2 + 0.3 * attempt)


def _with_driver(url: str) -> str:
    """postgresql:// with the driver adlab[cluster] installs (psycopg 3), which SQLAlchemy 2.1 takes by
    default but 2.0 does not (it takes psycopg2); a URL naming its driver is left as it is."""
    import importlib.util

    if (
        url.startswith("postgresql://")
        and importlib.util.find_spec("psycopg2") is None
        and importlib.util.find_spec("psycopg") is not None
    ):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def masked(url: str) -> str:
    """A storage URL as it may be shown: its password replaced by ***."""
    url = re.sub(r"(://[^/:@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def _first_line(exc: BaseException, url: str | None = None) -> str:
    """The first line of a driver's message, without SQLAlchemy's background link and any password."""
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    if url:
        for password in re.findall(r"^[^:]+://[^/:@]*:([^@]*)@|[?&]password=([^&]*)", url):
            for secret in filter(None, password):
                text = text.replace(secret, "***")
    return masked(text)


def _from_database(exc: BaseException | None) -> bool:
    """Whether EXC, or what it was raised from, is a database driver's or SQLAlchemy's error (Optuna
    raises StorageInternalError from them)."""
    seen = 0
    while exc is not None and seen < 10:
        module = type(exc).__module__
        if (
            module.startswith(("sqlalchemy", "psycopg", "pymysql", "MySQLdb"))
            or type(exc).__name__ == "StorageInternalError"
        ):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def storage_error(exc: BaseException, storage: str | None) -> AdlabError | None:
    """A database that stopped answering mid-study as one line naming the URL (password masked); None
    for anything else. SQLAlchemy's errors are recognised by their module, importing nothing."""
    if storage is None or not _from_database(exc):
        return None
    return AdlabError(
        f"--storage {masked(storage)}: the queue's database stopped answering ({_first_line(exc, storage)}); "
        "this worker stopped; a run it held is queued again by the next worker once the database "
        "answers, and continues from its last checkpoint"
    )


def open_queue(out: Path, storage: str | None = None, create: bool = True, store=None):
    """The study's queue (an Optuna study) in `storage`, by default the journal file in OUT; loading an
    existing queue writes nothing to it (`--status`). `store`: the storage from `storage_for`."""
    import optuna

    where = masked(storage) if storage else Path(out) / JOURNAL
    store = store or storage_for(out, storage)
    try:
        names = [s.study_name for s in store.get_all_studies()]
    except AdlabError:
        raise
    except Exception as exc:  # a database that stopped answering; records that do not replay (edited by hand)
        lost = storage_error(exc, storage)
        if lost is not None:
            raise lost from None
        raise DataError(
            f"{where}: the worker queue cannot be read (written over or edited?): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        ) from None
    if QUEUE_NAME in names:
        return optuna.load_study(study_name=QUEUE_NAME, storage=store)
    if not create:
        raise AdlabError(f"{out}: no worker queue in {where}")
    return optuna.create_study(study_name=QUEUE_NAME, storage=store, load_if_exists=True)


# --- filling the queue ------------------------------------------------------------------------------


def unqueued(queue, study, out: Path, finished) -> list:
    """Runs that need a trial: never enqueued, or done by their trial but with no metrics.json in
    their folder (removed since: the folder is the run's truth). Longest first."""
    latest = latest_attempts(queue)
    wanted = [
        run
        for run in study.runs
        if not finished(out / "runs" / run.name)
        and (run.name not in latest or latest[run.name].state.name == "COMPLETE" or _stranded(latest[run.name]))
    ]
    # Longest runs first: the study ends when its last run does, and short runs fill the gaps best.
    return sorted(wanted, key=_epochs, reverse=True)


def _stranded(trial) -> bool:
    """A claim closed as a dead or stopped worker's, whose run was never enqueued again (the worker that
    closed it died between the two writes): after the grace period, the run needs a trial."""
    if trial.state.name != "FAIL" or not trial.user_attrs.get("stale"):
        return False
    closed = trial.datetime_complete.timestamp() if trial.datetime_complete else 0.0
    return time.time() - closed > GRACE


def enqueue_once(queue, study, out: Path, finished, say) -> None:
    """The study's data preparation steps run and every unfinished run enqueued, once, by whichever
    process takes the lock first (its owner recorded, taken over when its owner died); the others
    wait for it, then find nothing left to do. A run whose folder lost its results is queued again."""
    ready = out / READY
    if ready.is_file() and not unqueued(queue, study, out, finished):
        return
    with held(out / FILL_LOCK):
        first = not ready.is_file()
        if first:
            run_steps(study.prepare, study.path, out, say)
        latest = latest_attempts(queue)
        for run in unqueued(queue, study, out, finished):
            earlier = latest.get(run.name)
            attempt = _attempt(earlier) + 1 if earlier is not None else 1
            if earlier is not None:
                say(
                    f"{run.name}: done earlier, but {out / 'runs' / run.name / 'metrics.json'} is gone; "
                    "queued to be made again"
                )
            queue.enqueue_trial({}, user_attrs={"run": run.name, "attempt": attempt})
        if first:
            io.write_text(ready, dt.datetime.now().isoformat(timespec="seconds") + "\n")


def _epochs(run) -> int:
    train = getattr(run.config, "train", None)
    return int(getattr(train, "epochs", 0) or 0)


@dataclass
class Claim:
    trial: optuna.trial.Trial
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
        trial.set_user_attr("worker", f"{HOST}:{os.getpid()}")
        if task_id():
            trial.set_user_attr("slurm", task_id())  # --status names the job array task that holds the run
        trial.set_user_attr("heartbeat", time.time())
        return Claim(trial, name, _attempt(trial))
    return None


class Heartbeat:
    """Writes the time into the claimed trial every HEARTBEAT seconds, in a thread, while a run trains.
    The run is stopped (SIGTERM to this worker: it stops as on scancel) when another worker has taken
    it over (the trial was closed meanwhile: this worker was silent too long), or when the storage
    could not be written for most of the grace period (another worker is about to take it over)."""

    def __init__(self, queue, trial):
        self.storage, self.trial_id = queue._storage, trial._trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.lost: Exception | None = None  # the storage's error, once the worker gave up on it
        self.taken_over = False

    def _beat(self) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        last = time.time()
        while not self.stop.wait(HEARTBEAT):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
                last = time.time()
            except (UpdateFinishedTrialError, RuntimeError):  # closed by the worker that took the run over
                self.taken_over = True
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except Exception as exc:  # a storage hiccup: the next beat tries again
                if time.time() - last > max(HEARTBEAT, GRACE - 2 * HEARTBEAT):
                    self.lost = exc
                    os.kill(os.getpid(), signal.SIGTERM)
                    return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=2 * HEARTBEAT + 5)  # a write hanging on a dead connection is left behind


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
            queue.enqueue_trial({}, user_attrs={"run": name, "attempt": _attempt(trial) + 1})
            requeued.append(name)
    return requeued


def retry_failed(queue) -> list[str]:
    """Runs whose latest attempt failed by itself (not a dead worker's: those come back on their own)."""
    latest = latest_attempts(queue)
    names = [name for name, trial in latest.items() if trial.state.name == "FAIL" and not trial.user_attrs.get("stale")]
    for name in names:
        queue.enqueue_trial({}, user_attrs={"run": name, "attempt": _attempt(latest[name]) + 1})
    return names


def _attempt(trial) -> int:
    """The trial's attempt number (1 where the record holds none, or not a number)."""
    value = trial.user_attrs.get("attempt", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**6 else 1


def latest_attempts(queue) -> dict:
    """Each run's newest trial."""
    latest: dict = {}
    for trial in queue.get_trials(deepcopy=False):
        name = trial.user_attrs.get("run")
        if isinstance(name, str) and (name not in latest or trial.number > latest[name].number):
            latest[name] = trial
    return latest


def work(study, out: Path, queue, say, resume_runs: bool = True) -> tuple[int, int]:
    """Claim and make runs until none waits and none runs; returns (runs made, runs failed)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    made = failed = 0
    runs = {run.name: run for run in study.runs}
    total = len(study.runs)
    while True:
        if _received:  # asked to stop while its last run was ending: that run is done, nothing is held
            raise WorkerStopped(f"worker stopped by {_received[0]} after {made} run(s); it held no run", 143)
        for name in requeue_stale(queue):
            say(f"{name}: its worker went silent for {GRACE:.0f} s; queued again, to continue from its checkpoint")
        claimed = claim(queue)
        if claimed is None:
            if queue.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                time.sleep(poll())  # others are still working: one of their runs may come back to the queue
                continue
            return made, failed
        run = runs.get(claimed.run)
        if run is None:  # a queue left by another version of the study file
            claimed.trial.set_user_attr("error", "not a run of this study file")
            queue.tell(claimed.trial, state=TrialState.FAIL)
            continue
        index = list(runs).index(claimed.run) + 1
        label = f"[{index}/{total}] "
        if finished(out / "runs" / run.name):  # made meanwhile (adlab study --resume): kept, not made twice
            claimed.trial.set_user_attr("kept", True)
            queue.tell(claimed.trial, 0.0)
            say(f"{label}{claimed.run}: finished earlier, kept")
            continue
        started = time.perf_counter()
        heartbeat = Heartbeat(queue, claimed.trial)
        try:
            claimed.trial.set_user_attr("continued", _interrupted_before(run, out))
            with heartbeat:
                metrics = make_run(run, out, resume_runs, say, label)
        except (Interrupted, Signalled) as exc:  # scancel, preemption, a time limit, Ctrl-C, or the storage lost
            raise _stopped(queue, claimed, exc, heartbeat, say, label) from None
        except AdlabError as exc:
            claimed.trial.set_user_attr("error", str(exc)[:500])
            queue.tell(claimed.trial, state=TrialState.FAIL)
            say(f"{label}{claimed.run}: failed: {exc}")
            failed += 1
            continue
        try:
            claimed.trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            queue.tell(claimed.trial, 0.0)
        except (UpdateFinishedTrialError, RuntimeError):  # taken over while this worker was silent
            say(
                f"{label}{claimed.run}: finished here, but another worker took it over meanwhile (this one was "
                f"silent for {GRACE:.0f} s); its folder holds the result, the other worker keeps it"
            )
            continue
        made += 1
        say(
            f"{label}{claimed.run}: {headline(run.config.task, metrics)}done in "
            f"{time.perf_counter() - started:.0f} s" + (f" (attempt {claimed.attempt})" if claimed.attempt > 1 else "")
        )


def _stopped(queue, claimed: Claim, exc: BaseException, heartbeat: Heartbeat, say, label: str) -> Exception:
    """The error a worker ends with when its run was stopped: its claim given back at once (not after
    the grace period), so that another worker continues the run from its last checkpoint."""
    why = str(exc).split(";")[0]
    if _received and _received[0] != "SIGTERM":  # USR1/USR2 reach Lightning as a SIGTERM
        why = why.replace("SIGTERM", _received[0])
    if heartbeat.lost is not None:
        return lost_storage(heartbeat.lost, claimed.run)
    if heartbeat.taken_over:
        return WorkerStopped(
            f"worker stopped: run '{claimed.run}' was taken over by another worker (this one was "
            f"silent for over {GRACE:.0f} s); it continues there from its last checkpoint",
            143,
        )
    code = getattr(exc, "exit_code", 143)
    if give_back(queue, claimed, why):
        say(f"{label}{claimed.run}: {why}; queued again, to continue from its last checkpoint in another worker")
        return WorkerStopped(
            f"worker stopped ({why}); run '{claimed.run}' is back in the queue for the other workers", code
        )
    return WorkerStopped(
        f"worker stopped ({why}); run '{claimed.run}' could not be given back now: the next "
        f"worker queues it again once its heartbeat is {GRACE:.0f} s old",
        code,
    )


def lost_storage(exc: Exception, run: str) -> Exception:
    """The error of a worker that could not reach the queue's storage for most of the grace period: a
    database's own error, which the worker's caller says in one line naming the --storage URL as given
    (`storage_error`), or the journal file's."""
    if _from_database(exc):
        return exc
    return AdlabError(
        f"the worker queue could not be written ({_first_line(exc)}); run '{run}' stopped at its last "
        f"checkpoint and is queued again by the next worker after {GRACE:.0f} s"
    )


def give_back(queue, claimed: Claim, why: str) -> bool:
    """The claimed run's trial closed (failed, not by itself: retries skip it) and the run enqueued again;
    False when that was not possible (another worker took it over, or the storage does not answer)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage, trial_id = queue._storage, claimed.trial._trial_id
    try:
        storage.set_trial_user_attr(trial_id, "stale", True)
        storage.set_trial_user_attr(trial_id, "error", why)
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return False
        queue.enqueue_trial({}, user_attrs={"run": claimed.run, "attempt": claimed.attempt + 1})
    except (UpdateFinishedTrialError, RuntimeError):
        return False  # another worker took it over meanwhile
    except Exception:  # the storage does not answer: the grace period brings the run back
        return False
    return True


class Signalled(BaseException):
    """Raised by a worker's signal handler outside Lightning's fit. A BaseException: no `except
    Exception` on its way (a checkpoint or data reader) may take the stop for a bad file."""


_received: list[str] = []  # the signal that asked this worker to stop (one at most)


@contextmanager
def stop_on_signals():
    """SIGTERM (scancel, preemption, a time limit), and USR1/USR2 that a job script may ask for, stop a
    worker cleanly; signals after the first are ignored, so that giving the run back is never cut in two.
    During Lightning's fit, Lightning's own SIGTERM handler is the one installed and calls this one after
    its own: Lightning finishes the step and stops (the task raises Interrupted). Anywhere else this
    handler raises Signalled at once. A stop that comes as a run ends is seen by `work` before it claims
    the next."""

    def handler(signum, frame):
        if _received:
            return
        _received.append(signal.Signals(signum).name)
        if signal.getsignal(signal.SIGTERM) is not handler:  # inside fit: Lightning's handler is installed
            if signum != signal.SIGTERM:
                os.kill(os.getpid(), signal.SIGTERM)  # only a SIGTERM makes Lightning stop
            return
        raise Signalled(f"stopped by {_received[0]}")

    _received.clear()
    wanted = [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2]
    previous = {signum: signal.signal(signum, handler) for signum in wanted}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _interrupted_before(run, out: Path) -> bool:
    """Whether this run continues from a checkpoint an earlier attempt left (recorded in its trial)."""
    return bool(resumable(out / "runs" / run.name, with_study_folder(run.config, out)))


def finish_once(study, out: Path, say) -> bool:
    """Fusions and the report, once: the workers take OUT/.finishing.lock in turn (a dead holder's is
    taken over) and the first to find the report older than the runs writes it; True when the report
    is current."""
    if not all(finished(out / "runs" / run.name) for run in study.runs):
        return False
    with held(out / FINISH_LOCK):
        if not _report_current(study, out):  # another worker may have written it while this one waited
            finish(study, out, say)
    return True


def _report_current(study, out: Path) -> bool:
    """Whether OUT/report.md is newer than every run's results (a retried run makes it stale)."""
    report = out / "report.md"
    if not report.is_file():
        return False
    newest = max((out / "runs" / run.name / "metrics.json").stat().st_mtime for run in study.runs)
    return report.stat().st_mtime >= newest


def status_lines(study, out: Path, queue) -> list[str]:
    latest = latest_attempts(queue)  # the queue was opened with create=False: reading writes nothing
    now = time.time()
    counts = {"done": 0, "running": 0, "waiting": 0, "failed": 0, "missing": 0, "not queued": 0}
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
            beat = beat if isinstance(beat, (int, float)) else since
            state = "running"
            slurm = trial.user_attrs.get("slurm")
            where = f" (SLURM job {slurm})" if isinstance(slurm, str) else ""
            detail = (
                f" on {trial.user_attrs.get('worker', '?')}{where} for {int(now - since)} s"
                f" (last heartbeat {int(now - beat)} s ago)"
            )
        elif trial.state.name == "WAITING":
            state, detail = "waiting", ""
        elif trial.state.name == "FAIL":
            state = "failed"
            detail = ": " + str(trial.user_attrs.get("error") or "its worker died; queued again by the next worker")
        else:  # done by its trial, yet its folder has no metrics.json: removed since
            state = "missing"
            detail = (
                f": done earlier, but {out / 'runs' / run.name / 'metrics.json'} is gone; "
                "the next worker makes it again"
            )
        counts[state] += 1
        attempt = _attempt(trial) if trial is not None else 1
        lines.append(f"  {run.name}: {state}{detail}" + (f" (attempt {attempt})" if attempt > 1 else ""))
    head = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    return [f"study {study.name} in {out}: {head}"] + lines
