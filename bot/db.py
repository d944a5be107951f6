"""Where the bot's state lives: a SQLite file under home (the default), or PostgreSQL.

EXPERTBOT_DATABASE_URL=postgresql://user:password@host:5432/db moves the store (bot/store.py), the experts'
corrections (bot/corrections.py) and the adapter registry's `current` pointer there, so that several
`serve` processes on several hosts share them. The tables are the same on both: SQLAlchemy
Core creates them for either dialect and every statement is SQL that both run.

A URL is only ever shown with its password hidden (`redact`).
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from adapters.registry import RegistryError

from .config import ConfigError
from .tables import POINTERS

STORE_FILENAME = "bot.sqlite3"
SUPPORTED = (
    "supported: unset (a SQLite file under EXPERTBOT_HOME), sqlite:///path/to/file or"
    " postgresql://user:password@host:port/database"
)
# Held while tables are created, so that two processes starting at once do not race on CREATE TABLE.
_SCHEMA_LOCK = 7_411_917


class DatabaseError(ConfigError):
    """The state database cannot be used; the message names it (password hidden) and says why. A
    ConfigError, since EXPERTBOT_DATABASE_URL (or home) is what to fix: the CLI shows it without a trace."""


def redact(url: str | object) -> str:
    """The URL with its password replaced by ***, for messages and `doctor`."""
    raw = url.get_secret_value() if hasattr(url, "get_secret_value") else str(url)
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


def target(home: Path, url: str | object | None = None) -> Path | str:
    """What to open: the URL when one is set (a pydantic SecretStr or a str), else home's SQLite file."""
    raw = url.get_secret_value() if hasattr(url, "get_secret_value") else url
    return raw if raw else Path(home) / STORE_FILENAME


def state_target(settings) -> Path | str:
    """Where a bot.config.Settings keeps its state (EXPERTBOT_DATABASE_URL, else home's SQLite file)."""
    return target(settings.home, settings.database_url)


def adapter_pointer(settings) -> DbPointer | None:
    """The registry's `current` pointer in the state database when EXPERTBOT_DATABASE_URL is set; None
    leaves it in the adapters folder, beside the versions."""
    where = state_target(settings)
    return DbPointer(where) if is_url(where) else None


def shown(where: Path | str) -> str:
    """A place to name in a message: the file, or the URL with its password hidden."""
    return redact(where) if is_url(where) else str(where)


def exists(where: Path | str) -> bool:
    """Whether there is state to read: a server always counts, a SQLite file once it was created."""
    return is_url(where) or Path(where).is_file()


def doctor_check(settings) -> tuple[bool, str, str]:
    """`expertbot doctor`'s line for the state database: which one, and whether it can be used."""
    where = state_target(settings)
    if not is_url(where):
        return True, "state database", f"SQLite file {where} (set EXPERTBOT_DATABASE_URL to share it)"
    try:
        open_engine(where).dispose()
    except DatabaseError as err:
        return False, "state database", str(err)
    return True, "state database", f"{redact(where)} is reachable (jobs, dedup, audit, feedback, pointer)"


def is_url(where: Path | str) -> bool:
    return isinstance(where, str) and "://" in where


def open_engine(where: Path | str, *schemas: MetaData) -> Engine:
    """An engine on a SQLite file (a Path, or a folder holding bot.sqlite3) or a database URL, with the
    tables of `schemas` created if missing. Raises DatabaseError when it cannot be reached or used."""
    if is_url(where) and str(where).startswith("sqlite:"):
        where = Path(make_url(str(where)).database or STORE_FILENAME)  # sqlite:///path: that file, in WAL
    if is_url(where):
        engine, shown = _server_engine(str(where)), redact(where)
    else:
        path = Path(where)
        path = path / STORE_FILENAME if path.is_dir() else path
        path.parent.mkdir(parents=True, exist_ok=True)
        engine, shown = _sqlite_engine(path), str(path)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
            for schema in schemas:
                schema.create_all(conn, checkfirst=True)
    except DBAPIError as err:
        engine.dispose()
        hint = f" (EXPERTBOT_DATABASE_URL; {SUPPORTED})" if is_url(where) else ""
        raise DatabaseError(f"cannot use the state database {shown}: {_reason(err)}{hint}") from None
    return engine


def _reason(err: DBAPIError) -> str:
    # The driver's own first line ("connection refused", "password authentication failed for user x"):
    # never the statement or its parameters, which may hold what someone wrote.
    first = str(err.orig).strip().splitlines()
    return first[0] if first else type(err.orig).__name__


def _server_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"EXPERTBOT_DATABASE_URL is not a database URL; {SUPPORTED}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not SQLAlchemy's psycopg2 default
    else:
        raise DatabaseError(
            f"EXPERTBOT_DATABASE_URL {redact(url)}: {backend!r} is not supported; {SUPPORTED}"
        )
    try:
        # hide_parameters: an error's text never carries the values (questions, answers) of its statement.
        # pool_pre_ping: a connection the server dropped (restart, idle timeout) is replaced, not failed.
        return create_engine(parsed, hide_parameters=True, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        raise DatabaseError(f"EXPERTBOT_DATABASE_URL {redact(url)}: {err}; {SUPPORTED}") from None


def _sqlite_engine(path: Path) -> Engine:
    engine = create_engine(
        f"sqlite:///{path}", hide_parameters=True, connect_args={"check_same_thread": False, "timeout": 30}
    )

    @event.listens_for(engine, "connect")
    def _wal(dbapi_conn, _record):
        # WAL: other connections and processes read while one writes.
        dbapi_conn.execute("PRAGMA journal_mode=WAL")

    return engine


class DbPointer:
    """The adapter registry's `current` pointer (adapters.registry.PointerStore) as a row of the state
    database, so that every host sees the same promotion. The adapter folders stay on disk."""

    def __init__(self, where: Path | str, name: str = "adapters/current"):
        self.name, self._shown = name, shown(where)
        self._engine = open_engine(where, POINTERS)

    def get(self) -> dict | None:
        try:
            with self._engine.connect() as conn:
                sql = text("SELECT value FROM pointers WHERE name = :n")
                value = conn.execute(sql, {"n": self.name}).scalar()
        except DBAPIError as err:  # the answer path goes on with the base model (bot/wiring.py)
            raise RegistryError(f"adapter pointer in {self._shown}: {_reason(err)}") from None
        return None if value is None else json.loads(value)

    def set(self, data: dict) -> None:
        sql = text(
            "INSERT INTO pointers (name, value) VALUES (:n, :v)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        )
        with self._engine.begin() as conn:
            conn.execute(sql, {"n": self.name, "v": json.dumps(data, sort_keys=True)})

    def close(self) -> None:
        self._engine.dispose()
