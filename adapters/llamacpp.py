"""Answers from llama.cpp in-process (llama-cpp-python's low-level API), for GGUF base models.

One model and one context serve every answer, so a lock serialises generation, and the adapter is set
on the context while holding it: an answer always finishes on the adapter it started with. Adapters
are GGUF LoRA files (adapters/gguf_lora.py), loaded once by name and switched per answer with
llama_set_adapters_lora: the base weights are never reloaded. The context keeps the last prompt's KV
cache, and an answer on the same adapter re-evaluates only what differs from it (the system prompt is
shared by every question).

Threads: the prompt pass uses every core (big matmuls); decoding a token of a small model runs on one
thread (default_decode_threads), which needs no OpenMP barriers at all. Under OMP_WAIT_POLICY=PASSIVE, the
bot's policy for torch, each barrier wakes a sleeping thread, and a token of SmolLM2 has hundreds of them.

Flash attention is on by default (a faster prompt pass and decode, the same LoRA fidelity). Prompt-lookup
drafts (cfg.draft_tokens, adapters/llamacpp_draft.py) are off by default: on a 2-core CPU a batch of a
few tokens costs 2-4x one token, more than the guesses save (BENCHMARKS.md, issue 12).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from adapters.config import ModelConfig
from adapters.engine import PromptEngine, check_messages, pieces_on_worker, utf8_pieces
from adapters.generate import AdapterRef, check_safe_adapter
from adapters.llamacpp_draft import DraftStats, drafted
from adapters.llamacpp_model import EngineSetupError, llama_cpp_module, model_params, weights_file

log = logging.getLogger(__name__)

KEPT_ADAPTERS = 4  # loaded LoRA files kept (current, previous, ...); ~10 MB each for SmolLM2
LOGITS_CHUNK = 32  # tokens per decode in logits(): llama.cpp keeps an output buffer that large


def default_decode_threads(n_params: int) -> int:
    """One thread for a small model: a token of the bundled 135M model is hundreds of microsecond-sized
    ops, and waking a sleeping thread for each (OMP_WAIT_POLICY=PASSIVE) cost more than the second core gave
    (BENCHMARKS.md, issue 12). A model of a billion parameters or more has millisecond ops: every core."""
    return 1 if n_params < 1_000_000_000 else os.cpu_count() or 1


@dataclass
class _Lora:
    folder: Path
    stamp: float  # the safetensors file's mtime: a re-trained folder is loaded again
    handle: object  # llama_adapter_lora *


class _Engine:
    """The llama.cpp objects of one loaded model (built by LlamaCppGenerator under its load lock)."""

    def __init__(self, cfg: ModelConfig, path: Path, gpu: bool):
        self.llama_cpp = llama_cpp = llama_cpp_module()
        from llama_cpp import _internals
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from adapters.base import PHI3_CHAT_TEMPLATE

        llama_cpp.llama_backend_init()  # idempotent: ggml's tables and timer
        self.placement = model_params(gpu)
        self.path = path
        self.model = _internals.LlamaModel(path_model=str(path), params=self.placement.params, verbose=False)
        self.decode_threads = cfg.decode_threads or default_decode_threads(self.model.n_params())
        self.prompt_threads = cfg.prompt_threads or os.cpu_count() or 1
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = cfg.context_tokens
        params.n_batch = params.n_ubatch = cfg.prompt_batch
        params.n_threads, params.n_threads_batch = self.decode_threads, self.prompt_threads
        self.batch_threads = self.prompt_threads
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if cfg.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.no_perf = True
        self.ctx = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=cfg.prompt_batch, embd=0, n_seq_max=1, verbose=False)
        self.n_ctx, self.n_batch, self.n_vocab = cfg.context_tokens, cfg.prompt_batch, self.model.n_vocab()
        self.meta = self.model.metadata()
        template = self.meta.get("tokenizer.chat_template") or (
            PHI3_CHAT_TEMPLATE if self.meta.get("general.architecture") == "phi3" else None
        )
        if template is None:
            raise EngineSetupError(
                f"{path} has no chat template (tokenizer.chat_template); expertbot needs one"
            )
        bos, eos = self.model.token_bos(), self.model.token_eos()
        self.formatter = Jinja2ChatFormatter(
            template=template,
            bos_token=self.model.token_get_text(bos) if bos >= 0 else "",
            eos_token=self.model.token_get_text(eos) if eos >= 0 else "",
            add_generation_prompt=True,
        )
        self.cached: list[int] = []  # tokens whose KV the context holds (for the active adapter)
        self.active = None  # the llama_adapter_lora * set on the context, None = the base model

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        return self.model.tokenize(text.encode(), add_bos=add_bos, special=True)

    def is_end(self, token: int) -> bool:
        # End-of-generation tokens from the GGUF vocabulary: eos, and the chat template's end of turn
        # (<|im_end|> for SmolLM2, <|end|> for Phi-3).
        return bool(self.llama_cpp.llama_vocab_is_eog(self.model.vocab, token))

    def evaluate(
        self, tokens: list[int], start: int, *, keep_logits: bool = False, chunk: int = 0, threads: int = 0
    ) -> list:
        """Run tokens at positions start.. through the model; keep_logits: every position's logits, one
        array per chunk (only kept in the context when threads is given: a drafted step). Otherwise only
        the last token's logits are computed (ready for sampling). threads: for a batch of several tokens,
        which llama.cpp otherwise runs on the prompt threads."""
        import numpy as np

        step, logits = chunk or self.n_batch, []
        del self.cached[start:]
        if threads:
            self.set_threads(threads)
            self.batch.set_batch(tokens, n_past=start, logits_all=keep_logits)
            self.ctx.decode(self.batch)
            self.cached.extend(tokens)
            return logits
        for i in range(0, len(tokens), step):
            part = tokens[i : i + step]
            self.batch.set_batch(part, n_past=start + i, logits_all=keep_logits)
            self.ctx.decode(self.batch)
            self.cached.extend(part)
            if keep_logits:
                logits.append(
                    np.ctypeslib.as_array(self.ctx.get_logits(), shape=(len(part), self.n_vocab)).copy()
                )
        return logits

    def set_threads(self, batch_threads: int) -> None:
        if batch_threads != self.batch_threads:
            self.llama_cpp.llama_set_n_threads(self.ctx.ctx, self.decode_threads, batch_threads)
            self.batch_threads = batch_threads

    def forget_from(self, position: int) -> None:
        """Drop the KV of positions >= position (drafted tokens that were not kept)."""
        if len(self.cached) > position:
            del self.cached[position:]
            if not self.ctx.kv_cache_seq_rm(0, position, -1):
                raise RuntimeError(
                    "llama.cpp could not drop drafted tokens from its KV cache; set draft_tokens=0"
                )

    def piece(self, token: int) -> bytes:
        """A token's bytes (special tokens give none)."""
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = self.llama_cpp.llama_token_to_piece(self.model.vocab, token, buf, size, 0, False)
            if n >= 0:
                return buf.raw[:n]
            size = -n  # too small: llama.cpp says how many bytes it needs

    def prefill(self, ids: list[int]) -> None:
        """Make the context hold ids with the last one's logits ready, reusing the cached common prefix."""
        same = 0
        for a, b in zip(self.cached, ids, strict=False):
            if a != b:
                break
            same += 1
        same = min(same, len(ids) - 1)  # the last token is evaluated again: its logits are needed
        if not self.ctx.kv_cache_seq_rm(0, same, -1):
            self.ctx.kv_cache_clear()
            same = 0
        self.set_threads(self.prompt_threads)
        self.evaluate(ids[same:], same)

    def set_lora(self, handle) -> None:
        if handle is self.active:
            return
        llama_cpp = self.llama_cpp
        if handle is None:
            rc = llama_cpp.llama_set_adapters_lora(self.ctx.ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
            rc = llama_cpp.llama_set_adapters_lora(self.ctx.ctx, adapters, 1, (ctypes.c_float * 1)(1.0))
        if rc != 0:
            raise RuntimeError(f"llama.cpp could not set the LoRA adapter on its context (error {rc})")
        self.active = handle
        self.cached = []  # that KV was computed with other weights
        self.ctx.kv_cache_clear()


class LlamaCppGenerator(PromptEngine):
    """Answers chat messages with a GGUF model in llama.cpp, on the base model or a LoRA adapter."""

    def __init__(self, cfg: ModelConfig, model_file: Path):
        self.cfg = cfg
        self.model_file = Path(model_file)
        self._engine: _Engine | None = None
        self._loras: OrderedDict[str, _Lora] = OrderedDict()
        self._lock = threading.Lock()  # one generation at a time on the one context
        self._load_lock = threading.Lock()
        self.switches: list[float] = []  # seconds each adapter switch took (set on the context)
        self.drafts = DraftStats()

    @property
    def engine(self) -> _Engine:
        with self._load_lock:
            if self._engine is None:
                started = time.perf_counter()
                path = weights_file(
                    self.model_file, self.cfg.resolved_gguf_weights(), self.cfg.cache_dir / "llamacpp"
                )
                self._engine = _Engine(self.cfg, path, gpu=self._gpu())
                log.info("llama.cpp loaded %s in %.1f s: %s", path.name, time.perf_counter() - started,
                         self.describe())  # fmt: skip
        return self._engine

    def _gpu(self) -> bool:
        if self.cfg.device == "cpu":
            return False
        supported = bool(llama_cpp_module().llama_supports_gpu_offload())
        if self.cfg.device == "cuda" and not supported:
            return True  # model_params explains how to get a CUDA build
        return supported

    def describe(self) -> str:
        if self._engine is None:
            return f"llama.cpp in-process, {self.model_file.name} (not loaded yet)"
        e = self._engine
        return (
            f"llama.cpp in-process, {e.path.name}, {e.decode_threads} decode / {e.prompt_threads} prompt "
            f"threads, context {e.n_ctx} tokens, {e.placement.note}"
        )

    def render(self, messages: list[dict]) -> str:
        """The prompt for messages in the model's own chat template, ending where the answer starts."""
        return self.engine.formatter(messages=check_messages(messages)).prompt

    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt's tokens, as _stream evaluates them (tokenizing reads the vocabulary only: no lock)."""
        return self.engine.tokenize(prompt)

    @property
    def context_tokens(self) -> int:
        return self.cfg.context_tokens  # the context's n_ctx: prompt and answer together

    def _lora_handle(self, ref: AdapterRef | None):
        """ref's llama.cpp adapter, loaded (and converted) once by name. Caller holds the lock."""
        if ref is None:
            return None
        from adapters.gguf_lora import BaseShape, gguf_lora_for

        check_safe_adapter(ref.path)
        folder = ref.path.resolve()
        stamp = (folder / "adapter_model.safetensors").stat().st_mtime
        known = self._loras.get(ref.name)
        if known is not None and (known.folder, known.stamp) == (folder, stamp):
            self._loras.move_to_end(ref.name)
            return known.handle
        engine = self.engine
        file = gguf_lora_for(folder, BaseShape.from_metadata(engine.meta), self.cfg.cache_dir / "lora")
        started = time.perf_counter()
        handle = engine.llama_cpp.llama_adapter_lora_init(engine.model.model, str(file).encode())
        if not handle:
            raise EngineSetupError(f"llama.cpp could not load the LoRA file {file} for adapter {ref.name}")
        log.info("loaded adapter %s from %s in %.3f s", ref.name, file, time.perf_counter() - started)
        self._loras[ref.name] = _Lora(folder, stamp, handle)
        if known is not None:
            self._free(known)
        while len(self._loras) > KEPT_ADAPTERS:
            name = next(n for n, lora in self._loras.items() if lora.handle is not engine.active)
            self._free(self._loras.pop(name))
        return handle

    def _free(self, lora: _Lora) -> None:
        engine = self.engine
        if lora.handle is engine.active:
            engine.set_lora(None)
        engine.llama_cpp.llama_adapter_lora_free(lora.handle)

    def _select(self, adapter: AdapterRef | None) -> _Engine:
        """The engine with adapter's LoRA (None: none) set on its context. Caller holds the lock."""
        engine = self.engine
        handle = self._lora_handle(adapter)
        if handle is not engine.active:
            started = time.perf_counter()
            engine.set_lora(handle)
            self.switches.append(time.perf_counter() - started)
        return engine

    # -- generation -------------------------------------------------------------------------------

    def _stream(self, prompt: str, limit: int, adapter: AdapterRef | None) -> Iterator[str]:
        with self._lock:
            engine = self._select(adapter)
            ids = engine.tokenize(prompt)
            if len(ids) >= engine.n_ctx:
                raise ValueError(
                    f"the prompt is {len(ids)} tokens; the llama.cpp context holds {engine.n_ctx} "
                    "(ModelConfig.context_tokens)"
                )
            limit = min(limit, engine.n_ctx - len(ids))
            yield from pieces_on_worker(lambda stop: utf8_pieces(self._token_bytes(engine, ids, limit, stop)))

    def _token_bytes(self, engine: _Engine, ids: list[int], limit: int, stop: threading.Event):
        """The bytes of each new token (greedy, or sampled at cfg.temperature) until an end token."""
        from llama_cpp import _internals

        sampler = _internals.LlamaSampler()
        if self.cfg.temperature > 0:
            sampler.add_top_k(50)  # transformers' default for sampling, as the transformers backend does
            sampler.add_temp(self.cfg.temperature)
            sampler.add_dist(int.from_bytes(os.urandom(4), "little"))
        else:
            sampler.add_greedy()
        draft = self.cfg.draft_tokens if self.cfg.temperature == 0 else 0
        try:
            engine.prefill(ids)
            if draft:
                yield from drafted(engine, sampler, ids, limit, stop, draft, self.drafts)
                return
            position = len(ids)
            for _ in range(limit):
                token = sampler.sample(engine.ctx, -1)
                if engine.is_end(token) or stop.is_set():
                    return
                yield engine.piece(token)
                engine.evaluate([token], position)
                position += 1
        finally:
            sampler.close()

    def logits(self, text: str | list[int], *, adapter: AdapterRef | None = None):
        """Next-token logits (numpy float32, [tokens, vocab]) for text, or for token ids (to compare with
        another engine on the very same tokens: llama.cpp's tokenizer splits some text differently)."""
        import numpy as np

        with self._lock:
            engine = self._select(adapter)
            ids = (
                engine.tokenize(text, add_bos=engine.model.add_bos_token()) if isinstance(text, str) else text
            )
            engine.ctx.kv_cache_clear()
            return np.concatenate(engine.evaluate(ids, 0, keep_logits=True, chunk=LOGITS_CHUNK))
