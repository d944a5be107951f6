"""Answering a mention or DM: placeholder at once, streamed updates, final answer with sources and buttons.

A message is answered once, however many events bring it (a DM that mentions the bot arrives as both
app_mention and message.im; a thread reply mentioning it as app_mention and message.channels).

Admission is bounded: `max_concurrent` answers generate at once and `queue_size` more may wait; past
that, the user is told straight away that the bot is busy rather than left waiting on a silent queue.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from slack_sdk import WebClient

from bot.links import DocLinks
from bot.slack.format import answer_messages, partial_text, strip_mentions, unescape
from bot.store import Store
from indexers import NoIndexError

log = logging.getLogger(__name__)

PLACEHOLDER = "_Thinking…_"
BUSY = "I'm busy answering other questions right now. Please ask again in a minute."
APOLOGY = "Sorry, something went wrong while answering. The details are in the bot's logs."
EMPTY = "Ask me a question about our docs, for example: _How do I request a new laptop?_"
NO_INDEX = "I can't answer yet: the docs have not been indexed. An admin can build the index with `/reindex`."
NO_UNFURLS = {"unfurl_links": False, "unfurl_media": False}
HISTORY_MESSAGES = 10  # earlier thread messages given to the model as context


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
    ):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent_answers must be a positive integer, got {max_concurrent}")
        if queue_size < 0:
            raise ValueError(f"answer_queue_size must be zero or more, got {queue_size}")
        self.services, self.store, self.update_interval = services, store, update_interval
        self.links = links  # sources -> URLs a reader can open (EXPERTBOT_DOCS_URL); None: names only
        self._slots = threading.BoundedSemaphore(max_concurrent + queue_size)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="answer")
        self._bots: dict[str, bool] = {}

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
        self, client: WebClient, event: dict, *, bot_user_id: str | None, event_id: str | None
    ) -> None:
        """Runs in Bolt's listener thread, after the ack: post a placeholder, queue the answer."""
        channel, ts = event["channel"], event["ts"]
        if not self.store.claim_event(f"message:{channel}:{ts}"):
            return  # another event for the same message got here first
        thread_ts = event.get("thread_ts") or ts
        question = unescape(strip_mentions(event.get("text") or "", bot_user_id))
        if not question:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=EMPTY, **NO_UNFURLS)
            return
        if not self._slots.acquire(blocking=False):
            log.info("busy: not answering event %s", event_id)
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=BUSY, **NO_UNFURLS)
            return
        try:
            posted = client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=PLACEHOLDER, **NO_UNFURLS
            )
            job = dict(
                channel=channel, ts=ts, thread_ts=thread_ts, message_ts=posted["ts"], user=event.get("user")
            )
            self._pool.submit(self._answer, client, question, job, bot_user_id, event_id)
        except BaseException:
            self._slots.release()
            raise

    def _answer(self, client: WebClient, question: str, job: dict, bot_user_id: str | None, event_id) -> None:
        channel, message_ts = job["channel"], job["message_ts"]
        last_update = time.monotonic()  # the placeholder counts as the first update
        try:
            history = []
            if job["thread_ts"] != job["ts"]:
                history = self.history(client, channel, job["thread_ts"], job["ts"], bot_user_id)
            stream = self.services.answerer.stream(question, history=history)
            text = ""
            for piece in stream:
                text += piece
                if time.monotonic() - last_update >= self.update_interval:
                    client.chat_update(channel=channel, ts=message_ts, text=partial_text(text))
                    last_update = time.monotonic()
            answer = stream.result()
            if self.links is not None:
                answer = replace(answer, sources=self.links.link(answer.sources))
            answer_id = uuid.uuid4().hex[:12]
            messages = answer_messages(answer, answer_id)
            sources = [] if answer.refused else [_source_record(s) for s in answer.sources]
            self.store.record_answer(
                answer_id,
                channel=channel,
                message_ts=message_ts,
                thread_ts=job["thread_ts"],
                asked_by=job["user"],
                adapter=answer.adapter,
                sources=sources,
                refused=answer.refused,
                question=question,
                text=answer.text,
            )
            client.chat_update(
                channel=channel, ts=message_ts, text=messages[0]["text"], blocks=messages[0]["blocks"]
            )
            for extra in messages[1:]:
                client.chat_postMessage(channel=channel, thread_ts=job["thread_ts"], **extra, **NO_UNFURLS)
            log.info("answered event %s (answer %s, %d sources)", event_id, answer_id, len(sources))
        except NoIndexError:
            log.info("no index yet: could not answer event %s", event_id)
            self._tell(client, channel, message_ts, NO_INDEX, event_id)
        except Exception:
            # The user gets a short apology; the traceback goes to the logs, never the question's text.
            log.exception("answering event %s failed", event_id)
            self._tell(client, channel, message_ts, APOLOGY, event_id)
        finally:
            self._slots.release()

    def _tell(self, client: WebClient, channel: str, message_ts: str, text: str, event_id) -> None:
        """Replace the placeholder with a note instead of an answer."""
        try:
            client.chat_update(channel=channel, ts=message_ts, text=text, blocks=[])
        except Exception:
            log.exception("could not post the note for event %s", event_id)

    def history(
        self, client: WebClient, channel: str, thread_ts: str, current_ts: str, bot_user_id: str | None
    ) -> list[dict]:
        """The thread's earlier messages as chat history: ours as assistant turns, people's as user turns."""
        try:
            replies = client.conversations_replies(channel=channel, ts=thread_ts, limit=100)["messages"]
        except Exception:
            # e.g. missing_scope for a private channel: answer without context rather than not at all.
            log.warning("conversations.replies failed; answering without the thread's context", exc_info=True)
            return []
        turns = []
        for msg in sorted(replies, key=lambda m: float(m["ts"])):
            if float(msg["ts"]) >= float(current_ts):
                break
            text = msg.get("text") or ""
            if msg.get("user") == bot_user_id and bot_user_id:
                if text in (PLACEHOLDER, BUSY, APOLOGY, EMPTY, NO_INDEX) or text.endswith(" …"):
                    continue
                turns.append({"role": "assistant", "content": unescape(text)})
            elif not (msg.get("bot_id") or msg.get("subtype")):
                content = unescape(strip_mentions(text, bot_user_id))
                if content:
                    turns.append({"role": "user", "content": content})
        return turns[-HISTORY_MESSAGES:]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _source_record(source) -> dict:
    record = {"file": source.file, "section": source.section}
    return {**record, "url": source.url} if getattr(source, "url", None) else record
