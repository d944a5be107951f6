"""retrain, promote and rollback: the terminology adapter's versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .evaluate import EvalHistory, qa_eval
from .progress import Progress, ProgressFn, ShouldStop, ignore, never

if TYPE_CHECKING:
    from adapters.pipeline import RetrainResult
    from adapters.registry import AdapterInfo

CORRECTION_COUNTS = (
    "corrections",
    "corrections_used",
    "corrections_scoped",
    "corrections_heldout",
    "corrections_withheld",
)


@dataclass
class RetrainReport:
    result: RetrainResult  # adapters.pipeline's: version, verdict, metrics, train, dataset, loss plot
    eval: dict | None = None  # the QA eval after it, with the adapter answers use now, if it ran

    def as_dict(self) -> dict:
        """The figures a summary needs, as JSON (a job's result): not the per-question answers."""
        r, verdict = self.result, self.result.verdict
        shown = {
            "version": r.version,
            "promoted": bool(r.promoted),
            "gate": {
                "promote": bool(verdict.promote),
                "reasons": list(verdict.reasons),
                "reference": verdict.reference,
            },
            "metrics": r.metrics,
            "train": r.train,
            "loss_plot": str(r.loss_plot) if r.loss_plot else None,
            "seconds": r.seconds,
            "corrections": {key: r.dataset.get(key, 0) for key in CORRECTION_COUNTS},
        }
        return {**shown, "eval": self.eval} if self.eval else shown


def retrain(
    services,
    *,
    glossary: Path | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    qlora: bool | None = None,
    progress: ProgressFn = ignore,
    should_stop: ShouldStop = never,
    eval_history: EvalHistory | None = None,
) -> RetrainReport:
    """Train, evaluate, register and (if it passes the gate) promote a new adapter version. The
    options left None come from the settings (EXPERTBOT_RETRAIN). should_stop() -> True cancels it
    (adapters.train.TrainingCancelled) before anything is registered. eval_history: score
    EXPERTBOT_EVAL_QA afterwards, with the adapter answers use then (the new one if promoted)."""

    def report(p) -> None:  # adapters' TrainProgress
        training = p.stage == "train"
        progress(
            Progress(
                p.stage,
                p.step if training else None,
                p.total_steps if training else None,
                loss=p.loss,
                message=p.message,
                eta_s=p.eta_s if training else None,
                eta_total_s=getattr(p, "eta_total_s", None),
            )
        )

    result = train_adapter(
        services,
        progress=report,
        should_stop=should_stop,
        glossary=glossary,
        epochs=epochs,
        max_steps=max_steps,
        qlora=qlora,
    )
    done = RetrainReport(result)
    if eval_history is not None:
        done.eval = qa_eval(services, eval_history, progress)
    return done


def retrain_plan(settings) -> Progress | None:
    """What a retrain will take, said before anything is measured: its time budget or its steps.
    None for a bad EXPERTBOT_RETRAIN (the retrain itself reports it, naming the field)."""
    try:
        cfg = settings.train_config()
    except ValueError:
        return None
    if cfg.max_steps is None and cfg.time_budget_s:
        return Progress(
            "plan",
            message=f"starting; sized to take about {round(cfg.time_budget_s / 60)} min (the training "
            "steps are fitted to EXPERTBOT_RETRAIN's time_budget_s)",
            eta_s=cfg.time_budget_s,
        )
    steps = f"max_steps={cfg.max_steps}" if cfg.max_steps else f"{cfg.epochs} epochs, no time budget"
    return Progress("plan", message=f"{steps}: the time it takes shows once training starts")


class GateRefusedError(ValueError):
    """promote() of a version that failed its promotion gate, without force."""

    def __init__(self, version: str, reasons: list[str]):
        why = "; ".join(reasons or ["it has no gate verdict"])
        super().__init__(f"{version} failed its promotion gate: {why}")
        self.version, self.reasons = version, reasons


@dataclass(frozen=True)
class AdapterChange:
    """What answers use after a promote or a rollback: a version, or None for the base model."""

    current: AdapterInfo | None

    @property
    def name(self) -> str | None:
        return self.current.name if self.current else None


def promote(registry, version: str, *, force: bool = False) -> AdapterChange:
    """Make `version` current; running bots pick it up on their next question. A version that failed
    its gate raises GateRefusedError unless force. An unknown version: adapters.registry.RegistryError."""
    gate = registry.get(version).gate
    if not gate.get("promote") and not force:
        raise GateRefusedError(version, list(gate.get("reasons") or []))
    return AdapterChange(registry.promote(version))


def rollback(registry) -> AdapterChange:
    """Go back to the version promoted before the current one (None: the base model). With none
    current: adapters.registry.RegistryError."""
    return AdapterChange(registry.rollback())


def train_adapter(
    services,
    progress=None,
    *,
    glossary: Path | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    qlora: bool | None = None,
    should_stop=None,
):
    """adapters.pipeline.retrain with the bot's settings, prompt, gate, retrieval and approved corrections:
    -> its RetrainResult. should_stop() -> True cancels it (adapters.train.TrainingCancelled) before
    anything is registered."""
    from adapters.dataset import CorrectionItem
    from adapters.gate import GateConfig
    from adapters.pipeline import retrain as run_retrain
    from bot.answer import NO_RETRIEVAL_SYSTEM_PROMPT
    from bot.evaluate import rag_scorer

    s = services.settings
    overrides = {
        k: v for k, v in (("epochs", epochs), ("max_steps", max_steps), ("qlora", qlora)) if v is not None
    }
    return run_retrain(
        s.base_model_config(),
        # Train with the prompt `ask --no-retrieval` sends: the adapter is tuned for how it is asked.
        s.train_config(**{"system_prompt": NO_RETRIEVAL_SYSTEM_PROMPT, **s.retrain, **overrides}),
        services.registry,
        glossary=glossary or s.glossary or _find_glossary(s.docs_dir),
        docs_dir=s.docs_dir,
        contexts=_contexts(services),
        gate=GateConfig(
            max_perplexity_increase=s.gate_max_perplexity_increase,
            # A short CPU retrain went from 0.0% to 1.2% and was promoted when any gain was enough
            # (BENCHMARKS.md, "A default retrain on an idle machine"): noise is not a better adapter.
            min_accuracy_gain=s.gate_min_accuracy_gain,
        ),
        progress=progress,
        rag_eval=rag_scorer(services),  # the gate refuses an adapter that makes answers with retrieval worse
        should_stop=should_stop,
        # Scoped ones are marked: the pipeline leaves them out, since an adapter answers everywhere.
        corrections=[
            CorrectionItem(c.id, c.question, c.answer, scoped=bool(c.scopes))
            for c in services.corrections.approved()
        ],
    )


def _find_glossary(docs_dir: Path) -> Path | None:
    """glossary.* in the docs folder (the library's search), else right beside it: examples/acme keeps
    its glossary next to docs/, out of the index."""
    from adapters.glossary import SUFFIXES, find_glossary

    try:
        return find_glossary(docs_dir)
    except FileNotFoundError:
        beside = (docs_dir.parent / f"glossary{suffix}" for suffix in SUFFIXES)
        return next((p for p in beside if p.is_file()), None)


def _contexts(services):
    """Chunks that mention a term, for context-grounded training examples; none without an index."""
    from indexers import NoIndexError

    try:
        services.retriever.reopen()
    except NoIndexError:
        return None
    # An adapter answers in every channel: it learns from public documents only, never a scoped one.
    return lambda term: [h.text for h in services.retriever.retrieve(term, top_k=2, allowed=frozenset())]
