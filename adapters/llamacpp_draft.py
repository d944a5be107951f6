"""Prompt-lookup drafts for the llama.cpp engine (adapters/llamacpp.py, cfg.draft_tokens; off by default).

llama-cpp-python applies `draft_model` only inside `Llama.generate`; the engine drives `llama_decode`
itself (streaming, cancel, LoRA switching), so the same loop is written here around llama-cpp-python's own
LlamaPromptLookupDecoding. Off by default because on a 2-core CPU a batch of a few tokens cost 2-4x one
token and only ~2.25 tokens were kept per step on RAG answers (BENCHMARKS.md): it pays where a batch costs
about one token (a GPU, or a model big enough to be memory-bound).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class DraftStats:
    """Prompt-lookup drafting so far: decode steps, tokens guessed, guesses kept."""

    steps: int = 0
    guessed: int = 0
    kept: int = 0


def drafted(engine, sampler, ids: list[int], limit: int, stop: threading.Event, most: int, stats: DraftStats):
    """Greedy decoding with prompt-lookup drafts (llama-cpp-python's LlamaPromptLookupDecoding): the tokens
    that followed the last bigram's earlier occurrence in the prompt or answer are evaluated in one batch
    with the new token, and kept for as long as they are what greedy decoding picks from that batch's
    logits. A RAG answer copies spans of its context, so several tokens often cost one step. The context
    holds ids' KV with the last one's logits ready (prefill)."""
    import numpy as np
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    lookup = LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens=most)
    history = np.array(ids + [0] * limit, dtype=np.intc)  # prompt, then the answer so far
    n, position, token = 0, len(ids), sampler.sample(engine.ctx, -1)
    while True:
        if engine.is_end(token) or stop.is_set():
            return
        yield engine.piece(token)
        history[position], n = token, n + 1
        if n >= limit:
            return
        guess = lookup(history[: position + 1])[: limit - n].tolist()
        engine.evaluate([token, *guess], position, keep_logits=bool(guess), threads=engine.decode_threads)
        position += 1
        stats.steps, stats.guessed = stats.steps + 1, stats.guessed + len(guess)
        for i, proposed in enumerate(guess):
            token = sampler.sample(engine.ctx, i)
            if token != proposed:
                break
            stats.kept += 1
            if engine.is_end(token) or stop.is_set():
                return
            yield engine.piece(token)
            history[position], n, position = token, n + 1, position + 1
            if n >= limit:
                return
        else:
            token = sampler.sample(engine.ctx, len(guess) if guess else -1)
        engine.forget_from(position)  # the KV of rejected guesses
