"""Requests shaped and signed the way Slack sends them, for the playground and the tests.

Each method returns a BoltRequest for `app.dispatch`, or use `.http_parts()` to send the same body and
headers over HTTP. When a FakeSlackAPI is given, a person's message is also added to its workspace, so
conversations.replies finds it later, just as it would in Slack.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from urllib.parse import urlencode

from slack_bolt.request import BoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.playground.fakeapi import FakeSlackAPI


class SlackSimulator:
    def __init__(
        self,
        signing_secret: str,
        *,
        fake: FakeSlackAPI | None = None,
        team_id: str = "TFAKE",
        api_app_id: str = "AEXPERTBOT",
        bot_user_id: str = "UEXPERTBOT",
    ):
        self.verifier = SignatureVerifier(signing_secret)
        self.fake, self.team_id, self.api_app_id = fake, team_id, api_app_id
        self.bot_user_id = fake.bot_user_id if fake else bot_user_id
        self._ts = itertools.count(1)

    def headers(
        self, body: str, *, content_type: str, timestamp: int | None = None, retry_num: int | None = None
    ) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "content-type": content_type,
            "x-slack-request-timestamp": ts,
            "x-slack-signature": self.verifier.generate_signature(timestamp=ts, body=body),
        }
        if retry_num is not None:
            headers.update({"x-slack-retry-num": str(retry_num), "x-slack-retry-reason": "http_timeout"})
        return headers

    def _ts_for(self, channel: str, text: str, user: str, thread_ts: str | None) -> str:
        if self.fake is not None:
            if user not in self.fake.users:  # whoever writes a message exists in the workspace
                self.fake.add_user(user, user.lower())
            return self.fake.add_message(channel, text, user=user, thread_ts=thread_ts)
        return f"{int(time.time())}.{next(self._ts):06d}"

    # -- Events API ------------------------------------------------------------------------------------
    def event_body(self, event: dict, *, event_id: str | None = None) -> str:
        return json.dumps(
            {
                "token": "unused",
                "team_id": self.team_id,
                "api_app_id": self.api_app_id,
                "event": event,
                "type": "event_callback",
                "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
                "event_time": int(time.time()),
                "authorizations": [{"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True}],
            }
        )

    def event(self, event: dict, *, event_id: str | None = None, **signing) -> BoltRequest:
        body = self.event_body(event, event_id=event_id)
        return BoltRequest(body=body, headers=self.headers(body, content_type="application/json", **signing))

    def mention_event(self, text: str, *, user: str, channel: str, thread_ts: str | None = None) -> dict:
        """A person's channel message mentioning the bot, as the app_mention event Slack would send."""
        return self._person_event("app_mention", f"<@{self.bot_user_id}> {text}", user, channel, thread_ts)

    def dm_event(self, text: str, *, user: str, channel: str, thread_ts: str | None = None) -> dict:
        return self.message_event(text, user=user, channel=channel, channel_type="im", thread_ts=thread_ts)

    def message_event(
        self, text: str, *, user: str, channel: str, channel_type: str, thread_ts: str | None = None
    ) -> dict:
        """A person's message as the message.* event Slack sends for it: channel_type 'im' (a DM), 'mpim'
        (a group DM), 'channel' (a public channel) or 'group' (a private one)."""
        return self._person_event("message", text, user, channel, thread_ts, channel_type=channel_type)

    def _person_event(self, kind: str, text: str, user: str, channel: str, thread_ts: str | None, **extra):
        ts = self._ts_for(channel, text, user, thread_ts)
        event = {
            "type": kind,
            **extra,
            "user": user,
            "text": text,
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    # -- slash commands and interactivity --------------------------------------------------------------
    def command(self, command: str, text: str = "", *, user: str, channel: str, **signing) -> BoltRequest:
        if self.fake is not None and user not in self.fake.users:  # who runs a command is in the workspace
            self.fake.add_user(user, user.lower())  # (a member: the admin check asks users.info)
        body = urlencode(
            {
                "token": "unused",
                "team_id": self.team_id,
                "team_domain": "fake",
                "channel_id": channel,
                "channel_name": "fake",
                "user_id": user,
                "user_name": user.lower(),
                "command": command,
                "text": text,
                "api_app_id": self.api_app_id,
                "trigger_id": uuid.uuid4().hex,
            }
        )
        return BoltRequest(body=body, headers=self.headers(body, content_type=FORM, **signing))

    def button(
        self,
        action_id: str,
        value: str,
        *,
        user: str,
        channel: str,
        message_ts: str,
        thread_ts: str | None = None,
        block_id: str = "expertbot_feedback",
        **signing,
    ) -> BoltRequest:
        payload = {
            "type": "block_actions",
            "user": {"id": user, "name": user.lower()},
            "api_app_id": self.api_app_id,
            "team": {"id": self.team_id},
            "channel": {"id": channel},
            "trigger_id": uuid.uuid4().hex,
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
            "message": {"type": "message", "ts": message_ts},
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": block_id,
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }
        if thread_ts:  # a message in a thread says so, and the bot answers in threads
            payload["message"]["thread_ts"] = thread_ts
        body = urlencode({"payload": json.dumps(payload)})
        return BoltRequest(body=body, headers=self.headers(body, content_type=FORM, **signing))

    def view_submission(self, view: dict, values: dict[str, str], *, user: str, **signing) -> BoltRequest:
        """`user` submitting a modal: `view` as views.open returned it, `values` the text typed into its
        input blocks, by block_id (an input left out was left empty, which Slack sends as null)."""
        state = {}
        for block in view.get("blocks") or []:
            if block.get("type") == "input":
                element = block["element"]
                typed = values.get(block["block_id"]) or None
                state[block["block_id"]] = {element["action_id"]: {"type": element["type"], "value": typed}}
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "fake"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": self.team_id},
            "api_app_id": self.api_app_id,
            "token": "unused",
            "trigger_id": uuid.uuid4().hex,
            "view": {**view, "state": {"values": state}, "app_id": self.api_app_id},
            "response_urls": [],
            "is_enterprise_install": False,
        }
        body = urlencode({"payload": json.dumps(payload)})
        return BoltRequest(body=body, headers=self.headers(body, content_type=FORM, **signing))


FORM = "application/x-www-form-urlencoded"


def http_parts(req: BoltRequest) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of a simulated request, to POST it to a real HTTP endpoint."""
    return req.raw_body.encode(), {k: v[0] for k, v in req.headers.items()}
