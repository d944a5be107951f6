"""A real PostgreSQL server for the tests: Debian's binaries, a temp data dir, 127.0.0.1 only, one per run.

`make test` installs Debian's postgresql package. initdb and postgres refuse to run as root, so as root the
server runs as the `postgres` user. Each test gets a fresh database of its own on the shared server.
Import the fixtures into a test module: `from .postgres import pg_server, pg_url  # noqa: F401`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "pg-test-secret"  # checked never to appear in messages


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    bindir: Path
    data: Path
    port: int
    as_user: list[str]

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, check=check, timeout=120
        )

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data / "db"), "-w", *args, check=check)

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off -c full_page_writes=off"
        self.ctl("-l", str(self.data / "log"), "-o", options, "start")


def _start() -> Server:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb is not installed: `make test` installs Debian's postgresql package")
    root = Path(tempfile.mkdtemp(prefix="expertbot-pg-"))  # in /tmp: the postgres user can reach it
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = Server(bindir, root, _free_port(), as_user)
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_user:
        shutil.chown(pwfile, "postgres", "postgres")
    server.run(
        str(bindir / "initdb"), "-D", str(root / "db"), "-U", "postgres", f"--pwfile={pwfile}",
        "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync",
    )  # fmt: skip
    server.start()
    return server


@pytest.fixture(scope="session")
def pg_server():
    server = _start()
    try:
        yield server
    finally:
        server.ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(server.data, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a new, empty database on the test server (dropped afterwards)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_server.url(name)
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
