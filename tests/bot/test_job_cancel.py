"""/reindex cancel and /retrain-adapter cancel through the real app: admins only, audited, and what
answers use (the index, the adapter) stays as it was."""

from __future__ import annotations

import re

import pytest

from bot.store import Store

from .slack_fake import ADMIN, PERSON, ack_text, ask, sources_text
from .test_slack_commands import ACME, copy_services, in_channel

# A term in no other test's documents: copy_services copies whatever the shared docs hold by now.
FROBNITZ = """# The Frobnitz rota

The Frobnitz rota decides who waters the office ferns at Acme Quillworks, two people a week.
It was written by the Moonwell quire, and swaps need a manager's signature.
"""


def test_reindex_cancel_stops_the_build_and_answers_keep_the_current_index(
    slack_services, make_app, sim, fake_slack, tmp_path
):
    services = copy_services(slack_services, tmp_path)
    pointer = services.settings.home / "index" / "CURRENT"
    before = pointer.read_bytes()
    (services.settings.docs_dir / "frobnitz-rota.md").write_text(FROBNITZ)
    store = Store(tmp_path / "bot.sqlite3")
    app = make_app(services, store=store)

    nothing = ack_text(app.dispatch(sim.command("/reindex", "cancel", user=ADMIN, channel="CJOBS")))
    assert "nothing to cancel" in nothing
    # The job's first progress edit is held: the job then sits inside the build, one file done.
    hold = fake_slack.hold("chat.update", in_channel("CJOBS"))
    started = ack_text(app.dispatch(sim.command("/reindex", "", user=ADMIN, channel="CJOBS")))
    job_id = re.search(r"`(reindex-\w+)`", started).group(1)
    assert hold.held.wait(120)
    refused = ack_text(app.dispatch(sim.command("/reindex", "cancel", user=PERSON, channel="CJOBS")))
    assert "only the bot's admins" in refused
    cancelling = ack_text(app.dispatch(sim.command("/reindex", "cancel", user=ADMIN, channel="CJOBS")))
    assert f"Cancelling `{job_id}`" in cancelling and "current index" in cancelling
    hold.release()

    job = app.expertbot.jobs.wait(job_id, timeout=120)
    assert (job.state, job.error) == ("cancelled", f"cancelled by <@{ADMIN}>")
    assert pointer.read_bytes() == before  # the serving generation never moved
    said = fake_slack.wait_for("chat.postMessage", in_channel("CJOBS", text="🛑"), timeout=30)[0]
    assert job_id in said.params["text"] and "Answers keep using the current index" in said.params["text"]
    edits = [c.params["text"] for c in fake_slack.calls("chat.update", in_channel("CJOBS"))]
    assert edits[-1].startswith("🛑")  # the progress message no longer says it is running
    _, _, answer = ask(app, sim, fake_slack, "What is the Frobnitz rota?", channel="CASK")
    assert "frobnitz" not in (sources_text(answer) or "")

    audit = [(e.user, e.command, e.decision, e.job_id) for e in store.audit_log()]
    assert audit == [
        (ADMIN, "/reindex cancel", "nothing to cancel", None),
        (ADMIN, "/reindex", "started", job_id),
        (PERSON, "/reindex cancel", "refused", None),
        (ADMIN, "/reindex cancel", "cancelled", job_id),
    ]
    status = ack_text(app.dispatch(sim.command("/reindex", "status", user=ADMIN, channel="CJOBS")))
    assert job_id in status and "cancelled" in status
    # The kind is free again, and what the cancelled build left is cleaned up by the next one.
    again = ack_text(app.dispatch(sim.command("/reindex", "", user=ADMIN, channel="CJOBS")))
    next_id = re.search(r"`(reindex-\w+)`", again).group(1)
    assert app.expertbot.jobs.wait(next_id, timeout=300).result["added"] == ["frobnitz-rota.md"]


@pytest.mark.slow  # converts (first use in a run) and loads the bundled model: 3-280 s, with the load
def test_retrain_cancel_stops_training_and_registers_nothing(
    slack_services, make_app, sim, fake_slack, tmp_path
):
    from bot.config import load_settings
    from bot.wiring import build_services

    base = slack_services.settings
    glossary = tmp_path / "glossary.jsonl"
    glossary.write_text("".join((ACME / "glossary.jsonl").read_text().splitlines(keepends=True)[:3]))
    # Many small steps, no self-distillation: the job is in its training loop within seconds.
    small = {"max_steps": 500, "batch_size": 2, "self_distill_general": False}
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to((base.home / "models").resolve(), target_is_directory=True)
    settings = load_settings(
        home=home, docs_dir=base.docs_dir, admins=base.admins, glossary=glossary, retrain=small
    )
    services = build_services(settings, embed_model=slack_services.embed_model)
    store = Store(tmp_path / "bot.sqlite3")
    app = make_app(services, store=store)

    at_step = lambda p: p.get("channel") == "CTRAIN" and "step " in (p.get("text") or "")  # noqa: E731
    hold = fake_slack.hold("chat.update", at_step)
    started = ack_text(app.dispatch(sim.command("/retrain-adapter", "", user=ADMIN, channel="CTRAIN")))
    job_id = re.search(r"`(retrain-\w+)`", started).group(1)
    first = fake_slack.wait_for("chat.postMessage", in_channel("CTRAIN"), timeout=30)[0]
    assert "max_steps=500" in first.params["text"]  # said up front: no budget, so no time yet
    assert hold.held.wait(300)  # training has started
    cancelling = ack_text(
        app.dispatch(sim.command("/retrain-adapter", "cancel", user=ADMIN, channel="CTRAIN"))
    )
    assert f"Cancelling `{job_id}`" in cancelling and "current adapter" in cancelling
    hold.release()

    job = app.expertbot.jobs.wait(job_id, timeout=120)
    assert (job.state, job.error) == ("cancelled", f"cancelled by <@{ADMIN}>")
    assert job.progress["done"] < 500
    assert services.registry.list() == [] and services.registry.current() is None
    said = fake_slack.wait_for("chat.postMessage", in_channel("CTRAIN", text="🛑"), timeout=30)[0]
    assert "Answers keep using the current adapter" in said.params["text"]
    assert (ADMIN, "/retrain-adapter cancel", "cancelled", job_id) in [
        (e.user, e.command, e.decision, e.job_id) for e in store.audit_log()
    ]
