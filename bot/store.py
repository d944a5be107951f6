"""The bot's own state: one small SQLite file in the data dir, or PostgreSQL (EXPERTBOT_DATABASE_URL,
bot/db.py) when several processes or hosts share it.

Event de-duplication, answer records with their feedback votes, the admin audit log, background jobs,
and the replies Slack never got (failed_deliveries: event, channel, reason; no text).
An answer is recorded by where it was posted and which sources and adapter it used; its question and text
are kept beside it (table answer_texts) so that an admin can read what a 👎 was about (`expertbot
feedback`). All of it, votes included, is deleted `keep_days` (EXPERTBOT_FEEDBACK_DAYS) after the answer.
Nothing else here holds what anyone wrote, and none of it is ever logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text as sql_text
from sqlalchemy.exc import IntegrityError

from .db import STORE_FILENAME, is_url, open_engine, target
from .tables import STORE as SCHEMA

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = ["STORE_FILENAME", "AuditEntry", "JobConflictError", "JobRecord", "Store"]

VOTES = ("up", "down")
JOB_STATES = ("running", "succeeded", "failed", "interrupted", "cancelled")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def days_ago_iso(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class JobRecord:
    id: str
    kind: str
    state: str
    requested_by: str
    channel: str
    created: str
    progress: dict = field(default_factory=dict)
    message_ts: str | None = None
    finished: str | None = None
    result: dict | None = None
    error: str | None = None


@dataclass
class AuditEntry:
    at: str
    user: str
    command: str
    decision: str
    job_id: str | None


class JobConflictError(RuntimeError):
    """Raised by add_job when a job of the same kind is already running."""

    def __init__(self, running: JobRecord):
        super().__init__(f"a {running.kind} job is already running: {running.id}")
        self.running = running


def upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    """INSERT, or on a key already there UPDATE the other columns: the same SQL for SQLite and PostgreSQL
    (SQLite's INSERT OR REPLACE is not PostgreSQL's). Parameters are named after the columns."""
    update = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)})"
        f" VALUES ({', '.join(':' + c for c in columns)})"
        f" ON CONFLICT ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in key)}) DO UPDATE SET {update}"
    )


_ANSWER = ("id", "channel", "message_ts", "thread_ts", "asked_by", "adapter", "sources", "refused", "created")
_INSERT_ANSWER = upsert("answers", _ANSWER, ("id",))
_INSERT_TEXT = upsert("answer_texts", ("answer_id", "question", "answer", "created"), ("answer_id",))
_INSERT_VOTE = upsert("feedback", ("answer_id", "user", "vote", "at"), ("answer_id", "user"))
_INSERT_FETCH = upsert("usergroup_fetches", ("group_id", "at"), ("group_id",))


class Store:
    def __init__(self, path: Path | str, *, keep_days: float = 90):
        """path: the SQLite file, or a database URL (postgresql://…, see bot/db.py)."""
        if keep_days <= 0:
            raise ValueError(f"feedback_days must be a positive number of days, got {keep_days}")
        self.path = path if is_url(path) else Path(path)
        self.keep_days = keep_days
        # A pool shared by the listener, answer and job threads; each call is one transaction of its own.
        self._engine = open_engine(self.path, SCHEMA)
        # SQLite has rowid for insertion order; PostgreSQL has no such column, and jobs' ids sort as well.
        self._tiebreak = "rowid" if self._engine.dialect.name == "sqlite" else "id"

    @classmethod
    def in_home(cls, home: Path, *, keep_days: float = 90, url: str | SecretStr | None = None) -> Store:
        """The store under home, or at url (EXPERTBOT_DATABASE_URL, a str or SecretStr) when one is set."""
        return cls(target(home, url), keep_days=keep_days)

    def close(self) -> None:
        self._engine.dispose()

    def _exec(self, sql: str, **params) -> int:
        """Run one statement in a transaction of its own; returns how many rows it changed."""
        with self._engine.begin() as conn:
            return conn.execute(sql_text(sql), params).rowcount

    def _all(self, sql: str, **params) -> list[dict]:
        with self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(sql_text(sql), params).mappings()]

    # -- event de-duplication --------------------------------------------------------------------------
    def claim_event(self, key: str) -> bool:
        """True the first time a key is seen, False ever after (also after a restart, and for every other
        process on the same database: the primary key decides, atomically)."""
        sql = "INSERT INTO seen_events (key, seen_at) VALUES (:key, :at) ON CONFLICT (key) DO NOTHING"
        return self._exec(sql, key=key, at=now_iso()) == 1

    def forget_events_before(self, days: float = 7.0) -> int:
        # Slack retries for minutes, not days: old keys only make the table grow.
        return self._exec("DELETE FROM seen_events WHERE seen_at < :t", t=days_ago_iso(days))

    # -- answers and feedback --------------------------------------------------------------------------
    def record_answer(
        self,
        answer_id: str,
        *,
        channel: str,
        message_ts: str | None,
        thread_ts: str | None,
        asked_by: str | None,
        adapter: str | None,
        sources: list[dict],
        refused: bool,
        question: str | None = None,
        text: str | None = None,
    ) -> None:
        """The answer's record; with question and text, those too (read back by `feedback`)."""
        listed, at = json.dumps(sources), now_iso()
        row = dict(id=answer_id, channel=channel, message_ts=message_ts, thread_ts=thread_ts)
        row.update(asked_by=asked_by, adapter=adapter, sources=listed, refused=int(refused), created=at)
        with self._engine.begin() as conn:
            conn.execute(sql_text(_INSERT_ANSWER), row)
            if question is not None or text is not None:
                texts = dict(answer_id=answer_id, question=question or "", answer=text or "", created=at)
                conn.execute(sql_text(_INSERT_TEXT), texts)
        self.forget_old_answers()  # a bot that never restarts still keeps no more than keep_days

    def forget_old_answers(self) -> int:
        """Delete answers, their texts and votes older than keep_days; returns how many answers went."""
        cutoff = {"t": days_ago_iso(self.keep_days)}
        with self._engine.begin() as conn:
            conn.execute(sql_text("DELETE FROM answer_texts WHERE created < :t"), cutoff)
            conn.execute(sql_text("DELETE FROM feedback WHERE at < :t"), cutoff)
            old = "SELECT id FROM answers WHERE created < :t"
            conn.execute(sql_text(f"DELETE FROM feedback WHERE answer_id IN ({old})"), cutoff)
            return conn.execute(sql_text("DELETE FROM answers WHERE created < :t"), cutoff).rowcount

    def answered_in(self, channel: str, thread_ts: str) -> bool:
        """Whether the bot has answered in this thread (so a reply there is a follow-up to it)."""
        sql = "SELECT 1 FROM answers WHERE channel = :c AND thread_ts = :t LIMIT 1"
        return bool(self._all(sql, c=channel, t=thread_ts))

    def record_usergroup_fetch(self, group_id: str) -> None:
        self._exec(_INSERT_FETCH, group_id=group_id, at=now_iso())

    def usergroup_fetches(self) -> dict[str, str]:
        """group id -> when its members were last fetched (ISO, UTC)."""
        return {r["group_id"]: r["at"] for r in self._all("SELECT group_id, at FROM usergroup_fetches")}

    def thread_sources(self, channel: str, thread_ts: str) -> dict[str, list[dict]]:
        """The sources each of the bot's answers in a thread cited, by the ts of its message."""
        sql = "SELECT message_ts, sources FROM answers WHERE channel = :c AND thread_ts = :t"
        rows = self._all(sql, c=channel, t=thread_ts)
        return {r["message_ts"]: json.loads(r["sources"]) for r in rows if r["message_ts"]}

    def answer(self, answer_id: str) -> dict | None:
        rows = self._all("SELECT * FROM answers WHERE id = :i", i=answer_id)
        if not rows:
            return None
        row = rows[0]
        row["sources"], row["refused"] = json.loads(row["sources"]), bool(row["refused"])
        return row

    def answer_text(self, answer_id: str) -> dict | None:
        """The question and answer text kept beside an answer ({"question", "answer"}), or None."""
        rows = self._all("SELECT question, answer FROM answer_texts WHERE answer_id = :i", i=answer_id)
        return rows[0] if rows else None

    def record_vote(self, answer_id: str, user: str, vote: str) -> None:
        if vote not in VOTES:
            raise ValueError(f"vote must be one of {VOTES}, got {vote!r}")
        # One vote per person per answer: clicking the other button changes the vote.
        self._exec(_INSERT_VOTE, answer_id=answer_id, user=user, vote=vote, at=now_iso())

    def votes(self, answer_id: str | None = None) -> list[dict]:
        if answer_id is None:
            return self._all("SELECT * FROM feedback ORDER BY at")
        return self._all("SELECT * FROM feedback WHERE answer_id = :i ORDER BY at", i=answer_id)

    def feedback(self, since_days: float) -> list[dict]:
        """Votes of the last `since_days`, newest first, each with its answer's record and texts (None
        where the answer is no longer kept)."""
        votes = self._all(
            'SELECT f.answer_id, f."user", f.vote, f.at, a.channel, a.adapter, a.sources, a.refused,'
            " a.created AS answered, t.question, t.answer FROM feedback f"
            " LEFT JOIN answers a ON a.id = f.answer_id LEFT JOIN answer_texts t ON t.answer_id = f.answer_id"
            " WHERE f.at >= :t ORDER BY f.at DESC",
            t=days_ago_iso(since_days),
        )
        for vote in votes:
            vote["sources"] = json.loads(vote["sources"]) if vote["sources"] else []
            vote["refused"] = None if vote["refused"] is None else bool(vote["refused"])
        return votes

    # -- replies Slack never got ------------------------------------------------------------------------
    def record_failed_delivery(self, event_id: str | None, channel: str, reason: str) -> None:
        """A reply for event_id that could not be delivered to channel; reason names the Slack method and
        error (e.g. "chat.update: HTTP 500"), never what the message said. Kept keep_days, like answers."""
        with self._engine.begin() as conn:
            conn.execute(
                sql_text(
                    "INSERT INTO failed_deliveries (at, event_id, channel, reason) VALUES (:at, :e, :c, :r)"
                ),
                dict(at=now_iso(), e=event_id, c=channel, r=reason[:300]),
            )
            conn.execute(
                sql_text("DELETE FROM failed_deliveries WHERE at < :t"), {"t": days_ago_iso(self.keep_days)}
            )

    def failed_deliveries(self, since_days: float = 7, limit: int = 20) -> list[dict]:
        """Failures of the last since_days, newest first: {at, event_id, channel, reason}."""
        return self._all(
            "SELECT at, event_id, channel, reason FROM failed_deliveries WHERE at >= :t"
            " ORDER BY id DESC LIMIT :n",
            t=days_ago_iso(since_days),
            n=limit,
        )

    def count_failed_deliveries(self, since_days: float = 7) -> int:
        sql = "SELECT COUNT(*) AS n FROM failed_deliveries WHERE at >= :t"
        return self._all(sql, t=days_ago_iso(since_days))[0]["n"]

    # -- audit -----------------------------------------------------------------------------------------
    def audit(self, user: str, command: str, decision: str, job_id: str | None = None) -> None:
        self._exec(
            'INSERT INTO audit (at, "user", command, decision, job_id) VALUES (:at, :u, :c, :d, :j)',
            at=now_iso(), u=user, c=command, d=decision, j=job_id,
        )  # fmt: skip

    def audit_log(self) -> list[AuditEntry]:
        rows = self._all('SELECT at, "user", command, decision, job_id FROM audit ORDER BY id')
        return [AuditEntry(**r) for r in rows]

    # -- jobs ------------------------------------------------------------------------------------------
    def add_job(self, job_id: str, kind: str, *, requested_by: str, channel: str) -> JobRecord:
        try:
            self._exec(
                "INSERT INTO jobs (id, kind, state, progress, requested_by, channel, created)"
                " VALUES (:i, :k, 'running', '{}', :r, :c, :at)",
                i=job_id, k=kind, r=requested_by, c=channel, at=now_iso(),
            )  # fmt: skip
        except IntegrityError:
            running = self.running_job(kind)
            if running is None:  # it finished between the insert and this look-up
                return self.add_job(job_id, kind, requested_by=requested_by, channel=channel)
            raise JobConflictError(running) from None
        return self.job(job_id)

    def own_job(self, job_id: str, owner: str) -> None:
        self._exec("INSERT INTO job_owners (job_id, owner, beat) VALUES (:i, :o, :at)",
                   i=job_id, o=owner, at=now_iso())  # fmt: skip

    def beat_jobs(self, job_ids: list[str]) -> None:
        """The running jobs' process is alive: now is their last heartbeat."""
        for job_id in job_ids:
            self._exec("UPDATE job_owners SET beat = :at WHERE job_id = :i", at=now_iso(), i=job_id)

    def job_owner(self, job_id: str) -> tuple[str, str] | None:
        """(owner "host:pid", its last heartbeat, ISO) of a job; None for one recorded without."""
        rows = self._all("SELECT owner, beat FROM job_owners WHERE job_id = :i", i=job_id)
        return (rows[0]["owner"], rows[0]["beat"]) if rows else None

    def job(self, job_id: str) -> JobRecord | None:
        rows = self._all("SELECT * FROM jobs WHERE id = :i", i=job_id)
        return _job(rows[0]) if rows else None

    def running_job(self, kind: str) -> JobRecord | None:
        rows = self._all("SELECT * FROM jobs WHERE kind = :k AND state = 'running'", k=kind)
        return _job(rows[0]) if rows else None

    def jobs(self, kind: str | None = None, state: str | None = None) -> list[JobRecord]:
        sql = "SELECT * FROM jobs WHERE 1=1"
        sql += " AND kind = :kind" if kind is not None else ""
        sql += " AND state = :state" if state is not None else ""
        rows = self._all(f"{sql} ORDER BY created, {self._tiebreak}", kind=kind, state=state)
        return [_job(r) for r in rows]

    def set_job_progress(self, job_id: str, progress: dict) -> None:
        self._exec("UPDATE jobs SET progress = :p WHERE id = :i", p=json.dumps(progress), i=job_id)

    def set_job_message(self, job_id: str, message_ts: str) -> None:
        self._exec("UPDATE jobs SET message_ts = :m WHERE id = :i", m=message_ts, i=job_id)

    def finish_job(
        self, job_id: str, state: str, *, result: dict | None = None, error: str | None = None
    ) -> bool:
        """End a running job (which frees its kind for the next one); False if it had ended already.

        Only a running job changes: a job marked interrupted at shutdown stays so, even if its thread
        finishes afterwards."""
        if state not in JOB_STATES or state == "running":
            raise ValueError(
                "a finished job's state must be one of "
                f"{', '.join(s for s in JOB_STATES if s != 'running')}; got {state!r}"
            )
        done = self._exec(
            "UPDATE jobs SET state = :s, finished = :f, result = :r, error = :e"
            " WHERE id = :i AND state = 'running'",
            s=state, f=now_iso(), r=None if result is None else json.dumps(result), e=error, i=job_id,
        )  # fmt: skip
        return done == 1


def _job(row: dict) -> JobRecord:
    d = dict(row)
    d["progress"] = json.loads(d["progress"] or "{}")
    d["result"] = None if d["result"] is None else json.loads(d["result"])
    return JobRecord(**d)
