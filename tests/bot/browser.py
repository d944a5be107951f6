"""A small DevTools-protocol client for Debian's headless Chromium (no browser is ever downloaded).

It starts `chromium --headless` on a free port, attaches to its page over a websocket and offers what a
person does: open a URL, click on something visible, type, read the page's visible text. Exceptions the
page throws and its console errors are collected in `errors`; tests fail on any.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket  # websocket-client

CANDIDATES = ("chromium", "chromium-browser")
_CENTER_OF = """(selector, text, last) => {
  const found = [...document.querySelectorAll(selector)]
    .filter((e) => e.offsetParent !== null && (text === null || e.innerText.includes(text)));
  const e = found[last ? found.length - 1 : 0];
  if (!e) return null;
  e.scrollIntoView({block: "center"});
  const r = e.getBoundingClientRect();
  return {x: r.x + r.width / 2, y: r.y + r.height / 2};
}"""


def find_chromium() -> str | None:
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


class BrowserError(AssertionError):
    pass


class Chromium:
    def __init__(self, binary: str, *, width: int = 1180, height: int = 820, timeout: float = 30):
        self.profile = tempfile.TemporaryDirectory(prefix="expertbot-chromium-")
        args = [
            binary,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--remote-debugging-port=0",  # it writes the port it took to DevToolsActivePort
            f"--user-data-dir={self.profile.name}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        # A session of its own: close() ends the browser with all its helper processes.
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self.ws = None
        try:
            self._attach(timeout, width, height)
        except BaseException:
            self.close()
            raise

    def _attach(self, timeout: float, width: int, height: int) -> None:
        port = self._port(timeout)
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True
        )
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", **metrics)

    def _port(self, timeout: float) -> int:
        active = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited at start-up with status {self.proc.returncode}")
            if active.is_file() and (lines := active.read_text().split()):
                return int(lines[0])
            time.sleep(0.05)
        raise BrowserError(f"chromium did not open its DevTools port within {timeout} s")

    # -- the protocol ----------------------------------------------------------------------------------
    def call(self, method: str, **params) -> dict:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(params["entry"].get("text", ""))

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    # -- what a person does ----------------------------------------------------------------------------
    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_until(lambda: self.evaluate("document.readyState") == "complete", what=f"{url} to load")

    def text(self, selector: str = "body") -> str:
        """What is visible on the page, or in one part of it (innerText leaves out what CSS hides)."""
        return self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText")

    def wait_for_text(self, *needles: str, timeout: float = 120, within: str = "body") -> str:
        """Wait until every needle is visible (spaces and line breaks compared collapsed); the text."""
        found: list[str] = []
        wanted = [" ".join(n.split()) for n in needles]

        def seen() -> bool:
            found[:] = [self.text(within)]
            return all(n in " ".join(found[0].split()) for n in wanted)

        self.wait_until(seen, timeout=timeout, what=f"{needles!r} on the page", last=lambda: found[0])
        return found[0]

    def wait_until(self, check, *, timeout: float = 30, what: str = "a condition", last=None) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.errors:
                raise BrowserError(f"the page reported errors: {self.errors}")
            if time.monotonic() > deadline:
                tail = f"; the page showed:\n{last()}" if last else ""
                raise BrowserError(f"timed out after {timeout} s waiting for {what}{tail}")
            time.sleep(0.1)

    def click(self, selector: str, text: str | None = None, *, last: bool = False) -> None:
        """A real mouse click in the middle of the first (or last) visible element that matches selector
        and holds text."""
        args = ", ".join(json.dumps(a) for a in (selector, text, last))
        box = self.evaluate(f"({_CENTER_OF})({args})")
        if box is None:
            raise BrowserError(f"nothing visible matches {selector!r}" + (f" with {text!r}" if text else ""))
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, button="left", clickCount=1, **box)

    def type(self, text: str) -> None:
        self.call("Input.insertText", text=text)

    def choose(self, selector: str, value: str) -> None:
        """Pick an option of a <select> (a native drop-down is not drawn in headless mode)."""
        self.evaluate(
            f"(s => {{ s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})"
            f"(document.querySelector({json.dumps(selector)}))"
        )

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        Path(path).write_bytes(data)
        return data

    def close(self) -> None:
        try:
            if self.ws is not None:
                self.ws.close()
        finally:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(10)
                    break
                except subprocess.TimeoutExpired:
                    continue
            self.profile.cleanup()
