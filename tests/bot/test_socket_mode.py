"""Socket Mode end to end: `expertbot serve` in a subprocess, with SLACK_APP_TOKEN, against local fakes.

The bot is the real thing (CLI, Bolt's SocketModeHandler, the index and model). Only Slack is faked: the
Web API (bot/playground/fakeapi.py), whose apps.connections.open hands out the URL of a local Socket Mode
server (socket_mode_fake.py) speaking Slack's envelope protocol. The tests look at what Slack would see:
acks by envelope_id on the websocket, messages posted in threads, and the bot's store on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.playground.fakeapi import FakeSlackAPI
from bot.playground.simulate import SlackSimulator
from bot.slack.answering import APOLOGY, PLACEHOLDER
from bot.store import Store

from .slack_fake import ADMIN, PERSON, TOKEN, blocks_of, final_update, in_thread_of, placeholder_for
from .socket_mode_fake import SocketModeFake

APP_TOKEN = "xapp-1-A0TEST-1-socket-mode-test-token"
QUESTION = "How long does the Quillmate pairing last?"
ACK_LIMIT_S = 1.0  # the figure: every envelope acked within a second (Slack's own limit is 3 s)
START_TIMEOUT_S = 180  # imports and the index on a loaded 2-core machine; the model loads meanwhile


@dataclass
class ServedBot:
    proc: subprocess.Popen
    api: FakeSlackAPI
    socket: SocketModeFake
    sim: SlackSimulator
    home: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_links(self, count: int, timeout: float = 60) -> list:
        """Wait for `count` hellos, failing at once (with the bot's log) if the bot exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"expertbot serve exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                return self.socket.wait_for_links(
                    count, timeout=min(1.0, max(0.0, deadline - time.monotonic()))
                )
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise

    def mention(self, text: str, channel: str, *, event_id: str | None = None) -> tuple[dict, dict]:
        """A person's mention as Slack's events_api payload: (the event, the payload)."""
        event = self.sim.mention_event(text, user=PERSON, channel=channel)
        return event, json.loads(self.sim.event_body(event, event_id=event_id))

    def store(self) -> Store:
        return Store.in_home(self.home)


@pytest.fixture(scope="module")
def served(slack_services, slack_docs, tmp_path_factory):
    """`expertbot serve` in Socket Mode over a copy of the session's index, with its own store."""
    home = tmp_path_factory.mktemp("socket-home")
    shutil.copytree(slack_services.settings.home / "index", home / "index")
    (home / "models").symlink_to(
        (slack_services.settings.home / "models").resolve(), target_is_directory=True
    )
    api = FakeSlackAPI(token=TOKEN, app_token=APP_TOKEN).start()
    socket = SocketModeFake().start()
    api.socket_url = socket.new_url  # a fresh single-use ticket per apps.connections.open
    api.add_user(ADMIN, "admin")
    api.add_user(PERSON, "person")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}  # loopback only
    env.update(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_API_URL=api.url,
        EXPERTBOT_HOME=str(home),
        EXPERTBOT_DOCS_DIR=str(slack_docs),
        EXPERTBOT_MAX_NEW_TOKENS="12",  # short answers: the CPU model makes ~27 tokens a second
        EXPERTBOT_ADMINS=ADMIN,
        EXPERTBOT_CONFIG="",
    )
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "-v", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    bot = ServedBot(proc, api, socket, SlackSimulator("unused in Socket Mode", fake=api), home, log)
    try:
        bot.wait_for_links(1, timeout=START_TIMEOUT_S)
        yield bot
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        socket.stop()
        api.stop()
    text = bot.log_text()
    for secret in (TOKEN, APP_TOKEN, QUESTION, "ticket="):
        assert secret not in text, f"the bot's log shows {secret[:12]}…"


def answered(bot: ServedBot, event: dict, timeout: float = 120):
    """(placeholder call, final update call) of the bot's answer in the event's thread."""
    placeholder = placeholder_for(bot.api, event, timeout=timeout)
    final = final_update(bot.api, event["channel"], placeholder.response["ts"], timeout=timeout)
    return placeholder, final


def assert_one_answer(bot: ServedBot, event: dict, final) -> None:
    assert final.params["text"] != APOLOGY and blocks_of(final, "section"), final.params
    posts = bot.api.calls("chat.postMessage", in_thread_of(event))
    assert [p.params["text"] for p in posts] == [PLACEHOLDER]  # one answer, no second placeholder


def test_each_envelope_is_acked_at_once_and_answered_in_its_thread(served):
    bot, channel = served, "CSOCK1"
    hello = bot.socket.links[-1]
    opens = bot.api.calls("apps.connections.open")
    assert opens[0].authorized and opens[0].response["url"].startswith(bot.socket.base_url)

    # events_api: an app_mention, answered in its thread.
    event, payload = bot.mention(QUESTION, channel)
    mention = bot.socket.push("events_api", payload)
    placeholder, final = answered(bot, event)
    assert placeholder.params["thread_ts"] == event["ts"]
    assert_one_answer(bot, event, final)

    # interactive: a 👍 under that answer, thanked privately in the same thread, stored on disk.
    (buttons,) = blocks_of(final, "actions")
    answer_id = buttons["elements"][0]["value"]
    click = bot.sim.button("feedback_up", answer_id, user=PERSON, channel=channel,
                           message_ts=placeholder.response["ts"], thread_ts=event["ts"]).body  # fmt: skip
    vote = bot.socket.push("interactive", click)
    bot.api.wait_for(
        "chat.postEphemeral", lambda p: p.get("user") == PERSON and p.get("thread_ts") == event["ts"]
    )
    assert [(v["answer_id"], v["user"], v["vote"]) for v in bot.store().votes()] == [
        (answer_id, PERSON, "up")
    ]

    # slash_commands: `/reindex status` from an admin, answered in the ack's payload.
    command = bot.sim.command("/reindex", "status", user=ADMIN, channel=channel).body
    status = bot.socket.push("slash_commands", command)
    ack = bot.socket.wait_for_ack(status.envelope_id)
    assert ack.payload == {"text": "No job has run yet."}
    assert [(e.user, e.command, e.decision) for e in bot.store().audit_log()] == [
        (ADMIN, "/reindex status", "allowed")
    ]

    delays = {env.type: bot.socket.ack_delay(env.envelope_id) for env in (mention, vote, status)}
    print("acked after " + ", ".join(f"{kind} {s * 1000:.0f} ms" for kind, s in delays.items()))
    assert all(s < ACK_LIMIT_S for s in delays.values()), delays
    assert all(len(bot.socket.acks_for(env.envelope_id)) == 1 for env in (mention, vote, status))
    assert bot.socket.wait_for_ack(mention.envelope_id).payload is None  # events are only acknowledged
    assert {env.connection for env in (mention, vote, status)} == {hello.number}
    assert bot.socket.stray == []


def test_a_refresh_request_reconnects_and_the_event_sent_meanwhile_is_answered_once(served):
    bot = served
    before = len(bot.wait_for_links(1))
    old = bot.socket.disconnect("refresh_requested")
    event, payload = bot.mention(QUESTION, "CSOCK2")
    queued = bot.socket.push("events_api", payload)  # held by the fake until the bot says hello again

    links = bot.wait_for_links(before + 1, timeout=30)
    assert links[-1].ticket != old.ticket  # a second apps.connections.open, a fresh URL
    opens = bot.api.calls("apps.connections.open")
    assert len(opens) == before + 1 and all(c.authorized for c in opens)
    _, final = answered(bot, event)
    assert_one_answer(bot, event, final)
    assert queued.connection == links[-1].number and len(bot.socket.acks_for(queued.envelope_id)) == 1
    # The bot closes the old socket itself once the new one works.
    bot.socket.wait_closed(old)
    delay = bot.socket.ack_delay(queued.envelope_id)
    print(f"refresh: event queued during the reconnect acked {delay:.2f} s after the new hello")


@pytest.mark.slow
@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_dropped_socket_reconnects_and_the_event_sent_meanwhile_is_answered_once(served, reset):
    bot, channel = served, f"CSOCKDROP{int(reset)}"
    before = len(bot.wait_for_links(1))
    cpu_before = cpu_seconds(bot.proc.pid)
    dropped = bot.socket.drop(reset=reset)
    t0 = time.monotonic()
    event, payload = bot.mention(QUESTION, channel)
    queued = bot.socket.push("events_api", payload)

    links = bot.wait_for_links(before + 1, timeout=60)  # the bot notices only when its pings fail
    reconnect_s, cpu_s = links[-1].opened_at - t0, cpu_seconds(bot.proc.pid) - cpu_before
    print(f"drop ({'RST' if reset else 'FIN'}): reconnected after {reconnect_s:.1f} s, {cpu_s:.1f} CPU s")
    assert dropped.closed_at is not None and links[-1].ticket != dropped.ticket
    assert len(bot.api.calls("apps.connections.open")) == before + 1
    _, final = answered(bot, event)
    assert_one_answer(bot, event, final)
    assert queued.connection == links[-1].number and len(bot.socket.acks_for(queued.envelope_id)) == 1


def test_a_redelivered_envelope_is_acked_but_not_answered_twice(served):
    bot = served
    event, payload = bot.mention(QUESTION, "CSOCK3", event_id="EvSOCKRETRY1")
    first = bot.socket.push("events_api", payload)
    bot.socket.wait_for_ack(first.envelope_id)
    # Slack sends the same event again in a new envelope when it thinks the ack got lost.
    again = bot.socket.push("events_api", payload, retry_attempt=1, retry_reason="timeout")
    assert bot.socket.ack_delay(again.envelope_id) < ACK_LIMIT_S
    assert "ignored duplicate event EvSOCKRETRY1" in bot.log_text()  # logged before the ack
    _, final = answered(bot, event)
    assert_one_answer(bot, event, final)


def test_apps_connections_open_takes_only_the_app_token(fake_slack):
    fake_slack.socket_url = "ws://127.0.0.1:9/link/?ticket=t1"
    opened = WebClient(base_url=fake_slack.url).apps_connections_open(app_token=fake_slack.app_token)
    assert opened["url"] == "ws://127.0.0.1:9/link/?ticket=t1"
    for call in (
        lambda: WebClient(base_url=fake_slack.url).apps_connections_open(app_token=fake_slack.token),
        lambda: WebClient(token=fake_slack.app_token, base_url=fake_slack.url).auth_test(),
    ):
        with pytest.raises(SlackApiError) as raised:
            call()
        assert raised.value.response["error"] == "not_allowed_token_type"
    fake_slack.socket_url = None  # an app without Socket Mode turned on
    with pytest.raises(SlackApiError):
        WebClient(base_url=fake_slack.url).apps_connections_open(app_token=fake_slack.app_token)


def test_an_app_token_slack_rejects_stops_serve_with_a_clear_message(fake_slack, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(SLACK_BOT_TOKEN=TOKEN, SLACK_APP_TOKEN="xapp-1-not-this-app", SLACK_API_URL=fake_slack.url,
               EXPERTBOT_HOME=str(tmp_path / "home"), EXPERTBOT_CONFIG="")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1  # a clean error exit, not an abort (-6) while the models load
    assert "Slack rejected SLACK_APP_TOKEN (invalid_auth)" in done.stderr
    assert "Traceback" not in done.stderr and "xapp-1-not-this-app" not in done.stderr
    assert [c.authorized for c in fake_slack.calls("apps.connections.open")] == [False]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
