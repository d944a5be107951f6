"""reindex: build the docs into a new index generation and make answers use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .evaluate import EvalHistory, qa_eval
from .progress import Progress, ProgressFn, RateETA, ShouldStop, ignore, never

if TYPE_CHECKING:
    from indexers import IndexReport


@dataclass
class ReindexReport:
    index: IndexReport  # what the build did (indexers.IndexReport)
    scopes_changed: bool  # an edited [scopes] was read, and questions now use it
    reopened: bool  # the retriever moved to the new generation
    eval: dict | None = None  # the QA eval after the switch (bot.evaluate.qa_eval_for_job), if it ran

    def as_dict(self) -> dict:
        """The build's report (`expertbot index --json`, a job's result), with "eval" when one ran."""
        shown = self.index.as_dict()
        return {**shown, "eval": self.eval} if self.eval else shown


def reindex(
    services,
    *,
    full: bool = False,
    progress: ProgressFn = ignore,
    should_stop: ShouldStop = never,
    eval_history: EvalHistory | None = None,
) -> ReindexReport:
    """Read [scopes] again, build a new generation (full: re-embed every document), switch the retriever
    to it and apply the new scopes to questions; answers until then use the old index.

    eval_history: score EXPERTBOT_EVAL_QA after the switch and compare with the earlier jobs there;
    None runs no QA eval (with generation on it loads the LLM, which `expertbot index` must not).
    should_stop is asked before each file and embedding batch: the build then raises
    indexers.BuildCancelled and nothing is switched."""
    scopes_changed = services.reload_scopes()  # ConfigError on a bad file: nothing changes
    eta = RateETA()
    # The embedder loaded and the heap settled before the build (bot.wiring.settle_heap).
    report = services.load_indexer().build(
        full=full,
        progress=lambda done, total: progress(Progress("index", done, total, eta_s=eta(done, total))),
        should_stop=should_stop,
    )
    # Only now do questions move to the new generation; answers during the build used the old one.
    reopened = services.reopen_retriever()
    if scopes_changed:
        services.apply_scopes()
    done = ReindexReport(report, scopes_changed, reopened)
    if eval_history is not None:  # the new index is live already: the eval never fails the reindex
        done.eval = qa_eval(services, eval_history, progress)
    return done
