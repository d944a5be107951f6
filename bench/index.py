"""Index build time: ours against the LlamaIndex tutorial pipeline, then an incremental reindex.

For each corpus (acme, and the Python manual subset when it could be fetched):
1. our full build (Indexer.build(full=True) into a fresh data dir: load, chunk, embed, Chroma, BM25);
2. the tutorial pipeline on the same folder with a plain fp32 HuggingFaceEmbedding on the same weights
   (bench/tutorial.py), as written (default splitter) and with our chunk size (like-for-like work);
3. an incremental build after 1% of the files (at least one) were edited, against our full build;
4. a rebuild with nothing changed (the manifest's size+mtime shortcut).
The chunk counts differ between the two pipelines (different splitters, and the tutorial reads HTML
as raw text), so they are printed beside the times: a ratio of times alone would hide that.
"""

from __future__ import annotations

from .common import Context, Row, Timer, load_note, say
from .corpora import Corpus, corpora, touch_one_percent
from .tutorial import build_tutorial_index, tutorial_embed_model

NAME = "index"


def _load_and_chunk_seconds(docs, embed_model) -> float:
    """How much of our build is reading and splitting, with no embedding: where the time goes."""
    from .embed import chunk_texts

    with Timer() as t:
        chunk_texts(docs, embed_model)
    return t.seconds


def warm_imports() -> None:
    """Import both pipelines' modules up front: chromadb alone takes seconds to import, and whoever ran
    first would otherwise pay for it inside the timed build."""
    import bs4  # noqa: F401
    import chromadb  # noqa: F401
    from llama_index.core import SimpleDirectoryReader, VectorStoreIndex  # noqa: F401
    from llama_index.readers.file import DocxReader, PDFReader  # noqa: F401
    from llama_index.retrievers.bm25 import BM25Retriever  # noqa: F401
    from llama_index.vector_stores.chroma import ChromaVectorStore  # noqa: F401


def bench_corpus(ctx: Context, corpus: Corpus, tutorial_emb) -> list[Row]:
    from indexers import IndexConfig, Indexer
    from indexers.embedding import embedder_backend

    label, docs = corpus.label, corpus.docs
    emb = ctx.embed_model
    files = sum(1 for p in docs.rglob("*") if p.is_file())
    say(f"  [{label}] {files} files; our embed backend {embedder_backend(emb)}, the tutorial's fp32")
    ours, tutorial, matched = [], [], []
    for attempt in range(ctx.repeat):
        # A fresh data dir per attempt: a full build must not find anything to reuse.
        cfg = IndexConfig(data_dir=ctx.tmp(f"ours-{attempt}-{label[:4]}"), docs_dir=docs, show_progress=False)
        indexer = Indexer(cfg, emb)
        ours.append(indexer.build(progress=None, full=True))
        say(f"  ours: {ours[-1].seconds:.1f} s, {ours[-1].chunks_total} chunks ({load_note()})")
        tutorial.append(build_tutorial_index(docs, tutorial_emb, ctx.tmp(f"tutorial-{attempt}-{label[:4]}")))
        say(f"  tutorial as written: {tutorial[-1].seconds:.1f} s, {tutorial[-1].chunks} chunks")
        if corpus.like_for_like:
            persist = ctx.tmp(f"matched-{attempt}-{label[:4]}")
            matched.append(
                build_tutorial_index(docs, tutorial_emb, persist, cfg.chunk_size, cfg.chunk_overlap)
            )
            say(f"  tutorial, our chunk size: {matched[-1].seconds:.1f} s, {matched[-1].chunks} chunks")
    best = min(ours, key=lambda r: r.seconds)
    best_tutorial = min(tutorial, key=lambda b: b.seconds)
    load_chunk = _load_and_chunk_seconds(docs, emb)
    say(f"  ours, loading + chunking only (no embedding): {load_chunk:.1f} s")

    # Incremental: edit 1% of the files, rebuild on top of the last full build (the indexer left there).
    touched = touch_one_percent(docs, f"bench edit {label}")
    inc = indexer.build(progress=None, full=False)
    say(
        f"  incremental after editing {len(touched)}/{files} files ({', '.join(touched[:3])}): "
        f"{inc.seconds:.2f} s, {inc.chunks_embedded} of {inc.chunks_total} chunks embedded ({load_note()})"
    )
    with Timer() as t_same:
        same = indexer.build(progress=None, full=False)
    say(f"  rebuild with nothing changed: {t_same.seconds * 1000:.0f} ms, {same.chunks_embedded} embedded")
    last_full = ours[-1].seconds  # the build the incremental one started from
    times = dict(unit="s", higher_is_better=False)
    tries = f"best of {ctx.repeat}" if ctx.repeat > 1 else "one try"
    rows = [
        Row(
            NAME,
            f"full build vs tutorial as written, {label}",
            best.seconds,
            best_tutorial.seconds,
            **times,
            note=f"ours {best.chunks_total} chunks (loading + chunking alone: {load_chunk:.1f} s); "
            f"tutorial {best_tutorial.chunks} chunks; {tries}",
        ),
        Row(
            NAME,
            f"incremental vs our full build, {label}",
            inc.seconds,
            last_full,
            **times,
            note=f"{len(touched)}/{files} files edited, {inc.chunks_embedded} chunks re-embedded: "
            f"{100 * inc.seconds / last_full:.1f}% of the full build",
        ),
        Row(
            NAME,
            f"no-change rebuild vs our full build, {label}",
            t_same.seconds,
            last_full,
            **times,
            note="sizes and mtimes unchanged: no file read",
        ),
    ]
    if matched:
        best_matched = min(matched, key=lambda b: b.seconds)
        rows.insert(
            1,
            Row(
                NAME,
                f"full build vs tutorial at our chunk size, {label}",
                best.seconds,
                best_matched.seconds,
                **times,
                note=f"tutorial {best_matched.chunks} chunks from the same files; {tries}",
            ),
        )
    return rows


def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    warm_imports()
    tutorial_emb = tutorial_embed_model(ctx.embed_model.encode_batch_size)
    for corpus in corpora(ctx.workdir, ctx.quick):
        rows += bench_corpus(ctx, corpus, tutorial_emb)
    return rows
