"""manifest.yml is a valid Slack app manifest whose commands and events are exactly what the app handles."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.slack.listeners.commands import COMMANDS
from bot.slack.listeners.events import EVENTS

from .slack_fake import PERSON, ack_text

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"
REQUIRED_SCOPES = {
    "app_mentions:read",
    "chat:write",
    "commands",
    "im:history",
    "im:read",
    "im:write",
    "users:read",
    "files:write",
}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_the_manifest_has_display_info_a_bot_user_and_socket_mode(manifest):
    assert manifest["display_information"]["name"] and manifest["display_information"]["description"]
    assert manifest["features"]["bot_user"]["display_name"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True  # the 👍/👎 buttons
    assert manifest["settings"]["socket_mode_enabled"] is True


def test_the_manifest_asks_only_for_scopes_the_app_uses(manifest):
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    # conversations.replies (thread context) needs the history scope of the conversation type too.
    assert scopes - REQUIRED_SCOPES == {"channels:history", "groups:history"}
    assert REQUIRED_SCOPES <= scopes
    assert "user" not in manifest["oauth_config"]["scopes"]


def test_the_manifest_matches_what_the_app_registers(manifest):
    commands = manifest["features"]["slash_commands"]
    assert {c["command"] for c in commands} == set(COMMANDS)
    assert all(c["description"] and c["usage_hint"] for c in commands)
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert sorted(events) == ["app_mention", "message.im"]
    assert {e.split(".")[0] for e in events} == set(EVENTS)  # message.im arrives as type "message"


def test_every_manifest_command_and_event_reaches_a_listener(manifest, make_app, sim):
    app = make_app()
    for command in manifest["features"]["slash_commands"]:
        resp = app.dispatch(sim.command(command["command"], "help", user=PERSON, channel="CMANIFEST"))
        assert resp.status == 200 and ack_text(resp).startswith(f"*{command['command']}*")
    # Events from another app: matched and acked (an unmatched request gets 404), and then ignored.
    for event in (
        sim.mention_event("hi", user="UAPP", channel="CMANIFEST"),
        sim.dm_event("hi", user="UAPP", channel="DMANIFEST"),
    ):
        event["bot_id"] = "BAPP"
        assert app.dispatch(sim.event(event)).status == 200
    unknown = sim.event({"type": "reaction_added", "user": PERSON, "reaction": "eyes", "event_ts": "1.1"})
    assert app.dispatch(unknown).status == 404
