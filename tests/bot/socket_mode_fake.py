"""A local Socket Mode server: Slack's side of the websocket, on 127.0.0.1, for the tests.

The bot reaches it the way it reaches Slack. FakeSlackAPI's apps.connections.open (called with the app
token) hands out `new_url()`, a ws:// URL with a single-use ticket, and the bot's Socket Mode client
connects there. Each connection gets `hello`, then the envelopes that were queued while no connection
could take them. The server speaks Slack's envelope protocol (events_api, slash_commands, interactive,
disconnect), records every ack the bot sends back (envelope_id, time, payload), and can push envelopes,
ask the bot to reconnect (`disconnect`), or drop the socket with no close frame, as a network failure does.
Pings and pongs are the websocket's own control frames, which `websockets` answers by itself.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve


@dataclass
class Envelope:
    envelope_id: str
    type: str  # events_api, slash_commands or interactive
    payload: dict
    retry_attempt: int = 0
    retry_reason: str = ""
    sent_at: float | None = None  # time.monotonic() when written to a socket; None while queued
    connection: int | None = None  # the number of the connection that carried it

    def frame(self) -> str:
        return json.dumps(
            {
                "envelope_id": self.envelope_id,
                "type": self.type,
                "payload": self.payload,
                # Slack lets commands and interactivity answer in the ack; events only acknowledge.
                "accepts_response_payload": self.type != "events_api",
                "retry_attempt": self.retry_attempt,
                "retry_reason": self.retry_reason,
            }
        )


@dataclass
class Ack:
    envelope_id: str
    at: float  # time.monotonic()
    payload: dict | None
    connection: int


@dataclass
class Link:
    """One websocket connection from the bot."""

    number: int  # 1 for the first connection, 2 for the next...
    ticket: str
    opened_at: float
    ws: ServerConnection = field(repr=False)
    closed_at: float | None = None
    retiring: bool = False  # told to reconnect, or dropped: no new envelopes go to it


class SocketModeFake:
    def __init__(self, *, app_id: str = "AEXPERTBOT", host: str = "127.0.0.1"):
        self.app_id = app_id
        self.links: list[Link] = []
        self.envelopes: dict[str, Envelope] = {}
        self.acks: list[Ack] = []
        self.stray: list[str] = []  # frames from the bot that were not acks (should stay empty)
        self._queue: list[Envelope] = []
        self._tickets: dict[str, bool] = {}  # ticket -> used
        self._cond = threading.Condition()
        # Control frames only (pings): the Slack SDK's own keepalive is what the tests exercise.
        self._server = serve(self._handle, host, 0, process_request=self._check_ticket, compression=None)
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link/"

    def new_url(self) -> str:
        """A URL for one connection, as apps.connections.open returns it (set it as the fake's socket_url)."""
        ticket = uuid.uuid4().hex
        with self._cond:
            self._tickets[ticket] = False
        return f"{self.base_url}?ticket={ticket}&app_id={self.app_id}"

    def start(self) -> SocketModeFake:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-socket-mode", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def __enter__(self) -> SocketModeFake:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what tests use --------------------------------------------------------------------------------
    def push(self, type: str, payload: dict, *, retry_attempt: int = 0, retry_reason: str = "") -> Envelope:
        """Send an envelope now, or once a connection has said hello if none can take it now."""
        env = Envelope(uuid.uuid4().hex, type, payload, retry_attempt, retry_reason)
        with self._cond:
            self.envelopes[env.envelope_id] = env
            link = self._live()
            if link is None or not self._send(link, env):
                self._queue.append(env)
        return env

    def disconnect(self, reason: str = "refresh_requested") -> Link:
        """Ask the bot to reconnect, as Slack does (reason refresh_requested, warning or link_disabled).
        Envelopes pushed from now on wait for the next connection."""
        with self._cond:
            link = self._require_live()
            link.retiring = True
            message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-applink-1"}}
            link.ws.send(json.dumps(message))
            return link

    def drop(self, *, reset: bool = False) -> Link:
        """Cut the live connection with no websocket close frame, as when the far end dies: an orderly
        TCP close (FIN), or with reset=True a TCP reset (RST)."""
        with self._cond:
            link = self._require_live()
            link.retiring = True
            if reset:  # SO_LINGER 0 makes close() send RST instead of FIN
                link.ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                link.ws.close_socket()
            else:
                link.ws.socket.shutdown(socket.SHUT_RDWR)
            return link

    def wait_for_links(self, count: int, timeout: float = 30) -> list[Link]:
        """Wait until `count` connections have said hello; returns them all."""
        return self._wait(lambda: self.links if len(self.links) >= count else None, timeout,
                          lambda: f"expected {count} connection(s), got {len(self.links)}")  # fmt: skip

    def wait_closed(self, link: Link, timeout: float = 30) -> float:
        """Wait until the bot has closed (or lost) that connection; returns when, in time.monotonic()."""
        return self._wait(lambda: link.closed_at, timeout, lambda: f"connection {link.number} is still open")

    def wait_for_ack(self, envelope_id: str, timeout: float = 30) -> Ack:
        def found():
            return next((a for a in self.acks if a.envelope_id == envelope_id), None)

        return self._wait(found, timeout, lambda: f"no ack for envelope {envelope_id}; acks: {self.acks}")

    def acks_for(self, envelope_id: str) -> list[Ack]:
        with self._cond:
            return [a for a in self.acks if a.envelope_id == envelope_id]

    def ack_delay(self, envelope_id: str, timeout: float = 30) -> float:
        """Seconds from writing the envelope to the socket to its ack coming back."""
        ack = self.wait_for_ack(envelope_id, timeout)
        return ack.at - self.envelopes[envelope_id].sent_at

    # -- the server ------------------------------------------------------------------------------------
    def _check_ticket(self, conn: ServerConnection, request):
        ticket = parse_qs(urlparse(request.path).query).get("ticket", [""])[0]
        with self._cond:
            if self._tickets.get(ticket) is not False:  # unknown, or already used
                return conn.respond(
                    HTTPStatus.UNAUTHORIZED, "invalid or used ticket; call apps.connections.open\n"
                )
            self._tickets[ticket] = True
            conn.ticket = ticket
        return None

    def _handle(self, ws: ServerConnection) -> None:
        with self._cond:
            link = Link(len(self.links) + 1, ws.ticket, time.monotonic(), ws)
            self.links.append(link)
            hello = {
                "type": "hello",
                "num_connections": sum(1 for x in self.links if x.closed_at is None),
                "debug_info": {
                    "host": "fake-applink-1",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
            ws.send(json.dumps(hello))
            queued, self._queue = self._queue, []
            for env in queued:
                if not self._send(link, env):
                    self._queue.append(env)
            self._cond.notify_all()
        try:
            for frame in ws:
                self._received(link, frame)
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                link.closed_at = time.monotonic()
                self._cond.notify_all()

    def _received(self, link: Link, frame) -> None:
        at = time.monotonic()
        try:
            message = json.loads(frame)
        except ValueError:
            message = None
        with self._cond:
            if isinstance(message, dict) and message.get("envelope_id"):
                self.acks.append(Ack(message["envelope_id"], at, message.get("payload"), link.number))
            else:
                self.stray.append(frame if isinstance(frame, str) else repr(frame))
            self._cond.notify_all()

    def _send(self, link: Link, env: Envelope) -> bool:
        """Called holding the lock. False when the socket turned out to be gone."""
        try:
            link.ws.send(env.frame())
        except ConnectionClosed:
            link.retiring = True
            return False
        env.sent_at, env.connection = time.monotonic(), link.number
        return True

    def _live(self) -> Link | None:
        live = [x for x in self.links if x.closed_at is None and not x.retiring]
        return live[-1] if live else None

    def _require_live(self) -> Link:
        link = self._live()
        if link is None:
            raise RuntimeError("no live Socket Mode connection: wait_for_links() first")
        return link

    def _wait(self, found, timeout: float, describe):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = found()
                if result is not None:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(describe())
                self._cond.wait(left)
