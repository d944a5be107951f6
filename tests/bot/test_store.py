"""The bot's SQLite store: de-duplication across restarts, votes, audit, jobs (one running per kind)."""

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


def test_answers_and_audit_keep_no_message_text(tmp_path):
    store = Store(tmp_path / "bot.sqlite3")
    store.record_answer(
        "a1",
        channel="C1",
        message_ts="1.2",
        thread_ts="1.1",
        asked_by="U1",
        adapter="terms-v2",
        sources=[{"file": "a.md", "section": "Intro"}],
        refused=False,
    )
    store.audit("U1", "/reindex", "started", "reindex-abc123")
    assert store.answer("a1")["sources"] == [{"file": "a.md", "section": "Intro"}]
    (entry,) = store.audit_log()
    assert (entry.user, entry.command, entry.decision, entry.job_id) == (
        "U1",
        "/reindex",
        "started",
        "reindex-abc123",
    )
    db = sqlite3.connect(tmp_path / "bot.sqlite3")
    columns = {
        row[1]
        for table in ("answers", "audit", "feedback", "jobs")
        for row in db.execute(f"PRAGMA table_info({table})")
    }
    assert not columns & {"text", "question", "message", "answer_text"}


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
