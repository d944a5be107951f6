"""Turning answers into Slack messages that are safe to post and fit Slack's limits.

Model output is untrusted text: escaping `&`, `<` and `>` turns `<!channel>`, `<!here>` and `<@U123>`
into literal text, and a zero-width space after `@` stops plain `@channel`/`@here` from notifying anyone.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

MAX_SECTION_CHARS = 3000  # Slack's limit for a section block's text
MAX_BLOCKS = 50  # Slack's limit per message
MAX_CONTEXT_ELEMENTS = 10
FEEDBACK_BLOCK_ID = "expertbot_feedback"
FEEDBACK_ACTIONS = {"feedback_up": "up", "feedback_down": "down"}
ZWSP = "\u200b"

_BROADCAST = re.compile(r"(?<![\w.])@(channel|here|everyone)\b", re.IGNORECASE)
_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_ENTITY_TAIL = re.compile(r"&[a-z]{0,3}$")


def escape(text: str) -> str:
    """Escape untrusted text for mrkdwn so it can never ping, link or mention anyone."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub(lambda m: "@" + ZWSP + m.group(1), text)


def strip_mentions(text: str, user_id: str | None = None) -> str:
    """Drop `<@user_id>` mentions (all mentions when user_id is None) from a user's message."""
    if user_id is None:
        return _MENTION.sub("", text).strip()
    return re.sub(rf"<@{re.escape(user_id)}(?:\|[^>]*)?>", "", text).strip()


def unescape(text: str) -> str:
    """Slack sends user text with &, < and > escaped; the model should see the characters."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def split_text(text: str, limit: int = MAX_SECTION_CHARS) -> list[str]:
    """Split (escaped) text into pieces of at most `limit` chars, at paragraph, line or word breaks."""
    pieces = []
    while len(text) > limit:
        window = text[:limit]
        cut = next((c for c in (window.rfind(b) for b in ("\n\n", "\n", " ")) if c >= limit // 2), -1)
        if cut < 0:  # no good break: cut hard, but never inside an &amp; entity
            cut = limit
            tail = _ENTITY_TAIL.search(window)
            if tail:
                cut = tail.start()
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text.strip() or not pieces:
        pieces.append(text)
    return pieces


def _safe_url(url: str | None) -> str | None:
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or any(c in url for c in "<>| \n"):
        return None
    return url.replace("&", "&amp;")


def source_label(source) -> str:
    label = escape(source.file) + (f" § {escape(source.section)}" if getattr(source, "section", "") else "")
    url = _safe_url(getattr(source, "url", None))
    # A `|` in the label would end the link text early; `¦` reads the same.
    return f"<{url}|{label.replace('|', '¦')}>" if url else label


def sources_block(sources) -> dict:
    labels = [source_label(s) for s in sources]
    text = "*Sources:* " + " · ".join(labels)
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": split_text(text)[0]}]}


def feedback_block(answer_id: str) -> dict:
    buttons = [
        {
            "type": "button",
            "action_id": action,
            "value": answer_id,
            "text": {"type": "plain_text", "text": emoji},
        }
        for action, emoji in (("feedback_up", "👍"), ("feedback_down", "👎"))
    ]
    return {"type": "actions", "block_id": FEEDBACK_BLOCK_ID, "elements": buttons}


USER_ID = re.compile(r"[UW][A-Z0-9]+")


def answer_messages(answer, answer_id: str) -> list[dict]:
    """The final answer as one or more messages ({"text", "blocks"}), each within Slack's limits.

    The last message carries the Sources context (unless the answer is a refusal) and the feedback
    buttons. `text` is the notification fallback: plain, escaped, first section only.
    """
    body = escape(answer.text.strip() or "I don't know.")
    fixed = getattr(answer, "correction", None)
    if fixed is not None and fixed.by and USER_ID.fullmatch(fixed.by):  # who corrected it, as a mention
        body = body.replace(f"Corrected by {fixed.by} on", f"Corrected by <@{fixed.by}> on")
    sections = [{"type": "section", "text": {"type": "mrkdwn", "text": p}} for p in split_text(body)]
    tail = []
    if answer.sources and not answer.refused:
        tail.append(sources_block(answer.sources))
    if getattr(answer, "adapter", None):
        tail.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"adapter: {escape(answer.adapter)}"}],
            }
        )
    tail.append(feedback_block(answer_id))
    per_message = MAX_BLOCKS - len(tail)
    chunks = [sections[i : i + per_message] for i in range(0, len(sections), per_message)]
    messages = [{"text": c[0]["text"]["text"], "blocks": c} for c in chunks]
    messages[-1]["blocks"] = messages[-1]["blocks"] + tail
    return messages


def partial_text(text: str) -> str:
    """What a message shows while the answer is still streaming."""
    escaped = escape(text.strip())
    if len(escaped) > MAX_SECTION_CHARS - 2:
        escaped = split_text(escaped, MAX_SECTION_CHARS - 2)[0]
    return (escaped + " …") if escaped else "_Thinking…_"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
