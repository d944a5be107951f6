"""A lean decode loop for the int4 copy (issue 4): the same model, without generate()'s machinery.

Profiling SmolLM2-135M's int4 copy put a third of every token outside the matmuls: generate()'s
per-step bookkeeping (logits processors, stopping criteria, mask building), DynamicCache's torch.cat
per layer, a six-op RMSNorm, and a flash-attention kernel that spends ~150 us on one query row. Here a
decode step is the layers' own weights and a handful of ops: the KV cache (fp32) is allocated once per
answer, the rotary cos/sin are computed once for every position, q/k/v and gate/up each run as one int4
kernel call, and a single query attends with two small fp32 matmuls, its heads grouped over the shared KV
heads. The prompt's pass uses scaled_dot_product_attention, which suits many rows.

Only the model types in ARCHITECTURES take this path (llama: SmolLM2, Llama; phi3, with its fused
projections); Generator falls back to generate() on the same int4 copy for anything else.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator

ARCHITECTURES = ("llama", "phi3")
# Layers this narrow decode one token on one thread: each of their matmuls is tens of microseconds, less
# than waking a second OpenMP thread costs under OMP_WAIT_POLICY=PASSIVE (SmolLM2-135M, hidden 576: the
# lean loop made 52-54 tok/s with one thread against 39-43 with two; BENCHMARKS.md). Wider layers, such as
# Phi-3-mini's 3072, should have enough work per matmul to share (not measured here).
ONE_THREAD_HIDDEN = 1024


@functools.cache
def _libgomp():
    """torch's own libgomp (the one its kernels use), or None on builds without it (macOS, Windows)."""
    import ctypes
    import glob
    import os

    import torch

    for path in sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp*.so*"))):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


@contextlib.contextmanager
def omp_threads(count: int | None):
    """Run the block's torch ops on count OpenMP threads, on this OS thread only.

    torch.set_num_threads would also change the count that every thread touching torch for the first
    time picks up (a Slack handler, an index job). libgomp's omp_set_num_threads is per calling thread.
    """
    gomp = _libgomp() if count else None
    if gomp is None:
        yield
        return
    import torch

    # torch sets a thread's count itself on that thread's first parallel op (to torch.set_num_threads' value,
    # if anyone called it): that must happen before ours, or it would undo ours.
    before = torch.get_num_threads()
    gomp.omp_set_num_threads(count)
    try:
        yield
    finally:
        gomp.omp_set_num_threads(before)


def unsupported_reason(model) -> str | None:
    """None if LeanDecoder can run model, else why not (the caller then uses generate())."""
    config = model.config
    kind = getattr(config, "model_type", None)
    if kind not in ARCHITECTURES:
        return f"model type {kind!r} (the lean decode loop knows {', '.join(ARCHITECTURES)})"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    if getattr(config, "partial_rotary_factor", 1.0) != 1.0:
        return "partial rotary embeddings"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "biases in attention or MLP"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) in ("longrope", "dynamic"):
        # Their frequencies depend on the sequence's length so far; we compute every position at once.
        return f"rope type {rope.get('rope_type', rope.get('type'))!r}"
    return None


def _direct(layer):
    """layer as a plain call on [n, in] input: an int4 layer's own kernel where it has one (quantize's
    WeightInt4Linear.direct): nn.Module.__call__ and the reshapes in forward cost microseconds, 120
    times a token."""
    direct = getattr(layer, "direct", None)
    return direct() if direct is not None else layer


def _fuse(parts):
    """parts as one int4 layer where they can be (quantize's WeightInt4Linear.fused), else as a tuple."""
    fused = getattr(type(parts[0]), "fused", None)
    if fused is not None and all(type(p) is type(parts[0]) for p in parts):
        one = fused(list(parts))
        if one is not None:
            return _direct(one)
    return tuple(_direct(p) for p in parts)


class LeanDecoder:
    """Decodes with model (an int4 copy from adapters.quantize, or any model of ARCHITECTURES).

    Built once per copy: Llama's q/k/v and gate/up projections are fused into one int4 layer each, so a
    layer runs four matmul kernels instead of seven (+~35 MB for SmolLM2-135M).
    """

    def __init__(self, model):
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"the lean decode loop cannot run this model: {reason}")
        self.model = model
        self.layers = []
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            if model.config.model_type == "phi3":
                qkv, gate_up = _direct(attn.qkv_proj), _direct(mlp.gate_up_proj)
            else:
                qkv = _fuse([attn.q_proj, attn.k_proj, attn.v_proj])
                gate_up = _fuse([mlp.gate_proj, mlp.up_proj])
            self.layers.append((layer, qkv, _direct(attn.o_proj), gate_up, _direct(mlp.down_proj)))

    def can_decode(self, total: int) -> bool:
        """Whether prompt + answer (total tokens) fit: past a sliding window (Phi-3-mini's 2047) the model
        masks older keys, which this loop does not."""
        window = getattr(self.model.config, "sliding_window", None)
        return not window or total <= window

    def tokens(
        self,
        input_ids,
        max_new_tokens: int,
        stop_ids: list[int],
        pick: Callable | None = None,
        layer_threads: int | None | str = "auto",
        cancel: threading.Event | None = None,
    ) -> Iterator[int]:
        """Token ids of the answer to input_ids ([1, n]), one at a time, until a stop id or max_new_tokens.

        pick(logits [vocab] fp32) -> id chooses each token (None: greedy). layer_threads: OpenMP threads
        for the layers of each decode step ("auto": 1 for narrow models, see ONE_THREAD_HIDDEN; None:
        torch's count). The prompt's pass and the lm_head, big enough to share, use torch's count.
        Once cancel is set, no further token is computed.
        """
        import torch
        import torch.nn.functional as F

        model = self.model
        config, inner = model.config, model.model
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        group, half, rows = heads // kv_heads, dim // 2, heads + kv_heads
        prompt = input_ids.shape[1]
        total = prompt + max_new_tokens
        dtype = inner.embed_tokens.weight.dtype
        # fp32 keys and values, [kv_heads, position, dim]: one query row against them is two small fp32
        # matmuls, a tenth of the time of the same bf16 ones here (oneDNN's bf16 path has a high fixed cost
        # at these sizes). Queries and keys are rotated in fp32 too: one cast per layer instead of three.
        caches = [(torch.empty(kv_heads, total, dim), torch.empty(kv_heads, total, dim)) for _ in self.layers]
        with torch.inference_mode():
            cos, sin = inner.rotary_emb(inner.embed_tokens.weight[:1], torch.arange(total).unsqueeze(0))
        # Rounded to the model's dtype as HF's rotary does; rotate_half(x) * sin is x with its halves
        # swapped times sin with the first half negated. The query rows also carry the softmax scale.
        cos, sin = cos[0].to(dtype).float(), sin[0].to(dtype).float()
        sin = torch.cat((-sin[:, :half], sin[:, half:]), -1)
        row_scale = torch.tensor([dim**-0.5] * heads + [1.0] * kv_heads).view(rows, 1)
        pick = pick or (lambda logits: int(logits.argmax()))
        if layer_threads == "auto":
            layer_threads = 1 if config.hidden_size <= ONE_THREAD_HIDDEN else None

        def norm(module, x):
            # As HF's RMSNorm rounds: normalized in fp32, cast, then scaled by the bf16 weight.
            return module.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=module.variance_epsilon).to(
                dtype
            )

        def layers(x, start: int):  # x [n, hidden]: the rows at positions start..start+n-1
            n = x.shape[0]
            c = cos[start : start + n].unsqueeze(1) * row_scale  # [n, rows, dim], shared by every layer
            s = sin[start : start + n].unsqueeze(1) * row_scale
            for (layer, qkv, o_proj, gate_up, down), (k_cache, v_cache) in zip(
                self.layers, caches, strict=True
            ):
                h = norm(layer.input_layernorm, x)
                out = (torch.cat([proj(h) for proj in qkv], -1) if isinstance(qkv, tuple) else qkv(h)).float()
                qk = out[:, : rows * dim].view(n, rows, dim)
                qk = qk * c + qk.view(n, rows, 2, half).flip(-2).view(n, rows, dim) * s  # q and k at once
                k_cache[:, start : start + n] = qk[:, heads:].transpose(0, 1)
                v_cache[:, start : start + n] = out[:, rows * dim :].view(n, kv_heads, dim).transpose(0, 1)
                keys, values = k_cache[:, : start + n], v_cache[:, : start + n]  # [kv_heads, start+n, dim]
                if n == 1:  # one query row: [kv_heads, group, dim] against its KV head's keys
                    scores = torch.bmm(qk[0, :heads].view(kv_heads, group, dim), keys.transpose(1, 2))
                    out = torch.bmm(scores.softmax(-1), values).view(1, heads * dim)
                else:  # the prompt, from position 0
                    out = F.scaled_dot_product_attention(
                        qk[:, :heads].transpose(0, 1), keys, values, is_causal=True, scale=1.0,
                        enable_gqa=group > 1,
                    )  # fmt: skip
                    out = out.transpose(0, 1).reshape(n, heads * dim)
                x = x + o_proj(out.to(dtype))
                h = norm(layer.post_attention_layernorm, x)
                gate, up = (
                    (gate_up[0](h), gate_up[1](h)) if isinstance(gate_up, tuple) else gate_up(h).chunk(2, -1)
                )
                x = x + down(F.silu(gate).mul_(up))
            return x

        embed = inner.embed_tokens

        def logits(token: int | None, start: int):
            x = embed(input_ids[0]) if token is None else embed.weight[token : token + 1]
            with omp_threads(layer_threads if start else None):
                x = layers(x, start)
            return model.lm_head(norm(inner.norm, x[-1:]))[0].float()

        stops = set(stop_ids)
        with torch.inference_mode():
            token = pick(logits(None, 0))
            for step in range(max_new_tokens):
                if token in stops:
                    return
                yield token
                if step + 1 == max_new_tokens or (cancel is not None and cancel.is_set()):
                    return
                token = pick(logits(token, prompt + step))


def sampler(temperature: float, top_k: int = 50) -> Callable | None:
    """pick() for LeanDecoder.tokens: None (greedy) at temperature 0, else sampling from the top_k logits
    at that temperature (generate()'s defaults for do_sample=True)."""
    if temperature <= 0:
        return None
    import torch

    def pick(logits):
        top = logits.topk(min(top_k, logits.shape[-1]))
        return int(top.indices[torch.multinomial(torch.softmax(top.values / temperature, -1), 1)])

    return pick


def text_pieces(tokenizer, token_ids: Iterator[int]) -> Iterator[str]:
    """The text of token_ids as it grows, special tokens skipped.

    Each step decodes only the last few tokens: those already sent (as context, since a token's text can
    depend on its neighbours) and the new ones, as vLLM's incremental detokenizer does; decoding the
    whole answer every token costs more the longer it gets. While the text ends in an incomplete UTF-8
    character (a byte-level token split it) nothing is sent, as transformers' TextStreamer does.
    """
    ids: list[int] = []
    prefix = read = 0  # ids[prefix:read]: already sent, decoded again as context for the next piece
    for token in token_ids:
        ids.append(token)
        sent = tokenizer.decode(ids[prefix:read], skip_special_tokens=True)
        text = tokenizer.decode(ids[prefix:], skip_special_tokens=True)
        if len(text) <= len(sent) or text.endswith("\ufffd"):
            continue
        yield text[len(sent) :]
        prefix, read = read, len(ids)


def pieces_on_worker(
    make_pieces: Callable[[threading.Event], Iterator[str]], name: str = "expertbot-decode"
) -> Iterator[str]:
    """make_pieces(stop)'s text pieces, produced on a worker thread and handed over through a queue.

    The consumer (a Slack handler) makes a slow network call every second to show the answer so far;
    decoding on its own thread keeps going meanwhile. Closing this iterator sets stop, which make_pieces
    passes on to the decoder (LeanDecoder.tokens' cancel), so the worker stops at the next token; its
    exception, if any, is raised here.
    """
    import queue

    pieces: queue.Queue = queue.Queue()
    stop = threading.Event()
    done = object()

    def work():
        try:
            for piece in make_pieces(stop):
                pieces.put(piece)
                if stop.is_set():
                    break
        except BaseException as err:  # handed to the consumer
            pieces.put(err)
        finally:
            pieces.put(done)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while (item := pieces.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
