"""What the bot says when it does not answer, or not yet: the notes that stand in for an answer."""

from __future__ import annotations

from bot.budget import TOO_LONG, TOO_LONG_FOR_MODEL

PLACEHOLDER = "_Thinking…_"
BUSY = "I'm busy answering other questions right now. Please ask again in a minute."
APOLOGY = "Sorry, something went wrong while answering. The details are in the bot's logs."
EMPTY = "Ask me a question about our docs, for example: _How do I request a new laptop?_"
NO_INDEX = "I can't answer yet: the docs have not been indexed. An admin can build the index with `/reindex`."
TIMEOUT = (
    "Sorry, I stopped: this answer took longer than the {seconds:g} seconds I may spend on one. "
    "Please ask again, or ask a shorter question."
)
RATE_LIMITED = (
    "Please wait a moment: you have asked {limit} questions in the last minute, the most I answer for "
    "one person. You can ask again in {wait} seconds."
)
RESTARTED = "I was restarted before I could finish; please ask again."
RESTARTING = "I'm restarting right now; please ask again in a minute."
# The bot's notes are not answers: a thread's history leaves them out (the formatted ones by their start).
NOTES = (PLACEHOLDER, BUSY, APOLOGY, EMPTY, NO_INDEX, RESTARTED, RESTARTING)
NOTE_STARTS = tuple(t.split("{")[0] for t in (TIMEOUT, RATE_LIMITED, TOO_LONG, TOO_LONG_FOR_MODEL))


def is_note(text: str) -> bool:
    return text in NOTES or text.startswith(NOTE_STARTS)
