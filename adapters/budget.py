"""A time budget for training: how many steps fit, from a step time measured on this machine, now.

Why measured and not assumed: the same settings ran ~2 s a step on a quiet 2-core machine and several
times that on a busy one, and the bundled sample's 3 epochs planned 177 steps, which came to an ETA of
3 hours there. Measuring costs three forward-and-backward passes (one to warm up, two timed) and one
forward pass over a validation batch, before training starts; nothing of it reaches the trained weights.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass

from adapters.dataset import collate

log = logging.getLogger(__name__)


@dataclass
class StepPlan:
    """What a budgeted run trains: `steps` (a global step count) instead of what epochs asked for."""

    steps: int  # train up to this global step
    planned: int  # what epochs / max_steps asked for
    step_s: float  # measured seconds per optimizer step
    eval_s: float  # estimated seconds per evaluation pass (validation set, forward only)
    budget_s: float  # the time the training was given
    seconds: float  # what `steps` should take, evaluations included
    validation: int = 0  # validation examples each evaluation uses
    validation_total: int = 0  # of those in the dataset

    def describe(self) -> str:
        cut = f", cut from {self.planned}" if self.steps < self.planned else ""
        val = f", validating on {self.validation} of {self.validation_total} examples"
        return (
            f"{self.steps} steps of ~{self.step_s:.1f}s (measured){cut}"
            f"{val if self.validation < self.validation_total else ''} to fit {minutes(self.budget_s)}: "
            f"training takes about {minutes(self.seconds)}"
        )

    def as_dict(self) -> dict:
        return {
            "steps": self.steps,
            "planned": self.planned,
            "step_s": round(self.step_s, 2),
            "eval_s": round(self.eval_s, 1),
            "budget_s": round(self.budget_s),
            "validation": self.validation,
        }


def fit_steps(
    budget_s: float,
    step_s: float,
    eval_s: float,
    *,
    planned: int,
    eval_every: int,
    done: int = 0,
) -> tuple[int, float]:
    """(steps, seconds): the most global steps, at most `planned`, whose training from step `done` plus an
    evaluation every `eval_every` steps (and one at the end) fits in budget_s. At least one step more than
    `done`, even when nothing fits: a run that trains nothing helps no one, and the caller says so."""

    def cost(n: int) -> float:
        return (n - done) * step_s + math.ceil((n - done) / eval_every) * eval_s

    n = min(planned, done + int(budget_s // max(step_s, 1e-6)))  # the training alone fits
    while n > done + 1 and cost(n) > budget_s:  # and with its evaluations
        n -= 1
    n = max(n, min(planned, done + 1))
    return n, cost(n)


def measure_step(
    trainer,
    train: list[dict],
    val: list[dict],
    *,
    batch_size: int,
    grad_accum: int,
    pad_token_id: int,
    bf16: bool,
    seed: int = 0,
    passes: int = 3,
) -> tuple[float, float]:
    """(seconds per optimizer step, seconds per validation example), timed on `trainer`'s own loss (the
    anchor term included) with the batch size and precision training uses: one pass to warm up, then the
    median of `passes` (on a shared machine one pass in a few took 5x the others). The gradients are
    dropped and torch's RNG restored, so training afterwards starts as it would have without this."""
    import statistics

    import torch

    model = trainer.model
    device = next(model.parameters()).device
    rng = torch.random.get_rng_state()

    def autocast():
        if not bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    picked = random.Random(seed).sample(
        train, min(len(train), (passes + 1) * batch_size)
    )  # lengths as they come
    batches = [picked[i : i + batch_size] for i in range(0, len(picked), batch_size)] or [train[:batch_size]]
    anchor_position = getattr(trainer, "_next", None)
    times = []
    model.train()
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in collate(batch, pad_token_id).items()}
            start = time.perf_counter()
            with autocast():
                loss = trainer.compute_loss(model, inputs)
            loss.backward()
            times.append(time.perf_counter() - start)
        model.eval()
        val_batch = val[:batch_size]
        inputs = {k: v.to(device) for k, v in collate(val_batch, pad_token_id).items()}
        start = time.perf_counter()
        with torch.no_grad(), autocast():
            model(**inputs)
        per_example = (time.perf_counter() - start) / len(val_batch)
    finally:
        model.zero_grad(set_to_none=True)
        model.train()
        torch.random.set_rng_state(rng)
        if anchor_position is not None:
            trainer._next = anchor_position  # the anchor paragraphs cycle from where they would have
    micro = statistics.median(times[1:] or times)  # the first pass pays one-off set-up
    # The optimizer step and logging add a little to each step, checkpoint saving to each evaluation.
    return micro * grad_accum * 1.1, per_example * 1.2


def plan_steps(trainer, cfg, train, val, pad_id: int, bf16: bool, done: int, budget_s: float):
    """The StepPlan for a budgeted run: the steps that epochs ask for, cut to what fits in budget_s, and
    the validation examples each evaluation uses (a sample where all of them would take over a fifth of
    it). Sets the trainer's eval_dataset to that sample."""
    per_epoch = math.ceil(len(train) / (cfg.batch_size * cfg.grad_accum))
    planned = cfg.epochs * per_epoch
    started = time.monotonic()
    step_s, per_example = measure_step(
        trainer,
        train,
        val,
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        pad_token_id=pad_id,
        bf16=bf16,
        seed=cfg.seed,
    )
    budget_s = max(budget_s - (time.monotonic() - started), step_s)  # measuring came out of it
    keep = max(min(len(val), 2 * cfg.batch_size), min(len(val), int(budget_s / 5 // per_example)))
    if keep < len(val):
        trainer.eval_dataset = random.Random(cfg.seed).sample(val, keep)
    every = cfg.eval_steps or per_epoch
    steps, seconds = fit_steps(
        budget_s, step_s, per_example * keep, planned=planned, eval_every=every, done=done
    )
    plan = StepPlan(steps, planned, step_s, per_example * keep, budget_s, seconds, keep, len(val))
    log.info("time budget %.0fs: %s", budget_s, plan.describe())
    return plan


def budget_callback(budget_s: float, eval_s: float):
    """Keeps a budgeted run in its time when steps turn out slower than measured beforehand (a shared
    machine's load changes): after each step, the steps still planned are cut to what the time left
    holds at the recent steps' pace, keeping time for the evaluation at the end. Never adds steps."""
    import statistics

    from transformers import TrainerCallback

    class Budget(TrainerCallback):
        def __init__(self):
            self.deadline = self.began = None
            self.times: list[float] = []

        def on_train_begin(self, args, state, control, **kw):
            self.deadline = time.monotonic() + budget_s

        def on_step_begin(self, args, state, control, **kw):
            self.began = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            now = time.monotonic()
            self.times.append(now - (self.began or now))
            pace = statistics.median(self.times[-5:])
            fits = state.global_step + max(int((self.deadline - now - eval_s) // max(pace, 1e-6)), 0)
            if fits >= state.max_steps:
                return
            state.max_steps = max(fits, state.global_step)  # what progress and the ETA count to
            if state.global_step >= state.max_steps and not control.should_training_stop:
                log.info(
                    "time budget: stopping at step %d, steps ran slower than measured", state.global_step
                )
                control.should_training_stop = True
                if args.eval_strategy == "steps":  # an epoch strategy evaluates at the epoch's end anyway
                    control.should_evaluate = control.should_save = True

    return Budget()


# The share of what is left after loading that evaluating may take; training gets the rest. Measured on
# the bundled sample (80 terms, 160 held-out questions) on a busy 2-core machine: answering all of them
# with base, new adapter and retrieval would have taken as long as the training, so a budgeted run
# evaluates on a sample where all of them do not fit.
EVAL_SHARE = 0.3
MIN_EVAL_QUESTIONS = 16
# A retrieval answer (the serving engine, a prompt with evidence, the bot's answer length) took about
# this many times a held-out answer of the training model (0.5 s and 0.3 s there); it only sizes the
# sample: the reference's retrieval answers are then timed before training.
RAG_ANSWER_COST = 2.0


def eval_questions(left_s: float, per_question: float | None, *, models: int, rag: bool, total: int) -> int:
    """How many held-out questions fit EVAL_SHARE of left_s: each is answered by `models` models (base,
    new, current) in per_question seconds each and, with rag, twice with retrieval. All of them when
    nothing was measured."""
    if per_question is None or total <= MIN_EVAL_QUESTIONS:
        return total
    cost = per_question * (models + (2 * RAG_ANSWER_COST if rag else 0.0))
    return max(MIN_EVAL_QUESTIONS, min(total, int(EVAL_SHARE * left_s // max(cost, 1e-6))))


def sample_questions(questions: list, n: int, seed: int = 0) -> list:
    """n of the questions, as many terms as possible: one question per term first (in a seeded order),
    then second ones. The order of the questions is kept."""
    if n >= len(questions):
        return list(questions)
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    seen: dict[str, int] = {}
    rank = []
    for pos, i in enumerate(order):  # each term's k-th question comes in round k
        term = questions[i].term
        rank.append((seen.get(term, 0), pos, i))
        seen[term] = seen.get(term, 0) + 1
    keep = sorted(i for _, _, i in sorted(rank)[:n])
    return [questions[i] for i in keep]


def compare_s(per_question: float | None, questions: int, models: int) -> float:
    """Seconds adapters.evaluate.compare should take; perplexity adds a little per model."""
    return 0.0 if per_question is None else per_question * questions * models * 1.1 + 2.0 * models


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
