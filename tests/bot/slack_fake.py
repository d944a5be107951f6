"""The fake Slack Web API and Slack-signed requests, for the bot tests.

One implementation serves the playground and the tests (bot/slack/fakeapi.py, bot/slack/simulate.py):
a real HTTP server on 127.0.0.1, port 0, that records every call and answers auth.test,
chat.postMessage/update/postEphemeral, reactions.add, conversations.replies, users.info and the
files_upload_v2 steps. Only Slack is faked; the bot under test is the real Bolt app.
"""

from __future__ import annotations

from slack_sdk import WebClient

from bot.slack.answering import APOLOGY
from bot.slack.app import web_client
from bot.slack.fakeapi import Call, FakeSlackAPI, Hold
from bot.slack.simulate import SlackSimulator, http_parts

SIGNING_SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
ADMIN = "UADMIN"
PERSON = "UPERSON"

__all__ = ["ADMIN", "PERSON", "SIGNING_SECRET", "TOKEN", "Call", "FakeSlackAPI", "Hold", "SlackSimulator",
           "client_for", "final_update", "http_parts", "placeholder_for"]  # fmt: skip


def client_for(fake: FakeSlackAPI) -> WebClient:
    """A real slack_sdk WebClient, configured as the bot configures its own, whose base_url is the fake."""
    return web_client(fake.token, fake.url)


def placeholder_for(fake: FakeSlackAPI, event: dict, timeout: float = 60) -> Call:
    """The bot's first post in the event's thread (the placeholder, or the busy notice)."""
    thread = event.get("thread_ts") or event["ts"]

    def where(p: dict) -> bool:
        return p.get("channel") == event["channel"] and p.get("thread_ts") == thread

    return fake.wait_for("chat.postMessage", where, timeout=timeout)[0]


def final_update(fake: FakeSlackAPI, channel: str, ts: str, timeout: float = 120) -> Call:
    """The chat.update that turned the placeholder into the final answer (blocks) or the apology."""

    def where(p: dict) -> bool:
        return (
            p.get("channel") == channel
            and p.get("ts") == ts
            and (p.get("blocks") or p.get("text") == APOLOGY)
        )

    return fake.wait_for("chat.update", where, timeout=timeout)[-1]
