"""The bot's own state: one small SQLite file in the data dir.

Event de-duplication, answer records with their feedback votes, the admin audit log, background jobs,
and the replies Slack never got (failed_deliveries: event, channel, reason; no text).
An answer is recorded by where it was posted and which sources and adapter it used; its question and text
are kept beside it (table answer_texts) so that an admin can read what a 👎 was about (`expertbot
feedback`). All of it, votes included, is deleted `keep_days` (EXPERTBOT_FEEDBACK_DAYS) after the answer.
Nothing else here holds what anyone wrote, and none of it is ever logged.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

STORE_FILENAME = "bot.sqlite3"
VOTES = ("up", "down")
JOB_STATES = ("running", "succeeded", "failed", "interrupted", "cancelled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_events (key TEXT PRIMARY KEY, seen_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY, channel TEXT NOT NULL, message_ts TEXT, thread_ts TEXT, asked_by TEXT,
    adapter TEXT, sources TEXT NOT NULL, refused INTEGER NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    answer_id TEXT NOT NULL, user TEXT NOT NULL, vote TEXT NOT NULL CHECK (vote IN ('up', 'down')),
    at TEXT NOT NULL, PRIMARY KEY (answer_id, user));
CREATE TABLE IF NOT EXISTS answer_texts (
    answer_id TEXT PRIMARY KEY, question TEXT NOT NULL, answer TEXT NOT NULL, created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS answers_by_thread ON answers (channel, thread_ts);
CREATE INDEX IF NOT EXISTS answers_by_time ON answers (created);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user TEXT NOT NULL, command TEXT NOT NULL,
    decision TEXT NOT NULL, job_id TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, progress TEXT NOT NULL,
    requested_by TEXT NOT NULL, channel TEXT NOT NULL, message_ts TEXT, created TEXT NOT NULL,
    finished TEXT, result TEXT, error TEXT);
-- The database, not a Python lock, guarantees one running job per kind: it holds across processes too.
CREATE UNIQUE INDEX IF NOT EXISTS one_running_job_per_kind ON jobs (kind) WHERE state = 'running';
-- When the bot last fetched each [scopes] user group's members (`doctor` shows the age). No members.
CREATE TABLE IF NOT EXISTS usergroup_fetches (group_id TEXT PRIMARY KEY, at TEXT NOT NULL);
-- Replies that never reached Slack (after the client's retries): which event, where, why. No text.
CREATE TABLE IF NOT EXISTS failed_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, event_id TEXT, channel TEXT NOT NULL,
    reason TEXT NOT NULL);
"""


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


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """A connection to the bot's database file, shared by threads (callers serialise with a lock), in WAL
    mode so that other connections and processes read while one writes; `schema` created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(schema)
    return db


class Store:
    def __init__(self, path: Path, *, keep_days: float = 90):
        if keep_days <= 0:
            raise ValueError(f"feedback_days must be a positive number of days, got {keep_days}")
        self.path, self.keep_days = Path(path), keep_days
        # One connection shared by the listener, answer and job threads; the lock serialises them.
        self._db, self._lock = connect(self.path, SCHEMA), threading.Lock()

    @classmethod
    def in_home(cls, home: Path, *, keep_days: float = 90) -> Store:
        return cls(Path(home) / STORE_FILENAME, keep_days=keep_days)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def _all(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- event de-duplication --------------------------------------------------------------------------
    def claim_event(self, key: str) -> bool:
        """True the first time a key is seen, False ever after (also after a restart)."""
        return self._exec("INSERT OR IGNORE INTO seen_events VALUES (?, ?)", (key, now_iso())).rowcount == 1

    def forget_events_before(self, days: float = 7.0) -> int:
        # Slack retries for minutes, not days: old keys only make the table grow.
        return self._exec("DELETE FROM seen_events WHERE seen_at < ?", (days_ago_iso(days),)).rowcount

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
        self._exec(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (answer_id, channel, message_ts, thread_ts, asked_by, adapter, listed, int(refused), at),
        )
        if question is not None or text is not None:
            self._exec(
                "INSERT OR REPLACE INTO answer_texts VALUES (?, ?, ?, ?)",
                (answer_id, question or "", text or "", at),
            )
        self.forget_old_answers()  # a bot that never restarts still keeps no more than keep_days

    def forget_old_answers(self) -> int:
        """Delete answers, their texts and votes older than keep_days; returns how many answers went."""
        cutoff = days_ago_iso(self.keep_days)
        with self._lock:
            self._db.execute("DELETE FROM answer_texts WHERE created < ?", (cutoff,))
            self._db.execute("DELETE FROM feedback WHERE at < ?", (cutoff,))
            old = "SELECT id FROM answers WHERE created < ?"
            self._db.execute(f"DELETE FROM feedback WHERE answer_id IN ({old})", (cutoff,))
            return self._db.execute("DELETE FROM answers WHERE created < ?", (cutoff,)).rowcount

    def answered_in(self, channel: str, thread_ts: str) -> bool:
        """Whether the bot has answered in this thread (so a reply there is a follow-up to it)."""
        sql = "SELECT 1 FROM answers WHERE channel = ? AND thread_ts = ? LIMIT 1"
        return bool(self._all(sql, (channel, thread_ts)))

    def record_usergroup_fetch(self, group_id: str) -> None:
        self._exec("INSERT OR REPLACE INTO usergroup_fetches VALUES (?, ?)", (group_id, now_iso()))

    def usergroup_fetches(self) -> dict[str, str]:
        """group id -> when its members were last fetched (ISO, UTC)."""
        return {r["group_id"]: r["at"] for r in self._all("SELECT group_id, at FROM usergroup_fetches")}

    def thread_sources(self, channel: str, thread_ts: str) -> dict[str, list[dict]]:
        """The sources each of the bot's answers in a thread cited, by the ts of its message."""
        sql = "SELECT message_ts, sources FROM answers WHERE channel = ? AND thread_ts = ?"
        rows = self._all(sql, (channel, thread_ts))
        return {r["message_ts"]: json.loads(r["sources"]) for r in rows if r["message_ts"]}

    def answer(self, answer_id: str) -> dict | None:
        rows = self._all("SELECT * FROM answers WHERE id = ?", (answer_id,))
        if not rows:
            return None
        row = dict(rows[0])
        row["sources"], row["refused"] = json.loads(row["sources"]), bool(row["refused"])
        return row

    def answer_text(self, answer_id: str) -> dict | None:
        """The question and answer text kept beside an answer ({"question", "answer"}), or None."""
        rows = self._all("SELECT question, answer FROM answer_texts WHERE answer_id = ?", (answer_id,))
        return dict(rows[0]) if rows else None

    def record_vote(self, answer_id: str, user: str, vote: str) -> None:
        if vote not in VOTES:
            raise ValueError(f"vote must be one of {VOTES}, got {vote!r}")
        # One vote per person per answer: clicking the other button changes the vote.
        self._exec("INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?)", (answer_id, user, vote, now_iso()))

    def votes(self, answer_id: str | None = None) -> list[dict]:
        if answer_id is None:
            return [dict(r) for r in self._all("SELECT * FROM feedback ORDER BY at")]
        return [
            dict(r) for r in self._all("SELECT * FROM feedback WHERE answer_id = ? ORDER BY at", (answer_id,))
        ]

    def feedback(self, since_days: float) -> list[dict]:
        """Votes of the last `since_days`, newest first, each with its answer's record and texts (None
        where the answer is no longer kept)."""
        rows = self._all(
            "SELECT f.answer_id, f.user, f.vote, f.at, a.channel, a.adapter, a.sources, a.refused,"
            " a.created AS answered, t.question, t.answer FROM feedback f"
            " LEFT JOIN answers a ON a.id = f.answer_id LEFT JOIN answer_texts t ON t.answer_id = f.answer_id"
            " WHERE f.at >= ? ORDER BY f.at DESC",
            (days_ago_iso(since_days),),
        )
        votes = []
        for row in rows:
            vote = dict(row)
            vote["sources"] = json.loads(vote["sources"]) if vote["sources"] else []
            vote["refused"] = None if vote["refused"] is None else bool(vote["refused"])
            votes.append(vote)
        return votes

    # -- replies Slack never got ------------------------------------------------------------------------
    def record_failed_delivery(self, event_id: str | None, channel: str, reason: str) -> None:
        """A reply for event_id that could not be delivered to channel; reason names the Slack method and
        error (e.g. "chat.update: HTTP 500"), never what the message said. Kept keep_days, like answers."""
        self._exec(
            "INSERT INTO failed_deliveries (at, event_id, channel, reason) VALUES (?, ?, ?, ?)",
            (now_iso(), event_id, channel, reason[:300]),
        )
        self._exec("DELETE FROM failed_deliveries WHERE at < ?", (days_ago_iso(self.keep_days),))

    def failed_deliveries(self, since_days: float = 7, limit: int = 20) -> list[dict]:
        """Failures of the last since_days, newest first: {at, event_id, channel, reason}."""
        rows = self._all(
            "SELECT at, event_id, channel, reason FROM failed_deliveries WHERE at >= ?"
            " ORDER BY id DESC LIMIT ?",
            (days_ago_iso(since_days), limit),
        )
        return [dict(r) for r in rows]

    def count_failed_deliveries(self, since_days: float = 7) -> int:
        sql = "SELECT COUNT(*) FROM failed_deliveries WHERE at >= ?"
        return self._all(sql, (days_ago_iso(since_days),))[0][0]

    # -- audit -----------------------------------------------------------------------------------------
    def audit(self, user: str, command: str, decision: str, job_id: str | None = None) -> None:
        self._exec(
            "INSERT INTO audit (at, user, command, decision, job_id) VALUES (?, ?, ?, ?, ?)",
            (now_iso(), user, command, decision, job_id),
        )

    def audit_log(self) -> list[AuditEntry]:
        rows = self._all("SELECT at, user, command, decision, job_id FROM audit ORDER BY id")
        return [AuditEntry(**dict(r)) for r in rows]

    # -- jobs ------------------------------------------------------------------------------------------
    def add_job(self, job_id: str, kind: str, *, requested_by: str, channel: str) -> JobRecord:
        try:
            self._exec(
                "INSERT INTO jobs (id, kind, state, progress, requested_by, channel, created)"
                " VALUES (?, ?, 'running', '{}', ?, ?, ?)",
                (job_id, kind, requested_by, channel, now_iso()),
            )
        except sqlite3.IntegrityError:
            running = self.running_job(kind)
            if running is None:  # it finished between the insert and this look-up
                return self.add_job(job_id, kind, requested_by=requested_by, channel=channel)
            raise JobConflictError(running) from None
        return self.job(job_id)

    def job(self, job_id: str) -> JobRecord | None:
        rows = self._all("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def running_job(self, kind: str) -> JobRecord | None:
        rows = self._all("SELECT * FROM jobs WHERE kind = ? AND state = 'running'", (kind,))
        return _job(rows[0]) if rows else None

    def jobs(self, kind: str | None = None, state: str | None = None) -> list[JobRecord]:
        sql, params = "SELECT * FROM jobs WHERE 1=1", []
        if kind is not None:
            sql, params = sql + " AND kind = ?", [*params, kind]
        if state is not None:
            sql, params = sql + " AND state = ?", [*params, state]
        return [_job(r) for r in self._all(sql + " ORDER BY created, rowid", tuple(params))]

    def set_job_progress(self, job_id: str, progress: dict) -> None:
        self._exec("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(progress), job_id))

    def set_job_message(self, job_id: str, message_ts: str) -> None:
        self._exec("UPDATE jobs SET message_ts = ? WHERE id = ?", (message_ts, job_id))

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
            "UPDATE jobs SET state = ?, finished = ?, result = ?, error = ?"
            " WHERE id = ? AND state = 'running'",
            (state, now_iso(), None if result is None else json.dumps(result), error, job_id),
        )
        return done.rowcount == 1


def _job(row: sqlite3.Row) -> JobRecord:
    d = dict(row)
    d["progress"] = json.loads(d["progress"] or "{}")
    d["result"] = None if d["result"] is None else json.loads(d["result"])
    return JobRecord(**d)
