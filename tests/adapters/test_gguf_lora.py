"""peft adapter -> GGUF LoRA file: names, shapes, scaling folded in, q/k rows permuted, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from adapters.gguf_lora import (
    GGUF_LORA_FILE,
    BaseShape,
    LoraConversionError,
    gguf_lora_for,
    lora_pairs,
    read_safetensors,
    write_gguf_lora,
)
from adapters.registry import AdapterRegistry

SMOL = BaseShape("llama", blocks=2, heads=4, kv_heads=2)  # a tiny llama: hidden 16, head dim 4


def peft_folder(path, config: dict, modules=("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj"), r=2):
    rng = np.random.default_rng(0)
    out = {"q_proj": 16, "k_proj": 8, "down_proj": 16}
    tensors = {}
    for layer in range(2):
        for module in modules:
            key = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{key}.lora_A.weight"] = rng.standard_normal((r, 16)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = rng.standard_normal((out[module.split(".")[1]], r)).astype(
                np.float32
            )
    path.mkdir(parents=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": 8, **config})
    )
    return path, tensors


def test_pairs_take_llama_cpps_names_with_peft_scaling_folded_into_b(tmp_path):
    folder, tensors = peft_folder(tmp_path / "a", {"alpha_pattern": {"down_proj": 2}})
    pairs = lora_pairs(folder, SMOL)
    assert sorted(pairs) == [
        f"blk.{i}.{n}.weight" for i in range(2) for n in ("attn_k", "attn_q", "ffn_down")
    ]
    a, b = pairs["blk.1.ffn_down.weight"]
    key = "base_model.model.model.layers.1.mlp.down_proj"
    np.testing.assert_array_equal(a, tensors[f"{key}.lora_A.weight"])
    np.testing.assert_allclose(b, tensors[f"{key}.lora_B.weight"] * 2 / 2)  # alpha_pattern 2 / r 2
    # q's rows are reordered as llama.cpp's converter reorders the base's q rows (rope layout), scaled 8 / 2.
    q_b = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"] * 4
    got = pairs["blk.0.attn_q.weight"][1]
    assert not np.allclose(got, q_b) and np.allclose(np.sort(got, axis=0), np.sort(q_b, axis=0))
    np.testing.assert_allclose(got[1], q_b[2])  # head 0 of size 4: rows 0, 2, 1, 3
    qwen = lora_pairs(folder, BaseShape("qwen2", 2, 4, 2))  # no permutation for qwen2
    np.testing.assert_allclose(qwen["blk.0.attn_q.weight"][1], q_b)


def test_rslora_scales_by_the_square_root_of_r(tmp_path):
    folder, tensors = peft_folder(tmp_path / "a", {"use_rslora": True}, modules=("mlp.down_proj",), r=4)
    b = lora_pairs(folder, SMOL)["blk.0.ffn_down.weight"][1]
    np.testing.assert_allclose(
        b, tensors["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"] * 8 / 2
    )


@pytest.mark.parametrize(
    "config, message",
    [
        ({"use_dora": True}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, "whole modules"),
        ({"bias": "all"}, "biases"),
    ],
)
def test_what_a_gguf_lora_cannot_hold_is_refused_naming_it(tmp_path, config, message):
    folder, _ = peft_folder(tmp_path / "a", config)
    with pytest.raises(LoraConversionError, match=message):
        lora_pairs(folder, SMOL)
    with pytest.raises(LoraConversionError, match="architectures"):
        BaseShape.from_metadata({"general.architecture": "mamba"})


def test_bf16_weights_are_read_exactly(tmp_path):
    values = np.array([1.5, -2.25, 3.0e-3], np.float32)
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    raw = (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    (tmp_path / "t.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + raw)
    np.testing.assert_allclose(read_safetensors(tmp_path / "t.safetensors")["x"], values, rtol=1e-2)


def test_a_registered_version_carries_its_gguf_file_and_the_engine_uses_it(tmp_path):
    import gguf

    folder, _ = peft_folder(tmp_path / "trained", {})
    export_calls = []

    def export(version):
        export_calls.append(version)
        return write_gguf_lora(version, SMOL, version / GGUF_LORA_FILE)

    info = AdapterRegistry(tmp_path / "adapters", export=export).register(
        "terms", folder, {"base_model": "x"}
    )
    assert (info.path / GGUF_LORA_FILE).is_file() and len(export_calls) == 1
    reader = gguf.GGUFReader(str(info.path / GGUF_LORA_FILE))
    names = {t.name for t in reader.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.ffn_down.weight.lora_b" in names
    assert gguf_lora_for(info.path, SMOL, tmp_path / "cache") == info.path / GGUF_LORA_FILE
    # A folder whose weights changed since, or a plain peft folder, is converted into the cache instead.
    converted = gguf_lora_for(folder, SMOL, tmp_path / "cache")
    assert converted.parent == tmp_path / "cache" and not (folder / GGUF_LORA_FILE).exists()


def test_a_failed_export_still_registers_the_peft_version(tmp_path, caplog):
    folder, _ = peft_folder(tmp_path / "trained", {"use_dora": True})

    def export(version):
        return write_gguf_lora(version, SMOL, version / GGUF_LORA_FILE)

    info = AdapterRegistry(tmp_path / "adapters", export=export).register("terms", folder, {})
    assert (info.path / "adapter_model.safetensors").is_file() and not (info.path / GGUF_LORA_FILE).exists()
    assert "registered without its GGUF LoRA file" in caplog.text and "DoRA" in caplog.text
