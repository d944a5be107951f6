"""`expertbot serve`: Socket Mode with SLACK_APP_TOKEN, HTTP with --http, else the local playground.

Credential problems stop start-up with a SlackSetupError (a ValueError) whose message says what is
wrong and how to fix it; the CLI prints it without a traceback. Secrets never appear in the messages.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.app import build_app, quiet_logger, secret, web_client

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class SlackSetupError(ValueError):
    """Slack credentials missing, malformed or rejected, or a mode that cannot run with them."""


class MissingCredentialError(SlackSetupError):
    pass


class InvalidCredentialError(SlackSetupError):
    pass


def choose_mode(settings, http: bool) -> str:
    """'http', 'socket' or 'playground', from the --http flag and which tokens are set."""
    if http:
        return "http"
    if secret(settings.slack_app_token):
        return "socket"
    if secret(settings.slack_bot_token):
        raise SlackSetupError(
            "SLACK_BOT_TOKEN is set but there is no way to receive events: set SLACK_APP_TOKEN for "
            "Socket Mode, or run `expertbot serve --http` for HTTP mode (or unset SLACK_BOT_TOKEN to use "
            "the local playground)"
        )
    return "playground"


def check_credentials(settings, mode: str) -> tuple[str, str | None, str | None]:
    """(bot token, signing secret, app token) after checking their shape; nothing is sent to Slack yet."""
    token = secret(settings.slack_bot_token)
    if not token:
        raise MissingCredentialError(f"SLACK_BOT_TOKEN is required in {mode} mode (a bot token, xoxb-...)")
    if not token.startswith("xoxb-"):
        raise InvalidCredentialError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
    signing_secret = secret(settings.slack_signing_secret)
    app_token = secret(settings.slack_app_token)
    if mode == "http" and not signing_secret:
        raise MissingCredentialError(
            "SLACK_SIGNING_SECRET is required in HTTP mode: Bolt rejects requests it cannot verify "
            "(find it under Basic Information > App Credentials)"
        )
    if mode == "socket" and not app_token.startswith("xapp-"):
        raise InvalidCredentialError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
    return token, signing_secret, app_token


def verified_client(token: str, api_url: str | None):
    """A WebClient whose token Slack accepted (auth.test), or a clear error."""
    client = web_client(token, api_url)
    try:
        client.auth_test()
    except SlackApiError as exc:
        raise InvalidCredentialError(
            f"Slack rejected SLACK_BOT_TOKEN ({exc.response.get('error', 'unknown error')}); "
            "copy the Bot User OAuth Token from the app's OAuth & Permissions page"
        ) from None
    except (SlackClientError, OSError) as exc:
        where = api_url or "slack.com"
        raise SlackSetupError(f"could not reach the Slack API at {where}: {type(exc).__name__}") from None
    return client


def make_http_server(app: App, host: str = "127.0.0.1", port: int = 3000) -> ThreadingHTTPServer:
    """Slack's Events API, slash commands and interactivity, all on POST /slack/events."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args) -> None:
            log.debug("http: " + fmt, *args)

        def _send(self, status: int, body, headers: dict | None = None) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            for name, values in (headers or {}).items():
                for value in values if isinstance(values, list | tuple) else [values]:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            path, _, query = self.path.partition("?")
            if path != EVENTS_PATH:
                self._send(404, {"error": f"not found; Slack requests go to {EVENTS_PATH}"})
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
            resp = app.dispatch(BoltRequest(body=body, query=query, headers=dict(self.headers.items())))
            self._send(resp.status, resp.body, resp.headers)

        def do_GET(self) -> None:
            self._send(404, {"error": f"Slack requests are POSTs to {EVENTS_PATH}"})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_until_interrupted(server, on_close=None) -> None:
    """Serve until Ctrl+C, then close the socket (and whatever else on_close releases)."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if on_close:
            on_close()


def _warm_up_in_background(services) -> None:
    # Loading the models takes seconds (more with an adapter's LoRA to convert): do it while the bot
    # starts listening, not in the first asker's time. Services builds each part once, under a lock.
    threading.Thread(target=services.warm_up, name="expertbot-warm-up", daemon=True).start()


def serve(services, http: bool = False, host: str = "127.0.0.1", port: int = 3000) -> None:
    """Run the bot until interrupted. See the module docstring for how the mode is chosen."""
    settings = services.settings
    mode = choose_mode(settings, http)
    if mode == "playground":
        from bot.playground import run_playground

        run_playground(services, host=host, port=port)  # it warms up before it names its URL
        return
    token, signing_secret, app_token = check_credentials(settings, mode)
    client = verified_client(token, settings.slack_api_url)
    app = build_app(services, client=client, signing_secret=signing_secret or "")
    _warm_up_in_background(services)  # only once the credentials are known to work
    if mode == "http":
        server = make_http_server(app, host, port)
        log.info("expertbot listening on http://%s:%d%s", host, server.server_address[1], EVENTS_PATH)
        serve_until_interrupted(server)
        return
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(app, app_token, logger=quiet_logger("bot.slack.socket"))
    try:
        handler.connect()
    except SlackApiError as exc:
        raise InvalidCredentialError(
            f"Slack rejected SLACK_APP_TOKEN ({exc.response.get('error', 'unknown error')}); create an "
            "app-level token with the connections:write scope under Basic Information"
        ) from None
    log.info("expertbot connected to Slack in Socket Mode")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        handler.close()
