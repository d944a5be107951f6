"""evaluate: score a QA file (or the approved corrections) with what answers use; and the QA eval that
follows a job, compared with the earlier jobs' figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .progress import OperationCancelled, Progress, ProgressFn, RateETA, ShouldStop, ignore, never

if TYPE_CHECKING:
    from bot.store import Store

CORRECTIONS = "corrections"  # evaluate's qa: the approved corrections as a regression set


@dataclass
class EvalReport:
    figures: dict  # bot.evaluate.evaluate's: hit@1/@5, MRR, answer and refusal accuracy, latency
    items: int

    def as_dict(self) -> dict:
        return self.figures


def evaluate(
    services,
    qa: str | Path,
    *,
    generate: bool = True,
    allowed: frozenset[str] | None = None,
    out: IO[str] | None = None,
    progress: ProgressFn = ignore,
    should_stop: ShouldStop = never,
) -> EvalReport:
    """Score `qa` (a JSONL QA file, or CORRECTIONS) as someone who may read `allowed` (None: every
    document); generate=False scores retrieval only and loads no LLM. `out` gets one JSON line per
    question. Raises OperationCancelled between two questions once should_stop says so."""
    from bot.evaluate import corrections_qa, load_qa
    from bot.evaluate import evaluate as score

    if str(qa) == CORRECTIONS:
        items = corrections_qa(services.corrections.approved(), allowed)
    else:
        items = load_qa(Path(qa))
    eta, done = RateETA(), [0]

    def tick(_item) -> None:
        done[0] += 1
        progress(Progress("eval", done[0], len(items), eta_s=eta(done[0], len(items))))
        if should_stop():
            raise OperationCancelled(f"the eval stopped after {done[0]} of {len(items)} questions")

    progress(Progress("eval", 0, len(items)))
    figures = score(services.answerer, items, generate=generate, out=out, progress=tick, allowed=allowed)
    return EvalReport(figures, len(items))


@dataclass(frozen=True)
class EvalHistory:
    """Where a job's QA figures are kept and compared: the jobs store, the job's id and its kind."""

    store: Store
    job_id: str
    kind: str


class _JobView:
    """What bot.evaluate.qa_eval_for_job reads of a job: its id and kind, and a progress to report to."""

    def __init__(self, history: EvalHistory, progress: ProgressFn):
        self.id, self.kind, self._progress = history.job_id, history.kind, progress

    def progress(self, done=None, total=None, *, stage="qa_eval", eta_s=None) -> None:
        self._progress(Progress(stage, done, total, eta_s=eta_s))


def qa_eval(services, history: EvalHistory, progress: ProgressFn = ignore) -> dict | None:
    """EXPERTBOT_EVAL_QA scored with what answers use now; None when no QA file is set. Never raises
    for a failed eval (the reason comes back as {"error": ...}); a progress callback that raises to
    stop the job (bot.jobs.JobCancelled) ends it the same way."""
    from bot.evaluate import qa_eval_for_job

    return qa_eval_for_job(services, history.store, _JobView(history, progress))
