"""TrainConfig: every setting of one adapter training run, validated the way peft validates its configs.

Light on purpose (no torch): the bot builds it from its settings at start-up.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from adapters.targets import lora_target_modules

SCHEDULERS = ("linear", "cosine", "constant_with_warmup")
MIN_BUDGET_S = 60


@dataclass
class TrainConfig:
    """How to build the dataset and train one adapter. By default a whole retrain is sized to take about
    15 minutes on the machine it runs on (time_budget_s)."""

    name: str = field(default="terms", metadata={"help": "adapter family; versions are <name>-v<N>"})
    epochs: int = 3
    max_steps: int | None = field(
        default=None, metadata={"help": "cap on optimizer steps (overrides epochs and time_budget_s)"}
    )
    # The bundled sample's 3 epochs are 177 steps, ~3 hours on a busy 2-core machine. The budget cuts
    # them to what fits, from a step time measured at the start (adapters/budget.py).
    time_budget_s: int | None = field(
        default=900,
        metadata={"help": "seconds a whole retrain should take; sizes the steps; None = epochs decide"},
    )
    # Measured on 8 acme terms, 24 steps: 2e-3 answered 16/16 held-out paraphrases, 1e-3 only 8/16.
    # The damage that a high rate does to general text is held back by the anchor below.
    learning_rate: float = 2e-3
    lr_scheduler: str = field(
        default="constant_with_warmup", metadata={"help": "linear|cosine|constant_with_warmup"}
    )
    batch_size: int = 8
    grad_accum: int = 1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] | None = field(default=None, metadata={"help": "None = per architecture"})
    qlora: bool | None = field(default=None, metadata={"help": "4-bit NF4 base; None = on CUDA only"})
    # bf16 autocast (weights, LoRA and the saved adapter stay fp32). None = where the device runs bf16
    # natively: CUDA with bf16, CPUs with avx512_bf16 or AMX.
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; None = where native"})
    max_length: int = 256
    eval_steps: int | None = field(
        default=None, metadata={"help": "evaluate/save every N steps; None = per epoch"}
    )
    early_stopping_patience: int = 1
    save_total_limit: int = 2
    val_templates: int = 2
    contexts_per_term: int = 1
    templates_per_term: int | None = 3
    general_fraction: float = 0.2
    # General examples answered by the base model itself (anchors against forgetting) rather than
    # the handwritten answers in dataset.GENERAL_QA; costs one batched generation before training.
    self_distill_general: bool = True
    # Weight of KL(base || adapter) on plain prose in the loss (adapters/anchor.py); 0 turns it off.
    # Same 8 terms: without it general perplexity rose 170%; weight 1: +5.9% (16/16 right), 5: +2.7% (12/16).
    anchor_weight: float = 2.0
    # The bot's system prompt for questions without retrieval, so training looks like use;
    # None keeps the chat template's default.
    system_prompt: str | None = None
    eval_max_new_tokens: int = 64
    eval_batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", self.name):
            raise ValueError(
                f"name must be lowercase letters, digits, '-' or '_' (max 64), got {self.name!r}"
            )
        if self.name.rsplit("-v", 1)[-1].isdigit() and "-v" in self.name:
            raise ValueError(f"name must not end in -v<N> (versions are added to it), got {self.name!r}")
        for key in (
            "epochs",
            "batch_size",
            "grad_accum",
            "lora_r",
            "lora_alpha",
            "max_length",
            "early_stopping_patience",
            "save_total_limit",
            "eval_max_new_tokens",
            "eval_batch_size",
        ):
            _positive_int(key, getattr(self, key))
        for key in ("max_steps", "eval_steps"):
            if getattr(self, key) is not None:
                _positive_int(key, getattr(self, key), " or None")
        if self.time_budget_s is not None:
            _positive_int("time_budget_s", self.time_budget_s, " of seconds (e.g. 900) or None")
            if self.time_budget_s < MIN_BUDGET_S:
                raise ValueError(
                    f"time_budget_s must be at least {MIN_BUDGET_S} seconds (loading the model and "
                    f"evaluating take that much), got {self.time_budget_s}; None lets epochs decide"
                )
        for key, closed in (("learning_rate", False), ("lora_dropout", True), ("general_fraction", True)):
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not ((0 <= value if closed else 0 < value) and value < 1)
            ):
                raise ValueError(f"{key} must be a number in {'[' if closed else '('}0, 1), got {value!r}")
        if self.save_total_limit < 2 and self.early_stopping_patience:
            # Keeping one checkpoint would let rotation delete the best one before training ends.
            raise ValueError(
                f"save_total_limit must be >= 2 to keep the best checkpoint, got {self.save_total_limit}"
            )
        if self.target_modules is not None:
            lora_target_modules(None, self.target_modules)  # validates a non-empty list of names
        if (
            isinstance(self.anchor_weight, bool)
            or not isinstance(self.anchor_weight, int | float)
            or not (0 <= self.anchor_weight <= 100)
        ):
            raise ValueError(f"anchor_weight must be a number in [0, 100], got {self.anchor_weight!r}")
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(
                f"lr_scheduler must be one of {', '.join(SCHEDULERS)}, got {self.lr_scheduler!r}"
            )
        if not isinstance(self.self_distill_general, bool):
            raise ValueError(f"self_distill_general must be a bool, got {self.self_distill_general!r}")
        if self.qlora not in (None, True, False):
            raise ValueError(f"qlora must be True, False or None (= CUDA only), got {self.qlora!r}")
        if not (self.bf16 is None or isinstance(self.bf16, bool)):
            raise ValueError(
                f"bf16 must be True, False or None (= where the device has native bf16), got {self.bf16!r}"
            )
        if self.system_prompt is not None and (
            not isinstance(self.system_prompt, str) or not self.system_prompt
        ):
            raise ValueError(f"system_prompt must be a non-empty string or None, got {self.system_prompt!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.templates_per_term is not None:
            _positive_int("templates_per_term", self.templates_per_term, " or None")
        if isinstance(self.val_templates, bool) or not isinstance(self.val_templates, int):
            raise ValueError(f"val_templates must be an integer, got {self.val_templates!r}")
        if (
            isinstance(self.contexts_per_term, bool)
            or not isinstance(self.contexts_per_term, int)
            or (self.contexts_per_term < 0)
        ):
            raise ValueError(f"contexts_per_term must be an integer >= 0, got {self.contexts_per_term!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _positive_int(key: str, value, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key} must be a positive integer{extra}, got {value!r}")


@dataclass
class TrainProgress:
    """What a progress callback receives: enough for a Slack message or a CLI line."""

    stage: str  # dataset | load | plan | train | evaluate | register | done
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    eval_loss: float | None = None
    epoch: float | None = None
    eta_s: float | None = None  # of this stage (training: its remaining steps)
    message: str = ""
    eta_total_s: float | None = None  # of the whole retrain, where retrain() can tell
