"""manifest.yml is a valid Slack app manifest whose commands, events and scopes are exactly what the app
handles and calls."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient

from bot.playground.fakeapi import FakeSlackAPI
from bot.slack.listeners.commands import COMMANDS
from bot.slack.listeners.events import EVENTS

from .slack_fake import PERSON, ack_text

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "manifest.yml"
# The bot token scopes each Web API method needs, as Slack documents them (api.slack.com/methods/<name>).
# conversations.replies needs the history scope of the conversation's kind: one for each kind the bot
# answers in. A method missing here fails the test: add it with its documented scopes.
METHOD_SCOPES = {
    "auth.test": set(),
    "chat.postMessage": {"chat:write"},
    "chat.update": {"chat:write"},
    "chat.delete": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    "users.info": {"users:read"},
    "conversations.replies": {"channels:history", "groups:history", "im:history", "mpim:history"},
    "files.getUploadURLExternal": {"files:write"},
    "files.completeUploadExternal": {"files:write"},
    "reactions.add": {"reactions:write"},
    # Any one of im:write, mpim:write, channels:manage, groups:write opens a conversation; the bot opens
    # only DMs with one person (an expert asked to review a correction).
    "conversations.open": {"im:write"},
    "views.open": set(),  # a modal, opened with the trigger_id of a click: no scope
    "usergroups.users.list": {"usergroups:read"},
}
# Methods only some settings call, and the scopes `expertbot manifest` adds for them (bot/manifest.py):
# manifest.yml itself leaves them out, so an install that does not use them never asks for them.
OPTIONAL_METHODS = {"usergroups.users.list"}
EVENT_SCOPES = {
    "app_mention": {"app_mentions:read"},
    "message.channels": {"channels:history"},
    "message.groups": {"groups:history"},
    "message.im": {"im:history"},
    "message.mpim": {"mpim:history"},
}


def web_api_methods(name: str) -> set[str]:
    """The Web API methods a WebClient method calls: chat_postMessage -> chat.postMessage;
    files_upload_v2 -> files.getUploadURLExternal and files.completeUploadExternal."""
    source = inspect.getsource(getattr(WebClient, name))
    methods = set(re.findall(r'api_call\(\s*"([\w.]+)"', source))
    for helper in set(re.findall(r"self\.(\w+)\(", source)) - {name, "api_call"}:
        if hasattr(WebClient, helper) and "_" in helper and not helper.startswith("_"):
            methods |= web_api_methods(helper)
    return methods


def methods_the_code_calls() -> set[str]:
    """Every Web API method bot/ calls through a WebClient method (`client.chat_update(...)` and alike)."""
    called = {"auth.test"}  # Bolt's own check of the token at start-up
    for path in (ROOT / "bot").rglob("*.py"):
        if path.name == "fakeapi.py":  # the stand-in for Slack answers these; it calls none
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                if "_" in name and not name.startswith("_") and callable(getattr(WebClient, name, None)):
                    called |= web_api_methods(name)
    return called


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_the_manifest_has_display_info_a_bot_user_and_socket_mode(manifest):
    assert manifest["display_information"]["name"] and manifest["display_information"]["description"]
    assert manifest["features"]["bot_user"]["display_name"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True  # the 👍/👎 buttons
    assert manifest["settings"]["socket_mode_enabled"] is True


def test_the_manifest_asks_for_exactly_the_scopes_of_the_methods_and_events_the_code_uses(manifest):
    called = methods_the_code_calls()
    assert {
        "chat.postMessage",
        "chat.update",
        "conversations.replies",
        "files.completeUploadExternal",
    } <= called
    assert called <= set(METHOD_SCOPES), f"add the scopes of {called - set(METHOD_SCOPES)} to METHOD_SCOPES"
    assert all(
        hasattr(FakeSlackAPI, "api_" + m.replace(".", "_")) for m in called
    )  # the tests' Slack has them
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    always = called - OPTIONAL_METHODS
    needed = set().union(*(METHOD_SCOPES[m] for m in always), *(EVENT_SCOPES[e] for e in events))
    needed |= {"commands"} if manifest["features"]["slash_commands"] else set()
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed
    assert "user" not in manifest["oauth_config"]["scopes"]


def test_the_manifest_matches_what_the_app_registers(manifest):
    commands = manifest["features"]["slash_commands"]
    assert {c["command"] for c in commands} == set(COMMANDS)
    assert all(c["description"] and c["usage_hint"] for c in commands)
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert sorted(events) == [
        "app_mention",
        "message.channels",
        "message.groups",
        "message.im",
        "message.mpim",
    ]
    assert {e.split(".")[0] for e in events} == set(EVENTS)  # message.* arrive as type "message"


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


def test_expertbot_manifest_adds_usergroups_read_only_when_a_scope_names_user_groups(manifest, tmp_path):
    from click.testing import CliRunner

    from bot.cli import main
    from bot.config import load_settings

    def printed(scopes: dict) -> str:
        settings = load_settings(home=tmp_path, scopes=scopes)
        result = CliRunner().invoke(main, ["manifest"], obj={"settings": settings})
        assert result.exit_code == 0, result.output
        return result.output

    assert printed({}) == MANIFEST.read_text()
    assert printed({"hr": {"docs": ["hr/**"], "channels": ["C0HR"]}}) == MANIFEST.read_text()
    settings = load_settings(home=tmp_path, experts=["S0EXPERTS"])
    by_experts = CliRunner().invoke(main, ["manifest"], obj={"settings": settings}).output
    assert "usergroups:read" in by_experts  # expert groups are looked up too
    grouped = yaml.safe_load(printed({"hr": {"docs": ["hr/**"], "usergroups": ["S0HR"]}}))
    scopes = grouped["oauth_config"]["scopes"]["bot"]
    assert set(scopes) == set(manifest["oauth_config"]["scopes"]["bot"]) | {"usergroups:read"}
    assert grouped["settings"] == manifest["settings"] and grouped["features"] == manifest["features"]
