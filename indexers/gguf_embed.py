"""The embedder in llama.cpp (embed backend "llamacpp"): the same BERT, with no torch in the process.

With torch, sentence-transformers and the model in them, `expertbot serve` peaked at 1,120 MiB after its
first answer; with this backend at 589 MiB (issue 12: 600 at most). Here the model is a GGUF copy made
once (indexers/gguf_convert.py) and llama.cpp only runs the network. The token ids come from the
model's own tokenizer.json (Hugging Face `tokenizers`, no torch), truncated where sentence-transformers
truncates (max_seq_length, special tokens included), so they are the ids sentence-transformers feeds
the model, and the splitter counts chunk sizes in the same tokens.

Two llama.cpp contexts share the one model: a question (one text) runs on one thread in a context of
its own, as the torch backend does (see embedding.one_thread), so it never waits behind an index
build's batch; batches of chunks use every core. Each context is used under its own lock.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from .gguf_convert import CONVERSION, EmbedSetupError, gguf_file, max_seq_length

log = logging.getLogger(__name__)

# Tokens per llama_encode. Its attention spans the whole batch, masked per text: with flash attention the
# masked part is skipped cheaply (without it, 512 tokens embedded chunks 2.7x slower). 256, 384 and 512
# embedded chunks equally fast; llama.cpp keeps a vocabulary-wide logits row per token even for an embedder
# (30,522 floats: 31 MiB for 256 tokens), so the smallest that holds a whole text wins.
BATCH_TOKENS = 256
# ... and a call of short texts (a question's ~15 candidate facts, ~350 tokens) packs them this tight: half
# the 256 rows, and their embedding took 101 ms against 97 (64: 154 ms), load ~5.
SHORT_BATCH = 128
MAX_SEQS = 64  # texts per llama_encode; llama.cpp allows up to 256 (LLAMA_MAX_SEQ), older builds 64


def default_weights(llama_cpp, gpu: bool) -> str:
    """The tensor type of the layers' matrices. BF16 where the CPU multiplies it natively (avx512_bf16):
    chunks embedded 1.3x faster than F32 (issue 12 figures); elsewhere, GPUs included, F16, which every
    CPU and GPU llama.cpp runs on has. Vectors against sentence-transformers fp32, 548 real chunks: mean
    cosine 0.999999 for F32, 0.999994 for F16, 0.999983 for BF16 (the torch bf16 backend: 0.999955)."""
    if not gpu and "AVX512_BF16 = 1" in llama_cpp.llama_print_system_info().decode():
        return "bf16"
    return "f16"


def llama_cpp_module():
    try:
        import llama_cpp
        from llama_cpp._logger import set_verbose
    except ImportError as err:
        raise EmbedSetupError(
            f"embed backend 'llamacpp' needs llama-cpp-python ({err}); install it with `make setup`, "
            "or set embed_backend to 'fp32' or 'bf16'"
        ) from err
    set_verbose(False)  # llama.cpp's loading chatter would go to stderr on every start
    return llama_cpp


class _Context:
    """One llama.cpp context, its batch, and the lock it is used under."""

    def __init__(self, llama_cpp, model, n_tokens: int, threads: int, n_seq: int):
        from llama_cpp import _internals

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = n_tokens  # an encoder takes a batch in one ubatch
        params.n_seq_max = n_seq  # its outputs are reserved up front, a logits row each (see BATCH_TOKENS)
        params.kv_unified = True  # one window for all texts: else n_ctx is split (and padded) per text
        params.n_threads = params.n_threads_batch = threads
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED  # the file's own (mean for MiniLM)
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED  # see BATCH_TOKENS
        params.no_perf = True
        self.ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(
            n_tokens=n_tokens, embd=0, n_seq_max=params.n_seq_max, verbose=False
        )
        self.n_tokens, self.n_seq = n_tokens, params.n_seq_max
        self.lock = threading.Lock()


class LlamaCppEmbedder:
    """Texts to normalized vectors through llama.cpp. Thread-safe."""

    def __init__(self, model_dir: Path, cache_dir: Path, gpu: bool = False, weights: str = "auto"):
        from tokenizers import Tokenizer

        self.llama_cpp = llama_cpp = llama_cpp_module()
        from llama_cpp import _internals

        model_dir = Path(model_dir)
        self.weights = default_weights(llama_cpp, gpu) if weights == "auto" else weights
        self.path = gguf_file(model_dir, cache_dir, self.weights)
        self.max_tokens = max_seq_length(model_dir)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # tokenizer.json may pad to a fixed length (MiniLM's: 128)
        self.tokenizer.no_truncation()  # and truncate: truncated() does it as sentence-transformers does

        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        if gpu:
            params.n_gpu_layers = 0x7FFFFFFF
        elif "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode():
            params.use_extra_bufts = False  # llama.cpp's AMX matmul crashed here (adapters/llamacpp_model.py)
        self.model = _internals.LlamaModel(path_model=str(self.path), params=params, verbose=False)
        self.dims = self.model.n_embd()
        n_batch = max(BATCH_TOKENS, self.max_tokens)
        self.query = _Context(llama_cpp, self.model, self.max_tokens, threads=1, n_seq=1)
        self.chunks = _Context(llama_cpp, self.model, n_batch, threads=os.cpu_count() or 1, n_seq=MAX_SEQS)

    def token_ids(self, text: str) -> list[int]:
        """text in the model's tokens, without [CLS]/[SEP] and untruncated: for counting chunk sizes."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def truncated(self, texts: list[str]) -> list[list[int]]:
        """What the model reads: [CLS] text [SEP], the text cut so that all of it is max_tokens long, as
        transformers truncates one text (longest_first) for sentence-transformers."""
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        n = self.max_tokens
        return [t if len(t) <= n else [*t[: n - 1], t[-1]] for t in ids]

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One unit vector per text, in order. Texts are sorted by length and packed into batches of up to
        BATCH_TOKENS tokens, SHORT_BATCH when they are all short (a long chunk alone, facts together)."""
        import numpy as np

        if not texts:
            return []
        ids = self.truncated(texts)
        out = np.empty((len(ids), self.dims), dtype=np.float32)
        context = self.query if len(ids) == 1 else self.chunks
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        # That logits row per token is reserved for the largest batch a context ever ran, and kept: the
        # facts of a question must not make a serving process hold 31 MiB for it (issue 12: peak RSS).
        limit = min(context.n_tokens, max(SHORT_BATCH, len(ids[order[-1]])))
        group: list[int] = []
        used = 0
        for i in order:
            if group and (used + len(ids[i]) > limit or len(group) == context.n_seq):
                self._encode(context, [ids[j] for j in group], out, group)
                group, used = [], 0
            group.append(i)
            used += len(ids[i])
        self._encode(context, [ids[j] for j in group], out, group)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)  # as torch's normalize does
        return out.tolist()

    def _encode(self, context: _Context, seqs: list[list[int]], out, rows: list[int]) -> None:
        import numpy as np

        llama_cpp = self.llama_cpp
        with context.lock:  # held per batch only: a question's facts never wait for a whole index group
            context.batch.reset()
            for seq, tokens in enumerate(seqs):
                context.batch.add_sequence(tokens, seq, True)  # every token an output: pooling reads them all
            if llama_cpp.llama_encode(context.ctx.ctx, context.batch.batch) != 0:
                raise RuntimeError(f"llama.cpp could not embed {len(seqs)} texts with {self.path.name}")
            for seq, row in enumerate(rows):
                ptr = llama_cpp.llama_get_embeddings_seq(context.ctx.ctx, seq)
                out[row] = np.ctypeslib.as_array(ptr, shape=(self.dims,))


def embedding_class():
    """The LlamaIndex embedding over a LlamaCppEmbedder (a function: LlamaIndex is imported on first use)."""
    from llama_index.core.embeddings import BaseEmbedding
    from pydantic import PrivateAttr

    class LlamaCppEmbedding(BaseEmbedding):
        # Named like HuggingFaceEmbedding's SentenceTransformer: embedding.embed_tokenizer reads either.
        _model: LlamaCppEmbedder = PrivateAttr()
        _encode_batch: int = PrivateAttr()

        @property
        def backend(self) -> str:
            """What made the vectors, for the index fingerprint: BF16 and F16 copies, or copies another
            version of the converter wrote, never mix either."""
            return f"llamacpp-{self._model.weights}-v{CONVERSION}"

        @property
        def encode_batch_size(self) -> int:
            return self._encode_batch

        @property
        def engine(self) -> LlamaCppEmbedder:
            return self._model

        @classmethod
        def class_name(cls) -> str:
            return "LlamaCppEmbedding"

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._model.embed([query])[0]

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._model.embed([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._model.embed(texts)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        async def _aget_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embedding(text)

    return LlamaCppEmbedding
