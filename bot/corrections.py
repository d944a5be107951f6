"""Experts' corrections: a question and its right answer, stored, matched to the next paraphrase of it.

A correction is approved at once when an expert gives it, else pending until an expert approves it.
Approved corrections answer at once: no reindex, no retrain. Each stores its question's embedding, and a
new question whose embedding is close enough is answered from the correction and cites it as
`corrections/<id>`. A newer approved correction of the same question supersedes the older one.

A correction keeps the scopes of the documents it corrects (bot/scopes.py): it is never matched where
those documents may not be used.

The table lives in the bot's state database (bot/db.py: the SQLite file, or PostgreSQL) beside the store's.
Every process keeps the approved ones' vectors in memory and reloads them when the table's approved set
changes, also when another process changed it.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from .db import is_url, open_engine
from .store import now_iso
from .tables import CORRECTIONS

MAX_CHARS = 4000  # as for questions (EXPERTBOT_MAX_QUESTION_CHARS' default)
# Cosine similarity of two questions' embeddings (all-MiniLM-L6-v2) from which one is taken as the other
# asked again. Measured on acme questions: paraphrases 0.73-0.92, different questions about the same
# document or term 0.23-0.57.
MATCH_SIMILARITY = 0.70
SAME_QUESTION = 0.88  # a newer approved correction this close to an older one supersedes it
STATUSES = ("pending", "approved", "rejected", "superseded")
# Slack's mentions and specials (<!channel>, <@U…>, <#C…>): a correction of nothing but these says nothing.
_SLACK_TOKENS = re.compile(r"<[!@#][^>]*>")


class CorrectionError(ValueError):
    """A correction that cannot be stored or changed; the message says why."""


@dataclass(frozen=True)
class Correction:
    id: str
    question: str
    answer: str
    by: str | None
    at: str  # ISO 8601, UTC
    status: str
    source: str | None = None  # the document it corrects, relative to the docs folder
    scopes: tuple[str, ...] = ()  # where it may be used: those of the documents it corrects
    answer_id: str | None = None  # the bot's answer it corrects, when given from Slack

    @property
    def file(self) -> str:
        """How it is cited."""
        return f"corrections/{self.id}"

    @property
    def date(self) -> str:
        return self.at[:10]

    def as_dict(self) -> dict:
        keys = ("id", "question", "answer", "by", "at", "status", "source")
        return {k: getattr(self, k) for k in keys}


def check_text(name: str, text: str) -> str:
    """The text stripped, or a CorrectionError saying why it cannot be a correction's question or answer."""
    text = (text or "").strip()
    if not text:
        raise CorrectionError(f"the {name} is empty")
    if len(text) > MAX_CHARS:
        raise CorrectionError(f"the {name} is {len(text):,} characters long; at most {MAX_CHARS:,} are kept")
    if not _SLACK_TOKENS.sub("", text).strip():
        raise CorrectionError(f"the {name} holds only mentions (such as <!channel>); write it out in words")
    return text


class Corrections:
    def __init__(self, path: Path | str, embed: Callable[[str], list[float]]):
        """path: the bot's database file (a folder: its bot.sqlite3), or a database URL (bot/db.py).
        embed: a question -> its embedding, as the retriever embeds questions (so that a question's own
        vector can be matched)."""
        self.path = path if is_url(path) else Path(path)
        self.embed = embed
        self._engine, self._lock = open_engine(self.path, CORRECTIONS), threading.Lock()
        # Approved ones: id -> (vector, scopes), loaded on first match, with the state they were read at.
        self._vectors: dict | None = None
        self._read_at: tuple | None = None

    def close(self) -> None:
        self._engine.dispose()

    def _rows(self, sql: str, **params) -> list[dict]:
        with self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(sql), params).mappings()]

    def _exec(self, sql: str, **params) -> None:
        with self._engine.begin() as conn:
            conn.execute(text(sql), params)
        with self._lock:
            self._vectors = None  # what is approved may have changed

    # -- reading ---------------------------------------------------------------------------------------
    def get(self, correction_id: str) -> Correction:
        rows = self._rows("SELECT * FROM corrections WHERE id = :i", i=correction_id)
        if not rows:
            raise CorrectionError(f"no correction {correction_id!r}; `expertbot corrections list` shows them")
        return _correction(rows[0])

    def list(self, status: str | None = None) -> list[Correction]:
        """Newest first; status: only those (pending, approved, rejected, superseded)."""
        if status is not None and status not in STATUSES:
            raise CorrectionError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        where = "WHERE status = :s" if status else ""
        rows = self._rows(f"SELECT * FROM corrections {where} ORDER BY at DESC", s=status)
        return [_correction(r) for r in rows]

    def approved(self) -> list[Correction]:
        return self.list("approved")

    # -- changing --------------------------------------------------------------------------------------
    def add(
        self,
        question: str,
        answer: str,
        *,
        by: str | None = None,
        source: str | None = None,
        scopes: tuple[str, ...] = (),
        approved: bool = True,
        answer_id: str | None = None,
    ) -> Correction:
        question, answer = check_text("question", question), check_text("answer", answer)
        vector = self.embed(question)
        correction_id = uuid.uuid4().hex[:10]
        self._exec(
            'INSERT INTO corrections (id, question, answer, "by", at, status, source, scopes, vector,'
            " answer_id) VALUES (:i, :q, :a, :b, :at, 'pending', :s, :sc, :v, :ai)",
            i=correction_id, q=question, a=answer, b=by, at=now_iso(), s=source,
            sc=json.dumps(sorted(set(scopes))), v=json.dumps(vector), ai=answer_id,
        )  # fmt: skip
        return self.approve(correction_id, by) if approved else self.get(correction_id)

    def approve(self, correction_id: str, by: str | None = None) -> Correction:
        """Approve a pending (or rejected) correction; older approved ones of the same question go."""
        current = self.get(correction_id)
        if current.status == "superseded":
            raise CorrectionError(f"correction {correction_id} was superseded by a newer one; add it again")
        vector = self._vector(correction_id)
        for other in self.approved():
            if other.id != correction_id and _cosine(vector, self._vector(other.id)) >= SAME_QUESTION:
                self._decide(other.id, "superseded", by)
        self._decide(correction_id, "approved", by)
        return self.get(correction_id)

    def reject(self, correction_id: str, by: str | None = None) -> Correction:
        self.get(correction_id)
        self._decide(correction_id, "rejected", by)
        return self.get(correction_id)

    def remove(self, correction_id: str) -> Correction:
        gone = self.get(correction_id)
        self._exec("DELETE FROM corrections WHERE id = :i", i=correction_id)
        self._exec("DELETE FROM correction_reviews WHERE correction_id = :i", i=correction_id)
        return gone

    # -- the experts' review messages ------------------------------------------------------------------
    def record_review(self, correction_id: str, channel: str, ts: str) -> None:
        """A DM that asked an expert to review this correction (Slack's channel and message ts)."""
        with self._engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO correction_reviews (correction_id, channel, ts) VALUES (:i, :c, :t)"
                    " ON CONFLICT (correction_id, channel) DO UPDATE SET ts = :t"
                ),
                {"i": correction_id, "c": channel, "t": ts},
            )

    def reviews(self, correction_id: str) -> list[tuple[str, str]]:
        rows = self._rows(
            "SELECT channel, ts FROM correction_reviews WHERE correction_id = :i", i=correction_id
        )
        return [(r["channel"], r["ts"]) for r in rows]

    def _decide(self, correction_id: str, status: str, by: str | None) -> None:
        self._exec(
            "UPDATE corrections SET status = :s, decided_by = :b, decided_at = :at WHERE id = :i",
            s=status, b=by, at=now_iso(), i=correction_id,
        )  # fmt: skip

    def _vector(self, correction_id: str) -> list[float]:
        return json.loads(
            self._rows("SELECT vector FROM corrections WHERE id = :i", i=correction_id)[0]["vector"]
        )

    # -- answering -------------------------------------------------------------------------------------
    def match(
        self, query_vector: list[float] | Callable[[], list[float]], allowed: frozenset[str] | None = None
    ) -> tuple[Correction, float] | None:
        """The approved correction whose question is nearest this one, if near enough and usable under
        `allowed` (bot.scopes.Access.allowed). query_vector may be a function giving it: it is called
        only when some correction could match, so a bot without corrections embeds nothing more."""
        cached = self._approved_vectors()
        usable = {
            i: v for i, (v, scopes) in cached.items() if allowed is None or not scopes or allowed & scopes
        }
        if not usable:
            return None
        query = query_vector() if callable(query_vector) else query_vector
        similarity, best = max((_cosine(query, vector), i) for i, vector in usable.items())
        if similarity < MATCH_SIMILARITY:
            return None
        return self.get(best), similarity

    def _approved_vectors(self) -> dict:
        # One small query tells whether any process approved, superseded or removed one since the last
        # read (every such change moves the count or the latest decision time); only then are they read.
        state = self._rows(
            "SELECT COUNT(*) AS n, MAX(decided_at) AS latest FROM corrections WHERE status = 'approved'"
        )[0]
        seen = (state["n"], state["latest"])
        with self._lock:
            if self._vectors is not None and self._read_at == seen:
                return self._vectors
        rows = self._rows("SELECT id, vector, scopes FROM corrections WHERE status = 'approved'")
        cached = {r["id"]: (json.loads(r["vector"]), set(json.loads(r["scopes"]))) for r in rows}
        with self._lock:
            self._vectors, self._read_at = cached, seen
        return cached


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _correction(row: dict) -> Correction:
    return Correction(
        row["id"], row["question"], row["answer"], row["by"], row["at"], row["status"], row["source"],
        tuple(json.loads(row["scopes"])), row["answer_id"],
    )  # fmt: skip
