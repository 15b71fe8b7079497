"""Fixtures with real services: a one-machine SLURM cluster and a PostgreSQL server (see services.py).

Where one cannot run here (a program missing, or not root), its tests are skipped; with CI=true they fail
instead, as tests/conftest.py's `require` does for the other components, so that CI cannot go green without
the install step. A service that is installed but fails to start is always an error.
"""

from __future__ import annotations

import signal
import threading

import pytest

from conftest import CI  # tests/conftest.py

from .services import PostgresServer, ServiceUnavailable, SlurmCluster


def _teardown_on_sigterm() -> None:
    # By default SIGTERM (a CI job's timeout, `kill`) ends Python at once: no fixture teardown, no atexit,
    # and the daemons would outlive pytest. As KeyboardInterrupt, pytest stops the session and tears down.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:

        def interrupt(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)


def unavailable(reason: str) -> None:
    """Skip the test for a service that cannot run here, or fail it when CI=true."""
    if CI:
        pytest.fail(f"CI=true and a component is missing: {reason} (install it as root)", pytrace=False)
    pytest.skip(f"{reason} (with CI=true this fails)")


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node SLURM cluster, started once for the session (a SlurmCluster; stopped and removed at its end)."""
    _teardown_on_sigterm()
    cluster = SlurmCluster()
    try:
        cluster.start()
    except ServiceUnavailable as e:
        unavailable(e.reason)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm(slurm_cluster):
    """The session's SLURM cluster, with every job cancelled after the test (so none runs into the next)."""
    yield slurm_cluster
    slurm_cluster.cancel_all()


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server with a database `adlab`, started once for the session (a PostgresServer)."""
    _teardown_on_sigterm()
    server = PostgresServer()
    try:
        server.start()
    except ServiceUnavailable as e:
        unavailable(e.reason)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fresh_database(postgres_server):
    """A new empty database's URL for this test (a str; .name is adlab_<n>), dropped after it.

    Starts the server first should an earlier test have stopped it."""
    postgres_server.start()  # an earlier test may have stopped it
    database = postgres_server.create_database()
    yield database
    if postgres_server.running:
        postgres_server.drop_database(database.name)
