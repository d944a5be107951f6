"""The bot's state in a real PostgreSQL server (tests/bot/postgres.py), and the same behaviour on SQLite.

Two Store instances, or two processes, on one database stand for two `serve` processes: an event is
answered by exactly one of them, one job of a kind runs at a time, and an adapter promoted on one host is
current on the other.
"""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
from sqlalchemy import text

from adapters.registry import AdapterRegistry
from bot.config import load_settings
from bot.corrections import Corrections
from bot.db import DatabaseError, DbPointer, doctor_check, open_engine
from bot.store import JobConflictError, Store

from . import postgres
from .postgres import PASSWORD
from .slack_fake import PERSON, ask, final_update, placeholder_for

pg_server, pg_url = postgres.pg_server, postgres.pg_url  # the fixtures, for the tests below


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    """The same tests on both: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "bot.sqlite3"
    return request.getfixturevalue("pg_url")


def run_sql(where, sql: str) -> None:
    engine = open_engine(where)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


def record(store, answer_id, **kw):
    fields = dict(channel="C1", message_ts="1.2", thread_ts="1.1", asked_by="U1", adapter="terms-v2")
    fields.update(sources=[{"file": "a.md", "section": "Intro"}], refused=False)
    store.record_answer(answer_id, **{**fields, **kw})


def test_events_votes_answers_audit_and_deliveries_behave_the_same_on_both(where):
    store = Store(where, keep_days=90)
    assert store.claim_event("event:Ev1") is True and store.claim_event("event:Ev1") is False
    record(store, "old", question="What is the XYZZY code?", text="It is 42.")
    record(store, "new", question="Who approves refunds?", text="The support lead.", refused=True)
    record(store, "new", question="Who approves refunds?", text="The support lead, in writing.")  # replaced
    store.record_vote("old", "U2", "down")
    store.record_vote("new", "U2", "down")
    store.record_vote("new", "U2", "up")  # changed their mind: still one vote
    assert sorted((v["answer_id"], v["vote"]) for v in store.votes()) == [("new", "up"), ("old", "down")]
    assert store.answer("new")["refused"] is False and store.answer("new")["sources"][0]["file"] == "a.md"
    assert store.answer_text("new") == {
        "question": "Who approves refunds?",
        "answer": "The support lead, in writing.",
    }
    assert store.answered_in("C1", "1.1") and not store.answered_in("C1", "9.9")
    assert store.thread_sources("C1", "1.1") == {"1.2": [{"file": "a.md", "section": "Intro"}]}
    (vote,) = [v for v in store.feedback(since_days=7) if v["answer_id"] == "old"]
    assert (vote["user"], vote["question"], vote["answer"], vote["refused"]) == (
        "U2", "What is the XYZZY code?", "It is 42.", False,
    )  # fmt: skip

    old = "'2000-01-01T00:00:00.000000Z'"
    run_sql(where, f"UPDATE answers SET created = {old} WHERE id = 'old'")  # 100 days pass for "old"
    run_sql(where, f"UPDATE answer_texts SET created = {old} WHERE answer_id = 'old'")
    assert store.forget_old_answers() == 1
    assert store.answer("old") is None and [v["answer_id"] for v in store.votes()] == ["new"]

    store.audit("U1", "/reindex", "started", "reindex-abc123")
    store.audit("U2", "/retrain-adapter", "refused")
    assert [(e.user, e.command, e.decision, e.job_id) for e in store.audit_log()] == [
        ("U1", "/reindex", "started", "reindex-abc123"),
        ("U2", "/retrain-adapter", "refused", None),
    ]
    for n in range(3):
        store.record_failed_delivery(f"Ev{n}", "C1", "chat.update: HTTP 500")
    assert store.count_failed_deliveries() == 3
    assert [f["event_id"] for f in store.failed_deliveries(limit=2)] == ["Ev2", "Ev1"]  # newest first
    store.record_usergroup_fetch("S1")
    store.record_usergroup_fetch("S1")
    assert list(store.usergroup_fetches()) == ["S1"]
    store.close()


def test_jobs_one_running_per_kind_on_both(where):
    store = Store(where)
    store.add_job("reindex-1", "reindex", requested_by="U1", channel="C1")
    store.add_job("retrain-1", "retrain", requested_by="U1", channel="C1")
    with pytest.raises(JobConflictError) as refused:
        store.add_job("reindex-2", "reindex", requested_by="U2", channel="C2")
    assert refused.value.running.id == "reindex-1"
    store.set_job_progress("reindex-1", {"done": 3, "total": 9})
    store.set_job_message("reindex-1", "171.5")
    assert store.finish_job("reindex-1", "succeeded", result={"added": ["a.md"]}) is True
    assert store.finish_job("reindex-1", "failed", error="late") is False  # it had ended already
    done = store.job("reindex-1")
    assert (done.state, done.progress, done.result, done.message_ts) == (
        "succeeded", {"done": 3, "total": 9}, {"added": ["a.md"]}, "171.5",
    )  # fmt: skip
    store.add_job("reindex-2", "reindex", requested_by="U2", channel="C2")
    assert [j.id for j in store.jobs(kind="reindex")] == ["reindex-1", "reindex-2"]
    assert [j.id for j in store.jobs(state="running")] == ["retrain-1", "reindex-2"]


def test_two_stores_racing_for_one_event_and_one_job_kind_let_exactly_one_win(pg_url):
    first, second = Store(pg_url), Store(pg_url)  # two pools: two connections at least, as two processes
    start, won, conflicts = threading.Barrier(8), [], []

    def claim(store, n):
        start.wait()
        won.extend(key for key in (f"event:Ev{i}" for i in range(50)) if store.claim_event(key))
        try:
            store.add_job(f"reindex-{n}", "reindex", requested_by="U1", channel="C1")
        except JobConflictError:
            conflicts.append(n)

    threads = [threading.Thread(target=claim, args=((first, second)[n % 2], n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == sorted(f"event:Ev{i}" for i in range(50))  # each key won once, by someone
    assert len(conflicts) == 7 and len(first.jobs(state="running")) == 1


def _claim_in_a_process(url: str, at: float, keys: int, out) -> None:
    store = Store(url)
    time.sleep(max(0.0, at - time.time()))
    out.put([i for i in range(keys) if store.claim_event(f"event:Ev{i}")])


def test_two_processes_never_answer_the_same_event_twice(pg_url):
    spawn = multiprocessing.get_context("spawn")
    out, at = spawn.Queue(), time.time() + 5  # both start claiming at once, after their imports
    procs = [spawn.Process(target=_claim_in_a_process, args=(pg_url, at, 300, out)) for _ in range(2)]
    for p in procs:
        p.start()
    a, b = out.get(timeout=60), out.get(timeout=60)
    for p in procs:
        p.join(timeout=30)
    assert not set(a) & set(b) and sorted(a + b) == list(range(300))


def test_data_survives_reconnects_and_a_dropped_connection(pg_url, pg_server):
    store = Store(pg_url)
    store.claim_event("event:Ev1")
    store.audit("U1", "/reindex", "started")
    # The server drops every connection (a restart, a failover): the pool notices and reconnects.
    database = pg_url.rsplit("/", 1)[1]
    run_sql(
        pg_server.url(),
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'",
    )
    assert store.claim_event("event:Ev1") is False
    store.close()
    again = Store(pg_url)
    assert again.claim_event("event:Ev1") is False and [e.user for e in again.audit_log()] == ["U1"]


def test_the_registry_pointer_is_shared_through_the_database(pg_url, tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    trained = tmp_path / "trained"
    trained.mkdir()
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(trained / "adapter_model.safetensors"))
    (trained / "adapter_config.json").write_text("{}")
    root = tmp_path / "adapters"  # the versions: on a disk both hosts see
    here, there = (AdapterRegistry(root, pointer=DbPointer(pg_url)) for _ in range(2))
    v1 = here.register("acme", trained, {"base_model": "tiny"}).name
    v2 = here.register("acme", trained, {"base_model": "tiny"}).name
    assert there.current() is None
    here.promote(v1)
    there.promote(v2)
    assert here.current().name == v2 and not (root / "current").exists()  # no pointer file beside them
    assert here.rollback().name == v1 and there.current().name == v1
    assert AdapterRegistry(root).current() is None  # the file pointer is a separate one


def test_corrections_approved_in_one_process_are_matched_in_another(pg_url, embed_model):
    embed = embed_model.get_query_embedding
    expert, bot = Corrections(pg_url, embed), Corrections(pg_url, embed)
    question = "How long does the Quillmate pairing last?"
    assert bot.match(embed("What is the duration of the Quillmate pairing?")) is None  # loads an empty set
    added = expert.add(question, "Eight weeks since December.", by="U0EXPERT", approved=False)
    assert bot.match(embed(question)) is None  # pending
    expert.approve(added.id, "U0LEAD")
    found, similarity = bot.match(embed("What is the duration of the Quillmate pairing?"))
    assert found.id == added.id and similarity >= 0.7 and found.by == "U0EXPERT"
    newer = expert.add(question, "Ten weeks from January.", by="U0EXPERT")
    assert bot.get(added.id).status == "superseded" and bot.match(embed(question))[0].id == newer.id
    expert.remove(newer.id)
    assert bot.match(embed(question)) is None and [c.status for c in bot.list()] == ["superseded"]


def test_a_bad_or_unreachable_url_says_which_without_its_password(pg_server):
    wrong = pg_server.url(password="not-the-" + PASSWORD)
    with pytest.raises(DatabaseError) as bad:
        Store(wrong)
    message = str(bad.value)
    assert "password authentication failed" in message and "postgres:***@127.0.0.1" in message
    assert PASSWORD not in message and "postgresql://" in message
    with pytest.raises(DatabaseError, match=r"\*\*\*@127.0.0.1:1/x: .*refused.*supported"):
        Store(f"postgresql://u:{PASSWORD}@127.0.0.1:1/x")
    with pytest.raises(DatabaseError, match="'mysql' is not supported; supported: .*postgresql://") as other:
        Store(f"mysql://u:{PASSWORD}@db/x")
    assert PASSWORD not in str(other.value)


def test_settings_and_doctor_name_the_database_without_its_password(pg_url, tmp_path):
    settings = load_settings(home=tmp_path, database_url=pg_url)
    assert PASSWORD not in repr(settings)
    ok, name, detail = doctor_check(settings)
    assert ok and name == "state database" and "postgres:***@127.0.0.1" in detail and PASSWORD not in detail
    assert doctor_check(load_settings(home=tmp_path))[2].startswith(f"SQLite file {tmp_path}")
    store = Store.in_home(tmp_path, url=settings.database_url)
    store.claim_event("event:Ev9")
    assert Store(pg_url).claim_event("event:Ev9") is False and not (tmp_path / "bot.sqlite3").exists()


def test_two_bots_on_one_database_answer_an_event_slack_sent_to_both_once(make_app, sim, fake_slack, pg_url):
    # Two `serve` processes behind one load balancer: Slack's first delivery reaches one, its retry the
    # other, at the same moment. Each has its own connections to the shared database.
    first, second = make_app(store=Store(pg_url)), make_app(store=Store(pg_url))
    event = sim.mention_event("How long does the Quillmate pairing last?", user=PERSON, channel="CTWOBOTS")
    start, statuses = threading.Barrier(2), []

    def deliver(app, retry_num):
        start.wait()
        statuses.append(app.dispatch(sim.event(event, event_id="EvTWOBOTS1", retry_num=retry_num)).status)

    threads = [threading.Thread(target=deliver, args=(app, n)) for n, app in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200]
    placeholder = placeholder_for(fake_slack, event)
    final_update(fake_slack, "CTWOBOTS", placeholder.response["ts"])
    # Both are alive, and a later question to each is answered: a duplicate would have been posted first.
    ask(first, sim, fake_slack, "What are the support tiers?", channel="COTHER1")
    ask(second, sim, fake_slack, "What are the support tiers?", channel="COTHER2")
    assert len(fake_slack.calls("chat.postMessage", lambda p: p.get("channel") == "CTWOBOTS")) == 1
