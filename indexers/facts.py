"""Pick the sentences of retrieved chunks that best answer a question.

A small model answers far more faithfully from five short facts than from four whole chunks, and the
best sentence doubles as the quote that shows where an answer came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(*£$€])")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_MARKUP = re.compile(r"\*\*|`")
MAX_LIST_FACT_CHARS = 400
_UNDERSCORE_BOLD = re.compile(r"(?<!\w)__([^_\n]*\s[^_\n]*)__(?!\w)")  # __bold words__, not __init__.py


@dataclass
class Fact:
    text: str
    hit: int  # index of the hit it came from
    similarity: float


def sentences(text: str) -> list[str]:
    """Paragraph-aware: hard-wrapped lines are joined; bullets and headings stand alone. A sentence that
    ends in ":" also takes in the bullets after it, so "There are several ways to X:" carries the ways."""
    out, para = [], []
    intro: int | None = None  # index in out of the sentence that introduces the current list
    bullet = False

    def flush():
        nonlocal intro
        if not para:
            return
        parts = [s.strip() for s in _SENTENCE_END.split(" ".join(para)) if len(s.strip()) > 3]
        para.clear()
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

    for line in text.splitlines():
        stripped = _UNDERSCORE_BOLD.sub(r"\1", _MARKUP.sub("", line)).strip()
        if not stripped or stripped.startswith("#"):
            flush()
            if stripped:  # a heading: a list under it belongs to no earlier section's "...:" sentence
                intro, bullet = None, False
        elif _BULLET.match(stripped):
            flush()
            bullet = True
            para.append(_BULLET.sub("", stripped))
        else:
            if not para:
                bullet = False
            para.append(stripped)
    flush()
    return out


_API_NAME = re.compile(r"([\w-]*[._][\w.-]*)(\(.*\))?(, .*)?")
MAX_PREFIX_CHARS = 100


def api_name(heading: str) -> str | None:
    """A heading that is an identifier or a signature (allow_abbrev, bz2.open(filename, mode='rb'); see
    loading) rather than words: its sentences rarely repeat the name or the defaults, so facts carry it
    as a prefix. A very long signature is cut to its name."""
    match = _API_NAME.fullmatch(heading)
    if not match:
        return None
    return heading if len(heading) <= MAX_PREFIX_CHARS else match.group(1)


def best_facts(question: str, hits, embed_model, n: int = 5, skip_first_line: bool = True) -> list[Fact]:
    """The n sentences most similar to the question, best first. The first line of a chunk is its
    section heading (see chunking), so it is context, not a fact. When the hits came from a retrieval of
    this same question (indexers.retrieve.Hits), its query vector is reused instead of embedding again."""
    candidates: list[tuple[str, int]] = []
    seen = set()
    for i, hit in enumerate(hits):
        body = hit.text.split("\n", 1)[1] if skip_first_line and "\n" in hit.text else hit.text
        name = api_name(getattr(hit, "section", "") or "")
        for sentence in sentences(body):
            if name and name not in sentence:
                sentence = f"{name}: {sentence}"  # "what is X?" needs X in the fact the model reads
            if sentence not in seen:
                seen.add(sentence)
                candidates.append((sentence, i))
    if not candidates:
        return []
    same = getattr(hits, "query", None) == question and getattr(hits, "query_vector", None) is not None
    q = hits.query_vector if same else embed_model.get_query_embedding(question)
    vectors = embed_model.get_text_embedding_batch([c[0] for c in candidates])
    scored = [
        Fact(text, hit, float(sum(a * b for a, b in zip(q, v, strict=True))))
        for (text, hit), v in zip(candidates, vectors, strict=True)
    ]
    return sorted(scored, key=lambda f: f.similarity, reverse=True)[:n]
