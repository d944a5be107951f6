"""Slack's Web API misbehaving: retried, never a placeholder left behind, and a record when all fails.

The real Bolt app and the bot's real slack_sdk WebClient (its production retry handlers, with a short
backoff so the suite stays fast) against the fake Web API with faults injected on the wire
(tests/bot/slack_faults.py).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bot.slack.answering import PLACEHOLDER
from bot.slack.app import RATE_LIMIT_RETRIES, web_client
from bot.store import Store

from .slack_fake import (
    ADMIN,
    PERSON,
    TOKEN,
    ack_text,
    blocks_of,
    final_update,
    in_thread_of,
)
from .slack_faults import FaultySlackAPI

QUESTION = "How long does the Quillmate pairing last?"


@pytest.fixture
def fake_slack():  # overrides conftest's: the app fixtures below talk to this one
    with FaultySlackAPI(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def app(make_app, fake_slack):
    # The production client, retry handlers and all; only the backoff is short (0.01 s, 0.02 s, ...).
    return make_app(client=web_client(TOKEN, fake_slack.url, backoff=0.01))


def mention(app, sim, channel: str, text: str = QUESTION) -> dict:
    event = sim.mention_event(text, user=PERSON, channel=channel)
    assert app.dispatch(sim.event(event, event_id=f"Ev{channel}")).status == 200
    return event


def answer_post(fake, event) -> dict:
    """The bot's message in the event's thread that carries an answer (blocks with feedback buttons)."""

    def is_answer(p: dict) -> bool:
        return in_thread_of(event)(p) and any(b["type"] == "actions" for b in _blocks(p))

    return fake.wait_for("chat.postMessage", is_answer, timeout=120)[-1].params


def _blocks(params: dict) -> list:
    import json

    blocks = params.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def test_a_500_and_a_dropped_connection_on_the_placeholder_are_retried(app, sim, fake_slack):
    fake_slack.fail("chat.postMessage", 1, status=500)
    fake_slack.fail("chat.postMessage", 1, drop=True)
    event = mention(app, sim, "CRETRY5XX")
    (placeholder,) = fake_slack.wait_for("chat.postMessage", in_thread_of(event))
    assert placeholder.params["text"] == PLACEHOLDER
    assert fake_slack.faults_for("chat.postMessage") == 2  # both failures met the client, which retried
    final = fake_slack.wait_for(
        "chat.update", lambda p: p.get("ts") == placeholder.response["ts"] and p.get("blocks"), timeout=120
    )[-1]
    assert blocks_of(final, "actions")  # answered in place, as if nothing had happened


def test_429s_are_waited_out_past_the_third(app, sim, fake_slack):
    fake_slack.fail("chat.postMessage", 3, status=429, retry_after=0)
    event = mention(app, sim, "CRATE429")
    (placeholder,) = fake_slack.wait_for("chat.postMessage", in_thread_of(event))
    assert placeholder.params["text"] == PLACEHOLDER and fake_slack.faults_for("chat.postMessage") == 3
    assert RATE_LIMIT_RETRIES > 3
    final_update(fake_slack, "CRATE429", placeholder.response["ts"])  # and answered


def test_a_placeholder_slack_refused_still_gets_its_answer_posted(app, sim, fake_slack, store_path):
    fake_slack.fail("chat.postMessage", 1, status=200, error="internal_error")  # ok:false, not retried
    event = mention(app, sim, "CNOPLACE")
    answer = answer_post(fake_slack, event)
    assert blocks_of_params(answer, "section")
    assert not fake_slack.calls("chat.update", lambda p: p.get("channel") == "CNOPLACE")
    assert Store(store_path).failed_deliveries() == []  # delivered in the end: nothing lost


def test_a_final_edit_that_keeps_failing_is_posted_anew_and_the_placeholder_removed(
    app, sim, fake_slack, store_path
):
    fake_slack.fail("chat.update", 1000, status=503)  # every edit, past every retry
    event = mention(app, sim, "CNOEDIT")
    answer = answer_post(fake_slack, event)
    assert blocks_of_params(answer, "actions")
    fake_slack.wait_for("chat.delete", lambda p: p.get("channel") == "CNOEDIT")
    texts = [m["text"] for m in fake_slack.thread("CNOEDIT", event["ts"])]
    assert PLACEHOLDER not in texts and len(texts) == 2  # the question and the answer, no "Thinking…"
    assert Store(store_path).failed_deliveries() == []
    # The answer's record points at the message that now holds its buttons, for the 👍/👎 clicks.
    answer_id = blocks_of_params(answer, "actions")[0]["elements"][0]["value"]
    posted = fake_slack.calls("chat.postMessage", lambda p: p.get("channel") == "CNOEDIT")[-1]
    assert Store(store_path).answer(answer_id)["message_ts"] == posted.response["ts"]


def test_when_slack_cannot_be_reached_the_event_is_recorded_and_reported(
    app, sim, fake_slack, store_path, tmp_path
):
    for method in ("chat.postMessage", "chat.update"):
        fake_slack.fail(method, 1000, drop=True)
    secret = "What is the codename XYZZY-4471 of the pairing?"
    mention(app, sim, "CDOWN", secret)
    store = Store(store_path)
    failures = _wait_for_failures(store)
    (failure,) = failures
    assert failure["event_id"] == "EvCDOWN" and failure["channel"] == "CDOWN"
    assert failure["reason"].startswith("chat.postMessage: Slack could not be reached")
    assert "XYZZY" not in str(failures)  # what was asked is never recorded
    # 1 placeholder + 1 final post, each tried 1 + 3 times; the final edit had no placeholder to edit.
    assert fake_slack.faults_for("chat.postMessage") == 8

    fake_slack.faults.clear()  # Slack is back: an admin sees the failure in /reindex status
    status = ack_text(app.dispatch(sim.command("/reindex", "status", user=ADMIN, channel="CADMIN")))
    assert "1 reply could not be delivered" in status and "<#CDOWN>" in status
    assert "chat.postMessage: Slack could not be reached" in status

    from bot.cli import main
    from bot.config import load_settings

    settings = load_settings(home=store_path.parent, docs_dir=tmp_path)
    result = CliRunner().invoke(main, ["doctor"], obj={"settings": settings})
    line = next(x for x in result.output.splitlines() if "slack deliveries" in x)
    assert (
        line.startswith("WARN slack deliveries: 1 reply could not be delivered")
        and "CDOWN" in line
        and "EvCDOWN" in line
    )


def _wait_for_failures(store: Store, timeout: float = 60) -> list[dict]:
    import time

    deadline = time.monotonic() + timeout
    while not (found := store.failed_deliveries()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def blocks_of_params(params: dict, kind: str) -> list:
    return [b for b in _blocks(params) if b["type"] == kind]
