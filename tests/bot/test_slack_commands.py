"""/reindex and /retrain-adapter: admin gate and audit, background jobs with progress, summaries, restarts."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import pytest

from bot.store import Store

from .slack_fake import ADMIN, PERSON, ack_text, ask, final_update, placeholder_for, sources_text

ACME = Path(__file__).resolve().parents[2] / "examples" / "acme"
ZORBLAX = """# The Zorblax protocol

The Zorblax protocol is how Acme Quillworks ships refill cartridges to the lunar office.
It was introduced in 2031 by the Moonwell quire, and every shipment needs two signatures.
"""


def in_channel(channel, *, text=None):
    return lambda p: p.get("channel") == channel and (text is None or text in (p.get("text") or ""))


def test_reindex_from_a_non_admin_is_refused_audited_and_runs_nothing(make_app, sim, fake_slack, store_path):
    app = make_app()
    for text in ("", "status"):
        resp = app.dispatch(sim.command("/reindex", text, user=PERSON, channel="CJOBS"))
        assert resp.status == 200
        assert "only the bot's admins" in ack_text(resp)  # the ack's text is shown only to PERSON
    store = Store(store_path)
    audit = [(e.user, e.command, e.decision, e.job_id) for e in store.audit_log()]
    assert audit == [(PERSON, "/reindex", "refused", None), (PERSON, "/reindex status", "refused", None)]
    assert store.jobs() == []
    assert not fake_slack.calls("chat.postMessage")


def test_help_prints_the_usage_to_anyone(make_app, sim):
    app = make_app()
    for command, words in (("/reindex", ["status"]), ("/retrain-adapter", ["status", "rollback"])):
        text = ack_text(app.dispatch(sim.command(command, "help", user=PERSON, channel="CJOBS")))
        assert text.startswith(f"*{command}*") and all(f"`{command} {w}`" in text for w in words)
        odd = ack_text(app.dispatch(sim.command(command, "frobnicate", user=ADMIN, channel="CJOBS")))
        assert "Unknown option `frobnicate`" in odd


def test_reindex_runs_as_a_job_while_answers_use_the_old_index(
    make_app, sim, fake_slack, slack_docs, store_path
):
    (slack_docs / "zorblax-protocol.md").write_text(ZORBLAX)
    question = "What is the Zorblax protocol?"
    app = make_app()
    # Hold the job's first progress edit: the job then sits inside the index build, half done.
    hold = fake_slack.hold("chat.update", in_channel("CJOBS"))
    started = ack_text(app.dispatch(sim.command("/reindex", "", user=ADMIN, channel="CJOBS")))
    job_id = re.search(r"`(reindex-\w+)`", started).group(1)
    assert hold.held.wait(120)

    busy = ack_text(app.dispatch(sim.command("/reindex", "", user=ADMIN, channel="CJOBS")))
    assert "Not started" in busy and job_id in busy  # the refusal names the running job
    _, _, during = ask(app, sim, fake_slack, question, channel="CDURING")
    assert "zorblax" not in (sources_text(during) or "")  # answered from the old index
    hold.release()

    summary = fake_slack.wait_for("chat.postMessage", in_channel("CJOBS", text="finished in"), timeout=300)[0]
    assert f"`{job_id}`" in summary.params["text"] and "1 added" in summary.params["text"]
    edits = [c.params["text"] for c in fake_slack.calls("chat.update", in_channel("CJOBS"))]
    assert any(re.search(r"\d+ of \d+ files", t) for t in edits)  # progress: files done of total
    assert edits[-1].startswith("✅")
    _, _, after = ask(app, sim, fake_slack, question, channel="CAFTER")
    assert "zorblax-protocol.md" in sources_text(after)  # the new index, once complete

    store = Store(store_path)
    assert store.job(job_id).state == "succeeded" and store.job(job_id).result["added"] == [
        "zorblax-protocol.md"
    ]
    audit = [(e.user, e.command, e.decision, e.job_id) for e in store.audit_log()]
    assert audit == [(ADMIN, "/reindex", "started", job_id), (ADMIN, "/reindex", "busy", job_id)]


def test_a_job_interrupted_by_a_restart_is_reported_in_its_channel(make_app, sim, fake_slack, store_path):
    # What a crash leaves behind: a job still marked running, with its progress message.
    crashed = Store(store_path)
    crashed.add_job("reindex-dead01", "reindex", requested_by=ADMIN, channel="CJOBS")
    progress_ts = fake_slack.add_message("CJOBS", "⏳ Reindex `reindex-dead01`", user=fake_slack.bot_user_id)
    crashed.set_job_message("reindex-dead01", progress_ts)
    crashed.close()

    app = make_app()  # start-up
    (report,) = fake_slack.calls("chat.postMessage", in_channel("CJOBS"))
    assert "reindex-dead01" in report.params["text"] and "interrupted" in report.params["text"]
    assert fake_slack.calls("chat.update", lambda p: p.get("ts") == progress_ts)  # no longer says running
    assert Store(store_path).job("reindex-dead01").state == "interrupted"
    status = ack_text(app.dispatch(sim.command("/reindex", "status", user=ADMIN, channel="CJOBS")))
    assert "reindex-dead01" in status and "interrupted" in status


def test_retrain_status_and_rollback_are_admin_only_and_audited(make_app, sim, store_path):
    app = make_app()
    refused = ack_text(
        app.dispatch(sim.command("/retrain-adapter", "rollback", user=PERSON, channel="CJOBS"))
    )
    assert "only the bot's admins" in refused
    status = ack_text(app.dispatch(sim.command("/retrain-adapter", "status", user=ADMIN, channel="CJOBS")))
    assert "No job has run yet" in status and "none (base model)" in status
    rollback = ack_text(
        app.dispatch(sim.command("/retrain-adapter", "rollback", user=ADMIN, channel="CJOBS"))
    )
    assert rollback.startswith("Could not roll back")  # nothing is current yet
    audit = [(e.user, e.command, e.decision) for e in Store(store_path).audit_log()]
    assert audit == [
        (PERSON, "/retrain-adapter rollback", "refused"),
        (ADMIN, "/retrain-adapter status", "allowed"),
        (ADMIN, "/retrain-adapter rollback", "failed"),
    ]


@pytest.mark.slow  # real LoRA training and evaluation: ~1-2 minutes on 2 CPU cores
def test_retrain_posts_progress_then_its_metrics_verdict_and_loss_plot(
    make_app, sim, fake_slack, slack_services, fresh_home, tmp_path, store_path
):
    from bot.config import load_settings
    from bot.wiring import build_services

    # The real training pipeline, made small through settings: three glossary terms, a few steps,
    # short evaluation answers.
    glossary = tmp_path / "glossary.jsonl"
    glossary.write_text("".join((ACME / "glossary.jsonl").read_text().splitlines(keepends=True)[:3]))
    small = {"max_steps": 4, "batch_size": 4, "val_templates": 1, "eval_max_new_tokens": 8}
    base = slack_services.settings
    services = build_services(
        load_settings(
            home=fresh_home,
            docs_dir=base.docs_dir,
            admins=base.admins,
            max_new_tokens=base.max_new_tokens,
            glossary=glossary,
            retrain=small,
        ),
        embed_model=slack_services.embed_model,
    )
    app = make_app(services)
    started = ack_text(app.dispatch(sim.command("/retrain-adapter", "", user=ADMIN, channel="CTRAIN")))
    job_id = re.search(r"`(retrain-\w+)`", started).group(1)

    finished = lambda p: p.get("channel") == "CTRAIN" and p.get("text", "")[:1] in "✅❌"  # noqa: E731
    fake_slack.wait_for("chat.update", finished, timeout=900)
    job = Store(store_path).job(job_id)
    assert job.state == "succeeded", job.error
    upload = fake_slack.wait_for("files.completeUploadExternal")[0]
    summary = upload.params["initial_comment"]
    assert upload.params["channel_id"] == "CTRAIN" and f"`{job_id}`" in summary
    assert re.search(r"Terminology accuracy: base \d+% \(\d+/\d+\) → adapter \d+% \(\d+/\d+\)", summary)
    assert "promoted" in summary and "Gate, compared with the base model:" in summary
    (uploaded,) = fake_slack.files.values()
    assert uploaded["data"].startswith(b"\x89PNG") and uploaded["filename"] == "loss.png"
    edits = [c.params["text"] for c in fake_slack.calls("chat.update", in_channel("CTRAIN"))]
    assert any(re.search(r"step \d of 4 · loss \d+\.\d{3}", t) for t in edits)  # step, loss (and ETA)
    assert job.result["version"] == "terms-v1" and job.result["metrics"]["adapter"]["total"] == 3


def copy_services(slack_services, where: Path):
    """New Services over a copy of slack_services' docs and index, sharing its embedder and LLM: a bot
    that has just started, with nothing of its own built yet (no Chroma client opened on its index)."""
    from bot.config import load_settings
    from bot.wiring import build_services

    base = slack_services.settings
    home, docs = where / "home", where / "docs"
    shutil.copytree(base.docs_dir, docs)
    shutil.copytree(base.home / "index", home / "index", ignore=shutil.ignore_patterns("build.lock"))
    (home / "models").symlink_to((base.home / "models").resolve(), target_is_directory=True)
    settings = load_settings(home=home, docs_dir=docs, max_new_tokens=base.max_new_tokens, admins=base.admins)
    # The same embedder and engine: no second model load.
    return build_services(
        settings, embed_model=slack_services.embed_model, generator=slack_services.generator
    )


def test_warm_up_a_reindex_and_a_question_at_the_same_moment_all_succeed(
    slack_services, make_app, sim, fake_slack, tmp_path
):
    """Issue 13 item 7: /reindex sent in the first seconds after start-up, beside a question, failed in
    Chroma (two embedded clients created at once for one path). Each round is a fresh start."""
    for n in range(3):
        _start_up_round(n, slack_services, make_app, sim, fake_slack, tmp_path)


def _start_up_round(n, slack_services, make_app, sim, fake_slack, tmp_path) -> None:
    services = copy_services(slack_services, tmp_path / f"start-{n}")
    (services.settings.docs_dir / f"zorblax-{n}.md").write_text(ZORBLAX)
    app = make_app(services, store=Store(tmp_path / f"bot-{n}.sqlite3"))
    event = sim.mention_event("What are the support tiers?", user=PERSON, channel=f"CASK{n}")
    reindex = sim.command("/reindex", "", user=ADMIN, channel=f"CJOB{n}")
    go, acks = threading.Barrier(3), {}

    def at_once(name, call):
        go.wait()
        acks[name] = call()

    calls = {
        "warm": services.warm_up,
        "reindex": lambda: app.dispatch(reindex),
        "ask": lambda: app.dispatch(sim.event(event)),
    }
    threads = [threading.Thread(target=at_once, args=item) for item in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert acks["reindex"].status == acks["ask"].status == 200
    job_id = re.search(r"`(reindex-\w+)`", ack_text(acks["reindex"])).group(1)
    job = app.expertbot.jobs.wait(job_id, timeout=300)
    assert (job.state, job.error) == ("succeeded", None), f"round {n}"
    assert job.result["added"] == [f"zorblax-{n}.md"]
    placeholder = placeholder_for(fake_slack, event)
    answer = final_update(fake_slack, event["channel"], placeholder.response["ts"])
    assert answer.params.get("blocks"), f"round {n}: {answer.params.get('text')}"  # not the apology


def test_retrain_says_up_front_how_long_it_will_take(slack_services, make_app, sim, fake_slack, tmp_path):
    """The job's first message, posted before any work: the default budget, about 15 minutes."""
    services = copy_services(slack_services, tmp_path)  # no glossary anywhere: the job then fails fast
    app = make_app(services, store=Store(tmp_path / "bot.sqlite3"))
    started = ack_text(app.dispatch(sim.command("/retrain-adapter", "", user=ADMIN, channel="CTRAIN")))
    job_id = re.search(r"`(retrain-\w+)`", started).group(1)
    first = fake_slack.wait_for("chat.postMessage", in_channel("CTRAIN"), timeout=30)[0].params["text"]
    assert first.startswith("⏳") and job_id in first
    assert "about 15 min" in first and "time_budget_s" in first and "ETA 15m 00s" in first
    assert app.expertbot.jobs.wait(job_id, timeout=120).state == "failed"  # no glossary: said in the channel
