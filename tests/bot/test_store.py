"""The bot's SQLite store: de-duplication across restarts, votes, audit, jobs (one running per kind).

The same behaviour against PostgreSQL: tests/bot/test_store_postgres.py."""

from __future__ import annotations

import sqlite3

import pytest

from bot.store import JobConflictError, Store


def test_an_event_is_claimed_once_even_after_reopening(tmp_path):
    store = Store(tmp_path / "bot.sqlite3")
    assert store.claim_event("event:Ev1") is True
    assert store.claim_event("event:Ev1") is False
    store.close()
    assert Store(tmp_path / "bot.sqlite3").claim_event("event:Ev1") is False  # a restart remembers
    assert Store(tmp_path / "bot.sqlite3").forget_events_before(days=0) == 1  # old keys can be pruned


def test_votes_are_per_person_per_answer_and_can_change(tmp_path):
    store = Store(tmp_path / "bot.sqlite3")
    store.record_vote("a1", "U1", "up")
    store.record_vote("a1", "U2", "down")
    store.record_vote("a1", "U1", "down")  # changed their mind
    assert sorted((v["user"], v["vote"]) for v in store.votes("a1")) == [("U1", "down"), ("U2", "down")]
    with pytest.raises(ValueError, match="vote must be one of"):
        store.record_vote("a1", "U1", "meh")


def record(store, answer_id, **kw):
    fields = dict(channel="C1", message_ts="1.2", thread_ts="1.1", asked_by="U1", adapter="terms-v2")
    fields.update(sources=[{"file": "a.md", "section": "Intro"}], refused=False)
    store.record_answer(answer_id, **{**fields, **kw})


def test_an_answer_keeps_its_question_and_text_for_keep_days_then_all_of_it_goes(tmp_path):
    path = tmp_path / "bot.sqlite3"
    store = Store(path, keep_days=90)
    record(store, "old", question="What is the XYZZY code?", text="It is 42.")
    store.record_vote("old", "U2", "down")
    record(store, "new", question="Who approves refunds?", text="The support lead.")
    store.record_vote("new", "U2", "up")
    assert store.answered_in("C1", "1.1") and not store.answered_in("C1", "9.9")
    (vote, *_) = [v for v in store.feedback(since_days=7) if v["answer_id"] == "old"]
    assert (vote["question"], vote["answer"], vote["adapter"], vote["vote"]) == (
        "What is the XYZZY code?",
        "It is 42.",
        "terms-v2",
        "down",
    )
    assert vote["sources"] == [{"file": "a.md", "section": "Intro"}]

    db = sqlite3.connect(path)  # 100 days pass for the first answer and its vote
    with db:
        db.execute("UPDATE answers SET created = '2000-01-01T00:00:00.000000Z' WHERE id = 'old'")
        db.execute("UPDATE answer_texts SET created = '2000-01-01T00:00:00.000000Z' WHERE answer_id = 'old'")
    assert store.forget_old_answers() == 1
    assert store.answer("old") is None and [v["answer_id"] for v in store.votes()] == ["new"]
    texts = [row[0] for row in db.execute("SELECT question || answer FROM answer_texts")]
    assert texts == ["Who approves refunds?The support lead."]
    columns = {  # what people wrote lives in answer_texts only, which forgets it
        row[1]
        for table in ("answers", "audit", "feedback", "jobs")
        for row in db.execute(f"PRAGMA table_info({table})")
    }
    assert not columns & {"text", "question", "message", "answer", "answer_text"}
    with pytest.raises(ValueError, match="feedback_days must be a positive"):
        Store(path, keep_days=0)


def test_the_audit_log_keeps_who_ran_what(tmp_path):
    store = Store(tmp_path / "bot.sqlite3")
    store.audit("U1", "/reindex", "started", "reindex-abc123")
    (entry,) = store.audit_log()
    assert (entry.user, entry.command, entry.decision, entry.job_id) == (
        "U1",
        "/reindex",
        "started",
        "reindex-abc123",
    )


def test_only_one_job_of_a_kind_runs_at_a_time(tmp_path):
    store = Store(tmp_path / "bot.sqlite3")
    first = store.add_job("reindex-1", "reindex", requested_by="U1", channel="C1")
    assert first.state == "running" and first.progress == {}
    store.add_job("retrain-1", "retrain", requested_by="U1", channel="C1")  # another kind is fine
    with pytest.raises(JobConflictError) as refused:
        store.add_job("reindex-2", "reindex", requested_by="U2", channel="C2")
    assert refused.value.running.id == "reindex-1"
    store.set_job_progress("reindex-1", {"done": 3, "total": 9})
    store.finish_job("reindex-1", "succeeded", result={"added": ["a.md"]})
    done = store.job("reindex-1")
    assert (done.state, done.progress, done.result) == (
        "succeeded",
        {"done": 3, "total": 9},
        {"added": ["a.md"]},
    )
    assert done.finished is not None
    assert store.add_job("reindex-2", "reindex", requested_by="U2", channel="C2").state == "running"
    assert [j.id for j in store.jobs(kind="reindex")] == ["reindex-1", "reindex-2"]
    with pytest.raises(ValueError, match="finished job's state"):
        store.finish_job("reindex-2", "running")


# The tables as bot/store.py created them with sqlite3, before SQLAlchemy: a bot.sqlite3 of an earlier
# release must be used as it is.
EARLIER_SCHEMA = """
CREATE TABLE seen_events (key TEXT PRIMARY KEY, seen_at TEXT NOT NULL);
CREATE TABLE answers (
    id TEXT PRIMARY KEY, channel TEXT NOT NULL, message_ts TEXT, thread_ts TEXT, asked_by TEXT,
    adapter TEXT, sources TEXT NOT NULL, refused INTEGER NOT NULL, created TEXT NOT NULL);
CREATE TABLE feedback (
    answer_id TEXT NOT NULL, user TEXT NOT NULL, vote TEXT NOT NULL CHECK (vote IN ('up', 'down')),
    at TEXT NOT NULL, PRIMARY KEY (answer_id, user));
CREATE TABLE answer_texts (
    answer_id TEXT PRIMARY KEY, question TEXT NOT NULL, answer TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user TEXT NOT NULL, command TEXT NOT NULL,
    decision TEXT NOT NULL, job_id TEXT);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, progress TEXT NOT NULL,
    requested_by TEXT NOT NULL, channel TEXT NOT NULL, message_ts TEXT, created TEXT NOT NULL,
    finished TEXT, result TEXT, error TEXT);
CREATE UNIQUE INDEX one_running_job_per_kind ON jobs (kind) WHERE state = 'running';
INSERT INTO seen_events VALUES ('event:Ev0', '2026-11-30T10:00:00.000000Z');
INSERT INTO feedback VALUES ('a0', 'U1', 'up', '2026-11-30T10:00:00.000000Z');
INSERT INTO audit (at, user, command, decision)
    VALUES ('2026-11-30T10:00:00.000000Z', 'U1', '/reindex', 'ok');
"""


def test_a_database_file_of_an_earlier_release_is_used_as_it_is(tmp_path):
    path = tmp_path / "bot.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(EARLIER_SCHEMA)
    store = Store(path)
    assert store.claim_event("event:Ev0") is False and store.claim_event("event:Ev1") is True
    store.record_vote("a0", "U1", "down")  # the old primary key still makes it one vote
    assert [(v["user"], v["vote"]) for v in store.votes("a0")] == [("U1", "down")]
    store.audit("U2", "/retrain-adapter", "started")
    assert [e.user for e in store.audit_log()] == ["U1", "U2"]
    store.record_failed_delivery("Ev1", "C1", "chat.postMessage: HTTP 503")  # a table it lacked is added
    assert store.count_failed_deliveries() == 1
    store.add_job("reindex-1", "reindex", requested_by="U1", channel="C1")
    with pytest.raises(JobConflictError):
        store.add_job("reindex-2", "reindex", requested_by="U1", channel="C1")
