"""/reindex and /retrain-adapter: admin gate and audit, background jobs with progress, summaries, restarts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.store import Store

from .slack_fake import ADMIN, PERSON, ack_text, ask, sources_text

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
    from bot.wiring import Services

    # The real training pipeline, made small through settings: three glossary terms, a few steps,
    # short evaluation answers.
    glossary = tmp_path / "glossary.jsonl"
    glossary.write_text("".join((ACME / "glossary.jsonl").read_text().splitlines(keepends=True)[:3]))
    small = {"max_steps": 4, "batch_size": 4, "val_templates": 1, "eval_max_new_tokens": 8}
    base = slack_services.settings
    services = Services(
        load_settings(
            home=fresh_home,
            docs_dir=base.docs_dir,
            admins=base.admins,
            max_new_tokens=base.max_new_tokens,
            glossary=glossary,
            retrain=small,
        )
    )
    services.__dict__["embed_model"] = slack_services.embed_model
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
