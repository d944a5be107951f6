"""`expertbot eval`: score retrieval and answers against a QA file (JSONL).

Each line: {"id", "question", "must_contain": [...], "aliases": {phrase: [alts]}?, "source_file": str|null,
"expect_refusal": bool?}. An off-corpus item (must_contain empty, expect_refusal true) is correct when the
bot says it doesn't know and cites nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from .answer import EVIDENCE_CHUNKS
from .grounding import is_idk, ungrounded

log = logging.getLogger(__name__)


class QAFileError(ValueError):
    pass


@dataclass
class QAItem:
    id: str
    question: str
    must_contain: list[str]
    aliases: dict[str, list[str]]
    source_file: str | None
    expect_refusal: bool


def load_qa(path: Path) -> list[QAItem]:
    items = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise QAFileError(f"cannot read QA file {path}: {e.strerror or e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            item = QAItem(
                id=str(raw["id"]),
                question=str(raw["question"]),
                must_contain=list(raw.get("must_contain", [])),
                aliases=dict(raw.get("aliases") or {}),
                source_file=raw.get("source_file"),
                expect_refusal=bool(raw.get("expect_refusal", False)),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise QAFileError(
                f"{path}:{n}: expected a JSON object with id, question, must_contain and source_file ({e})"
            ) from None
        items.append(item)
    if not items:
        raise QAFileError(f"QA file {path} has no items")
    return items


SHORT_ANSWER = 80  # characters: an answer this short with no number or name must be said whole


def corrections_qa(corrections, allowed: frozenset[str] | None = None) -> list[QAItem]:
    """`expertbot eval --qa corrections`: the approved corrections as a regression set. Each asks its
    question and must bring the answer's numbers and names that the question lacks (adapters.evaluate.
    correction_keys), or a short answer whole; no source file, so the retrieval figures leave them out.
    allowed: as for evaluate(); a correction that may not be used there is not asked."""
    from adapters.evaluate import correction_keys, key_phrase

    items = []
    for c in corrections:
        if allowed is not None and c.scopes and not allowed & set(c.scopes):
            continue
        keys = correction_keys(c.question, c.answer)
        if not keys:
            keys = [c.answer if len(c.answer) <= SHORT_ANSWER else key_phrase(c.answer)]
        items.append(QAItem(f"correction-{c.id}", c.question, keys, {}, None, False))
    if not items:
        raise QAFileError(
            "there are no approved corrections to score"
            + (" that may be used here" if allowed is not None and corrections else "")
            + "; add one with `expertbot corrections add` or 👎 in Slack"
        )
    return items


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def contains_all(answer: str, item: QAItem) -> bool:
    text = _norm(answer)
    return all(
        any(_norm(p) in text for p in [phrase, *item.aliases.get(phrase, [])]) for phrase in item.must_contain
    )


def evaluate(
    answerer,
    items: list[QAItem],
    *,
    generate: bool = True,
    top_k: int = 5,
    out=None,
    progress=None,
    adapter: str | None = None,
    allowed: frozenset[str] | None = None,
) -> dict:
    """Retrieval figures always; answer figures when generate is True, with adapter (a spec as for
    Answerer.stream: None for the configured one, "none" for the base model, a version or a folder).
    allowed: the scopes of whom the questions are asked as (bot.scopes.Access); None: every document."""
    hit1 = hit5 = rr = 0.0
    answered = correct = refusal_ok = idk = idk_answerable = ungrounded_n = cited = 0
    on_corpus = [i for i in items if not i.expect_refusal]
    off_corpus = [i for i in items if i.expect_refusal]
    latencies = []
    for item in items:
        started = time.perf_counter()
        # One retrieval for both: the fused ranking's best k are a prefix of its best k+1.
        wanted = max(top_k, answerer.top_k, EVIDENCE_CHUNKS)
        hits = answerer.retriever.retrieve(item.question, top_k=wanted, allowed=allowed)
        files = list(dict.fromkeys(h.file for h in hits[:top_k]))
        record = {"id": item.id, "retrieved": files, "sources": files}
        if item.source_file and not item.expect_refusal:
            rank = files.index(item.source_file) + 1 if item.source_file in files else 0
            hit1 += rank == 1
            hit5 += 0 < rank <= 5
            rr += 1 / rank if rank else 0
        if generate:
            answer = answerer.answer(item.question, hits=hits, adapter=adapter, allowed=allowed)
            said_idk = answer.refused or is_idk(answer.text)
            idk += said_idk
            # Numbers and names in the answer that the text it cites does not contain (0 is the goal).
            loose = [] if said_idk else ungrounded(answer.text, answer.evidence)
            ungrounded_n += bool(loose)
            cited += len(answer.sources)
            record.update(answer=answer.text, sources=[s.file for s in answer.sources], ungrounded=loose)
            if item.expect_refusal:
                refusal_ok += said_idk and not answer.sources
            else:
                answered += 1
                idk_answerable += said_idk
                record["correct"] = contains_all(answer.text, item)
                correct += record["correct"]
        record["latency_s"] = round(time.perf_counter() - started, 3)
        latencies.append(record["latency_s"])
        if out is not None:
            out.write(json.dumps(record) + "\n")
        if progress:
            progress(item)
    n = max(len(on_corpus), 1)
    # None where no item names its source (the corrections set): there is no retrieval to score.
    sourced = any(i.source_file and not i.expect_refusal for i in items)
    report = {
        "items": len(items),
        "source_hit@1": hit1 / n if sourced else None,
        "source_hit@5": hit5 / n if sourced else None,
        "mrr": rr / n if sourced else None,
        "latency_p50_s": _pct(latencies, 50),
        "latency_p95_s": _pct(latencies, 95),
    }
    if generate:
        report.update(
            {
                "answer_accuracy": correct / max(answered, 1),
                "answers_right": f"{correct}/{answered}",
                "refusal_accuracy": refusal_ok / len(off_corpus) if off_corpus else None,
                "refused_off_corpus": f"{refusal_ok}/{len(off_corpus)}",
                "idk_rate": idk / len(items),
                "idk_answerable": idk_answerable / max(answered, 1),
                "ungrounded_answers": ungrounded_n,
                "sources_per_answer": cited / max(len(items), 1),
            }
        )
    return report


def rag_scorer(services):
    """adapters.pipeline.retrain's rag_eval: answers with retrieval, with a given adapter, on the QA file
    (EXPERTBOT_EVAL_QA) or, without one, on the held-out glossary questions, each of which must bring
    its term's key phrase. The promotion gate refuses an adapter that makes these worse. None when
    there is no index to answer from."""
    from adapters.evaluate import key_phrase

    def score(ref, questions) -> dict | None:
        from indexers import StoreError

        try:
            services.answerer.retriever.reopen()
        except StoreError:
            return None  # no index yet: nothing to answer from, so nothing to compare
        qa = services.settings.eval_qa
        if qa is not None:
            items = load_qa(qa)
        else:
            phrases = [q.key_phrase or key_phrase(q.definition, q.term) for q in questions]
            items = [
                QAItem(f"term-{n}", q.question, [phrase], {}, None, False)
                for n, (q, phrase) in enumerate(zip(questions, phrases, strict=True))
            ]
        spec = "none" if ref is None else str(ref.path)
        records = _Records()
        figures = evaluate(services.answerer, items, generate=True, adapter=spec, out=records)
        right = [bool(r["correct"]) for r in records if "correct" in r]
        return {
            "accuracy": figures["answer_accuracy"],
            "correct": sum(right),
            "total": len(right),
            "right": right,  # per question, in order: the pipeline compares prefixes when time ran short
            "qa": Path(qa).name if qa else "held-out glossary questions",
        }

    return score


class _Records(list):
    """evaluate()'s `out`, kept as dicts instead of written as JSON lines."""

    def write(self, line: str) -> None:
        self.append(json.loads(line))


def _pct(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 3)


# --- the eval after a /reindex or /retrain-adapter job ---------------------------------------------
def qa_eval_for_job(services, store, job) -> dict | None:
    """Score settings.eval_qa with what answers use now (the new index, the current adapter).

    Returns None when no QA file is set. Never raises: a failed eval must not fail the job it follows,
    so the reason comes back as {"error": ...}. The figures are compared with the latest earlier job of
    the same kind that has some (kept in the jobs table), on the same QA file. Nothing here logs a
    question or an answer.
    """
    s = services.settings
    if s.eval_qa is None:
        return None
    started = time.perf_counter()
    result: dict = {"qa": Path(s.eval_qa).name, "generate": bool(s.eval_generate)}
    try:
        digest = hashlib.sha256(Path(s.eval_qa).read_bytes()).hexdigest()[:16]
        items = load_qa(s.eval_qa)
        answerer = services.answerer
        answerer.retriever.reopen()  # follow a reindex that just finished; NoIndexError when none exists
        ref = services.resolve_adapter() if s.eval_generate else None
        done = [0]

        def tick(_item) -> None:
            done[0] += 1
            elapsed = time.perf_counter() - started
            eta = elapsed / done[0] * (len(items) - done[0])
            job.progress(done=done[0], total=len(items), stage="qa_eval", eta_s=eta)

        job.progress(done=0, total=len(items), stage="qa_eval", eta_s=None)
        figures = evaluate(answerer, items, generate=s.eval_generate, progress=tick)
    except Exception as e:
        from indexers import StoreError

        if isinstance(e, (QAFileError, StoreError)):  # a bad QA file, no index yet: no traceback needed
            log.warning("job %s: the QA eval failed: %s", job.id, type(e).__name__)
        else:
            log.exception("job %s: the QA eval failed", job.id)
        return {**result, "error": f"{type(e).__name__}: {e}"[:300]}
    result.update(
        digest=digest,
        items=len(items),
        adapter=ref.name if ref else None,
        figures={key: figures[key] for key, _, _ in FIGURES if key in figures},
        seconds=round(time.perf_counter() - started, 1),
        previous=_previous(store, job, digest, bool(s.eval_generate)),
    )
    return result


# The figures a job summary shows: (result key, label, how shown): "pct" a percentage with the change in
# points, "num" plain, "s" seconds. Also what a job keeps to compare the next run with.
FIGURES = (
    ("source_hit@1", "hit@1", "pct"),
    ("source_hit@5", "hit@5", "pct"),
    ("mrr", "MRR", "num"),
    ("answer_accuracy", "answers", "pct"),
    ("refusal_accuracy", "refusals", "pct"),
    ("idk_rate", "don't know", "pct"),
    ("latency_p50_s", "p50", "s"),
    ("latency_p95_s", "p95", "s"),
)


def _previous(store, job, digest: str, generate: bool) -> dict | None:
    """The latest earlier job of this kind with figures: {job, figures} on the same QA file scored the same
    way (with or without generating), else {job, qa_changed: True}: retrieval-only latencies against
    generating ones would show a large change that is not one."""
    for earlier in reversed(store.jobs(kind=job.kind, state="succeeded")):
        ev = (earlier.result or {}).get("eval") or {}
        if earlier.id == job.id or not ev.get("figures"):
            continue
        if ev.get("digest") != digest or bool(ev.get("generate")) != generate:
            return {"job": earlier.id, "qa_changed": True}
        return {"job": earlier.id, "figures": ev["figures"]}
    return None
