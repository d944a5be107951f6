"""Shared, session-scoped models for the adapters tests (loading is the expensive part).

`smollm` and `tiny_phi3` are shared: generate with them, but do not wrap them with peft or train them
in place. A test that needs its own copy: `load_base_model(smollm_model_config)` (reads the cached
safetensors conversion, well under a second) or `copy.deepcopy(tiny_phi3[0])`.
"""

from __future__ import annotations

import copy
import threading

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


@pytest.fixture(scope="session")
def tiny_phi3_dir(tiny_phi3, tmp_path_factory):
    """The tiny random Phi-3 saved as a local model folder, so it can be loaded (also 4-bit) by path."""
    model, tokenizer = tiny_phi3
    path = tmp_path_factory.mktemp("tiny-phi3")
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def bundled_gguf_file():
    from adapters.base import bundled_gguf

    folder, name = bundled_gguf()
    return folder / name


@pytest.fixture(scope="session")
def llama_gen(smollm_model_config, bundled_gguf_file):
    """The llama.cpp engine on the bundled model, as the bot runs it (its weights copy lives in the run's
    model cache). Shared: do not close it."""
    from adapters.llamacpp import LlamaCppGenerator

    return LlamaCppGenerator(smollm_model_config, bundled_gguf_file)


@pytest.fixture
def check_answer_keeps_its_adapter():
    """check(gen, ref, messages): an answer streaming on ref keeps it while a base-model request waits for
    the one model (the engines that hold one model: transformers, llama.cpp)."""
    return _check_answer_keeps_its_adapter


def _check_answer_keeps_its_adapter(gen, ref, messages) -> None:
    solo_adapter = gen.generate(messages, adapter=ref, max_new_tokens=10)
    solo_base = gen.generate(messages, max_new_tokens=10)
    assert solo_adapter != solo_base
    stream = gen.stream(messages, adapter=ref, max_new_tokens=10)
    pieces = [next(stream)]  # generation on the adapter has started and holds the lock
    other = []
    switcher = threading.Thread(target=lambda: other.append(gen.generate(messages, max_new_tokens=10)))
    switcher.start()
    switcher.join(timeout=1.0)  # give the base-model request every chance to cut in
    pieces += list(stream)
    switcher.join()
    assert "".join(pieces) == solo_adapter
    assert other == [solo_base]
