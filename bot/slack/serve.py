"""`expertbot serve`: Socket Mode with SLACK_APP_TOKEN, HTTP with --http, else the local playground.

The playground (bot.playground) is built on this package, so it is handed in by the caller (the CLI)
rather than imported here.

Credential problems stop start-up with a SlackSetupError (a ValueError) whose message says what is
wrong and how to fix it; the CLI prints it without a traceback. Secrets never appear in the messages.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.app import build_app, quiet_logger, secret, start_up, web_client
from bot.slack.http import EVENTS_PATH, SlackHTTPServer
from bot.wiring import Services, prepare_process

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_DEADLINE_S = 8.0  # after a stop signal the process is gone by then (SIGTERM: gone in 10 s)
SOCKET_CLOSE_S = 2.0  # what closing the Socket Mode connection may take of that


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


class Stop:
    """Set by SIGINT/SIGTERM (or stop()): serve() then shuts down in order instead of dying mid-request.

    The signal handler only sets a flag (the main thread may hold any lock when a signal arrives, so
    it takes none); the serving loops poll it."""

    def __init__(self):
        self.at: float | None = None  # time.monotonic() of the first stop request
        self.over = False  # serve() returned without being stopped (a start-up error): nothing to do

    def stop(self, why: str = "stop requested") -> None:
        if self.at is not None:
            log.info("%s: already stopping", why)
            return
        self.at = time.monotonic()
        log.info("%s: stopping", why)

    def wait(self, tick: float = 0.25) -> None:
        while self.at is None:
            time.sleep(tick)


@contextmanager
def stop_on_signals(stop: Stop):
    """While inside, SIGINT and SIGTERM call stop.stop(), and the process ends EXIT_DEADLINE_S after
    the first of them whatever is still running. Only the main thread can take signals: elsewhere this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: stop.stop(f"{signal.Signals(signum).name} received"))
        for sig in STOP_SIGNALS
    }
    # Started now, not from the handler (starting a thread takes locks the main thread may hold then).
    threading.Thread(target=_exit_after, args=(stop,), name="expertbot-exit-deadline", daemon=True).start()
    try:
        yield stop
    finally:
        stop.over = stop.at is None
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_after(stop: Stop) -> None:
    """Once stopping, end the process at the deadline: a thread stuck in a Slack call (or anything else
    that ignores the stop) must not keep a stopped bot alive. Being a daemon, this thread dies quietly
    with a process that exits in time."""
    while stop.at is None:
        if stop.over:
            return
        time.sleep(0.25)
    time.sleep(max(0.0, stop.at + EXIT_DEADLINE_S - time.monotonic()))
    me = threading.current_thread()
    busy = [t.name for t in threading.enumerate() if t is not me and t is not threading.main_thread()]
    log.warning("still busy %g s after the stop signal (%s); exiting without waiting for them",
                EXIT_DEADLINE_S, ", ".join(busy) or "interpreter shutdown")  # fmt: skip
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(0)


def shut_down(app, stop: Stop) -> None:
    """Tell in-flight answers and running jobs (side by side: both post to Slack), in the time left
    before the deadline, which starts at the stop signal."""
    bot = app.expertbot
    deadline = (stop.at or time.monotonic()) + EXIT_DEADLINE_S - 0.5
    left = deadline - time.monotonic()
    steps = [
        # The answers' placeholders get RESTARTED once their threads had `timeout` to end by themselves.
        ("answers", lambda: bot.answers.shutdown(timeout=max(0.5, min(5.0, left - 1.0)))),
        # Jobs still running then are marked interrupted (their lock freed), then up to 2 s to say so.
        ("jobs", lambda: bot.jobs.shutdown(timeout=max(0.5, min(3.0, left - 3.0)))),
    ]
    workers = [_start_quietly(f"stopping the {name}", step) for name, step in steps]
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    log.info("expertbot stopped")


def _start_quietly(what: str, step) -> threading.Thread:
    def run() -> None:
        try:
            step()
        except Exception:
            log.exception("%s failed", what)

    worker = threading.Thread(target=run, name=what.replace(" ", "-"), daemon=True)
    worker.start()
    return worker


def _within(seconds: float, what: str, step) -> None:
    """Run step, but wait for it `seconds` at most (it goes on in a daemon thread)."""
    worker = _start_quietly(what, step)
    worker.join(seconds)
    if worker.is_alive():
        log.warning("%s took more than %g s; going on without it", what, seconds)


def _warm_up_in_background(services: Services) -> None:
    # Loading the models takes seconds (more with an adapter's LoRA to convert): do it while the bot
    # starts listening, not in the first asker's time. Services builds each part once, under a lock.
    threading.Thread(target=services.warm_up, name="expertbot-warm-up", daemon=True).start()


def serve(
    services: Services,
    http: bool = False,
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    playground: Callable[..., None] | None = None,
) -> None:
    """Run the bot until SIGINT or SIGTERM, then stop within 10 s: stop taking requests, give in-flight
    answers and running jobs their final message, release the job locks. See the module docstring for
    how the mode is chosen. playground(services, host=, port=): what runs without Slack tokens
    (bot.playground.run_playground)."""
    prepare_process()
    mode = choose_mode(services.settings, http)
    if mode == "playground":
        if playground is None:
            raise SlackSetupError(
                "no Slack tokens are set and no playground was handed in: set SLACK_BOT_TOKEN and "
                "SLACK_APP_TOKEN for Socket Mode, or SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET with http=True"
            )
        playground(services, host=host, port=port)  # it warms up before it names its URL
        return
    with stop_on_signals(Stop()) as stop:  # from here on a signal means "stop in order", even mid-start-up
        _serve_slack(services, mode, host, port, stop)


def _serve_slack(services: Services, mode: str, host: str, port: int, stop: Stop) -> None:
    settings = services.settings
    token, signing_secret, app_token = check_credentials(settings, mode)
    client = verified_client(token, settings.slack_api_url)
    app = build_app(services, client=client, signing_secret=signing_secret or "")
    start_up(app)
    if mode == "http":
        _warm_up_in_background(services)  # only once the credentials are known to work
        server = SlackHTTPServer(app, signing_secret, host, port)
        log.info("expertbot listening on http://%s:%d%s", *server.address, EVENTS_PATH)
        try:
            server.serve_forever(until=lambda: stop.at is not None)
        finally:
            shut_down(app, stop)
        return
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    # The built-in client notices a socket that died without a close frame only when its pings fail or
    # go unanswered (4 intervals), and spins a core meanwhile: with Bolt's 10 s default a cut connection
    # went deaf for ~50 s; with 3 s it reconnects in 3-18 s (tests/bot/test_socket_mode.py).
    handler = SocketModeHandler(app, app_token, logger=quiet_logger("bot.slack.socket"), ping_interval=3)
    try:
        handler.connect()
    except SlackApiError as exc:
        raise InvalidCredentialError(
            f"Slack rejected SLACK_APP_TOKEN ({exc.response.get('error', 'unknown error')}); create an "
            "app-level token with the connections:write scope under Basic Information"
        ) from None
    # Only once Slack took the app token too: exiting while the models load in native code aborts the
    # process (SIGABRT, "exception not rethrown") instead of printing the error and exiting 1.
    _warm_up_in_background(services)
    log.info("expertbot connected to Slack in Socket Mode")
    try:
        stop.wait()
    finally:
        # slack_sdk's close() joins its threads with no timeout, and hung now and then in the tests when
        # the stop came right after connecting: give it SOCKET_CLOSE_S (its threads are daemons).
        _within(SOCKET_CLOSE_S, "closing the Socket Mode connection", handler.close)
        shut_down(app, stop)
