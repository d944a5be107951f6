"""Which linear layers LoRA wraps, per architecture.

Names differ between families: Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj,
so the Llama list would silently match nothing but o_proj and down_proj on it.
"""

from __future__ import annotations

from typing import Any

_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

LORA_TARGETS: dict[str, list[str]] = {
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "llama": _LLAMA_LIKE,  # SmolLM2 is a Llama
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
}


def _model_type(model_or_config: Any) -> str | None:
    if isinstance(model_or_config, str):
        return model_or_config
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, "model_type", None)


def lora_target_modules(model_or_config: Any, override: list[str] | None = None) -> list[str]:
    """LoRA target module names for a model, its config, or a model_type string.

    override wins when given (for architectures we have not listed); it must be non-empty.
    """
    if override is not None:
        if isinstance(override, str) or not override or not all(isinstance(m, str) and m for m in override):
            raise ValueError(f"override must be a non-empty list of module names, got {override!r}")
        return list(override)
    model_type = _model_type(model_or_config)
    if model_type not in LORA_TARGETS:
        raise ValueError(
            f"no LoRA target modules known for model_type {model_type!r}; supported: "
            f"{', '.join(sorted(LORA_TARGETS))} (or pass override=[...module names])"
        )
    return list(LORA_TARGETS[model_type])
