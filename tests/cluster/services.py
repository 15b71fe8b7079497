"""Real services for tests: a one-machine SLURM cluster (with its own munged) and a PostgreSQL server.

Each lives in a fresh temporary folder and listens on free ports (never the default ones, so a cluster or
server already running on this machine is left alone). Both are stopped by the PIDs their daemons wrote,
checked gone, and their folder removed. Every process they start also carries TAG=<folder> in its
environment, so that processes no PID file names (slurmstepd, a job's own children) are found and ended
too: nothing outlives stop().
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from itertools import count
from pathlib import Path

# The environment variable that marks every process a service starts (its value: the service's folder).
TAG = "ADLAB_TEST_SERVICE"


class ServiceUnavailable(Exception):
    """A program, user or privilege the service needs is missing here (a skip; a failure with CI=true)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ServiceError(RuntimeError):
    """A service that should work here failed to start or to stop (always a test failure)."""


# --- processes -------------------------------------------------------------------------------------------


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None for no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The command name is in parentheses and may itself hold spaces and parentheses.
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def started(pid: int) -> int | None:
    """When live process pid started (clock ticks after boot), or None if it is gone or a zombie."""
    fields = _stat(pid) if pid else None
    # A zombie counts as gone: it has ended, only its parent (init, for a daemon) has yet to reap it.
    return int(fields[19]) if fields and fields[0] != b"Z" else None


def alive(pid: int, since: int | None = None) -> bool:
    """Whether process pid runs (and, given `since`, is the very process that started then, not a reuse)."""
    start = started(pid)
    return start is not None and (since is None or start == since)


def terminate(pids, grace: float = 10.0) -> list[int]:
    """SIGTERM pids, SIGKILL those left after `grace` seconds; returns those alive even after that.

    `pids` may map each PID to its start time (see started()), so that a PID the kernel has meanwhile given
    to another process is left alone."""
    since = pids if isinstance(pids, dict) else {p: started(p) for p in pids if p}
    pids = {p: s for p, s in since.items() if p and p != os.getpid() and alive(p, s)}
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
                if sig == signal.SIGTERM:
                    os.kill(pid, signal.SIGCONT)  # a stopped process (SIGSTOP) handles SIGTERM only once resumed
            except ProcessLookupError:
                pass
        wait_for(lambda left=pids: not any(alive(p, s) for p, s in left.items()), wait, 0.05)
        pids = {p: s for p, s in pids.items() if alive(p, s)}
        if not pids:
            break
    return sorted(pids)


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid()]


def tagged(folder) -> list[int]:
    """The live processes whose environment says TAG=folder."""
    marker = f"{TAG}={folder}".encode()
    found = []
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0") and alive(pid):
                    found.append(pid)
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


def children(parent: int) -> list[int]:
    """The live processes whose parent is `parent`."""
    return [pid for pid in _pids() if (fields := _stat(pid)) and fields[0] != b"Z" and int(fields[1]) == parent]


def read_pid(path) -> int | None:
    """The PID on the first line of file `path`, or None when there is none (yet)."""
    try:
        first = Path(path).read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports that nothing listens on now (held open together, so that they differ)."""
    held = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def tail(path, lines: int = 25) -> str:
    """The last lines of a log file, for an error message."""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"--- {path}: (none)"
    return f"--- {path}:\n" + "\n".join(text[-lines:])


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    """Poll predicate() until it is true (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _require_root(package: str) -> None:
    # runuser (which runs munged and PostgreSQL as their own users) works only for root.
    if os.geteuid() != 0:
        raise ServiceUnavailable(f"needs root to run the daemons of Debian's {package} (runuser)")


def _require_user(name: str, package: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise ServiceUnavailable(f"user {name!r} not found (Debian's {package} creates it)") from None


# --- SLURM -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One line of squeue: a job, or one task of an array ('12_0'; pending tasks may be folded: '12_[1-2]')."""

    id: str
    state: str
    name: str


SLURM_CONF = """\
ClusterName=adlabtest
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={dir}/munge/munge.sock
CredType=cred/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
KillWait=10
SchedulerParameters=sched_interval=1
NodeName={node} CPUs={cpus} RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


class SlurmCluster:
    """A one-node SLURM cluster (slurmctld, slurmd and a munged of its own) in a temporary folder."""

    PACKAGE = "slurm-wlm munge"
    PROGRAMS = ("slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "scancel", "munged", "munge", "unmunge", "runuser")
    DEFAULT_KEY = Path("/etc/munge/munge.key")
    PID_FILES = {"munged": "munge/munged.pid", "slurmctld": "slurmctld.pid", "slurmd": "slurmd.pid"}
    LOGS = {"munged": "munge/munged.log", "slurmctld": "slurmctld.log", "slurmd": "slurmd.log"}

    def __init__(self, cpus: int | None = None):
        self.node = socket.gethostname().split(".")[0]  # what `hostname -s` says: slurmd's NodeName
        self.cpus = cpus or os.cpu_count() or 1
        self.dir: Path | None = None
        self.conf: Path | None = None
        self.env: dict[str, str] = {}
        self.pids: dict[str, int] = {}  # daemon name -> PID, from its PID file
        self._since: dict[str, int] = {}  # daemon name -> its start time, so a reused PID is never signalled

    @classmethod
    def check(cls) -> None:
        """Raise ServiceUnavailable when a program, user or privilege the cluster needs is missing."""
        _require_root(cls.PACKAGE)
        missing = [p for p in cls.PROGRAMS if shutil.which(p) is None]
        if missing:
            raise ServiceUnavailable(f"{', '.join(missing)} not found (Debian's {cls.PACKAGE})")
        _require_user("munge", cls.PACKAGE)
        if not cls.DEFAULT_KEY.exists() and shutil.which("mungekey") is None:
            raise ServiceUnavailable(f"neither {cls.DEFAULT_KEY} nor mungekey found (Debian's munge)")

    @property
    def munge_socket(self) -> Path:
        """The socket of this cluster's munged."""
        return self.dir / "munge" / "munge.sock"

    def start(self) -> SlurmCluster:
        """Start munged, slurmctld and slurmd and wait until the node is idle (all stopped again on failure)."""
        self.check()
        if self.dir is not None:
            raise ServiceError(f"cluster already started in {self.dir}")
        # Not under pytest's tmp_path: munged wants every folder above its socket executable by all, and
        # /tmp/pytest-of-root is mode 700.
        self.dir = Path(tempfile.mkdtemp(prefix="adlab-slurm-"))
        self.dir.chmod(0o755)
        atexit.register(self.stop)  # in case pytest ends without running the fixture's teardown
        try:
            ctld_port, slurmd_port = free_ports(2)
            self.conf = self.dir / "slurm.conf"
            self.conf.write_text(
                SLURM_CONF.format(
                    dir=self.dir, node=self.node, cpus=self.cpus, ctld_port=ctld_port, slurmd_port=slurmd_port
                )
            )
            (self.dir / "state").mkdir()
            (self.dir / "spool").mkdir()
            # Jobs inherit sbatch's environment, so the tag reaches them too.
            self.env = {**os.environ, "SLURM_CONF": str(self.conf), TAG: str(self.dir)}
            self._start_munged()
            self._start_daemon("slurmctld", ["slurmctld", "-f", self.conf])
            self._start_daemon("slurmd", ["slurmd", "-f", self.conf])
            self.wait_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munged(self) -> None:
        munge_dir = self.dir / "munge"
        munge_dir.mkdir(mode=0o755)
        shutil.chown(munge_dir, "munge", "munge")
        key = self.DEFAULT_KEY
        if not key.exists():
            key = munge_dir / "munge.key"
            self._run_step("mungekey", ["mungekey", "-c", "-k", key])
            shutil.chown(key, "munge", "munge")
        self._start_daemon(
            "munged",
            [
                "runuser",
                "-u",
                "munge",
                "--",
                shutil.which("munged"),
                f"--socket={self.munge_socket}",
                f"--pid-file={self.dir / self.PID_FILES['munged']}",
                f"--log-file={self.dir / self.LOGS['munged']}",
                f"--seed-file={munge_dir / 'seed'}",
                f"--key-file={key}",
            ],
        )
        if not self.munge_works():
            raise ServiceError("munged runs but munge | unmunge fails\n" + tail(self.dir / self.LOGS["munged"]))

    def _start_daemon(self, name: str, args: list) -> None:
        # The command returns once the daemon has forked away; the daemon then writes its PID file.
        self._run_step(name, args)
        pid_file = self.dir / self.PID_FILES[name]
        if not wait_for(lambda: alive(read_pid(pid_file) or 0), 15.0, 0.05):
            raise ServiceError(f"{name} wrote no PID file {pid_file} within 15 s\n" + tail(self.dir / self.LOGS[name]))
        self.pids[name] = read_pid(pid_file)
        self._since[name] = started(self.pids[name])

    def _run_step(self, name: str, args: list) -> None:
        # Output to a file, not a pipe: a daemon that kept the pipe open would make run() wait for ever.
        out = self.dir / f"{name}.start.out"
        with open(out, "w") as f:
            done = subprocess.run(
                [str(a) for a in args],
                env=self.env,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=30,
            )
        if done.returncode != 0:
            raise ServiceError(
                f"{name} exited {done.returncode}\n{tail(out)}\n" + tail(self.dir / self.LOGS.get(name, f"{name}.log"))
            )

    def munge_works(self) -> bool:
        """Whether a credential made by this cluster's munged is accepted by it (munge -n | unmunge)."""
        sock = str(self.munge_socket)
        cred = self.run(["munge", "-S", sock, "-n"], check=False, timeout=15)
        if cred.returncode != 0:
            return False
        back = self.run(["unmunge", "-S", sock], check=False, timeout=15, input=cred.stdout)
        return back.returncode == 0 and "Success" in back.stdout

    def run(self, args, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """Run a client command (sinfo, sbatch, ...) against this cluster; its output captured as text."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("env", self.env)
        return subprocess.run([str(a) for a in args], check=check, timeout=timeout, **kw)

    def node_state(self) -> str:
        """The node's state as sinfo says it ('idle', 'mix', 'alloc', 'down*', ...), '' when sinfo fails."""
        done = self.run(["sinfo", "-h", "-o", "%t"], check=False, timeout=15)
        return done.stdout.strip() if done.returncode == 0 else ""

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until sinfo says the node is idle; ServiceError with the ends of the logs otherwise."""
        if not wait_for(lambda: self.node_state() == "idle", timeout, 0.25):
            raise ServiceError(
                f"node not idle after {timeout:.0f} s (sinfo: {self.node_state()!r})\n"
                + "\n".join(tail(self.dir / self.LOGS[n]) for n in ("slurmctld", "slurmd"))
            )

    def jobs(self) -> list[Job]:
        """The jobs squeue lists, one array task a line."""
        done = self.run(["squeue", "-h", "-r", "-o", "%i|%T|%j"], timeout=15)
        return [Job(*line.split("|", 2)) for line in done.stdout.splitlines() if line.strip()]

    def sbatch(self, *args) -> str:
        """Submit a job (sbatch's arguments) and return its id."""
        return self.run(["sbatch", "--parsable", *args]).stdout.strip().split(";")[0]

    def wait_no_jobs(self, timeout: float = 60.0) -> None:
        """Wait until squeue lists no job; ServiceError naming those left otherwise."""
        if not wait_for(lambda: not self.jobs(), timeout, 0.25):
            raise ServiceError(f"jobs still queued after {timeout:.0f} s: {self.jobs()}")

    def cancel_all(self, timeout: float = 20.0) -> None:
        """scancel every job and wait (up to timeout: KillWait is 10 s) until squeue lists none."""
        ids = sorted({job.id.split("_")[0] for job in self.jobs()})
        if ids:
            self.run(["scancel", *ids], check=False, timeout=15)
            self.wait_no_jobs(timeout)

    def stop(self) -> None:
        """Cancel all jobs, end every process of the cluster (by PID, then by tag), remove its folder."""
        if self.dir is None:
            return
        atexit.unregister(self.stop)
        problems = []
        if alive(self.pids.get("slurmctld", 0)):
            try:
                self.cancel_all()
            except (ServiceError, subprocess.SubprocessError, OSError) as e:
                problems.append(f"cancelling jobs: {e}")
        # slurmd before slurmctld, munged last: both use it to the end.
        for name in ("slurmd", "slurmctld", "munged"):
            if name in self.pids:
                daemon = {self.pids[name]: self._since[name]}
            else:  # a start that failed part-way: the daemon may have written its PID file all the same
                daemon = [read_pid(self.dir / self.PID_FILES[name])]
            problems += [f"{name} (pid {p}) survived SIGKILL" for p in terminate(daemon)]
        # What no PID file names: slurmctld's slurmscriptd, slurmstepd, a job's own processes.
        problems += [f"pid {p} (tagged) survived SIGKILL" for p in terminate(tagged(self.dir), grace=5.0)]
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        if problems:
            raise ServiceError("; ".join(problems))

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- PostgreSQL --------------------------------------------------------------------------------------------


class Database(str):
    """The URL of a database on a PostgreSQL server (a str, so usable as it is), with its .name and .url."""

    name: str

    def __new__(cls, name: str, url: str) -> Database:
        self = super().__new__(cls, url)
        self.name = name
        return self

    @property
    def url(self) -> str:
        """The URL as a plain str."""
        return str(self)


def _postgres_bin() -> Path | None:
    """The folder of initdb/pg_ctl/postgres: Debian's newest /usr/lib/postgresql/N/bin, else from PATH."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")]
    found.sort(key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    pg_ctl = shutil.which("pg_ctl")
    return Path(os.path.realpath(pg_ctl)).parent if pg_ctl else None


class PostgresServer:
    """A PostgreSQL server (trust auth, 127.0.0.1 only) in a temporary folder, with a database `adlab`."""

    PACKAGE = "postgresql"
    PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql", "createdb")

    def __init__(self, database: str = "adlab"):
        self.database = database
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.dir: Path | None = None
        self.bin: Path | None = None
        self.env: dict[str, str] = {}
        self._postmaster: tuple[int, int] | None = None  # (PID, start time) of the latest postmaster
        self._names = count(1)

    @classmethod
    def check(cls) -> Path:
        """The folder of PostgreSQL's programs; ServiceUnavailable when something needed is missing."""
        _require_root(cls.PACKAGE)
        folder = _postgres_bin()
        missing = [p for p in cls.PROGRAMS if folder is None or not (folder / p).exists()]
        if missing:
            raise ServiceUnavailable(f"PostgreSQL's {', '.join(missing)} not found (Debian's {cls.PACKAGE})")
        _require_user("postgres", cls.PACKAGE)
        return folder

    @property
    def data(self) -> Path:
        """The data directory (PGDATA)."""
        return self.dir / "data"

    @property
    def url(self) -> str:
        """postgresql://postgres@127.0.0.1:PORT/adlab"""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """The URL of another database on this server."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The running postmaster's PID, or None when the server is stopped."""
        if self._postmaster and alive(*self._postmaster):
            return self._postmaster[0]
        return None

    @property
    def running(self) -> bool:
        """Whether the server is up."""
        return self.pid is not None

    def _as_postgres(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        # PostgreSQL refuses to run as root. cwd: user postgres may not enter the caller's working folder.
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / args[0]), *map(str, args[1:])]
        done = subprocess.run(
            cmd, env=self.env, cwd=self.dir, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            raise ServiceError(
                f"{' '.join(cmd)} exited {done.returncode}: {done.stdout}{done.stderr}\n"
                + tail(self.dir / "postgres.log")
            )
        return done

    def start(self) -> PostgresServer:
        """Create (the first time) and start the server; after stop(), start it again on the same port."""
        if self.dir is None:
            self.bin = self.check()
            self.dir = Path(tempfile.mkdtemp(prefix="adlab-postgres-"))
            atexit.register(self.close)  # in case pytest ends without running the fixture's teardown
            try:
                shutil.chown(self.dir, "postgres", "postgres")
                self.port = free_ports(1)[0]
                # The caller's PG* variables (PGHOST, PGDATABASE, ...) would redirect our commands.
                self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
                self.env[TAG] = str(self.dir)
                self._as_postgres("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8")
                self._pg_ctl_start()
                subprocess.run(
                    [
                        str(self.bin / "createdb"),
                        "-h",
                        self.host,
                        "-p",
                        str(self.port),
                        "-U",
                        "postgres",
                        self.database,
                    ],
                    env=self.env,
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
            except BaseException:
                self.close()
                raise
        elif not self.running:
            self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        # The Unix socket in our folder (not /var/run/postgresql, which a system server may use), TCP on
        # 127.0.0.1 only; -w: pg_ctl returns once connections are accepted.
        options = f"-c listen_addresses={self.host} -p {self.port} -k {self.dir}"
        self._as_postgres(
            "pg_ctl", "-D", self.data, "-o", options, "-l", self.dir / "postgres.log", "-w", "-t", "30", "start"
        )
        pid = read_pid(self.data / "postmaster.pid")
        self._postmaster = (pid, started(pid))

    def stop(self) -> None:
        """Stop the server (pg_ctl stop -m fast) but keep its data: start() brings it back on the same port."""
        if self.running:
            self._as_postgres("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def psql(self, sql: str, database: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run SQL with psql over TCP as user postgres; unaligned, tuples-only output."""
        cmd = [
            self.bin / "psql",
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            self.port,
            "-U",
            "postgres",
            "-d",
            database or self.database,
            "-c",
            sql,
        ]
        return subprocess.run(
            [str(c) for c in cmd], env=self.env, capture_output=True, text=True, check=check, timeout=60
        )

    def create_database(self) -> Database:
        """A new empty database adlab_<n>."""
        name = f"{self.database}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"', database="postgres")
        return Database(name, self.url_for(name))

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the sessions still connected to it."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', database="postgres")

    def close(self) -> None:
        """Stop at once (pg_ctl stop -m immediate), make sure no postgres process is left, remove the folder."""
        if self.dir is None:
            return
        atexit.unregister(self.close)
        problems = []
        # PostgreSQL overwrites its processes' environment area with their ps titles, so the tag may not
        # find the backends: they are taken as the postmaster's children instead.
        leftovers = {p: started(p) for p in (self.pid, *children(self.pid))} if self.running else {}
        if self.running:
            done = self._as_postgres("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
            if done.returncode != 0:
                problems.append(f"pg_ctl stop: {done.stdout}{done.stderr}".strip())
        problems += [f"postgres (pid {p}) survived SIGKILL" for p in terminate(leftovers)]
        problems += [f"pid {p} (tagged) survived SIGKILL" for p in terminate(tagged(self.dir), grace=5.0)]
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        self._postmaster = None
        if problems:
            raise ServiceError("; ".join(problems))

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
