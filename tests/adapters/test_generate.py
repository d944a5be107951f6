"""transformers generation on the real bundled SmolLM2: template, streaming, limit, adapters, perplexity."""

from __future__ import annotations

import math
import pickle
import threading

import pytest
import torch

from adapters.base import load_base_model
from adapters.config import ModelConfig
from adapters.generate import AdapterRef, Generator, UnsafeAdapterError
from adapters.targets import lora_target_modules

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
LONG_ANSWER = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def gen(smollm, smollm_model_config):
    """transformers generation on the float model (the safetensors path, and what training evaluates)."""
    model, tokenizer = smollm
    return Generator(smollm_model_config, model, tokenizer)


def test_render_uses_smollm2_chat_template(gen):
    prompt = gen.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(ValueError, match="content"):
        gen.render([{"role": "user"}])


def test_stream_matches_generate_and_respects_the_token_limit(gen, smollm):
    model, tokenizer = smollm
    pieces = list(gen.stream(LONG_ANSWER, max_new_tokens=12))
    assert len(pieces) > 3
    assert "".join(pieces) == gen.generate(LONG_ANSWER, max_new_tokens=12)

    # The same greedy run straight through transformers: exactly 12 new tokens, same text.
    inputs = tokenizer(gen.render(LONG_ANSWER), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    new_tokens = out[0, inputs.input_ids.shape[1] :]
    assert len(new_tokens) == 12
    assert "".join(pieces) == tokenizer.decode(new_tokens, skip_special_tokens=True)


def test_default_token_limit_comes_from_config(gen, smollm_model_config):
    text = gen.generate(LONG_ANSWER)
    assert gen.generate(LONG_ANSWER, max_new_tokens=smollm_model_config.max_new_tokens) == text
    assert text != gen.generate(LONG_ANSWER, max_new_tokens=4)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        gen.stream(QUESTION, max_new_tokens=0)


def test_generation_stops_at_end_of_turn(gen):
    assert gen.generate(QUESTION, max_new_tokens=40).strip() == "The capital of France is Paris."


def test_errors_in_the_generate_thread_reach_the_consumer(gen, smollm):
    calls = []

    def fail_on_third_step(module, args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom in step 3")

    handle = smollm[0].model.register_forward_pre_hook(fail_on_third_step)
    try:
        with pytest.raises(RuntimeError, match="boom in step 3"):
            list(gen.stream(LONG_ANSWER, max_new_tokens=10))
    finally:
        handle.remove()
    assert gen.generate(QUESTION, max_new_tokens=3)  # the lock was released


def test_sampling_when_temperature_is_positive(tiny_phi3):
    sampler = Generator(ModelConfig(device="cpu", max_new_tokens=6, temperature=1.0), *tiny_phi3)
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(sampler.generate(QUESTION))
    assert runs[0] == runs[1] != runs[2]  # seeded sampling, not greedy decoding


def test_closing_a_stream_early_frees_the_generator(gen):
    stream = gen.stream(LONG_ANSWER, max_new_tokens=200)
    assert next(stream)
    stream.close()
    # If close() left the lock held this would block forever; the join guards against hanging the suite.
    result = []
    worker = threading.Thread(target=lambda: result.append(gen.generate(QUESTION, max_new_tokens=3)))
    worker.start()
    worker.join(timeout=300)
    assert result and result[0]


def test_perplexity_is_exp_of_mean_token_nll(gen, smollm):
    model, tokenizer = smollm
    texts = ["The capital of France is Paris.", "Vector databases store embeddings for search."]
    nll, count = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt").input_ids
            logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
            nll -= logprobs.gather(1, ids[0, 1:, None]).sum().item()
            count += ids.shape[1] - 1
    assert gen.perplexity(texts) == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert gen.perplexity(["The capital of France is Paris."]) < gen.perplexity(
        ["Paris capital the France of is."]
    )
    with pytest.raises(ValueError, match="texts"):
        gen.perplexity([])


class _WritesMarker:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_adapter_is_refused_without_being_opened(gen, tmp_path):
    payload = pickle.dumps(_WritesMarker(tmp_path / "proof"))
    pickle.loads(payload)  # the payload really does run code when unpickled...
    assert (tmp_path / "proof").exists()

    marker = tmp_path / "unpickled"
    bad = tmp_path / "evil-adapter"
    bad.mkdir()
    (bad / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"]}')
    (bad / "adapter_model.bin").write_bytes(pickle.dumps(_WritesMarker(marker)))
    with pytest.raises(UnsafeAdapterError, match="only safetensors adapters are supported"):
        gen.stream(QUESTION, adapter=AdapterRef("evil", bad))
    with pytest.raises(UnsafeAdapterError, match="only safetensors adapters are supported"):
        gen.perplexity(["hello there"], adapter=AdapterRef("evil", bad))
    for suffix in (".pt", ".pth"):
        folder = tmp_path / f"evil{suffix}"
        folder.mkdir()
        (folder / "adapter_config.json").write_text("{}")
        (folder / f"adapter_model{suffix}").write_bytes(pickle.dumps(_WritesMarker(marker)))
        (folder / "adapter_model.safetensors").write_bytes(b"")  # a safetensors file beside it is no excuse
        with pytest.raises(UnsafeAdapterError, match="only safetensors"):
            gen.generate(QUESTION, adapter=AdapterRef("evil", folder))
        with pytest.raises(UnsafeAdapterError, match="only safetensors"):
            gen.generate(QUESTION, adapter=AdapterRef("evil", folder / f"adapter_model{suffix}"))
    assert not marker.exists()  # ...and ours never unpickled it

    empty = tmp_path / "no-weights"
    empty.mkdir()
    (empty / "adapter_config.json").write_text("{}")
    with pytest.raises(UnsafeAdapterError, match="adapter_model.safetensors is missing"):
        gen.generate(QUESTION, adapter=AdapterRef("empty", empty))


@pytest.fixture(scope="module")
def lora_gen(smollm_model_config, tmp_path_factory):
    """A Generator on a private SmolLM2 copy plus a random (non-zero) LoRA adapter saved as safetensors."""
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_base_model(smollm_model_config)
    torch.manual_seed(0)
    lora = LoraConfig(
        r=4, target_modules=lora_target_modules(model), init_lora_weights=False, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, lora)
    path = tmp_path_factory.mktemp("adapter") / "acme-v1"
    peft_model.save_pretrained(path)
    assert (path / "adapter_model.safetensors").is_file()
    # Trainer leaves pickles like this next to adapters; loading must never open them.
    (path / "training_args.bin").write_bytes(pickle.dumps(_WritesMarker(path.parent / "unpickled")))
    base = peft_model.unload()  # LoRA layers out again: the plain base model
    return Generator(smollm_model_config, base, tokenizer), AdapterRef("acme-v1", path)


def test_adapter_changes_logits_and_disabling_restores_the_base(lora_gen):
    gen, ref = lora_gen
    text = "Our on-call rotation is documented in the runbook."
    base = gen.logits(text)
    adapted = gen.logits(text, adapter=ref)
    assert not torch.allclose(base, adapted, atol=1e-3)
    assert torch.equal(gen.logits(text), base)  # adapter=None -> disable_adapter -> base logits
    assert torch.equal(gen.logits(text, adapter=AdapterRef("acme-v1", ref.path)), adapted)  # cached by name
    assert gen.perplexity([text], adapter=ref) != gen.perplexity([text])
    assert not (ref.path.parent / "unpickled").exists()


def test_an_answer_finishes_on_the_adapter_it_started_with(lora_gen, check_answer_keeps_its_adapter):
    gen, ref = lora_gen
    check_answer_keeps_its_adapter(gen, ref, LONG_ANSWER)
