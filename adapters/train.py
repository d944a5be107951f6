"""LoRA / QLoRA training of the terminology adapter with peft and transformers' Trainer.

Why Trainer and not a loop of our own: per-epoch evaluation, best-checkpoint tracking, resumable
checkpoints (optimizer, scheduler and RNG state) and early stopping all come with it, tested.
Heavy imports live inside functions so `import adapters.train` stays cheap for the CLI.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from adapters.base import ModelSetupError
from adapters.dataset import TerminologyDataset, collate, encode
from adapters.targets import lora_target_modules
from adapters.train_config import SCHEDULERS, TrainConfig, TrainProgress

__all__ = ["SCHEDULERS", "TrainConfig", "TrainOutcome", "TrainProgress", "TrainingCancelled", "train_lora"]

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class TrainingCancelled(Exception):  # noqa: N818 - a request to stop, not a fault
    """should_stop() said stop. Nothing was registered; complete checkpoints stay for a resume."""


@dataclass
class TrainOutcome:
    model: object  # the peft model, best checkpoint loaded, adapter active
    adapter_dir: Path
    steps: int
    seconds: float
    tokens_per_s: float
    best_eval_loss: float | None
    best_checkpoint: str | None
    resumed_from: str | None
    log_history: list[dict]
    loss_plot: Path | None
    qlora: bool
    plan: dict | None = None  # budget.StepPlan.as_dict() where a time budget sized the steps

    def summary(self) -> dict:
        return {
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "best_eval_loss": self.best_eval_loss,
            "resumed_from": self.resumed_from,
            "qlora": self.qlora,
            "plan": self.plan,
        }


def use_qlora(cfg: TrainConfig, device: str) -> bool:
    return device == "cuda" if cfg.qlora is None else cfg.qlora


def native_bf16(device: str) -> bool:
    """True where bf16 matmuls run natively: CUDA with bf16, CPUs with avx512_bf16 or AMX (oneDNN)."""
    import torch

    try:
        if device == "cuda":
            return bool(torch.cuda.is_bf16_supported())
        return device == "cpu" and bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def use_bf16(cfg: TrainConfig, device: str) -> bool:
    """bf16 autocast for this run: cfg.bf16, or (None) where the device has it natively."""
    if cfg.bf16 is None:
        return native_bf16(device)
    if cfg.bf16 and device == "cuda" and not native_bf16(device):
        raise ModelSetupError(
            "bf16=True, but this CUDA GPU has no bf16 (Ampere or newer has); set bf16=False"
        )
    if cfg.bf16 and device == "cpu" and not native_bf16(device):
        log.warning("bf16=True on a CPU without native bf16 (avx512_bf16 or AMX): emulated, slower than fp32")
    return cfg.bf16


def check_qlora_supported(device: str) -> None:
    """Fail early and clearly when bitsandbytes cannot do 4-bit NF4 on this device."""
    try:
        import bitsandbytes.functional as bnbf
        import torch
    except Exception as err:  # a broken native library raises anything at import
        raise ModelSetupError(
            f"QLoRA needs bitsandbytes, which could not be loaded ({err}); install it with "
            "`pip install -e '.[gpu]'` or train plain LoRA (qlora=False, no --qlora)"
        ) from err
    try:
        bnbf.quantize_4bit(torch.randn(64, 64, device=device), quant_type="nf4", compress_statistics=True)
    except Exception as err:
        import bitsandbytes

        raise ModelSetupError(
            f"QLoRA: bitsandbytes {bitsandbytes.__version__} cannot quantize to 4-bit NF4 on {device} "
            f"({err}); "
            "train plain LoRA (qlora=False, no --qlora) or use a CUDA GPU"
        ) from err


def complete_checkpoint(path: Path) -> bool:
    """Trainer writes trainer_state.json last: a checkpoint without it (or weights) is a crash leftover."""
    return (path / TRAINER_STATE).is_file() and (path / ADAPTER_WEIGHTS).is_file()


def last_complete_checkpoint(output_dir: Path, remove_incomplete: bool = True) -> Path | None:
    """The newest complete checkpoint-N; removes incomplete ones so Trainer never resumes or rotates them."""
    if not output_dir.is_dir():
        return None
    found = sorted(
        (int(m[1]), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    )
    best = None
    for _, path in found:
        if complete_checkpoint(path):
            best = path
        elif remove_incomplete:
            log.warning(
                "removing incomplete checkpoint %s (no %s or %s)", path, TRAINER_STATE, ADAPTER_WEIGHTS
            )
            shutil.rmtree(path, ignore_errors=True)
    return best


def _stop_callback(should_stop: Callable[[], bool]):
    """Asks should_stop() at every step and every evaluation batch, the places a training run loops."""
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def _check(self, *_args, **_kw):
            if should_stop():
                raise TrainingCancelled("training was cancelled; nothing was registered or promoted")

        on_step_begin = on_step_end = on_prediction_step = _check

    return Stop()


def _progress_callback(progress: Callable[[TrainProgress], None] | None):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Reports step, loss and ETA; the ETA uses only this run's steps (a resumed run starts late)."""

        def __init__(self):
            self.start_time = self.start_step = None
            self.loss = None

        def on_train_begin(self, args, state, control, **kw):
            self.start_time, self.start_step = time.monotonic(), state.global_step

        def _eta(self, state) -> float | None:
            done = state.global_step - (self.start_step or 0)
            if not done or self.start_time is None:
                return None
            return (time.monotonic() - self.start_time) / done * max(state.max_steps - state.global_step, 0)

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" in logs:
                self.loss = float(logs["loss"])
            if progress and ("loss" in logs or "eval_loss" in logs):
                progress(
                    TrainProgress(
                        "train",
                        state.global_step,
                        state.max_steps,
                        self.loss,
                        logs.get("eval_loss"),
                        state.epoch,
                        self._eta(state),
                    )
                )

    return Progress()


def train_lora(
    cfg: TrainConfig,
    model,
    tokenizer,
    dataset: TerminologyDataset,
    work_dir: Path,
    progress: Callable[[TrainProgress], None] | None = None,
    *,
    qlora: bool = False,
    resume: bool = True,
    time_budget_s: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainOutcome:
    """Wrap `model` with LoRA, train on the dataset, and save the best adapter to work_dir/adapter.

    `model` must already be loaded 4-bit when qlora is True (see retrain()). Checkpoints live in
    work_dir/checkpoints; a run with the same dataset and settings resumes from the newest complete one.
    time_budget_s: unless cfg.max_steps is set, train only as many steps as fit in it, sized from a step
    time measured first (adapters/budget.py); the plan is reported as a "plan" stage. should_stop() is
    asked every step; True raises TrainingCancelled.
    """
    from transformers import EarlyStoppingCallback, PrinterCallback

    from adapters.anchor import anchored_trainer_class, encode_anchors
    from adapters.budget import budget_callback, plan_steps
    from adapters.texts import ANCHOR_TEXTS

    work_dir = Path(work_dir)
    ckpt_dir = work_dir / "checkpoints"
    checkpoint = _resumable_checkpoint(work_dir, ckpt_dir, dataset, cfg, qlora, resume)

    model = _with_lora(model, cfg, qlora)
    train = encode(dataset.train, tokenizer, cfg.max_length)
    val = encode(dataset.validation, tokenizer, cfg.max_length)
    if not train or not val:
        raise ValueError(f"no trainable examples fit max_length={cfg.max_length}; raise max_length")
    device = next(model.parameters()).device.type
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    args = _training_args(cfg, ckpt_dir, device)
    trainer = anchored_trainer_class()(
        anchors=encode_anchors(ANCHOR_TEXTS, tokenizer, cfg.max_length),
        anchor_weight=cfg.anchor_weight,
        pad_token_id=pad_id,
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=val,
        data_collator=partial(collate, pad_token_id=pad_id),
        callbacks=[
            EarlyStoppingCallback(cfg.early_stopping_patience),
            _progress_callback(progress),
            *([_stop_callback(should_stop)] if should_stop else []),
        ],
    )
    # With tqdm off, Trainer prints every log dict to stdout; our progress callback reports instead.
    trainer.remove_callback(PrinterCallback)
    if checkpoint:
        log.info("resuming training from %s", checkpoint)
    start_step = int(_CHECKPOINT.match(checkpoint.name)[1]) if checkpoint else 0
    plan = None
    if time_budget_s is not None and cfg.max_steps is None:
        plan = plan_steps(trainer, cfg, train, val, pad_id, args.bf16, start_step, time_budget_s)
        trainer.args.max_steps = plan.steps  # read when training starts: the LR schedule fits it too
        trainer.add_callback(budget_callback(plan.budget_s, plan.eval_s))
        if progress:
            progress(
                TrainProgress("plan", start_step, plan.steps, eta_s=plan.seconds, message=plan.describe())
            )
    if should_stop and should_stop():
        raise TrainingCancelled("training was cancelled before it started")
    start = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.monotonic() - start
    # Under mixed precision accelerate wrapped forward in autocast; restore it, so evaluation and the
    # caller run the model the way a reloaded adapter runs (fp32).
    model = trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)

    return _outcome(
        cfg, model, trainer, result, train, work_dir, start_step, seconds, checkpoint, qlora, plan
    )


def _resumable_checkpoint(
    work_dir: Path, ckpt_dir: Path, dataset, cfg: TrainConfig, qlora: bool, resume: bool
):
    """The newest complete checkpoint of a run with the same dataset and settings, else None (and the old
    checkpoints, which would not apply, are removed)."""
    run = {"dataset_hash": dataset.hash, "settings": cfg.to_dict(), "qlora": qlora}
    run_file = work_dir / "run.json"
    if not resume or not run_file.is_file() or json.loads(run_file.read_text()) != run:
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # different data or settings: old checkpoints don't apply
    work_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(run, sort_keys=True))
    return last_complete_checkpoint(ckpt_dir) if resume else None


def _with_lora(model, cfg: TrainConfig, qlora: bool):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    targets = lora_target_modules(model, cfg.target_modules)
    if qlora:
        # Casts norms to fp32 and enables input grads; gradient checkpointing costs speed we don't need.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    matched = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    if missing := sorted(set(targets) - matched):
        raise ValueError(f"target_modules {missing} match no layer of this {model.config.model_type} model")
    return model


def _training_args(cfg: TrainConfig, ckpt_dir: Path, device: str):
    from transformers import TrainingArguments

    strategy = "steps" if cfg.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        warmup_steps=0.05,  # a float < 1 is a ratio of the total steps
        lr_scheduler_type=cfg.lr_scheduler,
        logging_steps=1,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=cfg.eval_steps,
        save_steps=cfg.eval_steps or 500,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        report_to="none",
        use_cpu=device == "cpu",
        bf16=use_bf16(cfg, device),  # autocast only: the weights, LoRA and saved adapter stay fp32
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def _outcome(cfg, model, trainer, result, train, work_dir: Path, start_step: int, seconds: float, checkpoint,
             qlora: bool, plan) -> TrainOutcome:  # fmt: skip
    """Save the best adapter (and its loss plot) to work_dir/adapter; what the run did."""
    state = trainer.state
    adapter_dir = work_dir / "adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    model.save_pretrained(adapter_dir, safe_serialization=True)
    mean_tokens = sum(len(x["input_ids"]) for x in train) / len(train)
    steps_run = max(state.global_step - start_step, 0)
    tokens = mean_tokens * cfg.batch_size * cfg.grad_accum * steps_run
    eval_losses = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
    from adapters.plot import plot_loss

    # Next to the adapter weights, so the registry stores it with the version.
    plot = plot_loss(state.log_history, adapter_dir / "loss.png", title=f"{cfg.name}: training loss")
    model.eval()
    log.info("trained %d steps in %.1fs (%s)", state.global_step, seconds, result.metrics)
    return TrainOutcome(
        model=model,
        adapter_dir=adapter_dir,
        steps=state.global_step,
        seconds=seconds,
        tokens_per_s=tokens / seconds if seconds > 0 else math.nan,
        best_eval_loss=min(eval_losses) if eval_losses else None,
        best_checkpoint=state.best_model_checkpoint,
        resumed_from=str(checkpoint) if checkpoint else None,
        log_history=list(state.log_history),
        loss_plot=plot,
        qlora=qlora,
        plan=plan.as_dict() if plan else None,
    )
