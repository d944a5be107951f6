"""Getting the bot's replies into Slack when Slack misbehaves, and keeping a record when it cannot.

The WebClient already retries server errors, dropped connections and 429s (bot.slack.app.web_client), so
what fails here has failed for good. A placeholder is never left behind: when its final edit fails the
reply is posted as a new message in the thread and the placeholder deleted, and a reply whose
placeholder could not even be posted is posted all the same. When nothing gets through, the event is
recorded in the store (failed_deliveries: the event, the channel, the Slack method and error, never
the text), for `expertbot doctor` and `/reindex status`.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.format import escape
from bot.store import Store

log = logging.getLogger(__name__)

NO_UNFURLS = {"unfurl_links": False, "unfurl_media": False}
REPORT_DAYS = 7  # how far back doctor and /reindex status look


def failure_reason(method: str, err: BaseException) -> str:
    """The Slack method and what went wrong, in words an admin can act on; never the request's text."""
    if isinstance(err, SlackApiError):
        response = err.response
        status = getattr(response, "status_code", None)
        data = response.data if isinstance(getattr(response, "data", None), dict) else {}
        code = data.get("error") if isinstance(data.get("error"), str) else None
        if code and status not in (None, 200):
            return f"{method}: {code} (HTTP {status})"
        return f"{method}: {code}" if code else f"{method}: HTTP {status}"
    if isinstance(err, URLError | OSError | http.client.HTTPException):
        why = getattr(err, "reason", None) or err
        name = type(why).__name__ if isinstance(why, BaseException) else str(why)[:80]
        return f"{method}: Slack could not be reached ({name})"
    return f"{method}: {type(err).__name__}"


class Delivery:
    def __init__(self, store: Store):
        self.store = store

    def failed(self, event_id: str | None, channel: str, reason: str) -> None:
        log.warning("could not deliver the reply to event %s: %s", event_id, reason)
        try:
            self.store.record_failed_delivery(event_id, channel, reason)
        except Exception:  # the store is the last resort: a failure there must not hide the first one
            log.exception("could not record the failed delivery of event %s", event_id)

    def post(
        self, client: WebClient, channel: str, thread_ts: str | None, event_id: str | None, **message
    ) -> str | None:
        """Post message in the thread; the new message's ts, or None (recorded as a failed delivery)."""
        message = {k: v for k, v in message.items() if v or k == "text"}  # no empty blocks list
        try:
            posted = client.chat_postMessage(channel=channel, thread_ts=thread_ts, **message, **NO_UNFURLS)
            return posted["ts"]
        except Exception as err:
            self.failed(event_id, channel, failure_reason("chat.postMessage", err))
            return None

    def update(self, client: WebClient, channel: str, ts: str | None, text: str) -> None:
        """Best effort: a streamed answer's intermediate text (the final edit comes later anyway)."""
        if ts is None:
            return
        try:
            client.chat_update(channel=channel, ts=ts, text=text)
        except Exception as err:
            log.info("skipped an update of a streamed answer: %s", failure_reason("chat.update", err))

    def final(
        self,
        client: WebClient,
        *,
        channel: str,
        thread_ts: str,
        placeholder_ts: str | None,
        event_id: str | None,
        text: str,
        blocks: list | None = None,
        moved: Callable[[str], None] | None = None,
    ) -> str | None:
        """Put the final message where the placeholder is: edit it, else post it anew in the thread and
        delete the placeholder (calling moved(new ts) first). Returns the ts of the message that holds
        it, or None (recorded as a failed delivery)."""
        if placeholder_ts is not None:
            try:
                client.chat_update(channel=channel, ts=placeholder_ts, text=text, blocks=blocks or [])
                return placeholder_ts
            except Exception as err:
                why = failure_reason("chat.update", err)
                log.warning("could not edit the placeholder of event %s (%s); posting anew", event_id, why)
        ts = self.post(client, channel, thread_ts, event_id, text=text, blocks=blocks)
        if ts is not None and moved is not None:
            moved(ts)
        if ts is not None and placeholder_ts is not None:
            try:
                client.chat_delete(channel=channel, ts=placeholder_ts)
            except Exception as err:
                log.info("left the placeholder of event %s: %s", event_id, failure_reason("chat.delete", err))
        return ts


def failures_text(store: Store, days: float = REPORT_DAYS, shown: int = 3) -> str:
    """Recent failed deliveries in a few lines (Slack mrkdwn), or "" when there were none."""
    count = store.count_failed_deliveries(days)
    if not count:
        return ""
    replies = "1 reply" if count == 1 else f"{count} replies"
    lines = [f"*{replies} could not be delivered to Slack in the last {days:g} days.* Latest:"]
    for f in store.failed_deliveries(days, limit=shown):
        when = f["at"][:19].replace("T", " ")
        lines.append(f"• {when} UTC in <#{escape(f['channel'])}>: {escape(f['reason'])}")
    return "\n".join(lines)
