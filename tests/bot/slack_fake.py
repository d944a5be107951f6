"""The fake Slack Web API and Slack-signed requests, for the bot tests.

One implementation serves the playground and the tests (bot/playground/fakeapi.py and simulate.py):
a real HTTP server on 127.0.0.1, port 0, that records every call and answers auth.test,
chat.postMessage/update/postEphemeral, reactions.add, conversations.replies, users.info and the
files_upload_v2 steps. Only Slack is faked; the bot under test is the real Bolt app.
"""

from __future__ import annotations

import json

from slack_sdk import WebClient

from bot.playground.fakeapi import Call, FakeSlackAPI
from bot.slack.answering import APOLOGY, NO_INDEX
from bot.slack.app import web_client

SIGNING_SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
ADMIN = "UADMIN"
PERSON = "UPERSON"


def client_for(fake: FakeSlackAPI) -> WebClient:
    """A real slack_sdk WebClient, configured as the bot configures its own, whose base_url is the fake."""
    return web_client(fake.token, fake.url)


def in_thread_of(event: dict):
    """A filter for the bot's posts in the thread an event belongs to."""
    thread = event.get("thread_ts") or event["ts"]
    return lambda p: p.get("channel") == event["channel"] and p.get("thread_ts") == thread


def placeholder_for(fake: FakeSlackAPI, event: dict, already: int = 0, timeout: float = 60) -> Call:
    """The bot's first post in the event's thread after the `already` posts made there before it."""
    return fake.wait_for("chat.postMessage", in_thread_of(event), count=already + 1, timeout=timeout)[already]


def final_update(fake: FakeSlackAPI, channel: str, ts: str, timeout: float = 120) -> Call:
    """The chat.update that turned the placeholder into the final answer (blocks) or a note instead."""

    def where(p: dict) -> bool:
        return (
            p.get("channel") == channel
            and p.get("ts") == ts
            and (p.get("blocks") or p.get("text") in (APOLOGY, NO_INDEX))
        )

    return fake.wait_for("chat.update", where, timeout=timeout)[-1]


def ask(app, sim, fake, text, *, channel="CGENERAL", user=PERSON, dm=False, thread_ts=None):
    """Send a question as Slack would; return (event, placeholder call, final update call)."""
    make = sim.dm_event if dm else sim.mention_event
    event = make(text, user=user, channel=channel, thread_ts=thread_ts)
    already = len(fake.calls("chat.postMessage", in_thread_of(event)))
    resp = app.dispatch(sim.event(event))
    assert resp.status == 200  # acked at once, before any answering
    placeholder = placeholder_for(fake, event, already)
    return event, placeholder, final_update(fake, channel, placeholder.response["ts"])


def blocks_of(call: Call, kind: str) -> list[dict]:
    return [b for b in call.params.get("blocks") or [] if b["type"] == kind]


def sources_text(call: Call) -> str | None:
    """The text of the answer's Sources context block, or None when it has none."""
    found = [
        b["elements"][0]["text"] for b in blocks_of(call, "context") if "Sources" in b["elements"][0]["text"]
    ]
    return found[0] if found else None


def ack_text(resp) -> str:
    """The text of a slash command's ack (what Slack shows only to the person who ran it)."""
    if isinstance(resp.body, dict):
        return resp.body["text"]
    return json.loads(resp.body)["text"] if resp.body.startswith("{") else resp.body  # Bolt sends plain text
