"""Retrieval latency for `ask`, p50/p95 in ms over the acme QA questions.

Ours is bot's own Retriever (hybrid: Chroma dense + BM25, fused), as wired by bot.wiring.Services.
The baseline is the tutorial index over the same docs (in-memory SimpleVectorStore, dense only) with
index.as_retriever(similarity_top_k=same k). Questions alternate between the two so a busy spell hits
both. Both sides embed the question with the same model; that share is timed on its own as well, since
it bounds what any vector store could save.
"""

from __future__ import annotations

import json

from .common import ACME_QA, Context, Row, Timer, load_note, percentile, say
from .tutorial import build_tutorial_index

NAME = "retrieval"
PASSES = 3  # over the 53 questions: 159 samples, enough for a p95 that is not one unlucky query
QUICK_QUESTIONS = 10


def questions(quick: bool) -> list[str]:
    with open(ACME_QA, encoding="utf-8") as f:
        items = [json.loads(line)["question"] for line in f if line.strip()]
    return items[:QUICK_QUESTIONS] if quick else items


def run(ctx: Context) -> list[Row]:
    services = ctx.services
    top_k = services.settings.top_k
    retriever = services.retriever
    emb = services.embed_model  # the embedder the retriever runs with
    tutorial = build_tutorial_index(services.settings.docs_dir, emb, ctx.tmp("retrieval-tutorial"))
    baseline = tutorial.index.as_retriever(similarity_top_k=top_k)
    qs = questions(ctx.quick)
    for q in qs[:3]:  # warm-up: opens the generation, loads BM25, first query-embedding passes
        retriever.retrieve(q, top_k=top_k)
        baseline.retrieve(q)

    timed = {
        "ours": lambda q: retriever.retrieve(q, top_k=top_k),
        "baseline": baseline.retrieve,
        "embedding": emb.get_query_embedding,
    }
    ms: dict[str, list[float]] = {name: [] for name in timed}
    names = list(timed)
    i = 0
    for _ in range(1 if ctx.quick else PASSES):
        for q in qs:
            # Who goes first rotates: on a busy machine the call right after a pause was seen to be
            # slower (threads asleep), and a fixed order would pin that cost on one side.
            i += 1
            for name in names[i % 3 :] + names[: i % 3]:
                with Timer() as t:
                    got = timed[name](q)
                ms[name].append(t.seconds * 1000)
                if name != "embedding" and len(got) != top_k:
                    say(f"  note: {name} returned {len(got)} hits for top_k={top_k}")
    ours_ms, base_ms, embed_ms = ms["ours"], ms["baseline"], ms["embedding"]
    say(f"  {len(ours_ms)} queries each, top_k={top_k} ({load_note()})")
    note = f"{len(qs)} acme questions x {len(ours_ms) // len(qs)}, top_k={top_k}"
    p = percentile
    return [
        Row(NAME, "retrieval p50", p(ours_ms, 50), p(base_ms, 50), "ms", higher_is_better=False, note=note),
        Row(NAME, "retrieval p95", p(ours_ms, 95), p(base_ms, 95), "ms", higher_is_better=False, note=note),
        Row(
            NAME,
            "question embedding alone, p50",
            p(embed_ms, 50),
            None,
            "ms",
            higher_is_better=False,
            note="part of both sides' latency",
        ),
    ]
