"""The playground's web server: the page, its state as JSON, and what the page sends (what `expertbot
serve` runs with no Slack tokens). Everything listens on 127.0.0.1 only unless --host says otherwise.

`run_playground` loads the models before it names the page's URL, so the first question is answered
without a cold start; a page opened earlier says it is warming up meanwhile.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from bot.playground.app import Playground
from bot.playground.page import PAGE
from bot.wiring import Services

SAMPLE_QUESTION = "How long does the Quillmate pairing last for a new starter?"  # examples/acme


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


def run_playground(services: Services, host: str = "127.0.0.1", port: int = 3000) -> None:
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
