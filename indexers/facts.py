"""Pick the sentences of retrieved chunks that best answer a question.

A small model answers far more faithfully from five short facts than from four whole chunks, and the
best sentence doubles as the quote that shows where an answer came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(*£$€])")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_MARKUP = re.compile(r"\*\*|__|`")


@dataclass
class Fact:
    text: str
    hit: int  # index of the hit it came from
    similarity: float


def sentences(text: str) -> list[str]:
    """Paragraph-aware: hard-wrapped lines are joined; bullets and headings stand alone."""
    out, para = [], []

    def flush():
        if para:
            out.extend(s.strip() for s in _SENTENCE_END.split(" ".join(para)) if len(s.strip()) > 3)
            para.clear()

    for line in text.splitlines():
        stripped = _MARKUP.sub("", line).strip()
        if not stripped or stripped.startswith("#"):
            flush()
        elif _BULLET.match(stripped):
            flush()
            para.append(_BULLET.sub("", stripped))
        else:
            para.append(stripped)
    flush()
    return out


def best_facts(question: str, hits, embed_model, n: int = 5, skip_first_line: bool = True) -> list[Fact]:
    """The n sentences most similar to the question, best first. The first line of a chunk is its
    section heading (see chunking), so it is context, not a fact."""
    candidates: list[tuple[str, int]] = []
    seen = set()
    for i, hit in enumerate(hits):
        body = hit.text.split("\n", 1)[1] if skip_first_line and "\n" in hit.text else hit.text
        for sentence in sentences(body):
            if sentence not in seen:
                seen.add(sentence)
                candidates.append((sentence, i))
    if not candidates:
        return []
    q = embed_model.get_query_embedding(question)
    vectors = embed_model.get_text_embedding_batch([c[0] for c in candidates])
    scored = [
        Fact(text, hit, float(sum(a * b for a, b in zip(q, v, strict=True))))
        for (text, hit), v in zip(candidates, vectors, strict=True)
    ]
    return sorted(scored, key=lambda f: f.similarity, reverse=True)[:n]
