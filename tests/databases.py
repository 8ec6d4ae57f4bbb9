"""Real database servers for tests: a throwaway PostgreSQL on 127.0.0.1 and a free port.

Uses Debian's ``postgresql`` package (``initdb`` and ``pg_ctl`` under /usr/lib/postgresql).
``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` system user.
Missing binaries fail the test that asks for a server: these tests must run, not skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

INSTALL_HINT = (
    "PostgreSQL's server binaries (initdb, pg_ctl) were not found: install Debian's `postgresql` "
    "package (apt-get install postgresql, or PIXELCNN_SETUP_TEST_TOOLS=1 scripts/setup)"
)


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, else the PATH's."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    found.sort(key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str], as_postgres: bool) -> None:
    """Run a PostgreSQL tool, as the ``postgres`` user when we are root; raise with its output."""
    if as_postgres:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a throwaway PostgreSQL server and yield its URL,
    ``postgresql://postgres@127.0.0.1:PORT/postgres`` (no password: trust authentication);
    the server and its files are gone afterwards."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    as_postgres = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="pixelcnn-pg-"))
    if as_postgres:
        try:
            shutil.chown(base, user="postgres", group="postgres")
        except LookupError:
            shutil.rmtree(base)
            pytest.fail(f"running as root needs the `postgres` system user. {INSTALL_HINT}", pytrace=False)
    data = base / "data"
    port = _free_port()
    try:
        # --no-sync and fsync=off: the data is thrown away, so durability only costs time.
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        _run([*initdb, "--no-sync", "--encoding=UTF8", "--locale=C"], as_postgres)
        # The socket goes into our own folder: /var/run/postgresql may not exist or be writable.
        options = f"-k {base} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off"
        pg_ctl = str(bin_dir / "pg_ctl")
        log = base / "server.log"
        try:
            _run([pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start"], as_postgres)
        except RuntimeError as error:
            server_log = log.read_text(errors="replace") if log.exists() else "(no server log)"
            raise RuntimeError(f"{error}\nserver log:\n{server_log}") from None
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            _run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], as_postgres)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL server that lives as long as the test module."""
    with running_postgres() as url:
        yield url
