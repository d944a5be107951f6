"""The local playground: try the bot without a Slack workspace (what `make run` starts with no tokens).

It is the real bot: the same Bolt app and listeners, fed requests signed the way Slack signs them, and
posting through a real WebClient to a local fake of Slack's Web API. The page shows what the bot
would have posted. Everything listens on 127.0.0.1 only unless --host says otherwise.
"""

from __future__ import annotations

import json
import logging
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from bot.slack.app import build_app, web_client
from bot.slack.fakeapi import FakeSlackAPI
from bot.slack.playground_page import PAGE
from bot.slack.serve import serve_until_interrupted
from bot.slack.simulate import SlackSimulator

log = logging.getLogger(__name__)

USER = "UPLAYGROUND"  # the person typing in the page; an admin here, so both commands can be tried
CHANNEL, DM = "CGENERAL", "DPLAYGROUND"
COMMANDS = ("/reindex", "/retrain-adapter")


class Playground:
    def __init__(self, services):
        token = "xoxb-playground-" + secrets.token_hex(8)
        self.fake = FakeSlackAPI(token=token).start()
        self.fake.add_user(USER, "you")
        signing_secret = secrets.token_hex(16)  # only this process knows it: nothing else can post events
        admins = [*services.settings.admins, USER]
        client = web_client(token, self.fake.url)
        self.app = build_app(services, client=client, signing_secret=signing_secret, admins=admins)
        self.sim = SlackSimulator(signing_secret, fake=self.fake)
        # A command's ack text is what Slack shows only to the person who ran it.
        self.notes: list[dict] = []

    def send(self, kind: str, text: str, thread_ts: str | None = None) -> dict:
        """kind: 'mention' (in #general), 'dm', or a slash command such as '/reindex'."""
        if kind == "mention":
            event = self.sim.mention_event(text, user=USER, channel=CHANNEL, thread_ts=thread_ts)
            req = self.sim.event(event)
        elif kind == "dm":
            req = self.sim.event(self.sim.dm_event(text, user=USER, channel=DM, thread_ts=thread_ts))
        elif kind in COMMANDS:
            req = self.sim.command(kind, text, user=USER, channel=CHANNEL)
        else:
            raise ValueError(f"kind must be 'mention', 'dm' or one of {', '.join(COMMANDS)}; got {kind!r}")
        resp = self.app.dispatch(req)
        if kind in COMMANDS:
            body = resp.body if isinstance(resp.body, str) else json.dumps(resp.body)
            ack_text = json.loads(body).get("text", "") if body.startswith("{") else body
            self.notes.append({"channel": CHANNEL, "command": f"{kind} {text}".strip(), "text": ack_text})
        return {"status": resp.status}

    def click(self, action_id: str, value: str, channel: str, message_ts: str) -> dict:
        req = self.sim.button(action_id, value, user=USER, channel=channel, message_ts=message_ts)
        return {"status": self.app.dispatch(req).status}

    def state(self) -> dict:
        messages, ephemeral = self.fake.snapshot()
        return {
            "channel": CHANNEL, "dm": DM, "user": USER, "bot": self.fake.bot_user_id,
            "messages": messages, "ephemeral": ephemeral, "notes": self.notes,
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
                    result = playground.send(req["kind"], req.get("text", ""), req.get("thread_ts") or None)
                elif path == "/click":
                    result = playground.click(req["action_id"], req["value"], req["channel"], req["ts"])
                else:
                    self._send(404, b'{"error": "not found"}')
                    return
                self._send(200, json.dumps(result).encode())
            except (KeyError, ValueError) as exc:
                self._send(400, json.dumps({"error": str(exc)}).encode())

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def run_playground(services, host: str = "127.0.0.1", port: int = 3000) -> None:
    playground = Playground(services)
    server = make_server(playground, host, port)
    url = f"http://{host}:{server.server_address[1]}/"
    print(f"expertbot playground (no Slack tokens set): open {url}  (Ctrl+C stops it)", flush=True)
    serve_until_interrupted(server, on_close=playground.close)
