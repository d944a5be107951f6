"""Request verification, clean start-up errors for Slack credentials, and stopping `serve` on a signal.

HTTP mode itself (routing, junk, a burst) is tested in test_slack_http.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from bot.config import load_settings
from bot.playground.simulate import SlackSimulator, http_parts
from bot.slack.answering import RESTARTED
from bot.slack.serve import (
    InvalidCredentialError,
    MissingCredentialError,
    SlackSetupError,
    check_credentials,
    choose_mode,
    serve,
    verified_client,
)
from bot.store import STORE_FILENAME, Store
from bot.wiring import Services

from .slack_fake import ADMIN, PERSON, SIGNING_SECRET, placeholder_for
from .socket_mode_fake import SocketModeFake
from .test_slack_http import post


def test_a_bad_signature_or_a_stale_timestamp_gets_401_and_nothing_runs(
    make_app, sim, fake_slack, store_path
):
    app = make_app()
    event = sim.mention_event("How long does the Quillmate pairing last?", user=PERSON, channel="CSIG")
    forger = SlackSimulator("not-the-signing-secret", fake=fake_slack)
    requests = [
        forger.event(event, event_id="EvFORGED"),
        sim.event(event, event_id="EvSTALE", timestamp=int(time.time()) - 10 * 60),  # a replayed request
        forger.command("/reindex", "", user=ADMIN, channel="CSIG"),
        forger.button("feedback_up", "ans1", user=PERSON, channel="CSIG", message_ts="1.1"),
    ]
    for req in requests:
        resp = app.dispatch(req)
        assert resp.status == 401 and json.loads(resp.body) == {"error": "invalid request"}
    store = Store(store_path)
    assert store.claim_event("event:EvFORGED") and store.claim_event("event:EvSTALE")  # never seen
    assert store.jobs() == [] and store.audit_log() == [] and store.votes() == []
    assert [c.method for c in fake_slack.calls()] == ["auth.test"]  # only Bolt's start-up check


def settings(tmp_path, **slack):
    return load_settings(home=tmp_path / "home", **slack)


def test_the_mode_follows_the_tokens_and_the_http_flag(tmp_path):
    assert choose_mode(settings(tmp_path), http=False) == "playground"
    assert (
        choose_mode(settings(tmp_path, slack_bot_token="xoxb-1", slack_app_token="xapp-1"), http=False)
        == "socket"
    )
    assert choose_mode(settings(tmp_path, slack_bot_token="xoxb-1"), http=True) == "http"
    with pytest.raises(SlackSetupError, match="SLACK_APP_TOKEN.*--http"):
        choose_mode(settings(tmp_path, slack_bot_token="xoxb-1"), http=False)


def test_missing_or_malformed_credentials_are_clear_start_up_errors(tmp_path):
    cases = [
        ({}, "http", MissingCredentialError, "SLACK_BOT_TOKEN is required"),
        ({"slack_bot_token": "xoxb-1"}, "http", MissingCredentialError, "SLACK_SIGNING_SECRET is required"),
        (
            {"slack_bot_token": "xoxp-user-token", "slack_signing_secret": "s"},
            "http",
            InvalidCredentialError,
            "xoxb-",
        ),
        (
            {"slack_bot_token": "xoxb-1", "slack_app_token": "xoxb-2"},
            "socket",
            InvalidCredentialError,
            "xapp-",
        ),
    ]
    for slack, mode, error, message in cases:
        with pytest.raises(error, match=message) as raised:
            check_credentials(settings(tmp_path, **slack), mode)
        assert isinstance(raised.value, ValueError)  # the CLI turns ValueErrors into clean messages
        assert "xoxb-1" not in str(raised.value) and "xoxp-user-token" not in str(raised.value)
    assert check_credentials(settings(tmp_path, slack_bot_token="xoxb-1", slack_signing_secret="s"), "http")[
        0
    ]


def test_a_token_slack_rejects_stops_start_up_before_anything_listens(tmp_path, fake_slack):
    with pytest.raises(InvalidCredentialError, match="rejected SLACK_BOT_TOKEN \\(invalid_auth\\)") as raised:
        verified_client("xoxb-wrong-token", fake_slack.url)
    assert "xoxb-wrong-token" not in str(raised.value)
    services = Services(
        settings(
            tmp_path,
            slack_bot_token="xoxb-wrong-token",
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=fake_slack.url,
        )
    )
    with pytest.raises(InvalidCredentialError):
        serve(services, http=True, host="127.0.0.1", port=0)
    with pytest.raises(SlackSetupError, match="could not reach the Slack API"):
        verified_client("xoxb-1", "http://127.0.0.1:9/api/")


# -- stopping: a real `expertbot serve` process, signalled -------------------------------------------------
class Served:
    """`python -m bot -v serve ...` in a subprocess, its log read as it comes (so the pipe never fills)."""

    def __init__(self, args: list[str], env: dict[str, str], ready: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "-v", "serve", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()

    def _read(self, ready: str) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if ready in line:
                self._ready.set()
        self._ready.set()  # ended: wait_ready() reports it

    def wait_ready(self, timeout: float = 120) -> str:
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.proc.kill()
            raise AssertionError("serve did not start:\n" + "".join(self.lines))
        return self.lines[-1]

    def stop(self, sig: int, within: float = 10.0) -> float:
        """Send `sig`; the seconds until it exited (the test fails past `within`)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running {within:.0f} s after {sig!r}:\n" + self.log) from None
        return time.monotonic() - started

    @property
    def log(self) -> str:
        return "".join(self.lines)


def serve_env(tmp_path, fake_slack, **extra) -> dict[str, str]:
    (tmp_path / "docs").mkdir(exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},  # loopback only
        "EXPERTBOT_HOME": str(tmp_path / "home"),
        "EXPERTBOT_DOCS_DIR": str(tmp_path / "docs"),
        "EXPERTBOT_ADMINS": ADMIN,
        # An LLM server that refuses connections: the warm-up loads no model, and no answer needs one.
        "EXPERTBOT_LLM_URL": "http://127.0.0.1:9/v1",
        "SLACK_BOT_TOKEN": fake_slack.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.url,
    }
    return {**env, **extra}


def listening_url(line: str) -> str:
    found = re.search(r"listening on (http://127\.0\.0\.1:\d+/slack/events)", line)
    assert found, line
    return found.group(1)


def test_sigterm_stops_http_serve_within_10_s_with_a_job_and_an_answer_in_flight(tmp_path, fake_slack, sim):
    fake_slack.add_user(ADMIN, "admin")
    # The job's first message and the answer's thread history never come back from "Slack": both are
    # still in flight when the signal arrives, and the answer's thread is stuck for good.
    job_post = fake_slack.hold("chat.postMessage", lambda p: p.get("channel") == "CJOBS")
    history = fake_slack.hold("conversations.replies")
    served = Served(["--http", "--port", "0"], serve_env(tmp_path, fake_slack), ready="listening on")
    url = listening_url(served.wait_ready())

    assert post(url, *http_parts(sim.command("/reindex", "", user=ADMIN, channel="CJOBS")))[0] == 200
    parent = fake_slack.add_message("CASK", "a thread", user=PERSON)
    question = "Where is the secret sauce recipe kept?"
    event = sim.mention_event(question, user=PERSON, channel="CASK", thread_ts=parent)
    assert post(url, *http_parts(sim.event(event)))[0] == 200
    placeholder = placeholder_for(fake_slack, event, timeout=30)
    assert job_post.held.wait(30) and history.held.wait(30)

    took = served.stop(signal.SIGTERM)
    assert served.proc.returncode == 0, served.log
    assert "Traceback" not in served.log and question not in served.log
    # The asker is told to ask again; the job is interrupted, which frees /reindex for the next run.
    update = fake_slack.wait_for("chat.update", lambda p: p.get("ts") == placeholder.response["ts"])[-1]
    assert update.params["text"] == RESTARTED
    jobs = Store(tmp_path / "home" / STORE_FILENAME).jobs()
    assert [(j.kind, j.state) for j in jobs] == [("reindex", "interrupted")], took


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("mode", ["http", "socket"])
def test_an_idle_serve_stops_cleanly_on_a_signal(tmp_path, fake_slack, mode, sig):
    if mode == "http":
        served = Served(["--http", "--port", "0"], serve_env(tmp_path, fake_slack), ready="listening on")
        url = listening_url(served.wait_ready())
    else:
        socket = SocketModeFake().start()
        fake_slack.socket_url = socket.new_url
        env = serve_env(tmp_path, fake_slack, SLACK_APP_TOKEN=fake_slack.app_token)
        served = Served([], env, ready="connected to Slack in Socket Mode")
        served.wait_ready()
        try:
            socket.wait_for_links(1)
        except TimeoutError:
            served.proc.kill()
            raise AssertionError("no Socket Mode connection:\n" + served.log) from None
    took = served.stop(sig)
    assert served.proc.returncode == 0 and "Traceback" not in served.log, served.log
    assert "expertbot stopped" in served.log and "exiting without waiting" not in served.log
    assert took < 5, f"an idle bot took {took:.1f} s to stop"
    if mode == "http":
        with pytest.raises(urllib.error.URLError):  # nothing listens any more
            urllib.request.urlopen(url, timeout=5)
    else:
        socket.stop()
