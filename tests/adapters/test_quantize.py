"""quantize="int4": the 4-bit inference copy follows the float SmolLM2, and a bad value is a clean error.

Hot swap on the int4 copies is covered by test_generate.py's lora_gen tests (its Generator uses the default,
int4) and by tests/bot/test_hot_swap.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from adapters.base import load_base_model
from adapters.config import ModelConfig
from adapters.generate import Generator
from adapters.quantize import inference_copy, quantize_in_place, unsupported_reason

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TEXT = (
    "<|im_start|>user\nWhat does the on-call engineer do?<|im_end|>\n<|im_start|>assistant\n"
    "The on-call engineer answers pages, keeps the runbook current and hands over every Monday."
)


def test_a_bad_quantize_value_names_the_field_and_the_choices():
    with pytest.raises(ValueError, match=r"quantize must be one of none, int4, got 'int8'"):
        ModelConfig(quantize="int8")
    with pytest.raises(ValueError, match="only 'int4' quantizes"):
        quantize_in_place(torch.nn.Linear(32, 32), "none")
    assert ModelConfig().quantize == "int4"


def test_the_bot_setting_reaches_the_model_config_and_rejects_bad_values(tmp_path, monkeypatch):
    from bot.config import ConfigError, load_settings

    monkeypatch.setenv("EXPERTBOT_CONFIG", "")  # no expertbot.toml from the working directory
    assert load_settings(home=tmp_path).base_model_config().quantize == "int4"
    monkeypatch.setenv("EXPERTBOT_QUANTIZE", "none")
    assert load_settings(home=tmp_path).base_model_config().quantize == "none"
    monkeypatch.setenv("EXPERTBOT_QUANTIZE", "int8")
    with pytest.raises(ConfigError) as err:
        load_settings(home=tmp_path)
    assert "EXPERTBOT_QUANTIZE: String should match pattern '^(none|int4)$' (got 'int8')" in str(err.value)


def test_quantize_is_cpu_only_and_says_why_not_elsewhere():
    assert unsupported_reason("int4", "cpu") is None  # torch 2.13 has the CPU int4/int8 kernels
    assert "CPU option" in unsupported_reason("int4", "cuda")
    assert unsupported_reason("none", "cuda") is None


def test_int4_copy_follows_the_float_model_and_leaves_it_alone(smollm):
    model, tokenizer = smollm
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        before = model(input_ids=ids).logits[0].float()
        fast = quantize_in_place(inference_copy(model))
        quick = fast(input_ids=ids).logits[0].float()
        assert torch.equal(model(input_ids=ids).logits[0].float(), before)  # the original is untouched
    assert type(fast.model.layers[0].mlp.down_proj).__name__ == "WeightInt4Linear"
    assert type(fast.lm_head).__name__ == "WeightInt8Head"
    assert fast.model.embed_tokens.weight.dtype == torch.bfloat16
    assert fast.model.embed_tokens.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    # Measured: top-1 agreement 0.98, KL 0.003 nats/token. Dynamic int8 (dropped) gave 0.44 and 1.5.
    agree = (quick.argmax(-1) == before.argmax(-1)).float().mean().item()
    kl = torch.nn.functional.kl_div(
        quick.log_softmax(-1), before.log_softmax(-1), log_target=True, reduction="batchmean"
    )
    assert agree >= 0.9 and kl.item() < 0.02, (agree, kl.item())


def test_the_head_s_int4_first_pass_leaves_the_logits_decoding_looks_at_as_int8_gives_them(smollm):
    """The int4 pass only chooses which rows to compute from int8: at every position of a text, greedy's
    pick and the best 50 logits (what top-k sampling sees) are those of the whole int8 head."""
    from adapters.quantize import REFINE

    model, tokenizer = smollm
    fast = quantize_in_place(inference_copy(model))
    head = fast.lm_head
    assert head.coarse_int4 is not None and REFINE >= 50
    ids = tokenizer(TEXT + " The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    with torch.inference_mode():
        hidden = fast.model(input_ids=ids).last_hidden_state[0]  # after the final norm
        got = head(hidden)
        whole = hidden.float() @ (head.weight_int8.float() * head.scale[:, None]).T
    assert torch.equal(got.argmax(-1), whole.argmax(-1))  # greedy picks the same token everywhere
    top, whole_top = got.topk(50, dim=-1), whole.topk(50, dim=-1)
    same = [set(a.tolist()) == set(b.tolist()) for a, b in zip(top.indices, whole_top.indices, strict=True)]
    assert sum(same) >= 0.99 * len(same), f"{sum(same)} of {len(same)} positions"  # measured: all
    assert torch.allclose(top.values[0], whole_top.values[0], atol=1e-3)  # the rows computed from int8


def test_an_adapters_change_survives_the_int4_copy(smollm):
    """A trained LoRA changes each weight by far less than one 4-bit step: merged and then rounded, its
    change was mostly lost (a trained adapter's answers came back as the base model's). Kept beside the
    4-bit weights, the change the adapter makes to the logits is the float model's."""
    import copy

    from peft import LoraConfig, get_peft_model

    from adapters.targets import lora_target_modules

    model, tokenizer = smollm
    torch.manual_seed(0)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=lora_target_modules(model), init_lora_weights=False)
    peft = get_peft_model(copy.deepcopy(model), cfg, adapter_name="terms").eval()
    with torch.no_grad():  # logits change by ~9%: far above the int4 copy's own noise (~2%), yet each
        for name, param in peft.named_parameters():  # weight moves by less than one 4-bit step
            if "lora_B" in name:
                param.mul_(0.3)
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        with peft.disable_adapter():
            base = peft(input_ids=ids).logits[0].float()
        change = peft(input_ids=ids).logits[0].float() - base
        fast_base = quantize_in_place(inference_copy(model))(input_ids=ids).logits[0].float()
        fast = quantize_in_place(inference_copy(peft.get_base_model(), peft, "terms"))
        fast_change = fast(input_ids=ids).logits[0].float() - fast_base
        merged_then_rounded = quantize_in_place(copy.deepcopy(peft).merge_and_unload())
        merged_change = merged_then_rounded(input_ids=ids).logits[0].float() - fast_base
    assert type(fast.model.layers[0].self_attn.q_proj).__name__ == "WeightInt4Linear"
    assert fast.model.layers[0].self_attn.q_proj.lora_a is not None
    kept = torch.nn.functional.cosine_similarity(change.flatten(), fast_change.flatten(), dim=0).item()
    merged = torch.nn.functional.cosine_similarity(change.flatten(), merged_change.flatten(), dim=0).item()
    # Measured: kept 0.97, merged then rounded 0.48.
    assert kept > 0.9 and kept > merged + 0.2, (kept, merged)


def test_int4_generator_gives_the_float_answer_without_running_the_float_model(smollm, smollm_model_config):
    model, tokenizer = smollm
    float_answer = Generator(replace(smollm_model_config, quantize="none"), model, tokenizer).generate(
        QUESTION, max_new_tokens=20
    )
    fast = Generator(smollm_model_config, model, tokenizer)
    assert fast.cfg.quantize == "int4"
    answer = fast.generate(QUESTION, max_new_tokens=20)  # builds the int4 copy
    assert answer.strip() == float_answer.strip() == "The capital of France is Paris."
    assert fast._fast.cached(None)[1] is not None  # decoded by the lean loop (adapters/decode.py)
    calls = []  # hooked after the copy was made: deepcopy would have copied the hook along
    handle = model.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        assert fast.generate(QUESTION, max_new_tokens=20) == answer  # the second answer reuses the copy
    finally:
        handle.remove()
    assert calls == []  # every token came from the int4 copy, not the float model


@pytest.mark.slow
def test_a_fresh_gguf_conversion_does_not_claim_to_be_quantized(tmp_path):
    """Right after converting, the model is the one returned (no reload): Trainer refuses models that
    claim to be quantized, so the stale GGUF flags must go."""
    model, _ = load_base_model(ModelConfig(cache_dir=tmp_path, device="cpu"))
    assert (next(tmp_path.iterdir()) / "config.json").is_file()  # it really was a conversion
    assert model.is_quantized is False
    assert getattr(model, "hf_quantizer", None) is None
    assert not hasattr(model.config, "quantization_config")


def test_a_model_the_lean_loop_does_not_know_is_answered_by_generate_on_its_int4_copy(
    tiny_phi3, smollm_model_config, caplog
):
    import copy
    import logging

    model, tokenizer = tiny_phi3
    lean = Generator(smollm_model_config, copy.deepcopy(model), tokenizer)
    other = copy.deepcopy(model)
    other.config.model_type = "phi3-variant"  # same weights and forward; a type the lean loop does not know
    fallback = Generator(smollm_model_config, other, tokenizer)
    with caplog.at_level(logging.INFO, logger="adapters.quantize"):
        answer = fallback.generate(QUESTION, max_new_tokens=12)
    assert fallback._fast.cached(None)[1] is None
    assert "not the lean decode loop: model type 'phi3-variant'" in caplog.text
    assert answer and answer == lean.generate(QUESTION, max_new_tokens=12)  # both on an int4 copy
    assert lean._fast.cached(None)[1] is not None
