"""The playground's bot: the real Bolt app and listeners, fed requests signed the way Slack signs them,
posting through a real WebClient to a local fake of Slack's Web API (bot.playground.fakeapi).

With `[scopes]` configured, the page can also ask in each scope's channels and as other people (each
scope's users, a member of each of its user groups, a guest), so the rules can be tried without Slack.
"""

from __future__ import annotations

import json
import secrets
import threading

from bot.playground.fakeapi import FakeSlackAPI
from bot.playground.people import CHANNEL, DM, USER, Person, places
from bot.playground.simulate import SlackSimulator
from bot.slack.app import build_app, start_up, web_client
from bot.store import Store
from bot.wiring import Services

COMMANDS = ("/reindex", "/retrain-adapter")
KINDS = ("mention", "message", "dm")  # @expertbot in the channel, the channel without a mention, the DM


class Playground:
    def __init__(self, services: Services, store: Store | None = None, update_interval: float = 1.0):
        self.services = services
        self.ready = threading.Event()  # set once the models are loaded (warm_up)
        token = "xoxb-playground-" + secrets.token_hex(8)
        self.fake = FakeSlackAPI(token=token).start()
        self.channels, people = places(services.settings.scopes)
        self.people = {p.id: p for p in people}
        for person in people:
            self.fake.add_user(person.id, person.name, is_restricted=person.guest)
        for group in sorted({g for p in people for g in p.groups}):
            self.fake.add_usergroup(group, [p.id for p in people if group in p.groups])
        signing_secret = secrets.token_hex(16)  # only this process knows it: nothing else can post events
        admins = [*services.settings.admins, USER]
        client = web_client(token, self.fake.url)
        self.app = build_app(
            services,
            client=client,
            signing_secret=signing_secret,
            admins=admins,
            store=store,
            update_interval=update_interval,  # how often a streamed answer is edited, as in Slack
        )
        start_up(self.app)  # jobs a previous run left running are reported, as `serve` does
        self.sim = SlackSimulator(signing_secret, fake=self.fake)
        # A command's ack text is what Slack shows only to the person who ran it.
        self.notes: list[dict] = []

    def warm_up(self) -> None:
        """Load what the first question needs (a failure only logs: the question will report it)."""
        try:
            self.services.warm_up()
        finally:
            self.ready.set()

    def send(self, kind: str, text: str, thread_ts: str | None = None, where: str = "general",
             channel: str | None = None, user: str | None = None) -> dict:  # fmt: skip
        """kind: 'mention' or 'message' (no mention) in `channel` (#general by default), 'dm' (the DM of
        `user`, by default you), or a slash command such as '/reindex', run in `channel` or (where='dm')
        in the DM. Everything is sent as `user`."""
        person, channel = self._person(user), self._channel(channel)
        if kind == "mention":
            event = self.sim.mention_event(text, user=person.id, channel=channel, thread_ts=thread_ts)
        elif kind in ("message", "dm"):
            in_dm = kind == "dm"
            event = self.sim.message_event(
                text,
                user=person.id,
                channel=person.dm if in_dm else channel,
                channel_type="im" if in_dm else "group" if channel.startswith("G") else "channel",
                thread_ts=thread_ts,
            )
        elif kind in COMMANDS:
            return self._command(kind, text, person.dm if where == "dm" else channel, person.id)
        else:
            raise ValueError(
                f"unknown {'command' if kind.startswith('/') else 'kind'} {kind!r}: the playground sends "
                f"{', '.join(KINDS)} or the commands {' and '.join(COMMANDS)}"
            )
        return {"status": self.app.dispatch(self.sim.event(event)).status}

    def _person(self, user: str | None) -> Person:
        if not user:
            return self.people[USER]
        if user not in self.people:
            raise ValueError(f"unknown user {user!r}: the playground asks as {', '.join(self.people)}")
        return self.people[user]

    def _channel(self, channel: str | None) -> str:
        known = [c["id"] for c in self.channels]
        if channel and channel not in known:
            raise ValueError(f"unknown channel {channel!r}: the playground has {', '.join(known)}")
        return channel or CHANNEL

    def _command(self, command: str, text: str, channel: str, user: str) -> dict:
        resp = self.app.dispatch(self.sim.command(command, text, user=user, channel=channel))
        body = resp.body if isinstance(resp.body, str) else json.dumps(resp.body)
        ack_text = json.loads(body).get("text", "") if body.startswith("{") else body
        shown = {"channel": channel, "user": user, "command": f"{command} {text}".strip(), "text": ack_text}
        self.notes.append({**shown, "ts": self.fake.new_ts()})
        return {"status": resp.status}

    def click(self, action_id: str, value: str, channel: str, message_ts: str, thread_ts: str | None = None,
              user: str | None = None) -> dict:  # fmt: skip
        req = self.sim.button(
            action_id, value, user=self._person(user).id, channel=channel, message_ts=message_ts,
            thread_ts=thread_ts,
        )  # fmt: skip
        return {"status": self.app.dispatch(req).status}

    def state(self) -> dict:
        messages, ephemeral = self.fake.snapshot()
        people = [{"id": p.id, "label": p.label, "name": p.name, "dm": p.dm} for p in self.people.values()]
        return {
            "channel": CHANNEL, "dm": DM, "user": USER, "bot": self.fake.bot_user_id,
            "ready": self.ready.is_set(), "messages": messages, "ephemeral": ephemeral, "notes": self.notes,
            "channels": self.channels, "people": people,
        }  # fmt: skip

    def file(self, file_id: str) -> bytes | None:
        stored = self.fake.files.get(file_id)
        return stored["data"] if stored else None

    def close(self) -> None:
        self.fake.stop()
