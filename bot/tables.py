"""The tables of the bot's state, one set for SQLite and PostgreSQL (bot/db.py creates them for either).

The names and columns are those the SQLite file has always had, so an existing bot.sqlite3 is used as it
is. Times are ISO 8601 text (UTC), JSON is text: the same values on both databases.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)

STORE = MetaData()  # bot/store.py
CORRECTIONS = MetaData()  # bot/corrections.py
POINTERS = MetaData()  # bot/db.py DbPointer: the adapter registry's `current`


def _table(name: str, *columns, schema: MetaData = STORE, **kw) -> Table:
    return Table(name, schema, *columns, **kw)


def _texts(*names: str, key: str | None = None) -> list[Column]:
    """TEXT columns; `key` the primary key; a trailing '!' means NOT NULL."""
    return [
        Column(n.rstrip("!"), Text, primary_key=n.rstrip("!") == key, nullable=not n.endswith("!"))
        for n in names
    ]


_table("seen_events", *_texts("key", "seen_at!", key="key"))
_answers = _table(
    "answers",
    *_texts("id", "channel!", "message_ts", "thread_ts", "asked_by", "adapter", "sources!", key="id"),
    Column("refused", Integer, nullable=False),
    Column("created", Text, nullable=False),
)
Index("answers_by_thread", _answers.c.channel, _answers.c.thread_ts)
Index("answers_by_time", _answers.c.created)
_table(
    "feedback",
    *_texts("answer_id!", "user!", "vote!", "at!"),
    PrimaryKeyConstraint("answer_id", "user"),
    CheckConstraint("vote IN ('up', 'down')"),
)
_table("answer_texts", *_texts("answer_id", "question!", "answer!", "created!", key="answer_id"))
_table(
    "audit",
    Column("id", Integer, primary_key=True, autoincrement=True),
    *_texts("at!", "user!", "command!", "decision!", "job_id"),
    sqlite_autoincrement=True,
)
_jobs = _table(
    "jobs",
    *_texts(
        "id", "kind!", "state!", "progress!", "requested_by!", "channel!", "message_ts", "created!", key="id"
    ),
    *_texts("finished", "result", "error"),
)
# The database, not a Python lock, guarantees one running job per kind: it holds across processes too.
_RUNNING = text("state = 'running'")
Index("one_running_job_per_kind", _jobs.c.kind, unique=True, sqlite_where=_RUNNING, postgresql_where=_RUNNING)
# Which process runs each job (host:pid) and when it last said it was alive: at start-up a process marks
# interrupted only the jobs whose process is gone, not those another live process sharing the store runs.
_table("job_owners", *_texts("job_id", "owner!", "beat!", key="job_id"))
# When the bot last fetched each [scopes] user group's members (`doctor` shows the age). No members.
_table("usergroup_fetches", *_texts("group_id", "at!", key="group_id"))
# Replies that never reached Slack (after the client's retries): which event, where, why. No text.
_table(
    "failed_deliveries",
    Column("id", Integer, primary_key=True, autoincrement=True),
    *_texts("at!", "event_id", "channel!", "reason!"),
    sqlite_autoincrement=True,
)

_table(
    "corrections",
    *_texts("id", "question!", "answer!", "by", "at!", "status!", "source", "scopes!", "vector!", key="id"),
    *_texts("answer_id", "decided_by", "decided_at"),
    schema=CORRECTIONS,
)
# The DMs that asked experts to review a correction: once one decides, every one of them shows the verdict.
_table(
    "correction_reviews",
    *_texts("correction_id!", "channel!", "ts!"),
    PrimaryKeyConstraint("correction_id", "channel"),
    schema=CORRECTIONS,
)
_table("pointers", *_texts("name", "value!", key="name"), schema=POINTERS)
