"""Whether an answer stands on its evidence: the numbers, names and options a small model invents are
caught here, and a draft that does not stand is replaced by the evidence itself, quoted.

Also the question's own names: a question about something no retrieved chunk mentions is answered "I
don't know" before the model is asked.
"""

from __future__ import annotations

import re

from indexers.facts import offers_what_is_asked

IDK = "I don't know."
_IDK_PATTERN = re.compile(r"^\W*(i\s+(do\s+not|don'?t|dont)\s+know|i'?m not sure|i cannot find)", re.I)
QUOTE_PREFIX = "From the docs: "


def is_idk(text: str) -> bool:
    return bool(_IDK_PATTERN.match(text.strip()))


_NUMBER = r"(?<![\w.-])\d(?:[\d,.:]*\d)?%?"  # a number of its own, not the 64 of base64 or the 2 of v2
_NAME = r"[A-Z][\w-]*[A-Z0-9][\w-]*|(?<=[a-z,;:] )[A-Z][\w-]+"  # acronyms/codes, or capitalised mid-sentence
_OPTION = r"(?<![\w-])--?[A-Za-z][\w-]*"  # -t, --keep-index
_IDENTIFIER = r"\b[a-z]\w*(?:[._]\w+)+\b"  # gc.auto, mod_deflate, core.html
_CHECKED = re.compile(f"{_OPTION}|{_IDENTIFIER}|{_NUMBER}|{_NAME}")
_TOKENS = re.compile(f"{_OPTION}|{_IDENTIFIER}|{_NUMBER}|[A-Za-z][\\w-]*")
_PREAMBLE = re.compile(r"^(the (correct )?answer is|answer)\s*:\s*", re.I)
_CONTENT = re.compile(r"[A-Za-z0-9][\w.-]*")
_FILLER = frozenset(
    "a an and are as at be by can do does for from how i if in is it its of on or that the this to use "
    "used uses what when where which who why will with you your not no yes".split()
)


def _checked(text: str) -> list[str]:
    return [t.rstrip(".,:") for t in _CHECKED.findall(text)]


def ungrounded(text: str, facts: list[str]) -> list[str]:
    """Numbers, names, options and identifiers in text that no fact contains as a whole token: what a
    small model invents. Whole tokens, so "35" is not supported by "350"; names only mid-sentence, so a
    capital that merely starts a sentence is not flagged."""
    known = set().union(*(_known(f) for f in facts))
    return [t for t in _checked(text) if t not in known]


def _known(fact: str) -> set[str]:
    """The tokens a fact vouches for: its words and, scanned the same way as an answer, its checked
    tokens ("node.conf" inside "munin-node.conf" reads the same in both)."""
    fact = fact.replace("**", "")
    return {t.rstrip(".,:") for t in _TOKENS.findall(fact)} | set(_checked(fact))


def _content_words(text: str) -> set[str]:
    return {w.lower().rstrip(".") for w in _CONTENT.findall(text)} - _FILLER


def ground(text: str, facts: list[str], question: str = "") -> tuple[str, list[int]]:
    """(the answer to show, the indexes of the facts it stands on, the quoted one first).

    The model's draft stays when every number, name and option in it is in the facts, it says
    something the question did not and it offers what was asked for (an option, a number), with the
    fact that supports it best quoted beneath; otherwise the
    best fact itself is the answer, quoted, so no invented figure and no restated question is ever the
    final answer (Slack shows the raw draft while it streams, then replaces it with this). A draft that
    says "I don't know" stays one, standing on nothing."""
    text = _PREAMBLE.sub("", text).strip().strip('"').strip()
    if not text or is_idk(text):
        return (text or IDK), []
    informative = bool(_content_words(text) - _content_words(question) - _content_words(IDK))
    if ungrounded(text, facts) or not informative or not offers_what_is_asked(question, text):
        return QUOTE_PREFIX + facts[0], [0]
    wanted = set(_checked(text))
    tokens = [_known(f) for f in facts]
    # The fact holding most of the draft's numbers, names and options; ties, and a draft of plain words
    # that cannot be checked, get the best-ranked fact: the evidence is shown whatever the model wrote.
    best = max(range(len(facts)), key=lambda i: len(wanted & tokens[i]))
    used, missing = [best], wanted - tokens[best]
    for i in range(len(facts)):  # the draft may combine facts: each one it draws on is cited too
        if missing & tokens[i]:
            used.append(i)
            missing -= tokens[i]
    return f"{text}\n\n> {facts[best]}", used


# Words of a question that name something: identifiers (bz2.open, _thread, --flag, CRC-32), acronyms and
# capitalised words that do not start a sentence.
_WORD = re.compile(r"(?:--?)?[A-Za-z_][\w.-]*")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)$")
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "cf", "a.k.a"})  # dotted, but no identifiers


def question_names(question: str) -> list[str]:
    names, previous_end = [], 0
    for m in _WORD.finditer(question):
        word = m.group().rstrip(".-")
        # Only the text since the previous word decides whether this one starts a sentence (words hold
        # no spaces, so "[.!?] +" lies within it): one pass over the question, not a scan per word.
        since = max(previous_end - 1, 0)
        previous_end = m.end()
        if len(word) < 2 or word.lower() in _ABBREVIATIONS:
            continue
        identifier = (
            word.startswith("-")
            or any(c in word[1:] for c in "._")
            or (any(c.isdigit() for c in word) and any(c.isalpha() for c in word))
        )
        starts_sentence = bool(_SENTENCE_START.search(question, since, m.start()))
        if identifier or word.isupper() or (any(c.isupper() for c in word) and not starts_sentence):
            names.append(word)
    return names


def unmatched_names(question: str, hits) -> list[str]:
    """Names the question asks about that no retrieved chunk mentions: the docs do not cover them (a
    question about Kubernetes or functools.lru_cache can still be close in meaning to a Python manual)."""
    text = " ".join(f"{h.title} {h.section} {h.text}" for h in hits).lower()
    return [  # a plural in the docs covers the singular asked about ("URLs" for "URL")
        n
        for n in dict.fromkeys(question_names(question))  # each name once: one search of the text each
        if not re.search(rf"(?<!\w){re.escape(n.lower())}(?:e?s)?(?!\w)", text)
    ]
