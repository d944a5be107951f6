"""Answering a mention or DM: placeholder at once, streamed updates, final answer with sources and buttons.

A message is answered once, however many events bring it (a DM that mentions the bot arrives as both
app_mention and message.im; a thread reply mentioning it as app_mention and message.channels).

Admission is cheap and bounded, in this order: a person past EXPERTBOT_USER_RATE questions a minute is
refused politely (and audited), and so is a question over EXPERTBOT_MAX_QUESTION_CHARS; then
`max_concurrent` answers generate at once and `queue_size` more may wait, and past that the user is told
straight away that the bot is busy rather than left waiting on a silent queue. An answer that runs past
EXPERTBOT_ANSWER_TIMEOUT is stopped and its asker told so; shutdown() tells everyone still waiting.
Every placeholder ends as an answer or a note (bot.slack.delivery).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from slack_sdk import WebClient

from bot.budget import too_long
from bot.links import DocLinks
from bot.slack.delivery import Delivery
from bot.slack.format import answer_messages, partial_text, strip_mentions, unescape
from bot.slack.limits import UserRate
from bot.slack.notes import (  # the notes are imported from here too
    APOLOGY,
    BUSY,
    EMPTY,
    NO_INDEX,
    PLACEHOLDER,
    RATE_LIMITED,
    RESTARTED,
    RESTARTING,
    TIMEOUT,
)
from bot.slack.threads import thread_history
from bot.store import Store
from indexers import NoIndexError

log = logging.getLogger(__name__)

NO_UNFURLS = {"unfurl_links": False, "unfurl_media": False}


class AnswerTimeout(Exception):
    pass


class Restarted(Exception):
    pass


@dataclass(eq=False)
class Job:
    """One question being answered: where its placeholder is, and how to stop it."""

    client: WebClient
    channel: str
    ts: str
    thread_ts: str
    user: str | None
    event_id: str | None
    foreign: bool = False  # from another workspace, or in a channel shared with one: public docs only
    message_ts: str | None = None  # the placeholder; None when posting it failed
    cancel: threading.Event = field(default_factory=threading.Event)  # stop generating
    items: queue.Queue = field(default_factory=queue.Queue)  # pieces, the outcome, or shutdown's wake-up
    done: threading.Event = field(default_factory=threading.Event)
    future: Future | None = None
    final: bool = False  # its final message was sent (or tried), by the answer or by shutdown


class AnswerFlow:
    def __init__(
        self,
        services,
        store: Store,
        *,
        max_concurrent: int = 1,
        queue_size: int = 4,
        update_interval: float = 1.0,
        links: DocLinks | None = None,
        answer_timeout: float = 120.0,
        user_rate: int = 0,
        max_question_chars: int | None = None,
    ):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent_answers must be a positive integer, got {max_concurrent}")
        if queue_size < 0:
            raise ValueError(f"answer_queue_size must be zero or more, got {queue_size}")
        if answer_timeout <= 0:
            raise ValueError(f"answer_timeout must be a positive number of seconds, got {answer_timeout}")
        self.services, self.store, self.update_interval = services, store, update_interval
        self.links = links  # sources -> URLs a reader can open (EXPERTBOT_DOCS_URL); None: names only
        self.answer_timeout, self.max_question_chars = answer_timeout, max_question_chars
        self.rate = UserRate(user_rate)
        self.delivery = Delivery(store)
        self._slots = threading.BoundedSemaphore(max_concurrent + queue_size)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="answer")
        self._bots: dict[str, bool] = {}
        self._lock = threading.Lock()  # guards _jobs, _closing and each Job.final
        self._jobs: set[Job] = set()
        self._closing = False

    def is_bot(self, client: WebClient, event: dict) -> bool:
        """Other apps' messages carry bot_id; some post as bot *users*, which only users.info reveals."""
        if event.get("bot_id") or event.get("subtype") == "bot_message":
            return True
        user = event.get("user")
        if not user:
            return True
        if user not in self._bots:
            try:
                info = client.users_info(user=user)["user"]
                self._bots[user] = bool(info.get("is_bot") or info.get("is_app_user"))
            except Exception:
                log.warning("users.info failed; treating the sender as a person", exc_info=True)
                return False
        return self._bots[user]

    def handle(
        self,
        client: WebClient,
        event: dict,
        *,
        bot_user_id: str | None,
        event_id: str | None,
        body: dict | None = None,
    ) -> None:
        """Runs in Bolt's listener thread, after the ack: admit the question, post a placeholder, queue it.
        body: the event's envelope, which says whether it comes from a shared channel or another team."""
        channel, ts, user = event["channel"], event["ts"], event.get("user")
        if not self.store.claim_event(f"message:{channel}:{ts}"):
            return  # another event for the same message got here first
        thread_ts = event.get("thread_ts") or ts

        def reply(text: str) -> None:
            self.delivery.post(client, channel, thread_ts, event_id, text=text)

        question = unescape(strip_mentions(event.get("text") or "", bot_user_id))
        if not question:
            return reply(EMPTY)
        if self._closing:
            return reply(RESTARTING)
        wait = self.rate.admit(user)
        if wait:
            self.store.audit(user or "?", "question", "rate_limited")  # who and when, never the text
            log.info("rate limit: not answering event %s", event_id)
            return reply(RATE_LIMITED.format(limit=self.rate.per_minute, wait=wait))
        refusal = too_long(question, self.max_question_chars)
        if refusal:  # before a slot is taken: a huge question costs a reply, nothing more
            log.info("refused event %s: a question of %d characters", event_id, len(question))
            return reply(refusal)
        if not self._slots.acquire(blocking=False):
            log.info("busy: not answering event %s", event_id)
            return reply(BUSY)
        job = Job(client, channel, ts, thread_ts, user, event_id, foreign=is_foreign(event, body or {}))
        try:
            job.message_ts = self._placeholder(job)
            with self._lock:
                closing = self._closing
                if not closing:
                    self._jobs.add(job)
                    job.future = self._pool.submit(self._answer, question, job, bot_user_id)
        except BaseException:
            self._slots.release()
            raise
        if closing:
            self._slots.release()
            self._finish(job, RESTARTED)

    def _placeholder(self, job: Job) -> str | None:
        try:
            posted = job.client.chat_postMessage(
                channel=job.channel, thread_ts=job.thread_ts, text=PLACEHOLDER, **NO_UNFURLS
            )
            return posted["ts"]
        except Exception:  # the answer is still posted when it is ready, as a new message
            log.warning("could not post the placeholder for event %s; answering anyway", job.event_id)
            return None

    def _answer(self, question: str, job: Job, bot_user_id: str | None) -> None:
        client, channel = job.client, job.channel
        try:
            if job.cancel.is_set():
                raise Restarted
            # Resolved once, here: the answer keeps these rules even if [scopes] changes meanwhile.
            access = self.services.access.resolve(client, channel=channel, user=job.user, shared=job.foreign)
            history = []
            if job.thread_ts != job.ts:
                history = self.history(client, channel, job.thread_ts, job.ts, bot_user_id, access.allowed)
            answer = self._generate(question, job, history, access.allowed)
            if self.links is not None:
                answer = replace(answer, sources=self.links.link(answer.sources))
            answer_id = uuid.uuid4().hex[:12]
            messages = answer_messages(answer, answer_id)
            sources = [] if answer.refused else [_source_record(s) for s in answer.sources]
            record = dict(
                channel=channel,
                thread_ts=job.thread_ts,
                asked_by=job.user,
                adapter=answer.adapter,
                sources=sources,
                refused=answer.refused,
                question=question,
                text=answer.text,
            )
            self.store.record_answer(
                answer_id, message_ts=job.message_ts, **record
            )  # before a click can come

            def moved(ts: str) -> None:  # posted anew: the buttons live there now
                self.store.record_answer(answer_id, message_ts=ts, **record)

            self._finish(job, messages[0]["text"], messages[0]["blocks"], moved=moved)
            for extra in messages[1:]:
                self.delivery.post(client, channel, job.thread_ts, job.event_id, **extra)
            log.info("answered event %s (answer %s, %d sources)", job.event_id, answer_id, len(sources))
        except Restarted:
            self._finish(job, RESTARTED)
        except AnswerTimeout:
            log.info("event %s: stopped the answer after %g s", job.event_id, self.answer_timeout)
            self._finish(job, TIMEOUT.format(seconds=self.answer_timeout))
        except NoIndexError:
            log.info("no index yet: could not answer event %s", job.event_id)
            self._finish(job, NO_INDEX)
        except Exception:
            # The user gets a short apology; the traceback goes to the logs, never the question's text.
            log.exception("answering event %s failed", job.event_id)
            self._finish(job, APOLOGY)
        finally:
            self._slots.release()
            with self._lock:
                self._jobs.discard(job)
            job.done.set()

    def _generate(self, question: str, job: Job, history: list[dict], allowed: frozenset[str] | None):
        """The checked Answer, streaming the draft into the placeholder meanwhile. The answer is made on
        a thread of its own, so the time limit and a shutdown hold even while the model is busy."""
        deadline = time.monotonic() + self.answer_timeout
        threading.Thread(
            target=self._produce,
            args=(question, history, allowed, job),
            name="answer-stream",
            daemon=True,
        ).start()
        text, last_update = "", time.monotonic()  # the placeholder counts as the first update
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                job.cancel.set()  # the producer closes the stream: the engine stops at its next token
                raise AnswerTimeout
            try:
                kind, value = job.items.get(timeout=left)
            except queue.Empty:
                continue
            if kind == "cancel":
                raise Restarted
            if kind == "error":
                raise value
            if kind == "done":
                return value
            text += value
            if time.monotonic() - last_update >= self.update_interval:
                self.delivery.update(job.client, job.channel, job.message_ts, partial_text(text))
                last_update = time.monotonic()

    def _produce(self, question: str, history: list[dict], allowed: frozenset[str] | None, job: Job) -> None:
        pieces = None
        try:
            if job.cancel.is_set():
                return
            stream = self.services.answerer.stream(question, history=history, allowed=allowed)
            pieces = iter(stream)
            for piece in pieces:
                if job.cancel.is_set():
                    return
                job.items.put(("piece", piece))
            job.items.put(("done", stream.result()))
        except BaseException as err:  # handed to the answer thread, which tells the user
            job.items.put(("error", err))
        finally:
            if pieces is not None:
                pieces.close()  # stops generation early when the answer was given up

    def _finish(self, job: Job, text: str, blocks=None, *, moved=None, client=None) -> str | None:
        """The job's final message in place of its placeholder, once (shutdown may race the answer)."""
        with self._lock:
            if job.final:
                return None
            job.final = True
        return self.delivery.final(
            client or job.client,
            channel=job.channel,
            thread_ts=job.thread_ts,
            placeholder_ts=job.message_ts,
            event_id=job.event_id,
            text=text,
            blocks=blocks,
            moved=moved,
        )

    def history(
        self,
        client: WebClient,
        channel: str,
        thread_ts: str,
        current_ts: str,
        bot_user_id: str | None,
        allowed: frozenset[str] | None = None,
    ) -> list[dict]:
        """The thread so far. Under a scope filter, the bot's earlier answers are kept only where the store
        shows that every source they cited may be read now: a guest in the thread, or rules that changed
        since, must not get a restricted answer back through the model."""
        keep = None
        if allowed is not None:
            cited = self.store.thread_sources(channel, thread_ts)

            def keep(ts: str) -> bool:
                sources = cited.get(ts)
                return sources is not None and all(
                    not s.get("scopes") or allowed & set(s["scopes"]) for s in sources
                )

        return thread_history(client, channel, thread_ts, current_ts, bot_user_id, keep=keep)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop taking questions, stop the answers in progress, and give every placeholder still waiting
        (answering or queued) its final message, RESTARTED; returns within about `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closing = True
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel.set()
            job.items.put(("cancel", None))  # wakes an answer waiting for the model's next piece
        self._pool.shutdown(wait=False, cancel_futures=True)
        for job in jobs:
            if job.future is not None and job.future.cancelled():  # queued: no answer thread will run
                self._finish(job, RESTARTED, client=_quick(job.client))
                with self._lock:
                    self._jobs.discard(job)
                job.done.set()
        for job in jobs:
            job.done.wait(max(0.0, deadline - time.monotonic()))
        for job in jobs:
            if not job.done.is_set():  # its thread is stuck (in the model or in Slack): say it for it
                self._finish(job, RESTARTED, client=_quick(job.client))
        log.info("answers shut down: %d in progress or queued were told to ask again", len(jobs))


def _quick(client: WebClient) -> WebClient:
    """A copy that tries once and gives up within seconds: shutdown must not hang on a Slack that is down."""
    return WebClient(
        token=client.token, base_url=client.base_url, timeout=2, logger=client.logger, retry_handlers=[]
    )


def is_foreign(event: dict, body: dict) -> bool:
    """A message from a Slack Connect channel, or by someone of another workspace than the one the
    envelope is for (the installed one)."""
    if body.get("is_ext_shared_channel"):
        return True
    team, home = event.get("user_team") or event.get("team"), body.get("team_id")
    return bool(team and home and team != home)


def _source_record(source) -> dict:
    record = {"file": source.file, "section": source.section, "scopes": list(source.scopes)}
    return {**record, "url": source.url} if getattr(source, "url", None) else record
