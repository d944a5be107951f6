"""Shared, session-scoped models for the adapters tests (loading is the expensive part).

`smollm` and `tiny_phi3` are shared: generate with them, but do not wrap them with peft or train them
in place. A test that needs its own copy: `load_base_model(smollm_model_config)` (reads the cached
safetensors conversion, well under a second) or `copy.deepcopy(tiny_phi3[0])`.
"""

from __future__ import annotations

import copy

import pytest

from adapters.base import ensure_chat_template, load_base_model
from adapters.config import ModelConfig

TINY_PHI3 = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=49152
)


@pytest.fixture(scope="session")
def smollm_model_config(model_cache) -> ModelConfig:
    """The bundled SmolLM2 on CPU; its safetensors conversion lives in the run's shared model cache
    (tests/conftest.py sets the offline environment for the whole run)."""
    return ModelConfig(cache_dir=model_cache, device="cpu", max_new_tokens=16)


@pytest.fixture(scope="session")
def smollm(smollm_model_config):
    """(model, tokenizer) of the bundled SmolLM2; the first load converts the GGUF into the cache."""
    return load_base_model(smollm_model_config)


@pytest.fixture(scope="session")
def tiny_phi3(smollm):
    """(model, tokenizer): a random 2-layer Phi-3 (seeded) with the SmolLM2 tokenizer and Phi-3's template."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(0)
    model = Phi3ForCausalLM(Phi3Config(**TINY_PHI3)).eval()
    tokenizer = copy.deepcopy(smollm[1])
    tokenizer.chat_template = None  # a phi3 tokenizer without a template gets the official one
    ensure_chat_template(model, tokenizer)
    return model, tokenizer
