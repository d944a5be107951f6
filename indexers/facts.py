"""Pick the sentences of retrieved chunks that best answer a question.

A small model answers far more faithfully from five short facts than from four whole chunks, and the
best sentence doubles as the quote that shows where an answer came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .html import TERM_SEPARATOR  # a definition-list entry's section is headed "term — page topic"

# Not after an initial ("Eric A. Young") or a common abbreviation.
_SENTENCE_END = re.compile(
    r"(?<=[.!?])(?<!\b[A-Z]\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bvs\.)\s+(?=[A-Z0-9\"'(*£$€])"
)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_MARKUP = re.compile(r"\*\*|`")
MAX_LIST_FACT_CHARS = 400
_UNDERSCORE_BOLD = re.compile(r"(?<!\w)__([^_\n]*\s[^_\n]*)__(?!\w)")  # __bold words__, not __init__.py


@dataclass
class Fact:
    text: str  # what the model and the reader see: the sentence, led by its term where it lacks it
    hit: int  # index of the hit it came from
    score: float  # how well it answers the question (best_facts): cosine plus its bonuses
    term: str = ""  # the entry (option, setting, glossary term, API name) or heading it belongs to


def sentences(text: str) -> list[str]:
    """Paragraph-aware: hard-wrapped lines are joined; bullets and headings stand alone. A sentence that
    ends in ":" also takes in the bullets after it, so "There are several ways to X:" carries the ways."""
    return [sentence for sentence, _ in termed_sentences(text)]


def termed_sentences(text: str) -> list[tuple[str, str | None]]:
    """sentences(), each with the term its paragraph or list item opens with ("**cache_size**: The size
    of the cache. The default is 64MB." gives both sentences the term cache_size), or None."""
    out, terms, para = [], [], []
    intro: int | None = None  # index in out of the sentence that introduces the current list
    bullet = False

    def flush():
        nonlocal intro
        if not para:
            return
        joined_para = " ".join(para)
        parts = [s.strip() for s in _SENTENCE_END.split(joined_para) if len(s.strip()) > 3]
        term = inline_term(raw_para[0]) if raw_para else None
        para.clear()
        raw_para.clear()
        if bullet and intro is not None and parts:
            item = " ".join(parts)
            joined = (
                f"{out[intro]} {item}" if out[intro].endswith((":", ".", ";")) else f"{out[intro]}; {item}"
            )
            if len(joined) <= MAX_LIST_FACT_CHARS:
                out[intro] = joined
        elif not bullet:
            intro = len(out) + len(parts) - 1 if parts and parts[-1].endswith(":") else None
        out.extend(parts)
        terms.extend([term] * len(parts))

    raw_para: list[str] = []  # the paragraph's first line with its markup, where a **term** shows
    for line in text.splitlines():
        stripped = _UNDERSCORE_BOLD.sub(r"\1", _MARKUP.sub("", line)).strip()
        if not stripped or stripped.startswith("#"):
            flush()
            if stripped:  # a heading: a list under it belongs to no earlier section's "...:" sentence
                intro, bullet = None, False
        elif _BULLET.match(stripped):
            flush()
            bullet = True
            raw_para[:] = [_BULLET.sub("", line.strip())]
            para.append(_BULLET.sub("", stripped))
        else:
            if not para:
                bullet = False
                raw_para[:] = [line.strip()]
            para.append(stripped)
    flush()
    return list(zip(out, terms, strict=True))


_API_NAME = re.compile(r"([\w-]*[._][\w.-]*)(\(.*\))?(, .*)?")
MAX_PREFIX_CHARS = 100
# "**Term**: text", "Term — text" or "`--flag`: text" leading a paragraph or list item: an entry of an
# inline glossary or option list (Markdown, reStructuredText, DOCX, PDF text all come out this way).
_INLINE_TERM = re.compile(
    r"^(?:\*\*(?P<bold>[^*]{1,60})\*\*|`(?P<code>[^`]{1,60})`|(?P<plain>[^\s:;,.*`][^:;.!?`*]{0,40}?))"
    r"\s*(?::|\s[—–]\s)\s+\S"
)


def api_name(heading: str) -> str | None:
    """A heading that is an identifier or a signature (allow_abbrev, bz2.open(filename, mode='rb'); see
    loading) rather than words: its sentences rarely repeat the name or the defaults, so facts carry it
    as a prefix. A very long signature is cut to its name."""
    match = _API_NAME.fullmatch(heading)
    if not match:
        return None
    return heading if len(heading) <= MAX_PREFIX_CHARS else match.group(1)


def entry_term(heading: str) -> str | None:
    """The term a section describes when the section is one entry of a definition list (an option, a
    setting, a glossary term: indexers.html heads those "term — topic"), or an API name; else None."""
    if TERM_SEPARATOR in heading:
        return heading.split(TERM_SEPARATOR, 1)[0].strip() or None
    return api_name(heading)


MAX_TERM_WORDS = 4


def inline_term(sentence: str) -> str | None:
    """ "**cache_size**: the size of ..." -> "cache_size": a term that leads its own definition."""
    match = _INLINE_TERM.match(sentence)
    if not match:
        return None
    term = (match.group("bold") or match.group("code") or match.group("plain") or "").strip()
    return term if term and len(term.split()) <= MAX_TERM_WORDS else None


def _candidates(hits, skip_first_line: bool) -> list[tuple[str, int, str, bool]]:
    """(shown text, hit index, term, opens its entry) for every sentence of every hit, each shown once.

    A sentence is led by the term it belongs to where it does not name it: its definition-list entry's
    term ("-t: Delete empty directories"), else the term its paragraph opens with ("cache_size: ..."),
    else its section's heading ("The default is 300" says nothing without the setting it is under).
    The sentence that opens with its term is led by the heading: in a row like "Default: 300" the term
    is a field's name."""
    out, seen = [], set()
    for i, hit in enumerate(hits):
        body = hit.text.split("\n", 1)[1] if skip_first_line and "\n" in hit.text else hit.text
        section = getattr(hit, "section", "") or ""
        entry, heading = entry_term(section), _PAGE_SUFFIX.sub("", section)
        framing = f"{section} {getattr(hit, 'title', '') or ''}".lower()
        last_term = None
        for sentence, para_term in termed_sentences(body):
            if sentence.lower().rstrip(".") in framing or _BREADCRUMB.match(sentence):
                continue  # a page's banner, its heading again or its breadcrumb trail: no fact
            term = entry or para_term or heading
            opens = term != last_term  # the entry's (or section's) first sentence: where a definition is
            last_term = term
            # "Default: 300" names its field, not what it is the default of: the heading says that.
            lead = heading if not entry and para_term and sentence.startswith(para_term) else term
            shown = f"{lead}: {sentence}" if lead and lead.lower() not in sentence.lower() else sentence
            if shown not in seen:
                seen.add(shown)
                out.append((shown, i, term, opens))
    return out


_PAGE_SUFFIX = re.compile(r"\s*\(page [^)]*\)$")  # loading's PDF sections: a page number is no term
_BREADCRUMB = re.compile(r"^(?:[^>»]{1,40}\s[>»]\s){2,}[^>»]{1,40}$")  # "Apache > HTTP Server > Modules"
_WORDS = re.compile(r"[\w][\w.+/-]*")
_STOP = frozenset(
    "a an and are as at be by can de do does for from how i if in is it its me my of on or set "
    "should that the this to use used what when where which who why will with you your".split()
)


def _keywords(text: str) -> set[str]:
    return {w.lower().strip(".") for w in _WORDS.findall(text)} - _STOP


LEXICAL_WEIGHT = 0.15
# A sentence of a chunk that matches the question as a whole is likelier to be on topic than a lookalike
# from a weaker chunk: with 8 chunks to choose from, this kept the tuning set's best fact as good as from 4.
CHUNK_WEIGHT = 0.4
# What sort of answer a question wants, and what a sentence offers it: a small bonus each, since these
# are what cosine similarity misses ("the default is 300" and "the nonce is valid for a while" read alike).
ANSWER_TYPE_WEIGHT = 0.1
_ASKS_DEFAULT = re.compile(r"\bdefault", re.I)
_ASKS_OPTION = re.compile(r"\b(option|flag|switch|argument)s?\b", re.I)
_ASKS_NUMBER = re.compile(
    r"\bhow (many|much|long|big|large|often|far)\b|\b(limit|maximum|minimum|max|size|port|version|timeout|"
    r"number|lifetime|length|year|when|status|code)\b",
    re.I,
)
_ASKS_DEFINITION = re.compile(
    r"^\s*what\s+(is|are|does)\s+(an?\s+|the\s+)?(?P<term>[^?]+?)(\s+mean)?\s*\??\s*$", re.I
)
_OPTION = re.compile(r"(^|[\s(\[])--?[A-Za-z]")
_DIGIT = re.compile(r"\d")


def offers_what_is_asked(question: str, text: str) -> bool:
    """False when the question asks for an option or a number and text holds none: "The Keep-Alive
    option allows multiple requests" names no option, whatever it says about one."""
    if _ASKS_OPTION.search(question) and not _OPTION.search(text):
        return False
    return not (_ASKS_NUMBER.search(question) and not _DIGIT.search(text))


def _answer_type_bonus(question: str, text: str, term: str, opens: bool) -> float:
    bonus = 0.0
    if _ASKS_DEFAULT.search(question) and _ASKS_DEFAULT.search(text):
        bonus += 2.5  # a description of the setting reads closer to the question than its default does
    if _ASKS_OPTION.search(question) and (_OPTION.search(text) or term.startswith("-")):
        bonus += 2
    if _ASKS_NUMBER.search(question) and _DIGIT.search(text):
        bonus += 0.5
    wanted = _ASKS_DEFINITION.match(question)
    if wanted and opens and term:
        target, name = wanted.group("term").lower(), term.lower()
        if name in target or target in name:
            bonus += 1.5
    return ANSWER_TYPE_WEIGHT * bonus


def best_facts(question: str, hits, embed_model, n: int = 5, skip_first_line: bool = True) -> list[Fact]:
    """The n sentences that best answer the question, best first: cosine similarity of question and
    sentence (with its term), plus a small share for the question's words that the sentence and its term
    contain (a sentence naming the very setting asked about beats one that merely sounds alike), and for
    offering the sort of answer asked for (a default, an option, a number, the definition of a term).
    The first line of a chunk is its section heading (see chunking): context, not a fact. When the hits
    came from a retrieval of this same question (indexers.retrieve.Hits), its query vector is reused."""
    candidates = _candidates(hits, skip_first_line)
    if not candidates:
        return []
    same = getattr(hits, "query", None) == question and getattr(hits, "query_vector", None) is not None
    q = hits.query_vector if same else embed_model.get_query_embedding(question)
    vectors = embed_model.get_text_embedding_batch([c[0] for c in candidates])
    wanted = _keywords(question)
    scored = []
    for (text, hit, term, opens), v in zip(candidates, vectors, strict=True):
        cosine = float(sum(a * b for a, b in zip(q, v, strict=True)))
        overlap = len(wanted & _keywords(text)) / len(wanted) if wanted else 0.0
        chunk = getattr(hits[hit], "similarity", 0.0) or 0.0
        score = cosine + LEXICAL_WEIGHT * overlap + CHUNK_WEIGHT * chunk
        score += _answer_type_bonus(question, text, term, opens)
        scored.append(Fact(text, hit, score, term))
    return sorted(scored, key=lambda f: f.score, reverse=True)[:n]
