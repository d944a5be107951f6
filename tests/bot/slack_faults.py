"""A fake Slack Web API that misbehaves on request: the next N calls of a method get a 5xx, a 429 with
Retry-After, an `ok: false` error, or a connection closed without an answer.

It is bot/playground/fakeapi.py's FakeSlackAPI (a real HTTP server on 127.0.0.1) with its request handler
wrapped, so the bot's real slack_sdk WebClient, with its real retry handlers, meets the faults on the
wire.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from urllib.parse import urlparse

from bot.playground.fakeapi import FakeSlackAPI


@dataclass
class Fault:
    method: str
    times: int  # how many calls it still answers; then the method works again
    status: int = 500  # HTTP status; 200 with `error` is Slack's ok:false
    error: str | None = None
    retry_after: int | None = None  # seconds, sent as Retry-After (with a 429)
    drop: bool = False  # close the connection without any response: Slack unreachable


class FaultySlackAPI(FakeSlackAPI):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.faults: list[Fault] = []
        self.faulted: list[tuple[str, Fault]] = []  # (method, fault) of every call a fault answered
        self._fault_lock = threading.Lock()
        self._server.RequestHandlerClass = _faulty(self, self._server.RequestHandlerClass)

    def fail(self, method: str, times: int = 1, **how) -> Fault:
        """The next `times` calls of method fail as `how` says (see Fault); returns the fault."""
        fault = Fault(method, times, **how)
        with self._fault_lock:
            self.faults.append(fault)
        return fault

    def faults_for(self, method: str) -> int:
        with self._fault_lock:
            return sum(1 for m, _ in self.faulted if m == method)

    def take_fault(self, method: str) -> Fault | None:
        with self._fault_lock:
            for fault in self.faults:
                if fault.method == method and fault.times > 0:
                    fault.times -= 1
                    self.faulted.append((method, fault))
                    return fault
        return None


def _faulty(api: FaultySlackAPI, handler: type) -> type:
    class FaultyHandler(handler):
        def _dispatch(self, body: bytes) -> None:
            path = urlparse(self.path).path
            fault = api.take_fault(path[len("/api/") :]) if path.startswith("/api/") else None
            if fault is None:
                return super()._dispatch(body)
            if fault.drop:
                self.close_connection = True  # no status line at all: the client sees RemoteDisconnected
                return None
            payload = json.dumps({"ok": False, "error": fault.error or f"http_{fault.status}"}).encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            if fault.retry_after is not None:
                self.send_header("Retry-After", str(fault.retry_after))
            self.end_headers()
            self.wfile.write(payload)
            return None

    return FaultyHandler
