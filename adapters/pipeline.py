"""retrain(): glossary -> dataset -> LoRA training -> base vs adapter evaluation -> registry -> gate.

This is what the bot's /retrain-adapter job and `expertbot retrain` call. It loads its own copy of
the base model: training wraps the model with LoRA in place, and the copy that answers questions
must not change under a running answer.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from adapters.budget import compare_s, eval_questions, minutes, sample_questions
from adapters.config import ModelConfig
from adapters.dataset import CorrectionItem, build_dataset
from adapters.evaluate import EvalResult
from adapters.gate import GateConfig, GateVerdict, decide
from adapters.registry import AdapterInfo, AdapterRegistry
from adapters.train import (
    TrainConfig,
    TrainingCancelled,
    TrainProgress,
    check_qlora_supported,
    train_lora,
    use_qlora,
)

log = logging.getLogger(__name__)


@dataclass
class RetrainResult:
    """Everything the CLI and the Slack summary print."""

    version: str  # the registered version, e.g. "terms-v3"
    promoted: bool
    verdict: GateVerdict
    metrics: dict  # base/adapter(/current): {accuracy, correct, total, perplexity}
    train: dict  # steps, seconds, tokens_per_s, best_eval_loss, resumed_from, qlora
    dataset: dict  # terms, examples, held-out templates, dataset_hash, glossary, corrections*
    loss_plot: Path | None
    adapter: AdapterInfo
    seconds: float

    def summary_lines(self) -> list[str]:
        m, t = self.metrics, self.train
        cur = "current" in m
        lines = [
            f"adapter {self.version}: {t['steps']} steps in {t['seconds']:.0f}s "
            f"({t['tokens_per_s']:.0f} tokens/s), best validation loss "
            + (f"{t['best_eval_loss']:.3f}" if t["best_eval_loss"] is not None else "n/a"),
            f"terminology accuracy without retrieval ({m['adapter']['total']} held-out questions): "
            f"base {m['base']['accuracy']:.1%}, adapter {m['adapter']['accuracy']:.1%}"
            + (f", current {m['current']['accuracy']:.1%}" if cur else ""),
            f"general perplexity: base {m['base']['perplexity']:.2f}, "
            f"adapter {m['adapter']['perplexity']:.2f}"
            + (f", current {m['current']['perplexity']:.2f}" if cur else ""),
            *self._correction_lines(),
            f"gate: {'PROMOTED' if self.promoted else 'not promoted'} "
            f"(compared with {self.verdict.reference})",
        ]
        return lines + [f"  - {r}" for r in self.verdict.reasons]

    def _correction_lines(self) -> list[str]:
        d, fig = self.dataset, self.metrics.get("corrections")
        if not d.get("corrections_used") and not d.get("corrections_scoped"):
            return []
        return [correction_line(d, fig)]


def correction_line(dataset: dict, figures: dict | None) -> str:
    """'corrections: 8 used (1 scoped one left out ...), 40 training examples; held-out: base 1/8, adapter
    7/8'; the Slack summary says the same."""
    scoped = dataset.get("corrections_scoped", 0)
    line = f"corrections: {dataset.get('corrections_used', 0)} used"
    if scoped:
        line += f" ({scoped} scoped left out: an adapter answers in every channel)"
    withheld = dataset.get("corrections_withheld", 0)
    if withheld:
        line += (
            f", {withheld} of them held out of training (the gate asks them with their text as the excerpt)"
        )
    line += f", {dataset.get('corrections', 0)} training examples"
    if figures:
        shown = [f"{who} {f['correct']}/{f['total']}" for who, f in figures.items()]
        asked = "held-out questions" + (" (wordings without retrieval, held-out share with it)" if withheld
                                        else " without retrieval")  # fmt: skip
        line += f"; {asked}: " + ", ".join(shown)
    return line


def distilled_general(
    model, tokenizer, system_prompt: str | None, batch_size: int = 16
) -> list[tuple[str, str]]:
    """GENERAL_QA's questions answered by the base model itself, cut to whole sentences.

    Training on the model's own answers costs it almost no loss where it already does well, so these
    examples hold general behaviour in place instead of teaching it our handwritten style.
    """
    from adapters.dataset import GENERAL_QA, _chat
    from adapters.evaluate import generate_batch

    questions = [q for q, _ in GENERAL_QA]
    convs = [list(_chat(q, None, system_prompt)) for q in questions]
    answers = generate_batch(model, tokenizer, convs, max_new_tokens=64, batch_size=batch_size)
    pairs = []
    for (q, handwritten), a in zip(GENERAL_QA, answers, strict=True):
        whole = re.match(r"(?s)^(.*[.!?])", a)  # an answer cut at the token limit ends mid-sentence
        pairs.append((q, whole[1].strip() if whole else handwritten))
    return pairs


def retrain(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    registry: AdapterRegistry,
    *,
    glossary: Path | None = None,
    docs_dir: Path | None = None,
    contexts: Callable[[str], list[str]] | None = None,
    gate: GateConfig | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    work_dir: Path | None = None,
    promote: bool = True,
    rag_eval: Callable | None = None,
    should_stop: Callable[[], bool] | None = None,
    corrections: Sequence[CorrectionItem] = (),
) -> RetrainResult:
    """Train a new adapter version and promote it if it passes the gate.

    glossary: a file; if None, glossary.* is searched under docs_dir. contexts(term): retrieved chunks
    for context-grounded examples (optional). work_dir holds checkpoints (default
    <registry>/.work/<name>): calling retrain again after a crash resumes from the last complete one.
    promote=False registers and records the verdict but leaves `current` alone. rag_eval(adapter, questions)
    -> {"accuracy", "correct", "total"}: the caller's answers with retrieval, with that adapter (an
    AdapterRef, or None for the base) on its QA file or, without one, on these held-out glossary
    questions; the gate refuses an adapter that makes them worse (adapters.gate).
    train_cfg.time_budget_s (unless max_steps is set) is what the whole call should take: the training
    gets what is left of it once the time to evaluate is counted, and the evaluation a sample of the
    held-out questions where all would not fit (adapters/budget.py). should_stop()
    is asked at every stage and training step; True raises TrainingCancelled before anything is registered,
    so the current adapter stays as it is.
    corrections: experts' approved corrections; the unscoped ones are trained (adapters.dataset), and a
    held-out wording of each is asked of every model: the gate refuses an adapter that answers fewer of
    them than the reference does.
    """
    clock = _Clock(train_cfg, should_stop, progress)
    if contexts is not None:
        contexts = functools.cache(contexts)  # the dataset may be built twice; retrieve once per term
    clock.report("dataset", "building the dataset")
    dataset_args = dict(glossary=glossary, docs_dir=docs_dir, contexts=contexts, corrections=corrections,
                        **_dataset_settings(train_cfg))  # fmt: skip
    ds = build_dataset(**dataset_args)  # before loading the model: a bad glossary fails in a second
    info = ds.summary()
    clock.report(
        "dataset",
        f"{info['terms']} terms, {info['train_examples']} training examples, "
        f"{info['heldout_questions']} held-out questions",
    )
    model, tokenizer, fingerprint, qlora = _load(model_cfg, train_cfg, clock)
    if train_cfg.self_distill_general:
        clock.report("dataset", "answering the general examples with the base model")
        general = distilled_general(model, tokenizer, train_cfg.system_prompt, train_cfg.eval_batch_size)
        ds = build_dataset(**dataset_args, general=general)
        info = ds.summary()
    current = _reference_adapter(registry, fingerprint)
    ref = current.ref() if current is not None and current.base_fingerprint == fingerprint else None
    questions, per_question = _plan_questions(model, tokenizer, ds, train_cfg, clock, ref, rag_eval)
    rag_before, rag_s = None, 0.0
    if rag_eval is not None:  # the reference does not depend on the new adapter: scored (and timed) now
        clock.report("evaluate", "scoring answers with retrieval with the adapter in use now")
        timed = time.monotonic()
        rag_before = rag_eval(ref, questions)
        rag_s = time.monotonic() - timed
    # After training: compare's answers, the new adapter's answers with retrieval, registering.
    fixed = ds.correction_questions  # all of them, first: few, and they must survive a deadline
    after = compare_s(per_question, len(questions) + len(fixed), 3 if ref else 2) + rag_s + 20.0
    work_dir = Path(work_dir) if work_dir else registry.root / ".work" / train_cfg.name
    outcome = _train(train_cfg, model, tokenizer, ds, work_dir, qlora, clock, after, progress, should_stop)
    results, fixed_results, questions = _compare(outcome.model, tokenizer, fixed, questions, ref, train_cfg,
                                                 clock, rag_s)  # fmt: skip
    metrics = {k: v.summary() for k, v in results.items()}
    reference, ref_name = _reference_figures(metrics, current, ref)
    rag = _rag_after(rag_eval, rag_before, outcome, questions, train_cfg, clock)
    if rag_eval is not None:
        # The per-question lists served the recount; the stored figures stay summaries.
        kept = {side: {k: v for k, v in fig.items() if k != "right"} for side, fig in (rag or {}).items()}
        metrics["rag"] = kept or {"skipped": "no index to answer from yet"}
    fixed_fig = _correction_figures(fixed_results, metrics, "current" if ref else "base")
    verdict = decide(metrics["adapter"], reference, ref_name, gate, rag=rag, corrections=fixed_fig)
    if rag_eval is not None and rag is None:
        verdict.reasons.append("answers with retrieval not compared: there is no index yet")

    clock.report("register", "registering the new version")  # the last point where a cancel stops it
    meta = {
        "base_model": model_cfg.base_model,
        "base_fingerprint": fingerprint,
        "dataset_hash": ds.hash,
        "dataset": info,
        "metrics": metrics,
        "train": outcome.summary(),
        "settings": train_cfg.to_dict(),
        "gate_config": (gate or GateConfig()).__dict__,
        "gate": verdict.to_dict(),
        # The per-question answers make a failed gate explainable without re-running anything.
        "answers": {k: v.answers for k, v in results.items()},
        "correction_answers": {k: v.answers for k, v in fixed_results.items()},
    }
    adapter, promoted, loss_plot = _register(
        registry, train_cfg.name, outcome, meta, work_dir, promote, verdict
    )
    result = RetrainResult(adapter.name, promoted, verdict, metrics, outcome.summary(), info, loss_plot,
                           adapter, time.monotonic() - clock.started)  # fmt: skip
    clock.report("done", "; ".join(result.summary_lines()[-len(verdict.reasons) - 1 :]))
    return result


def _dataset_settings(cfg: TrainConfig) -> dict:
    return dict(
        val_templates=cfg.val_templates,
        contexts_per_term=cfg.contexts_per_term,
        templates_per_term=cfg.templates_per_term,
        general_fraction=cfg.general_fraction,
        system_prompt=cfg.system_prompt,
        seed=cfg.seed,
    )


class _Clock:
    """The whole call's time: its budget (train_cfg.time_budget_s, unless max_steps is set), the estimate of
    when it ends, the cancel check and progress reports, which carry that estimate."""

    def __init__(self, train_cfg: TrainConfig, should_stop, progress):
        self.started = time.monotonic()
        self.budget = train_cfg.time_budget_s if train_cfg.max_steps is None else None
        self.end = self.started + self.budget if self.budget else None  # re-estimated as the run goes
        self.should_stop, self.progress = should_stop, progress

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise TrainingCancelled("retraining was cancelled; nothing was registered or promoted")

    def left(self) -> float | None:
        return None if self.end is None else max(self.end - time.monotonic(), 0.0)

    def spent(self) -> float:
        return time.monotonic() - self.started

    def report(self, stage: str, message: str, **kw) -> None:
        self.check()
        log.info("%s: %s", stage, message)
        if self.progress:
            self.progress(TrainProgress(stage, message=message, eta_total_s=self.left(), **kw))


def _load(model_cfg: ModelConfig, train_cfg: TrainConfig, clock: _Clock):
    """The base model to train: its own copy (training wraps it with LoRA in place), 4-bit for QLoRA."""
    from adapters.base import base_model_fingerprint, load_base_model, resolve_device

    device = resolve_device(model_cfg)
    qlora = use_qlora(train_cfg, device)
    if qlora:
        check_qlora_supported(device)
    clock.report(
        "load", f"loading {model_cfg.base_model} on {device}" + (" in 4-bit NF4 (QLoRA)" if qlora else "")
    )
    model, tokenizer = load_base_model(replace(model_cfg, load_in_4bit=qlora))
    return model, tokenizer, base_model_fingerprint(model_cfg), qlora


def _reference_adapter(registry: AdapterRegistry, fingerprint: str):
    current = registry.current()
    if current is not None and current.base_fingerprint != fingerprint:
        # Its figures were measured on another model and it cannot run on this one: the base is the bar.
        log.warning(
            "current adapter %s was trained on another base model; comparing with the base", current.name
        )
    return current


def _plan_questions(model, tokenizer, ds, train_cfg: TrainConfig, clock: _Clock, ref, rag_eval):
    """The held-out questions to evaluate on, and the seconds one answer takes (None without a budget):
    answering every one of them can take longer than the training, so a budget gets a sample."""
    if not clock.budget:
        return ds.questions, None
    clock.report("plan", "timing the evaluation on a batch of the held-out questions")
    per_question = _time_answers(model, tokenizer, ds.questions, train_cfg)
    n = eval_questions(
        clock.budget - clock.spent(),
        per_question,
        models=3 if ref else 2,
        rag=rag_eval is not None,
        total=len(ds.questions),
    )
    if n < len(ds.questions):
        clock.report("plan", f"evaluating on {n} of the {len(ds.questions)} held-out questions (time budget)")
    return sample_questions(ds.questions, n, train_cfg.seed), per_question


def _train(train_cfg, model, tokenizer, ds, work_dir: Path, qlora: bool, clock: _Clock, after: float,
           progress, should_stop):  # fmt: skip
    """train_lora with what is left of the budget once `after` (the evaluation after it, in seconds) is
    counted; never under a tenth of the budget, so that a slow evaluation cannot take all of its time."""

    def train_progress(p: TrainProgress) -> None:
        if clock.budget and p.eta_s is not None:  # training's ETA, then the evaluation after it
            clock.end = time.monotonic() + p.eta_s + after
            p.eta_total_s = clock.left()
        if p.stage == "plan" and p.eta_total_s is not None:
            p.message += f"; the whole retrain ends in about {minutes(p.eta_total_s)}"
        clock.check()
        if progress:
            progress(p)

    budget = clock.budget
    train_budget = max(budget - clock.spent() - after, budget / 10) if budget else None
    outcome = train_lora(train_cfg, model, tokenizer, ds, work_dir, train_progress, qlora=qlora,
                         time_budget_s=train_budget, should_stop=should_stop)  # fmt: skip
    if budget:
        clock.end = time.monotonic() + after
    return outcome


def _compare(model, tokenizer, fixed, questions, ref, train_cfg: TrainConfig, clock: _Clock, rag_s: float):
    """Every model's answers to the held-out correction and glossary questions: (glossary results,
    correction results, the glossary questions the deadline held)."""
    from adapters.evaluate import compare

    def eval_progress(n: int, total: int) -> None:
        clock.report(
            "evaluate", f"evaluating base and adapters ({n}/{total} questions)", step=n, total_steps=total
        )

    results = compare(
        model,
        tokenizer,
        [*fixed, *questions],
        current=ref,
        progress=eval_progress,
        # What is left once the candidate's answers with retrieval and registering are counted: training
        # kept its share, but the machine may have slowed down since the evaluation was sized.
        deadline=clock.started + clock.budget - rag_s - 20.0 if clock.budget else None,
        max_new_tokens=train_cfg.eval_max_new_tokens,
        batch_size=train_cfg.eval_batch_size,
    )
    results, fixed_results = _split_corrections(results)
    if results["base"].total < len(questions):
        questions = questions[: results["base"].total]
        clock.report("evaluate", f"the time budget held {len(questions)} held-out questions for each model")
    return results, fixed_results, questions


def _reference_figures(metrics: dict, current, ref) -> tuple[dict, str]:
    """What the candidate must beat: the current adapter where it runs on this base, else the base."""
    if ref is not None:
        return metrics["current"], f"current adapter {current.name}"
    if current is None:
        return metrics["base"], "the base model"
    return metrics["base"], f"the base model (current {current.name} is for another base)"


def _rag_after(
    rag_eval, rag_before, outcome, questions, train_cfg: TrainConfig, clock: _Clock
) -> dict | None:
    """The candidate's answers with retrieval, beside the reference's on the same questions."""
    if rag_eval is None or rag_before is None:
        return None
    from adapters.generate import AdapterRef

    clock.report("evaluate", "scoring answers with retrieval with the new adapter")
    scored = rag_eval(AdapterRef(f"{train_cfg.name}-candidate", outcome.adapter_dir), questions)
    # The reference on the same questions: compare() may have stopped at a prefix of them.
    return None if scored is None else {"reference": _first(rag_before, scored), "adapter": scored}


def _register(registry: AdapterRegistry, name: str, outcome, meta: dict, work_dir: Path, promote: bool,
              verdict: GateVerdict):  # fmt: skip
    """Store the version with its figures, promote it if asked and the gate agrees: (info, promoted, plot)."""
    adapter = registry.register(name, outcome.adapter_dir, meta)
    # The version is stored: its checkpoints are no longer needed, and left in place they would make
    # the next retrain with the same data "resume" a finished run instead of training.
    shutil.rmtree(work_dir, ignore_errors=True)
    promoted = bool(promote and verdict.promote)
    if promoted:
        registry.promote(adapter.name)
    elif promote:
        log.info("adapter %s not promoted: %s", adapter.name, "; ".join(verdict.reasons))
    loss_plot = adapter.path / "loss.png" if (adapter.path / "loss.png").is_file() else None
    return adapter, promoted, loss_plot


def _time_answers(model, tokenizer, questions, cfg: TrainConfig) -> float:
    """Seconds per held-out answer of this model, timed on one batch of them as compare() answers them
    (the same batch size and token limit; each row stops once its key phrase is in)."""
    from adapters.evaluate import answer_questions, question_phrases

    batch = list(questions[: cfg.eval_batch_size])
    started = time.monotonic()
    answer_questions(
        model,
        tokenizer,
        batch,
        question_phrases(batch),
        max_new_tokens=cfg.eval_max_new_tokens,
        batch_size=cfg.eval_batch_size,
    )
    return (time.monotonic() - started) / max(len(batch), 1)


def _split_corrections(results: dict[str, EvalResult]):
    """compare()'s results on [correction questions, glossary questions] -> (glossary results, correction
    results or {}), each model's rows recounted on their own; perplexity is the model's, kept on both."""
    terms, fixed = {}, {}
    for name, r in results.items():
        mine = [row for row in r.answers if row.get("kind") == "correction"]
        rest = [row for row in r.answers if row.get("kind") != "correction"]
        terms[name] = _recount(rest, r.perplexity)
        if mine:
            fixed[name] = _recount(mine, r.perplexity)
    return terms, fixed


def _correction_figures(fixed: dict[str, EvalResult], metrics: dict, reference: str) -> dict | None:
    """metrics["corrections"] (each model's figures on the held-out corrections) set, and the gate's
    {"adapter", "reference"} of them; None where no correction was asked."""
    if not fixed:
        return None
    metrics["corrections"] = {k: _figures(v) for k, v in fixed.items()}
    return {"adapter": metrics["corrections"]["adapter"], "reference": metrics["corrections"][reference]}


def _recount(rows: list[dict], ppl: float) -> EvalResult:
    correct = sum(bool(r["correct"]) for r in rows)
    return EvalResult(correct / len(rows) if rows else 0.0, correct, len(rows), ppl, rows)


def _figures(r: EvalResult) -> dict:
    return {"accuracy": round(r.accuracy, 4), "correct": r.correct, "total": r.total}


def _first(figures: dict, like: dict) -> dict:
    """figures (a rag_eval result) recounted on the first questions `like` was scored on, where both say
    which answers were right (their "right" lists)."""
    right, n = figures.get("right"), len(like.get("right") or ())
    if not right or not n or n >= len(right):
        return figures
    correct = sum(right[:n])
    return {**figures, "accuracy": correct / n, "correct": correct, "total": n, "right": right[:n]}
