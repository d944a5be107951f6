"""Synthetic corpora of 10k-100k chunks for the retrieval-latency-at-scale benchmark.

Embedding 100k real chunks takes 20+ minutes on this machine, so the vectors are made cheaply but from
real text: ~2,000 distinct sentences from the acme docs and the Python manual subset are embedded once
with the real model, and each synthetic chunk is a run of consecutive source sentences (so it is about
one thing) with two of them swapped for random ones (so no two chunks are alike). A chunk's vector is
the normalised mean of its sentences' vectors. The chunks are written as Markdown files, one section
per chunk, and indexed by our own Indexer.build (chunking, Chroma, BM25, manifest, pointer), with
SentenceVectors standing in for the embedder only at build time. Queries use the real embedder.

Scopes (issue 15): every tenth file is in scope "team", the others in "rest", so that a question allowed
"team" may draw on a tenth of the chunks, spread through the corpus.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from .common import ACME_DOCS, DATA

SENTENCES = 2000
CHUNKS_PER_FILE = 100
CHUNK_TOKENS = 120  # body tokens per chunk, +<60 for the last sentence: one section stays one chunk at 180
SPLIT = re.compile(r"(?<=[.!?])\s+")
SCOPES = {"team": ("doc-*0.md",), "rest": ("doc-*[1-9].md",)}
ALLOWED = frozenset({"team"})


def source_sentences(limit: int = SENTENCES, seed: int = 7) -> list[str]:
    """Distinct real sentences (acme docs, then the Python manual subset when it is available)."""
    from indexers.loading import SkipFile, list_files, load_file

    from .corpora import manual_docs

    roots = [ACME_DOCS] + [r for r in [manual_docs(DATA / "manual-docs")] if r is not None]
    seen: dict[str, None] = {}
    for root in roots:
        for path in list_files(root):
            try:
                doc = load_file(path, path.relative_to(root).as_posix())
            except (OSError, SkipFile):
                continue
            for _, text in doc.sections:
                for s in SPLIT.split(" ".join(text.split())):
                    if 40 <= len(s) <= 240 and s[-1] in ".!?" and not s.startswith(("#", "|", ">>>")):
                        seen.setdefault(s, None)
    found = list(seen)
    random.Random(seed).shuffle(found)
    return found[:limit]


def write_corpus(dest: Path, sentences: list[str], token_counts: list[int], chunks: int, seed: int = 11):
    """`chunks` sections of CHUNK_TOKENS-ish tokens, CHUNKS_PER_FILE per Markdown file."""
    rng = random.Random(seed)
    n = len(sentences)
    dest.mkdir(parents=True, exist_ok=True)
    for f in range(0, chunks, CHUNKS_PER_FILE):
        parts = [f"# Synthetic document {f // CHUNKS_PER_FILE}\n"]
        for c in range(f, min(f + CHUNKS_PER_FILE, chunks)):
            start, picked, tokens = rng.randrange(n), [], 0
            while tokens < CHUNK_TOKENS - 20:
                i = (start + len(picked)) % n
                picked.append(i)
                tokens += token_counts[i]
            for slot in rng.sample(range(len(picked)), min(2, len(picked))):
                picked[slot] = rng.randrange(n)
            body = " ".join(sentences[i] for i in picked)
            parts.append(f"## Topic {c}\n\n{body}\n")
        (dest / f"doc-{f // CHUNKS_PER_FILE:05d}.md").write_text("\n".join(parts), encoding="utf-8")
    return dest


def sentence_vectors(real_embed_model, sentence_list: list[str]) -> dict[str, list[float]]:
    """The sentences' real vectors, kept in bench/_data between runs (keyed by the sentences' hash)."""
    import hashlib

    import numpy as np

    key = hashlib.sha256("\n".join(sentence_list).encode()).hexdigest()[:16]
    cache = DATA / f"synthetic-sentences-{key}.npy"
    if cache.is_file():
        vectors = np.load(cache).tolist()
    else:
        vectors = real_embed_model.get_text_embedding_batch(sentence_list, show_progress=False)
        DATA.mkdir(parents=True, exist_ok=True)
        np.save(cache, np.asarray(vectors, dtype=np.float32))
    return dict(zip(sentence_list, vectors, strict=True))


def make_embedder(real_embed_model, vectors: dict[str, list[float]]):
    """A LlamaIndex embedding that answers with the normalised mean of known sentences' vectors.

    It keeps the real model's tokenizer (the chunker counts in it) and records every (text, vector) it
    hands out, so the baseline gets the very same chunks and vectors. Unknown text (never expected)
    falls back to the real model and is counted.
    """
    import numpy as np
    from llama_index.core.embeddings import BaseEmbedding
    from pydantic import PrivateAttr

    class SentenceVectors(BaseEmbedding):
        _real = PrivateAttr()
        _vectors = PrivateAttr()
        _model = PrivateAttr()
        recorded: list = []
        fallbacks: int = 0

        def __init__(self, real, table, **kw):
            super().__init__(model_name="synthetic-sentence-mean", embed_batch_size=256, **kw)
            self._real, self._vectors = real, table
            self._model = real._model  # embed_tokenizer() reads the SentenceTransformer's tokenizer
            self.recorded = []

        def _one(self, text: str) -> list[float]:
            known = [
                self._vectors[s] for s in SPLIT.split(text.split("\n", 1)[-1].strip()) if s in self._vectors
            ]
            if not known:
                self.fallbacks += 1
                return self._real.get_text_embedding(text)
            mean = np.mean(np.asarray(known, dtype=np.float32), axis=0)
            return (mean / np.linalg.norm(mean)).tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            vector = self._one(text)
            self.recorded.append((text, vector))
            return vector

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return [self._get_text_embedding(t) for t in texts]

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._real.get_query_embedding(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    return SentenceVectors(real_embed_model, vectors)


def scope_probes(recorded: list, count: int = 50, seed: int = 5) -> list[tuple[str, tuple[str, str]]]:
    """Questions whose answer is in an allowed ("team") chunk: two of its sentences, asked together; a hit
    is a chunk that holds both. `recorded`: the (text, vector) pairs the build embedded."""
    rng = random.Random(seed)
    allowed = []
    for text, _ in recorded:
        topic = re.match(r"Topic (\d+)\n", text)
        if topic and int(topic.group(1)) // CHUNKS_PER_FILE % 10 == 0:
            sentences = SPLIT.split(text.split("\n", 1)[1].strip())
            if len(sentences) >= 4:
                allowed.append(sentences)
    probes = []
    for sentences in rng.sample(allowed, min(count, len(allowed))):
        pair = tuple(rng.sample(sentences[1:-1], 2))
        probes.append((" ".join(pair), pair))
    return probes
