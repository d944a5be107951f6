"""Request verification, HTTP mode on /slack/events, and clean start-up errors for Slack credentials."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from bot.config import load_settings
from bot.slack.serve import (
    InvalidCredentialError,
    MissingCredentialError,
    SlackSetupError,
    check_credentials,
    choose_mode,
    make_http_server,
    serve,
    verified_client,
)
from bot.slack.simulate import SlackSimulator, http_parts
from bot.store import Store
from bot.wiring import Services

from .slack_fake import ADMIN, PERSON, SIGNING_SECRET


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


def post(url, body: bytes, headers: dict):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def http_server(make_app):
    server = make_http_server(make_app(), port=0)  # host defaults to 127.0.0.1
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_http_mode_takes_events_commands_and_interactivity_on_one_endpoint(
    http_server, sim, fake_slack, store_path
):
    host, port = http_server.server_address[:2]
    assert host == "127.0.0.1"
    url = f"http://127.0.0.1:{port}/slack/events"

    challenge = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "unused"})
    status, body = post(url, challenge.encode(), sim.headers(challenge, content_type="application/json"))
    assert status == 200 and "c-123" in body
    status, body = post(url, *http_parts(sim.command("/reindex", "help", user=PERSON, channel="CHTTP")))
    assert status == 200 and body.startswith("*/reindex*")
    click = sim.button("feedback_up", "ans-http", user=PERSON, channel="CHTTP", message_ts="1.1")
    assert post(url, *http_parts(click))[0] == 200
    fake_slack.wait_for("chat.postEphemeral", lambda p: p.get("user") == PERSON)
    assert [(v["answer_id"], v["vote"]) for v in Store(store_path).votes()] == [("ans-http", "up")]

    forged_body, headers = http_parts(
        SlackSimulator("wrong").command("/reindex", "", user=ADMIN, channel="C")
    )
    assert post(url, forged_body, headers)[0] == 401
    assert post(url.replace("/slack/events", "/other"), forged_body, headers)[0] == 404


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
