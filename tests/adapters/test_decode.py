"""The lean decode loop (adapters/decode.py) computes what the model's own forward computes, token by token.

Each test compares against transformers' own forward pass on the same weights, so a wrong rotary
convention, KV cache slot, head grouping or fused projection shows up as a logits difference.
"""

from __future__ import annotations

import copy
import threading
import time

import pytest
import torch

from adapters.decode import (
    LeanDecoder,
    omp_threads,
    pieces_on_worker,
    sampler,
    text_pieces,
    unsupported_reason,
)
from adapters.quantize import _modules, inference_copy, quantize_in_place


def lean_logits(model, ids, steps):
    """(tokens, logits per step) from LeanDecoder, greedy."""
    seen = []

    def pick(logits):
        seen.append(logits.clone())
        return int(logits.argmax())

    tokens = list(LeanDecoder(model).tokens(ids, steps, [], pick=pick))
    return tokens, torch.stack(seen)


def own_forward_logits(model, ids, tokens):
    """The model's own logits for every position after the prompt, from one full forward pass."""
    full = torch.cat([ids, torch.tensor([tokens])], 1)
    with torch.inference_mode():
        logits = model(input_ids=full).logits[0].float()
    return logits[ids.shape[1] - 1 : ids.shape[1] - 1 + len(tokens)]


@pytest.fixture(scope="module")
def tiny_llama():
    """A random 2-layer Llama with grouped KV heads (4 query heads over 2 KV heads), fp32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=300,
        max_position_embeddings=256,
        rope_theta=100000.0,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_phi3"])
def test_lean_decoding_of_a_float_model_is_its_own_forward(name, request):
    fixture = request.getfixturevalue(name)
    model = fixture[0] if isinstance(fixture, tuple) else fixture
    assert unsupported_reason(model) is None
    ids = torch.tensor([[5, 17, 42, 7, 99, 3, 250, 12]])
    tokens, logits = lean_logits(model, ids, 12)
    assert len(tokens) == 12
    expected = own_forward_logits(model, ids, tokens)
    assert torch.allclose(logits, expected, atol=1e-4), float((logits - expected).abs().max())
    with torch.inference_mode():  # and greedy decoding picks what generate() picks
        generated = model.generate(input_ids=ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert generated[0, ids.shape[1] :].tolist() == tokens


def test_lean_decoding_of_the_int4_copy_follows_its_own_forward(smollm):
    model, tokenizer = smollm
    fast = quantize_in_place(inference_copy(model))
    decoder = LeanDecoder(fast)
    parts = [part for layer in decoder.layers for part in layer[1:]]
    assert len(parts) == 4 * len(fast.model.layers)  # q/k/v and gate/up fused, each a kernel call of its own
    assert not [part for part in parts if isinstance(part, (tuple, torch.nn.Module))]
    ids = tokenizer("The capital of France is Paris. The capital of Italy is", return_tensors="pt").input_ids
    tokens, logits = lean_logits(fast, ids, 8)
    expected = own_forward_logits(fast, ids, tokens)
    cosine = torch.nn.functional.cosine_similarity(logits, expected, dim=-1)
    # bf16 activations summed in another order (fp32 attention here): measured 0.9990-0.9999 per step.
    assert cosine.min() > 0.998, cosine
    assert expected.argmax(-1).tolist() == tokens  # its own forward would have picked the same tokens
    assert tokenizer.decode(tokens).strip().startswith("Rome")


def test_fused_int4_layers_compute_their_parts_side_by_side():
    int4, _ = _modules()
    torch.manual_seed(0)
    sizes = (128, 64, 64)  # as q, k and v with grouped KV heads
    linears = [torch.nn.Linear(64, out, bias=False) for out in sizes]
    loras = [(torch.randn(4, 64), torch.randn(out, 4), 0.5) for out in sizes]
    parts = [int4(linear, lora) for linear, lora in zip(linears, loras, strict=True)]
    fused = int4.fused(parts)
    x = torch.randn(3, 64).bfloat16()
    with torch.inference_mode():
        expected = torch.cat([p(x) for p in parts], -1).float()
        got = fused(x).float()
    assert fused.out_features == 256
    assert torch.allclose(got, expected, atol=1e-2, rtol=1e-2), float((got - expected).abs().max())
    # One part without a LoRA: the parts cannot share one low-rank path, so no fusion.
    assert int4.fused([int4(linears[0]), parts[1]]) is None
    # Rows packed in blocks of 64: a 32-row part cannot be stacked as it is (it computed garbage when it was).
    assert int4.fused([int4(linears[0]), int4(torch.nn.Linear(64, 32, bias=False))]) is None


def test_text_pieces_never_split_a_character(smollm):
    tokenizer = smollm[1]
    text = "Café ☕ naïve 日本語, done."
    ids = tokenizer(text, add_special_tokens=False).input_ids
    # Some character spans several byte-level tokens, or this test would prove nothing.
    assert any(tokenizer.decode(ids[:i]).endswith("\ufffd") for i in range(1, len(ids)))
    pieces = list(text_pieces(tokenizer, iter([*ids, tokenizer.eos_token_id])))
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)


def test_a_model_the_loop_does_not_know_is_refused_with_the_reason(tiny_phi3):
    model = copy.deepcopy(tiny_phi3[0])
    model.config.model_type = "gpt2"
    assert "model type 'gpt2'" in unsupported_reason(model)
    with pytest.raises(ValueError, match="lean decode loop cannot run this model: model type 'gpt2'"):
        LeanDecoder(model)
    model.config.model_type = "phi3"
    model.config.rope_parameters = {"rope_type": "longrope", "rope_theta": 10000.0}
    assert unsupported_reason(model) == "rope type 'longrope'"


def test_past_a_sliding_window_the_loop_declines(tiny_phi3):
    model = copy.deepcopy(tiny_phi3[0])
    decoder = LeanDecoder(model)
    assert decoder.can_decode(100_000)  # no window
    model.config.sliding_window = 64
    assert decoder.can_decode(64) and not decoder.can_decode(65)


def test_omp_threads_changes_only_the_calling_thread():
    """Unlike torch.set_num_threads, which a thread touching torch for the first time would pick up."""
    before = torch.get_num_threads()
    if before < 2:
        pytest.skip("torch runs one thread here: nothing to lower")
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def worker():
        with omp_threads(1):
            seen["inside"] = torch.get_num_threads()
            inside.set()
            release.wait(30)
        seen["after"] = torch.get_num_threads()

    def fresh():
        seen["a new thread, meanwhile"] = torch.get_num_threads()

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(30)
    seen["this thread, meanwhile"] = torch.get_num_threads()
    other = threading.Thread(target=fresh)
    other.start()
    other.join()
    release.set()
    thread.join()
    assert seen == {
        "inside": 1,
        "this thread, meanwhile": before,
        "a new thread, meanwhile": before,
        "after": before,
    }


def test_sampler_is_greedy_at_zero_and_samples_only_the_top_k():
    assert sampler(0.0) is None
    torch.manual_seed(0)
    logits = torch.full((1000,), -5.0)
    logits[[3, 7]] = 10.0
    pick = sampler(1.0, top_k=2)
    assert {pick(logits) for _ in range(50)} == {3, 7}


def test_pieces_on_worker_hands_over_pieces_and_errors_and_stops_when_closed():
    produced = []

    def pieces(stop):
        for i in range(1000):
            produced.append(i)
            yield str(i)
            time.sleep(0.001)

    stream = pieces_on_worker(pieces)
    assert next(stream) == "0"
    stream.close()  # returns once the worker has stopped
    count = len(produced)
    time.sleep(0.05)
    assert count == len(produced) < 1000

    def failing(stop):
        yield "a"
        raise RuntimeError("kernel failed")

    stream = pieces_on_worker(failing)
    assert next(stream) == "a"
    with pytest.raises(RuntimeError, match="kernel failed"):
        next(stream)


def test_a_cancelled_decoder_computes_no_further_token(tiny_llama):
    cancel = threading.Event()
    steps = []

    def pick(logits):
        steps.append(1)
        return int(logits.argmax())

    tokens = LeanDecoder(tiny_llama).tokens(torch.tensor([[5, 17, 42]]), 50, [], pick=pick, cancel=cancel)
    assert next(tokens) is not None and len(steps) == 1
    cancel.set()
    assert list(tokens) == [] and len(steps) == 1  # no forward pass after the cancel
