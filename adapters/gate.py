"""The promotion gate: a new adapter replaces the current one only if it is measurably better.

"Better" is two checks on figures measured in the same run on the same questions and text:
terminology accuracy must beat the current adapter's (or the base model's, when no adapter is
current), and general perplexity must not worsen by more than a margin, because a terminology gain
bought by damaging plain English makes every other answer worse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class GateConfig:
    max_perplexity_increase: float = field(
        default=0.05, metadata={"help": "allowed relative rise of general perplexity (0.05 = 5%)"}
    )
    min_accuracy_gain: float = field(
        default=0.0, metadata={"help": "accuracy must exceed the reference by more than this (0..1)"}
    )

    def __post_init__(self):
        for key in ("max_perplexity_increase", "min_accuracy_gain"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise ValueError(f"{key} must be a number in [0, 1), got {value!r}")


@dataclass
class GateVerdict:
    promote: bool
    reasons: list[str]
    reference: str  # what the candidate was compared with: "current adapter X" or "base model"

    def to_dict(self) -> dict:
        return asdict(self)


def decide(
    candidate: dict,
    reference: dict,
    reference_name: str,
    cfg: GateConfig | None = None,
) -> GateVerdict:
    """candidate/reference: {"accuracy": float 0..1, "perplexity": float}. Every check gives a reason."""
    cfg = cfg or GateConfig()
    reasons: list[str] = []
    ok = True
    acc, ref_acc = candidate["accuracy"], reference["accuracy"]
    if acc > ref_acc + cfg.min_accuracy_gain:
        reasons.append(f"terminology accuracy {acc:.1%} beats {reference_name} ({ref_acc:.1%})")
    else:
        ok = False
        need = f" by more than {cfg.min_accuracy_gain:.1%}" if cfg.min_accuracy_gain else ""
        reasons.append(f"terminology accuracy {acc:.1%} does not beat {reference_name} ({ref_acc:.1%}){need}")
    ppl, ref_ppl = candidate["perplexity"], reference["perplexity"]
    limit = ref_ppl * (1 + cfg.max_perplexity_increase)
    change = ppl / ref_ppl - 1
    if ppl <= limit:
        reasons.append(
            f"general perplexity {ppl:.2f} vs {ref_ppl:.2f} ({change:+.1%}) is within the "
            f"{cfg.max_perplexity_increase:.0%} margin"
        )
    else:
        ok = False
        reasons.append(
            f"general perplexity {ppl:.2f} vs {ref_ppl:.2f} ({change:+.1%}) worsens by more than "
            f"{cfg.max_perplexity_increase:.0%}"
        )
    return GateVerdict(ok, reasons, reference_name)
