"""Experts' corrections from Slack (issue 16): 👎 opens a modal, and what is submitted there becomes a
correction (bot/corrections.py).

An expert's correction (EXPERTBOT_EXPERTS: user ids or S… user groups; the admins count too) is approved
at once; anyone else's waits, and each expert gets a DM with the question, the bot's answer, the proposed
correction and Approve / Reject buttons. Who is an expert: bot/slack/experts.py (fails closed).
Every step is audited by user and correction id; no text goes to the logs or the audit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.corrections import MAX_CHARS, CorrectionError, check_text
from bot.slack.experts import is_expert, reviewers
from bot.slack.format import USER_ID, escape, split_text

log = logging.getLogger(__name__)

CALLBACK_ID = "expertbot_correction"
TEXT_BLOCK, TEXT_ACTION = "correction", "text"
SOURCE_BLOCK, SOURCE_ACTION = "source", "path"
REVIEW_BLOCK = "expertbot_correction_review"
REVIEW_ACTIONS = {"correction_approve": "approved", "correction_reject": "rejected"}
SHOWN_CHARS = 2800  # of each text in a DM's section (Slack's limit is 3000)

LIVE = "Thanks — your correction is live."
PENDING = "Thanks — an expert will review it."
NO_REVIEWER = " No expert could be messaged; an admin finds it with `expertbot corrections list --pending`."
FAILED = "Sorry, your correction could not be saved. Please try again in a while."
NOT_EXPERT = "Only the bot's experts (EXPERTBOT_EXPERTS, and its admins) can approve or reject corrections."
GONE = "The answer you marked is no longer kept, so it can't be corrected. Ask again and correct the new one."
REVIEW_TEXT = "A correction of one of the bot's answers waits for your review."


class Refused(Exception):
    """A submission the modal sends back: `shown` under the input `block_id`, `why` for the audit."""

    def __init__(self, block_id: str, shown: str, why: str):
        super().__init__(why)
        self.block_id, self.shown, self.why = block_id, shown, why


@dataclass(frozen=True)
class Submission:
    user: str
    answer_id: str
    channel: str | None
    thread_ts: str | None
    question: str
    bot_answer: str
    text: str
    source: str | None
    asked_by: str | None = None
    sources: list[dict] = field(default_factory=list)  # the corrected answer's, each with its scopes


# -- the modal ---------------------------------------------------------------------------------------
def modal(answer_id: str, channel: str | None, thread_ts: str | None, question: str | None) -> dict:
    meta = json.dumps({"answer_id": answer_id, "channel": channel, "thread_ts": thread_ts})
    shown = [] if not question else [_context("*Question:* " + _clip(escape(question), 500))]
    text_input = {"type": "plain_text_input", "action_id": TEXT_ACTION, "multiline": True,
                  "max_length": MAX_CHARS}  # fmt: skip
    source_input = {"type": "plain_text_input", "action_id": SOURCE_ACTION, "max_length": 500}
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": _plain("Correct this answer"),
        "submit": _plain("Send"),
        "close": _plain("Cancel"),
        "private_metadata": meta,
        "blocks": shown
        + [
            {
                "type": "input",
                "block_id": TEXT_BLOCK,
                "element": text_input,
                "label": _plain("What would the right answer be?"),
            },
            {
                "type": "input",
                "block_id": SOURCE_BLOCK,
                "optional": True,
                "element": source_input,
                "label": _plain("Source document"),
                "hint": _plain("A path in the docs folder, such as handbook/onboarding.md"),
            },
        ],
    }


def open_modal(client: WebClient, store, trigger_id: str | None, *, answer_id: str, channel: str | None,
               thread_ts: str | None) -> bool:  # fmt: skip
    """Open the correction modal for the click that gave `trigger_id`; False when Slack would not."""
    question = (store.answer_text(answer_id) or {}).get("question")
    try:
        client.views_open(trigger_id=trigger_id, view=modal(answer_id, channel, thread_ts, question))
    except Exception as e:  # noqa: BLE001 - the caller thanks the user instead
        log.warning("views.open failed for answer %s (%s)", answer_id, _reason(e))
        return False
    return True


def read_submission(bot, body: dict, view: dict) -> Submission:
    """The submitted correction, checked; raises Refused for the modal to show why."""
    meta = _json(view.get("private_metadata"))
    values = (view.get("state") or {}).get("values") or {}
    text = ((values.get(TEXT_BLOCK) or {}).get(TEXT_ACTION) or {}).get("value") or ""
    source = (((values.get(SOURCE_BLOCK) or {}).get(SOURCE_ACTION) or {}).get("value") or "").strip()
    answer_id = str(meta.get("answer_id") or "")
    record = bot.store.answer(answer_id) if answer_id else None
    texts = bot.store.answer_text(answer_id) if record else None
    if not texts or not texts["question"].strip():
        raise Refused(TEXT_BLOCK, GONE, "answer no longer kept")
    try:
        text = check_text("correction", text)
    except CorrectionError as e:
        raise Refused(TEXT_BLOCK, _sentence(str(e)), str(e)) from None
    if source:
        why = _bad_source(bot.services.settings.docs_dir, source)
        if why:
            raise Refused(SOURCE_BLOCK, why, "no such source document")
    return Submission(
        body["user"]["id"], answer_id, meta.get("channel"), meta.get("thread_ts"), texts["question"],
        texts["answer"], text, source or None, record.get("asked_by"), record.get("sources") or [],
    )  # fmt: skip


# -- after the modal closed ----------------------------------------------------------------------------
def submit(bot, client: WebClient, s: Submission) -> None:
    """Store the correction (approved at once for an expert), tell its author, and DM the experts."""
    expert = is_expert(bot, client, s.user)
    try:
        correction = bot.services.corrections.add(
            s.question, s.text, by=s.user, source=s.source, scopes=_scopes(bot, client, s),
            approved=expert, answer_id=s.answer_id,
        )  # fmt: skip
    except Exception:  # checked before the ack: what is left is the database or the embedder
        log.exception("storing a correction of answer %s failed", s.answer_id)
        bot.store.audit(s.user, "correction", "failed")
        _tell(client, s.channel, s.user, s.thread_ts, FAILED)
        return
    if expert:
        bot.store.audit(s.user, "correction", f"approved {correction.id}")
        log.info("correction %s of answer %s approved at once (an expert's)", correction.id, s.answer_id)
        _tell(client, s.channel, s.user, s.thread_ts, LIVE)
        return
    bot.store.audit(s.user, "correction", f"proposed {correction.id}")
    sent = notify_reviewers(bot, client, correction, s.bot_answer, s.channel)
    log.info("correction %s of answer %s pending; %d experts told", correction.id, s.answer_id, sent)
    _tell(client, s.channel, s.user, s.thread_ts, PENDING + ("" if sent else NO_REVIEWER))


def notify_reviewers(bot, client: WebClient, correction, bot_answer: str, channel: str | None) -> int:
    """DM each expert the correction with Approve / Reject; returns how many DMs went out."""
    blocks = review_blocks(correction, bot_answer, channel)
    sent = 0
    for reviewer in reviewers(bot, client):
        try:
            dm = client.conversations_open(users=reviewer)["channel"]["id"]
            posted = client.chat_postMessage(channel=dm, text=REVIEW_TEXT, blocks=blocks)
            sent += 1
            bot.services.corrections.record_review(correction.id, dm, posted["ts"])  # to show the verdict
        except Exception as e:  # noqa: BLE001 - the others are still told
            log.warning(
                "could not DM expert %s about correction %s (%s)", reviewer, correction.id, _reason(e)
            )
    return sent


def decide(bot, client: WebClient, body: dict, action: dict) -> None:
    """Approve / Reject clicked under a correction: an expert's click decides it, anyone else's is refused."""
    user, correction_id = body["user"]["id"], str(action.get("value") or "")
    verdict = REVIEW_ACTIONS[action["action_id"]]
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    ts = (body.get("message") or {}).get("ts") or (body.get("container") or {}).get("message_ts")
    if not is_expert(bot, client, user):
        bot.store.audit(user, "correction", f"refused: not an expert ({verdict} {correction_id})")
        _tell(client, channel, user, None, NOT_EXPERT)
        return
    corrections = bot.services.corrections
    try:
        current = corrections.get(correction_id)
        if current.status != "pending":
            bot.store.audit(user, "correction", f"refused: already {current.status} ({correction_id})")
            _tell(client, channel, user, None, f"This correction was already {current.status}.")
            done, who = current, None
        else:
            decided = corrections.approve if verdict == "approved" else corrections.reject
            done, who = decided(correction_id, by=user), user
            bot.store.audit(user, "correction", f"{verdict} {correction_id}")
            log.info("correction %s %s by %s", correction_id, verdict, user)
    except CorrectionError as e:
        bot.store.audit(user, "correction", f"refused: {e}")
        _tell(client, channel, user, None, _sentence(str(e)))
        return
    record = bot.store.answer(done.answer_id) if done.answer_id else None
    bot_answer = (bot.store.answer_text(done.answer_id) or {}).get("answer") if record else None
    blocks = review_blocks(done, bot_answer, (record or {}).get("channel"), decided=(done.status, who))
    # This click's message, and where it decided, every other expert's DM about it: no one reviews it twice.
    shown = {(channel, ts)} if channel and ts else set()
    if who is not None:
        shown |= set(corrections.reviews(correction_id))
    for where, when in sorted(shown):
        try:
            client.chat_update(channel=where, ts=when, text=f"Correction {done.status}.", blocks=blocks)
        except Exception as e:  # noqa: BLE001 - decided all the same
            log.warning("could not update a review of correction %s (%s)", correction_id, _reason(e))


def review_blocks(correction, bot_answer: str | None, channel: str | None,
                  decided: tuple[str, str | None] | None = None) -> list[dict]:  # fmt: skip
    """The DM an expert gets: who proposed what, for which question; then the buttons or the verdict."""
    where = "in a DM" if not channel or channel.startswith("D") else f"in <#{channel}>"
    shown = "(no longer kept)" if bot_answer is None else _clip(escape(bot_answer or "I don't know."))
    blocks = [
        _section(f"{_who(correction.by)} proposes a correction of an answer {where}:"),
        _section("*Question*\n" + _clip(escape(correction.question))),
        _section("*The bot's answer*\n" + shown),
        _section("*Proposed correction*\n" + _clip(escape(correction.answer))),
        _context(
            f"Correction `{correction.id}`"
            + (f" · source: {escape(correction.source)}" if correction.source else "")
        ),
    ]
    if decided is None:
        buttons = [
            {
                "type": "button",
                "action_id": action,
                "value": correction.id,
                "style": style,
                "text": _plain(label),
            }
            for action, label, style in (
                ("correction_approve", "Approve", "primary"),
                ("correction_reject", "Reject", "danger"),
            )
        ]
        return blocks + [{"type": "actions", "block_id": REVIEW_BLOCK, "elements": buttons}]
    status, who = decided
    icon = {"approved": "✅", "rejected": "❌"}.get(status, "•")
    return blocks + [_context(f"{icon} {status.capitalize()}" + (f" by {_who(who)}" if who else ""))]


# -- helpers -------------------------------------------------------------------------------------------
def _scopes(bot, client: WebClient, s: Submission) -> tuple[str, ...]:
    """Where the correction may be used: the scopes of the documents the answer cited and of the source
    given; for an answer from no document, those granted where it was asked (never wider than that)."""
    from indexers.scopes import scopes_of

    found = {scope for src in s.sources for scope in src.get("scopes") or ()}
    if s.source:
        found |= set(scopes_of(s.source, bot.services.index_config.scopes))
    if not found and s.channel:
        allowed = bot.services.access.resolve(client, channel=s.channel, user=s.asked_by).allowed
        found = set(allowed or ())
    return tuple(sorted(found))


def _bad_source(docs_dir: Path, source: str) -> str | None:
    rel = PurePosixPath(source)
    if rel.is_absolute() or ".." in rel.parts:
        return "Give a path inside the docs folder, such as handbook/onboarding.md."
    root = Path(docs_dir).resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return f"There is no document {_clip(source, 200)} in the docs folder."
    return None


def _tell(client: WebClient, channel: str | None, user: str, thread_ts: str | None, text: str) -> None:
    if not channel:
        return
    extra = {"thread_ts": thread_ts} if thread_ts else {}
    try:
        client.chat_postEphemeral(channel=channel, user=user, text=text, **extra)
    except Exception as e:  # noqa: BLE001 - a lost note is no reason to fail the step
        log.warning("could not tell %s about their correction (%s)", user, _reason(e))


def _who(user: str | None) -> str:
    return f"<@{user}>" if user and USER_ID.fullmatch(user) else escape(user or "someone")


def _clip(text: str, limit: int = SHOWN_CHARS) -> str:
    pieces = split_text(text, limit)
    return pieces[0] + (" …" if len(pieces) > 1 else "")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _json(value) -> dict:
    try:
        loaded = json.loads(value or "{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _reason(e: Exception) -> str:
    if isinstance(e, SlackApiError):
        return str(e.response.get("error") or e.response.status_code)
    return type(e).__name__
