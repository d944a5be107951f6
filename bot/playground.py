"""The local playground: try the bot without a Slack workspace (what `make run` starts with no tokens).

It is the real bot: the same Bolt app and listeners, fed requests signed the way Slack signs them, and
posting through a real WebClient to a local fake of Slack's Web API. The page shows what the bot
would have posted. Everything listens on 127.0.0.1 only unless --host says otherwise.

With `[scopes]` configured, the page can also ask in each scope's channels and as other people (each
scope's users, a member of each of its user groups, a guest), so the rules can be tried without Slack.

`run_playground` loads the models before it names the page's URL, so the first question is answered
without a cold start; a page opened earlier says it is warming up meanwhile.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from bot.slack.app import build_app, web_client
from bot.slack.fakeapi import FakeSlackAPI
from bot.slack.playground_page import PAGE
from bot.slack.simulate import SlackSimulator
from bot.store import Store

log = logging.getLogger(__name__)

USER = "UPLAYGROUND"  # the person typing in the page; an admin here, so both commands can be tried
CHANNEL, DM = "CGENERAL", "DPLAYGROUND"
GUEST = "UGUEST"  # a multi-channel guest (is_restricted): only public documents, whatever the channel
COMMANDS = ("/reindex", "/retrain-adapter")
KINDS = ("mention", "message", "dm")  # @expertbot in the channel, the channel without a mention, the DM
SAMPLE_QUESTION = "How long does the Quillmate pairing last for a new starter?"  # examples/acme


def dm_of(user_id: str) -> str:
    """A person's DM with the bot, as Slack names one (D…): UPLAYGROUND -> DPLAYGROUND."""
    return "D" + user_id[1:]


@dataclass(frozen=True)
class Person:
    id: str
    label: str  # what the person picker shows
    name: str  # how their messages are signed
    dm: str
    guest: bool = False
    groups: tuple[str, ...] = ()  # user groups (S…) this made-up person is a member of


def places(scopes: dict) -> tuple[list[dict], list[Person]]:
    """The channels and people the page can ask as: #general and you, then what [scopes] names (each
    scope's channels and users, a made-up member of each user group, a guest). Without scopes only the
    first two: nothing else would answer differently."""
    channels = [{"id": CHANNEL, "label": "#general"}]
    people = [Person(USER, "you", "you", DM)]
    taken = {CHANNEL, USER, GUEST}
    for channel, names in _by_scope(scopes, "channels").items():
        if channel not in taken:
            channels.append({"id": channel, "label": f"#{channel} ({_scopes(names)})"})
    for user, names in _by_scope(scopes, "users").items():
        if user not in taken:
            people.append(Person(user, f"{user} ({_scopes(names)})", user, dm_of(user)))
            taken.add(user)
    for group, names in _by_scope(scopes, "usergroups").items():
        member = next(u for u in ("U" + group[1:], f"U{group[1:]}M", f"U{group[1:]}MM") if u not in taken)
        taken.add(member)
        label = f"member of {group} ({_scopes(names)})"
        people.append(Person(member, label, f"member of {group}", dm_of(member), groups=(group,)))
    if scopes:
        people.append(Person(GUEST, "a guest", "a guest", dm_of(GUEST), guest=True))
    return channels, people


def _by_scope(scopes: dict, key: str) -> dict[str, list[str]]:
    """Each id named under `key` (channels, users, usergroups) -> the scopes naming it, in order."""
    named: dict[str, list[str]] = {}
    for name, rule in sorted(scopes.items()):
        for value in getattr(rule, key):
            named.setdefault(value, []).append(name)
    return named


def _scopes(names: list[str]) -> str:
    return ("scope " if len(names) == 1 else "scopes ") + ", ".join(names)


class Playground:
    def __init__(self, services, store: Store | None = None, update_interval: float = 1.0):
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


def make_server(playground: Playground, host: str = "127.0.0.1", port: int = 3000) -> ThreadingHTTPServer:
    page = PAGE.encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, data: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/":
                self._send(200, page, "text/html; charset=utf-8")
            elif path == "/state":
                self._send(200, json.dumps(playground.state()).encode())
            elif path.startswith("/files/") and (data := playground.file(path.rsplit("/", 1)[-1])):
                ctype = "image/png" if data.startswith(b"\x89PNG") else "application/octet-stream"
                self._send(200, data, ctype)
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self) -> None:
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                path = urlparse(self.path).path
                if path == "/send":
                    text, thread_ts = req.get("text", ""), req.get("thread_ts") or None
                    result = playground.send(
                        req["kind"], text, thread_ts, req.get("where") or "general",
                        channel=req.get("channel") or None, user=req.get("user") or None,
                    )  # fmt: skip
                elif path == "/click":
                    where = (req["channel"], req["ts"], req.get("thread_ts") or None)
                    result = playground.click(req["action_id"], req["value"], *where, user=req.get("user"))
                else:
                    self._send(404, b'{"error": "not found"}')
                    return
                self._send(200, json.dumps(result).encode())
            except (KeyError, ValueError) as exc:
                self._send(400, json.dumps({"error": str(exc)}).encode())

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def try_first(settings) -> str:
    """What to try first: a question the sample docs answer, else one about the user's own docs."""
    if Path(settings.docs_dir) == Path(type(settings).model_fields["docs_dir"].default):
        return f'ask "{SAMPLE_QUESTION}"'
    return f"ask a question about the docs in {settings.docs_dir}"


def run_playground(services, host: str = "127.0.0.1", port: int = 3000) -> None:
    """Serve the page (bound first, so a taken port fails at once), load the models, then name the URL."""
    playground = Playground(services)
    server = make_server(playground, host, port)
    url = f"http://{host}:{server.server_address[1]}/"
    serving = threading.Thread(target=server.serve_forever, daemon=True, name="playground")
    serving.start()
    try:
        print("expertbot: loading the models, so that the first answer comes without a wait…", flush=True)
        playground.warm_up()
        print(
            f"expertbot playground (no Slack tokens set): open {url} and {try_first(services.settings)}"
            "  (Ctrl+C stops it)",
            flush=True,
        )
        serving.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
        playground.close()
