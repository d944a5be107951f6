"""A Slack thread's earlier messages as chat history for the model."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk import WebClient

from bot.slack.format import strip_mentions, unescape
from bot.slack.notes import is_note

log = logging.getLogger(__name__)

HISTORY_MESSAGES = 10  # earlier thread messages given to the model as context


def thread_history(
    client: WebClient,
    channel: str,
    thread_ts: str,
    current_ts: str,
    bot_user_id: str | None,
    *,
    keep: Callable[[str], bool] | None = None,
) -> list[dict]:
    """The thread's messages before current_ts: the bot's answers as assistant turns (not its notes or
    half-streamed drafts), people's as user turns; other bots' messages are left out, and the bot's own
    where keep(ts) says no."""
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
            if is_note(text) or text.endswith(" …") or (keep is not None and not keep(msg["ts"])):
                continue
            turns.append({"role": "assistant", "content": unescape(text)})
        elif not (msg.get("bot_id") or msg.get("subtype")):
            content = unescape(strip_mentions(text, bot_user_id))
            if content:
                turns.append({"role": "user", "content": content})
    return turns[-HISTORY_MESSAGES:]
