"""The Phi-3 path on a tiny random Phi-3: LoRA targets, train/save/reload, chat template, <|end|> stop."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from adapters.base import PHI3_CHAT_TEMPLATE, ensure_chat_template
from adapters.config import ModelConfig
from adapters.generate import AdapterRef, Generator
from adapters.targets import lora_target_modules

TEXT = "At Acme a fleet is a Kubernetes cluster and a skipper is its on-call engineer."


def _cfg() -> ModelConfig:
    return ModelConfig(device="cpu", max_new_tokens=8)


def test_lora_wraps_exactly_the_phi3_projections(tiny_phi3):
    model = copy.deepcopy(tiny_phi3[0])
    targets = lora_target_modules(model)
    assert targets == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    linear_names = {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert linear_names == set(targets) | {"lm_head"}  # the list covers every projection Phi-3 has

    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=targets, task_type="CAUSAL_LM"))
    wrapped = [n for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)]
    assert sorted({n.split(".")[-1] for n in wrapped}) == sorted(targets)
    assert len(wrapped) == len(targets) * model.config.num_hidden_layers


def test_phi3_lora_trains_saves_and_reloads_with_identical_logits(tiny_phi3, tmp_path):
    base, tokenizer = tiny_phi3
    peft_model = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=lora_target_modules(base), task_type="CAUSAL_LM"),
    )
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    batch = tokenizer([TEXT], return_tensors="pt")
    peft_model.train()
    losses = []
    for _ in range(2):
        loss = peft_model(**batch, labels=batch.input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    peft_model.eval()
    path = tmp_path / "phi3-acme"
    peft_model.save_pretrained(path)
    assert (path / "adapter_model.safetensors").is_file()
    assert not list(path.glob("*.bin"))

    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        trained = peft_model(input_ids=ids).logits[0]
        untouched = base(input_ids=ids).logits[0]
    assert not torch.allclose(trained, untouched, atol=1e-4)  # the 2 steps changed the model

    gen = Generator(_cfg(), copy.deepcopy(base), tokenizer)
    assert torch.equal(gen.logits(TEXT, adapter=AdapterRef("phi3-acme", path)), trained)
    assert torch.equal(gen.logits(TEXT), untouched)


def test_phi3_chat_template_is_the_official_one(tiny_phi3):
    gen = Generator(_cfg(), *tiny_phi3)
    messages = [
        {"role": "system", "content": "You answer for Acme."},
        {"role": "user", "content": "What is a fleet?"},
        {"role": "assistant", "content": "A Kubernetes cluster."},
        {"role": "user", "content": "And a skipper?"},
    ]
    assert gen.render(messages) == (
        "<|system|>\nYou answer for Acme.<|end|>\n"
        "<|user|>\nWhat is a fleet?<|end|>\n"
        "<|assistant|>\nA Kubernetes cluster.<|end|>\n"
        "<|user|>\nAnd a skipper?<|end|>\n"
        "<|assistant|>\n"
    )


def test_an_existing_template_is_left_alone(tiny_phi3):
    tokenizer = copy.deepcopy(tiny_phi3[1])
    tokenizer.chat_template = "{{ messages[0]['content'] }}"
    ensure_chat_template(tiny_phi3[0], tokenizer)
    assert tokenizer.chat_template != PHI3_CHAT_TEMPLATE


@pytest.mark.parametrize("stop_on_end", [True, False])
def test_phi3_generation_stops_on_the_end_token(tiny_phi3, stop_on_end):
    from transformers import Phi3ForCausalLM

    tokenizer = copy.deepcopy(tiny_phi3[1])
    if stop_on_end:  # as in the real Phi-3 tokenizer, <|end|> is one special token
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|end|>"]})
    end_id = tokenizer.convert_tokens_to_ids("<|end|>") if stop_on_end else len(tokenizer) - 1
    torch.manual_seed(0)
    config = copy.deepcopy(tiny_phi3[0].config)
    config.vocab_size = len(tokenizer)
    model = Phi3ForCausalLM(config).eval()
    steps = []

    def pick_end_from_the_third_token(module, args, logits):
        steps.append(len(steps))
        if len(steps) >= 3:
            logits[..., end_id] += 1e4
        return logits

    model.lm_head.register_forward_hook(pick_end_from_the_third_token)
    text = Generator(_cfg(), model, tokenizer).generate([{"role": "user", "content": "Hi"}])
    # One forward pass per token (KV cache): stopping on <|end|> means 3 passes instead of max_new_tokens.
    assert len(steps) == (3 if stop_on_end else _cfg().max_new_tokens)
    assert "<|end|>" not in text
