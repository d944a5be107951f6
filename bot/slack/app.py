"""The Bolt app factory: the same app serves Socket Mode, HTTP mode, the playground and the tests."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import RandomJitter

from bot.jobs import JobRunner
from bot.links import DocLinks, doc_links
from bot.slack.answering import AnswerFlow
from bot.slack.context import CONTEXT_KEY, BotContext
from bot.slack.guard import install_guard
from bot.slack.jobreport import report_interrupted
from bot.slack.listeners import register_listeners
from bot.store import Store

if TYPE_CHECKING:
    from bot.wiring import Services

log = logging.getLogger(__name__)

FAULT_RETRIES = 3  # more tries for a connection error or a 5xx
RATE_LIMIT_RETRIES = 6  # more tries for a 429, each after the Retry-After Slack sends


def secret(value) -> str | None:
    """Settings keep tokens as pydantic SecretStr; plain strings work too."""
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def quiet_logger(name: str) -> logging.Logger:
    """slack_sdk and Bolt log request bodies (message text) at DEBUG: cap their loggers at INFO, also
    when logging is turned up to DEBUG later (the level is the logger's own, not inherited)."""
    logger = logging.getLogger(name)
    if logger.level < logging.INFO:  # NOTSET (0) would inherit the root's level
        logger.setLevel(logging.INFO)
    return logger


class _ServerErrorRetryHandler(ServerErrorRetryHandler):
    """slack_sdk's handler retries 500 and 503 only; a 502 or 504 from Slack's edge is as passing."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return response is not None and response.status_code >= 500


class _Jitter(RandomJitter):
    """Up to one backoff step of random jitter (slack_sdk's own adds up to a whole second each time)."""

    def __init__(self, scale: float):
        self.scale = scale

    def recalculate(self, duration: float) -> float:
        return duration + random.random() * self.scale


def web_client(token: str, base_url: str | None = None, *, backoff: float = 0.5) -> WebClient:
    """A WebClient that rides out Slack's bad moments with slack_sdk's own retry handlers: dropped or
    refused connections and 5xx three times more, after backoff*1, *2, *4 seconds (plus jitter), and a
    429 up to RATE_LIMIT_RETRIES times, waiting the Retry-After Slack asks for."""
    kwargs = {"base_url": base_url if base_url.endswith("/") else base_url + "/"} if base_url else {}
    wait = BackoffRetryIntervalCalculator(backoff_factor=backoff, jitter=_Jitter(backoff))
    handlers = [
        ConnectionErrorRetryHandler(max_retry_count=FAULT_RETRIES, interval_calculator=wait),
        _ServerErrorRetryHandler(max_retry_count=FAULT_RETRIES, interval_calculator=wait),
        RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
    ]
    return WebClient(token=token, logger=quiet_logger("bot.slack.web"), retry_handlers=handlers, **kwargs)


def build_app(
    services: Services,
    *,
    client: WebClient | None = None,
    signing_secret: str | None = None,
    admins: list[str] | None = None,
    store: Store | None = None,
    max_concurrent_answers: int | None = None,
    answer_queue_size: int | None = None,
    update_interval: float = 1.0,
    links: DocLinks | None = None,
    answer_timeout: float | None = None,
    user_rate: int | None = None,
) -> App:
    """A Bolt App answering mentions and DMs and running /reindex and /retrain-adapter.

    Everything not given comes from `services.settings`: the bot token and SLACK_API_URL (for the
    WebClient), the signing secret, the admins, the answer limits, the store under the data dir (keeping
    answers for EXPERTBOT_FEEDBACK_DAYS) and the citation links (EXPERTBOT_DOCS_URL).
    Building posts nothing and changes no stored state: start_up(app) does that, once serving starts.
    """
    settings = services.settings
    if client is None:
        token = secret(settings.slack_bot_token)
        if not token:
            raise ValueError("SLACK_BOT_TOKEN is not set; the bot needs it to post to Slack")
        client = web_client(token, settings.slack_api_url)
    if signing_secret is None:
        signing_secret = secret(settings.slack_signing_secret) or ""
    store = store or Store.in_home(settings.home, keep_days=settings.feedback_days, url=settings.database_url)
    if settings.scopes:  # `doctor` shows how old the user-group memberships the bot works from are
        services.access.on_fetch = store.record_usergroup_fetch
    jobs = JobRunner(store)
    answers = AnswerFlow(
        services,
        store,
        max_concurrent=max_concurrent_answers or settings.max_concurrent_answers,
        queue_size=settings.answer_queue_size if answer_queue_size is None else answer_queue_size,
        update_interval=update_interval,
        links=links or doc_links(settings),
        answer_timeout=answer_timeout or settings.answer_timeout,
        user_rate=settings.user_rate if user_rate is None else user_rate,
        max_question_chars=settings.max_question_chars,
    )
    bot = BotContext(
        services=services,
        store=store,
        jobs=jobs,
        answers=answers,
        admins=frozenset(settings.admins if admins is None else admins),
        update_interval=update_interval,
    )
    # Bolt checks the token with auth.test here and fails with BoltError when Slack rejects it. Signature
    # checks stay on even without a secret (then every HTTP request gets 401); Socket Mode skips them.
    app = App(
        signing_secret=signing_secret,
        client=client,
        logger=quiet_logger("bot.slack.bolt"),
        name="expertbot",
    )
    install_guard(app, bot)  # first: other workspaces and apps are refused; admins' roles checked live

    @app.middleware
    def attach_bot(context, next):
        context[CONTEXT_KEY] = bot
        next()

    @app.middleware
    def drop_duplicate_events(body, request, next):
        # Runs before the ack is returned, so a retry is settled before Slack hears back; the keys live
        # in SQLite, so a retry arriving after a restart is dropped too.
        if body.get("type") == "event_callback" and not _first_delivery(store, body):
            log.info(
                "ignored duplicate event %s (retry %s)",
                body.get("event_id"),
                request.headers.get("x-slack-retry-num"),
            )
            return BoltResponse(status=200, body="")
        next()

    register_listeners(app)
    app.expertbot = bot  # serve() reaches the answers and jobs through it to shut them down
    return app


def start_up(app: App) -> None:
    """What a bot does once before it takes events (serve and the playground call it): forget dedup keys
    and answers past their time, and mark the jobs a previous run left running as interrupted, telling
    their channels."""
    bot: BotContext = app.expertbot
    bot.store.forget_events_before(days=7)
    bot.store.forget_old_answers()
    report_interrupted(app.client, bot.jobs.recover_interrupted())


def _first_delivery(store: Store, body: dict) -> bool:
    # One message may also come as two events (app_mention and message.*): AnswerFlow.handle answers it
    # once. Not here, since the first of them to arrive may be one the bot does not answer.
    return store.claim_event(f"event:{body.get('event_id')}")
