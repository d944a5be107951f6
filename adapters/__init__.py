"""adapters: the base model, LoRA adapters and generation.

Import-light on purpose: torch, transformers and peft load inside the functions that need them.
"""

from adapters.base import BaseModelNotFoundError, base_model_fingerprint, bundled_gguf, load_base_model
from adapters.config import BUNDLED_BASE_MODEL, ModelConfig
from adapters.generate import AdapterRef, Generator, UnsafeAdapterError, check_safe_adapter
from adapters.targets import lora_target_modules

__all__ = [
    "BUNDLED_BASE_MODEL",
    "AdapterRef",
    "BaseModelNotFoundError",
    "Generator",
    "ModelConfig",
    "UnsafeAdapterError",
    "base_model_fingerprint",
    "bundled_gguf",
    "check_safe_adapter",
    "load_base_model",
    "lora_target_modules",
]
