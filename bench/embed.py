"""Embedding throughput in chunks/s: our indexer's embedding step against plain SentenceTransformer.encode,
and the latency of embedding one question.

All sides embed the very same chunk texts, made by our own loader and splitter. Ours calls
embed_model.get_text_embedding_batch in groups of IndexConfig.embed_group, exactly as Indexer.build's
flush() does, with the default backend (IndexConfig.embed_backend "auto": llama.cpp for the bundled model)
and, as further rows, with the torch backends (bf16 on a CPU with native bfloat16, and fp32). The baseline
is one fp32 SentenceTransformer.encode call over all chunks with the same batch size. The rounds alternate
(ours, torch bf16, torch fp32, plain, ...) so a busy spell on the machine hits all, and the best round of
each is reported, as timeit does: noise only ever makes a round slower. The mean and worst cosine between
each side's vectors and plain fp32 ones are in the notes.

Questions: get_query_embedding on short questions, the default backend against the torch one ("auto" before
llama.cpp: bf16 where the CPU has it), interleaved, median milliseconds.
"""

from __future__ import annotations

from pathlib import Path

from .common import Context, Row, Timer, load_note, say
from .corpora import corpora

NAME = "embed"
SAMPLE = 1024  # chunks per round: ~10 s on a quiet machine, long enough to ride out a short hiccup
QUICK_SAMPLE = 128
QUESTIONS = (
    "How quickly must I acknowledge a page?",
    "How long does the Quillmate pairing last for a new starter?",
    "What is the data retention period for customer logs?",
    "how do I rebase a branch onto main",
    "redirect all http requests to https",
)


def chunk_texts(docs: Path, embed_model) -> list[str]:
    """The chunk texts Indexer.build would embed for docs, from our own loader and splitter."""
    from indexers import IndexConfig
    from indexers.chunking import chunk_document, make_splitter
    from indexers.embedding import embed_tokenizer
    from indexers.loading import SkipFile, list_files, load_file

    cfg = IndexConfig(data_dir=docs, docs_dir=docs)  # only the chunking defaults are read
    splitter = make_splitter(cfg.chunk_size, cfg.chunk_overlap, embed_tokenizer(embed_model))
    texts = []
    for path in list_files(docs):
        try:
            doc = load_file(path, path.relative_to(docs).as_posix())
        except SkipFile:
            continue
        texts += [n.get_content() for n in chunk_document(doc, splitter)]
    return texts


def sample(texts: list[str], size: int) -> list[str]:
    """size texts spread evenly over the corpus (pages differ); repeated when the corpus is smaller."""
    if len(texts) >= size:
        return [texts[i * len(texts) // size] for i in range(size)]
    return (texts * (size // len(texts) + 1))[:size]


def run(ctx: Context) -> list[Row]:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from indexers import IndexConfig, load_embed_model
    from indexers.embedding import cpu_has_native_bf16, embedder_backend, resolve_embed_model

    emb = ctx.embed_model
    corpus = corpora(ctx.workdir, ctx.quick)[-1]  # the manual when we have it: more varied text
    label, docs = corpus.label, corpus.docs
    texts = sample(chunk_texts(docs, emb), QUICK_SAMPLE if ctx.quick else SAMPLE)
    chars = sum(map(len, texts)) / len(texts)
    say(f"  {len(texts)} chunks from {label}, mean {chars:.0f} chars")
    # A separate plain SentenceTransformer on the same weights: the baseline owes nothing to LlamaIndex.
    plain = SentenceTransformer(resolve_embed_model(IndexConfig(docs, docs).embed_model), device="cpu")
    group, batch = IndexConfig(docs, docs).embed_group, emb.encode_batch_size
    backend = embedder_backend(emb)
    sides = {backend: emb}
    for torch_backend in ("bf16", "fp32") if cpu_has_native_bf16() else ("fp32",):
        if backend != torch_backend:
            sides[torch_backend] = load_embed_model(backend=torch_backend, batch_size=batch)

    def ours(model) -> list:
        vectors = []
        for i in range(0, len(texts), group):
            vectors += model.get_text_embedding_batch(texts[i : i + group], show_progress=False)
        return vectors

    def baseline():
        return plain.encode(
            texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
        )

    # Warm-up: the first forward pass allocates and picks kernels; it would count against whoever ran first.
    for model in sides.values():
        model.get_text_embedding_batch(texts[:16], show_progress=False)
    plain.encode(texts[:16], batch_size=batch, show_progress_bar=False)
    best = dict.fromkeys([*sides, "plain"], float("inf"))
    vectors = {}
    for round_ in range(1 if ctx.quick else max(2, ctx.repeat)):
        seconds = {}
        for name, model in sides.items():
            with Timer() as t:
                vectors[name] = np.asarray(ours(model))
            seconds[name] = t.seconds
        with Timer() as t:
            vectors["plain"] = baseline()
        seconds["plain"] = t.seconds
        best = {name: min(best[name], seconds[name]) for name in best}
        say(f"  round {round_ + 1}: {_rates(len(texts), seconds)} ({load_note()})")
    # Same model, same texts: the vectors must agree, or the comparison is of different work.
    cosines = {name: (vectors[name] * vectors["plain"]).sum(axis=1) for name in sides}
    cosine = {name: f"mean {c.mean():.6f}, worst {c.min():.6f}" for name, c in cosines.items()}
    say("  cosine against plain fp32 vectors: " + "; ".join(f"{k} {v}" for k, v in cosine.items()))
    note = f"{len(texts)} chunks of {label}, ~{chars:.0f} chars, batch {batch}, best of rounds"
    rows = [
        Row(
            NAME,
            f"embedding throughput, {name} backend vs plain fp32 encode",
            len(texts) / best[name],
            len(texts) / best["plain"],
            "chunks/s",
            note=f"{note}; cosine vs plain {cosine[name]}",
        )
        for name in sides
    ]
    return rows + question_latency(ctx, sides, backend)


def question_latency(ctx: Context, sides: dict, ours: str) -> list[Row]:
    """Median ms of one get_query_embedding, ours against the torch backend "auto" used to pick."""
    import statistics

    other = "bf16" if "bf16" in sides else "fp32"
    if ours == other:
        return []
    times: dict[str, list[float]] = {ours: [], other: []}
    for _ in range(4 if ctx.quick else 20):
        for question in QUESTIONS:
            for name in times:
                with Timer() as t:
                    sides[name].get_query_embedding(question)
                times[name].append(t.seconds * 1000)
    median = {name: statistics.median(v) for name, v in times.items()}
    say(f"  a question: {ours} {median[ours]:.1f} ms, torch {other} {median[other]:.1f} ms ({load_note()})")
    return [
        Row(NAME, f"question embedding latency, {ours} vs torch {other}", median[ours], median[other], "ms",
            False, f"{len(times[ours])} questions, interleaved, median")
    ]  # fmt: skip


def _rates(n: int, best: dict[str, float]) -> str:
    return ", ".join(f"{name} {n / seconds:.1f} chunks/s" for name, seconds in best.items())
