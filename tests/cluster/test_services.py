"""The real-service fixtures work: munge, a SLURM node that runs and cancels jobs, a PostgreSQL server."""

from __future__ import annotations

import os
import re

import pytest

from . import conftest as cluster_conftest
from . import services
from .services import PostgresServer, ServiceUnavailable, SlurmCluster, alive, tagged, wait_for

# --- SLURM -----------------------------------------------------------------------------------------------


def test_munge_credential_round_trip(slurm_cluster):
    sock = slurm_cluster.munge_socket
    credential = slurm_cluster.run(["munge", "-S", sock, "-n"]).stdout
    decoded = slurm_cluster.run(["unmunge", "-S", sock], input=credential).stdout
    assert re.search(r"^STATUS:\s+Success \(0\)$", decoded, re.M), decoded


def test_sinfo_shows_the_node_idle(slurm):
    slurm.wait_idle(timeout=15)  # a job of an earlier test may still be completing
    line = slurm.run(["sinfo", "-h", "-o", "%N %P %t %c"]).stdout.strip()
    assert line == f"{slurm.node} debug* idle {slurm.cpus}"


def test_array_job_runs_every_task(slurm, tmp_path):
    script = tmp_path / "task.sh"
    script.write_text('#!/bin/bash\necho "$SLURM_ARRAY_TASK_ID" > "task_$SLURM_ARRAY_TASK_ID.txt"\n')
    job = slurm.sbatch("--array=0-2", f"--chdir={tmp_path}", f"--output={tmp_path}/slurm-%A_%a.out", script)
    assert job.isdigit()
    slurm.wait_no_jobs(timeout=60)
    written = {p.name: p.read_text().strip() for p in tmp_path.glob("task_*.txt")}
    assert written == {"task_0.txt": "0", "task_1.txt": "1", "task_2.txt": "2"}


def test_scancel_sends_sigterm_to_a_running_job(slurm, tmp_path):
    script = tmp_path / "long.sh"
    script.write_text(
        "#!/bin/bash\n"
        "trap 'echo got-term > term.txt; exit 0' TERM\n"
        "sleep 300 &\n"
        "echo $! > sleep.pid\n"  # written after the trap is set: from now on a SIGTERM is caught
        "wait\n"
    )
    job = slurm.sbatch(f"--chdir={tmp_path}", "--output=/dev/null", script)
    assert wait_for(lambda: (tmp_path / "sleep.pid").exists(), 30), slurm.jobs()
    sleep_pid = int((tmp_path / "sleep.pid").read_text())
    assert alive(sleep_pid)

    slurm.run(["scancel", job])
    slurm.wait_no_jobs(timeout=30)
    assert wait_for(lambda: (tmp_path / "term.txt").exists(), 5)
    assert (tmp_path / "term.txt").read_text().strip() == "got-term"
    assert wait_for(lambda: not alive(sleep_pid), 15), "the job's sleep outlived scancel"


def test_stop_ends_every_process_and_removes_the_folder():
    cluster = SlurmCluster()  # a throwaway cluster beside the session's
    try:
        cluster.start()
    except ServiceUnavailable as e:
        cluster_conftest.unavailable(e.reason)
    try:
        folder, pids = cluster.dir, dict(cluster.pids)
        assert set(pids) == {"munged", "slurmctld", "slurmd"}
        assert all(alive(pid) for pid in pids.values())
        # A running job too, so that stop() has to cancel it and its processes must go as well.
        cluster.sbatch(f"--chdir={folder}", "--output=/dev/null", "--wrap", "sleep 300")
        assert wait_for(lambda: [j.state for j in cluster.jobs()] == ["RUNNING"], 30), cluster.jobs()
        job_processes = [pid for pid in tagged(folder) if pid not in pids.values()]
        assert job_processes  # slurmscriptd, slurmstepd, the job's shell and its sleep
    finally:
        cluster.stop()
    assert cluster.dir is None
    assert not folder.exists()
    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert [pid for pid in job_processes if alive(pid)] == []
    assert tagged(folder) == []
    cluster.stop()  # a second stop does nothing


# --- PostgreSQL ------------------------------------------------------------------------------------------


def test_postgres_accepts_a_connection(postgres_server):
    postgres_server.start()  # an earlier test may have stopped it
    assert postgres_server.url == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/adlab"
    # The very command a user would type: psql -h 127.0.0.1 -p PORT -U postgres -d adlab -c 'select 1'
    assert postgres_server.psql("select 1").stdout.strip() == "1"


def test_postgres_stop_and_start_again_keep_port_and_data(postgres_server):
    server = postgres_server.start()
    port, pid = server.port, server.pid
    server.psql("DROP TABLE IF EXISTS kept; CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    server.stop()
    try:
        assert not server.running
        assert not alive(pid)
        refused = server.psql("select 1", check=False)
        assert refused.returncode != 0 and "127.0.0.1" in refused.stderr
    finally:
        server.start()
    assert server.running and server.pid != pid and server.port == port
    assert server.psql("SELECT x FROM kept").stdout.strip() == "42"


def test_fresh_database_is_new_and_empty(fresh_database, postgres_server):
    assert re.fullmatch(r"adlab_\d+", fresh_database.name)
    assert fresh_database == fresh_database.url == postgres_server.url_for(fresh_database.name)
    assert type(fresh_database.url) is str
    tables = postgres_server.psql(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database=fresh_database.name
    )
    assert tables.stdout.strip() == "0"


# --- when a service cannot run here ------------------------------------------------------------------------


def test_a_missing_program_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to be found
    with pytest.raises(ServiceUnavailable, match="Debian's slurm-wlm munge"):
        SlurmCluster.check()
    monkeypatch.setattr(services, "_postgres_bin", lambda: None)
    with pytest.raises(ServiceUnavailable, match="Debian's postgresql"):
        PostgresServer.check()


def test_not_root_is_unavailable(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for service, package in ((SlurmCluster, "slurm-wlm munge"), (PostgresServer, "postgresql")):
        with pytest.raises(ServiceUnavailable, match=f"needs root .*{package}"):
            service.check()


def test_unavailable_skips_but_fails_under_ci(monkeypatch):
    monkeypatch.setattr(cluster_conftest, "CI", False)
    with pytest.raises(pytest.skip.Exception, match="no munged"):
        cluster_conftest.unavailable("no munged")
    monkeypatch.setattr(cluster_conftest, "CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true .*no munged"):
        cluster_conftest.unavailable("no munged")
