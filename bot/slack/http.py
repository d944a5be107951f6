"""HTTP mode: Bolt's WSGI adapter served by waitress, behind a guard that turns junk away first.

Slack sends every event, slash command and button click as a signed POST to /slack/events and retries
any it does not see acked within 3 s. waitress gives the burst a real listen backlog and a pool of
worker threads (Bolt acks events before its listeners run, so a worker is held for milliseconds).

The guard checks what Bolt's own verifier would choke on (it does int() on the timestamp, compares the
signature as a str and decodes the body as UTF-8, each a 500 with a traceback when malformed), then the
signature itself, so nothing unsigned reaches Bolt. Refusals log a short reason, never headers or body.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable
from http import HTTPStatus  # the standard library's (imports are absolute)

import waitress
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier
from waitress import wasyncore

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# Slack's own payloads stay far below this (a message is at most 40,000 characters); it is set above
# 1 MB so that an oversized question still reaches the bot and gets its polite "too long" reply.
MAX_BODY_BYTES = 4 * 2**20
MAX_CLOCK_SKEW_S = 5 * 60  # as Bolt's verifier: older (or newer) requests are replays
THREADS = 16  # each request holds a worker for milliseconds; 16 ack a burst of 100 well within 1 s
CONNECTION_LIMIT = 1000  # open connections before waitress stops accepting (the backlog queues the rest)
BACKLOG = 2048  # the kernel's queue of not yet accepted connections (the OS may cap it lower)
LOOP_TICK_S = 0.25  # how often the serving loop looks for a stop request
DRAIN_S = 2.0  # on stop, time given to requests already received to be answered

DIGITS = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() and int() take full-width ones
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class SlackGuard:
    """WSGI middleware: route, size-check, shape-check and verify a request before Bolt sees it."""

    def __init__(self, app: App, signing_secret: str, *, path: str = EVENTS_PATH,
                 max_body: int = MAX_BODY_BYTES):  # fmt: skip
        if not signing_secret:
            raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET to verify Slack's requests")
        self.bolt = SlackRequestHandler(app, path)
        self.verifier = SignatureVerifier(signing_secret)
        self.path, self.max_body = path, max_body

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != self.path:
            return _reply(start_response, 404, f"not found: Slack requests are POSTs to {self.path}")
        if environ.get("REQUEST_METHOD") != "POST":
            return _reply(start_response, 405, f"{self.path} takes POST requests from Slack only",
                          [("Allow", "POST")])  # fmt: skip
        status, problem, body = self.check(environ)
        if problem:
            log.info("refused a request to %s (%d): %s", self.path, status, problem)
            return _reply(start_response, status, problem)
        environ["wsgi.input"] = io.BytesIO(body)  # read once here; Bolt's adapter reads it again
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.bolt(environ, start_response)

    def check(self, environ) -> tuple[int, str | None, bytes]:
        """(status, what is wrong or None, raw body)."""
        length = environ.get("CONTENT_LENGTH") or "0"
        if not DIGITS.fullmatch(length):  # waitress already refuses most of these with its own 400
            return 400, "Content-Length must be a number of bytes", b""
        if int(length) > self.max_body:
            return 413, f"the body is over {self.max_body // 2**20} MiB", b""
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not DIGITS.fullmatch(timestamp):
            return 401, "X-Slack-Request-Timestamp must be a Unix time in seconds", b""
        if abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW_S:
            return 401, "X-Slack-Request-Timestamp is more than 5 minutes off (a replay?)", b""
        if not SIGNATURE.fullmatch(signature):
            return 401, "X-Slack-Signature must be v0= and 64 hex digits", b""
        body = environ["wsgi.input"].read(int(length)) if "wsgi.input" in environ else b""
        if len(body) > self.max_body:  # a chunked body has no Content-Length to check up front
            return 413, f"the body is over {self.max_body // 2**20} MiB", b""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return 400, "the body must be UTF-8", b""
        if not self.verifier.is_valid(text, timestamp, signature):
            return 401, "the signature does not match (check SLACK_SIGNING_SECRET)", b""
        return 200, None, body


def _reply(start_response, status: int, message: str, extra: list | None = None):
    body = json.dumps({"error": message}).encode()
    headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers + (extra or []))
    return [body]


class SlackHTTPServer:
    """waitress serving a SlackGuard on a socket bound at construction (port 0: any free port)."""

    def __init__(self, app: App, signing_secret: str, host: str = "127.0.0.1", port: int = 3000, *,
                 threads: int = THREADS, max_body: int = MAX_BODY_BYTES):  # fmt: skip
        self._map: dict = {}  # waitress's socket map: ours, so that we run (and end) the loop ourselves
        # waitress warns once per request queued behind busy threads: ~90 lines for one burst that is
        # acked within a second anyway. Errors still show; a level the user set is kept.
        queue_log = logging.getLogger("waitress.queue")
        if queue_log.level == logging.NOTSET:
            queue_log.setLevel(logging.ERROR)
        self._stopping = False
        self._server = waitress.create_server(
            SlackGuard(app, signing_secret, max_body=max_body),
            map=self._map,
            host=host,
            port=port,
            threads=threads,
            backlog=BACKLOG,
            connection_limit=CONNECTION_LIMIT,
            max_request_body_size=max_body + 1,  # waitress answers 413 itself from this size on
            asyncore_use_poll=True,  # select() cannot watch more than 1024 sockets
            channel_timeout=30,  # idle keep-alive connections are closed after 30 s (default 120)
            ident="expertbot",
        )

    @property
    def address(self) -> tuple[str, int]:
        # waitress reports them as getnameinfo() does: both strings
        return str(self._server.effective_host), int(self._server.effective_port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}{EVENTS_PATH}"

    def stop(self) -> None:
        # Only sets a flag, so a signal handler may call it while the loop holds waitress's locks.
        self._stopping = True

    def serve_forever(self, until: Callable[[], bool] | None = None) -> None:
        """Serve until stop() or until() is true; then stop accepting, let the requests already taken
        finish (for up to DRAIN_S), and close every socket."""
        try:
            while not (self._stopping or (until and until())):
                wasyncore.loop(timeout=LOOP_TICK_S, map=self._map, use_poll=True, count=1)
            self._server.accepting = False  # no new connections; the ones taken may finish
            deadline = time.monotonic() + DRAIN_S
            while self._busy() and time.monotonic() < deadline:
                wasyncore.loop(timeout=0.05, map=self._map, use_poll=True, count=1)
        finally:
            self._server.task_dispatcher.shutdown(timeout=1)
            wasyncore.close_all(self._map)

    def _busy(self) -> bool:
        # A channel with requests is being answered, one with output is still sending it.
        if self._server.task_dispatcher.queue:
            return True
        return any(getattr(ch, "requests", None) or getattr(ch, "total_outbufs_len", 0)
                   for ch in list(self._map.values()))  # fmt: skip
