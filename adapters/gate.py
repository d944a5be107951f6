"""The promotion gate: a new adapter replaces the current one only if it is measurably better.

"Better" is checks on figures measured in the same run on the same questions and text:
terminology accuracy must beat the current adapter's (or the base model's, when no adapter is
current), and general perplexity must not worsen by more than a margin, because a terminology gain
bought by damaging plain English makes every other answer worse. Where the caller can answer with
retrieval, a third: the bot's RAG answers with the new adapter must be right at least as often as with
the reference, since an adapter that turns answers into glossary definitions fails the people asking.
Where experts' corrections were trained, a fourth: held-out wordings of them, and the held-out share of
corrections that was never trained (asked with its text as the excerpt, as the bot serves a correction),
must be answered at least as often as by the reference, so an adapter that forgets corrections, or stops
answering from them, is not promoted.
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
    max_rag_accuracy_drop: float = field(
        default=0.0, metadata={"help": "how far RAG answer accuracy may fall below the reference's (0..1)"}
    )

    def __post_init__(self):
        for key in ("max_perplexity_increase", "min_accuracy_gain", "max_rag_accuracy_drop"):
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
    rag: dict | None = None,
    corrections: dict | None = None,
) -> GateVerdict:
    """candidate/reference: {"accuracy": float 0..1, "perplexity": float}. rag: {"adapter": {...},
    "reference": {...}}, each {"accuracy": 0..1, "correct": int, "total": int}: RAG answers on the same
    questions with the candidate and with the reference. corrections: the same shape, for held-out
    wordings of experts' corrections asked without retrieval. Every check gives a reason."""
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
    if rag is not None:
        new, old = rag["adapter"], rag["reference"]
        figures = (
            f"RAG answer accuracy {new['accuracy']:.1%} ({new['correct']}/{new['total']}) vs "
            f"{reference_name} {old['accuracy']:.1%} ({old['correct']}/{old['total']})"
        )
        if new["accuracy"] >= old["accuracy"] - cfg.max_rag_accuracy_drop:
            reasons.append(f"{figures}: no drop")
        else:
            ok = False
            reasons.append(f"{figures}: the adapter makes answers with retrieval worse")
    if corrections is not None:
        new, old = corrections["adapter"], corrections["reference"]
        figures = (
            f"held-out corrections: {reference_name} {old['correct']}/{old['total']} -> "
            f"adapter {new['correct']}/{new['total']}"
        )
        if new["accuracy"] >= old["accuracy"]:
            reasons.append(f"{figures}: none forgotten")
        else:
            ok = False
            reasons.append(f"{figures}: the adapter answers fewer corrections")
    return GateVerdict(ok, reasons, reference_name)
