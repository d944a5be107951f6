"""Answers that an expert's correction changes: cited as corrections/<id>, and saying so.

When an approved correction matches the question (bot/corrections.py), the answer is the correction, and
where the documents also answer, both are said ("The docs say X. Corrected by U… on <date>: Y") rather
than one picked silently: the docs may be right and the correction stale, or the other way round, and
the reader can tell which is which. The correction never enters the model's prompt: it is shown as
written, so nothing in it can act as an instruction to the model.
"""

from __future__ import annotations

from collections.abc import Iterator

from .answer import Answer, Source
from .grounding import is_idk


def corrected_note(correction) -> str:
    return f"Corrected by {correction.by or 'an expert'} on {correction.date}"


class CorrectedStream:
    """Streams the documents' answer (if any), then gives the answer with the correction in it."""

    def __init__(self, docs, correction, similarity: float):
        self.docs = docs  # the AnswerStream from the documents, or None when they had nothing relevant
        self.correction = correction
        own = Source(correction.file, correction.question, similarity, None, tuple(correction.scopes))
        self.sources = [own, *(docs.sources if docs is not None else [])]
        self.adapter = docs.adapter if docs is not None else None
        self.refused = False
        self.messages = docs.messages if docs is not None else []
        self.facts = docs.facts if docs is not None else []

    def __iter__(self) -> Iterator[str]:
        if self.docs is not None:
            yield from self.docs

    def result(self) -> Answer:
        note, fixed = corrected_note(self.correction), self.correction.answer
        own = self.sources[0]
        said = self.docs.result() if self.docs is not None else None
        if said is None or said.refused or is_idk(said.text):
            text, sources, evidence = f"{fixed}\n\n{note}.", [own], [fixed]
        else:
            text = f"The docs say: {said.text}\n\n{note}: {fixed}"
            sources, evidence = [own, *said.sources], [fixed, *said.evidence]
        return Answer(text, sources, self.adapter, evidence=evidence, correction=self.correction)
