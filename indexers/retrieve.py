"""Hybrid retrieval: dense (Chroma) and BM25, fused by weighted reciprocal rank.

Ranks are fused because the two scores live on different scales. Every hit still carries its cosine
similarity to the question, which is what the answerer's "I don't know" threshold is measured in.

Scopes (scopes.py) are enforced before ranking: the dense query filters on the chunks' scope metadata
and BM25 scores only allowed chunks, so a restricted chunk never takes an allowed one's place.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .config import IndexConfig
from .scopes import SCOPE_KEY, ScopeView, allows, parse_scope
from .store import GenerationStore, StoreError, bm25_retriever_class


@dataclass
class Hit:
    id: str
    file: str  # relative to the docs folder
    section: str
    title: str
    url: str | None
    text: str
    score: float  # fused reciprocal-rank score: the ranking
    similarity: float  # cosine similarity of question and chunk: the relevance
    scopes: tuple[str, ...] = ()  # the document's scopes in the generation answering; () is public


class Hits(list):
    """Hits, best first, with the query they answer and its embedding, so that a caller that needs the
    query's vector again (indexers.facts) does not embed the same text twice."""

    def __init__(self, hits=(), query: str = "", query_vector: list[float] | None = None):
        super().__init__(hits)
        self.query = query
        self.query_vector = query_vector

    def __getitem__(self, index):
        got = super().__getitem__(index)  # the best k of them still know their query
        return Hits(got, self.query, self.query_vector) if isinstance(index, slice) else got


# The most rows a dense query asks for unfiltered, to keep the allowed ones; past it, Chroma filters.
OVERFETCH = 1000


class NoIndexError(StoreError):
    pass


class _Generation:
    """One opened generation: its collection, the chunk ids it is made of, and its BM25 index."""

    def __init__(self, store: GenerationStore, name: str, top_k: int):
        self.name = name
        manifest = store.manifest(name)  # read once: the collection's name and the chunk ids are both in it
        self.collection = store.collection(name, manifest=manifest)
        self.bm25 = bm25_retriever_class().from_persist_dir(
            str(store.bm25_dir(name, manifest)), show_progress=False
        )
        # The collection may be shared with the generations before and after this one (store.py): rows
        # this one does not list are skipped, and asked for in excess so that a top n stays n.
        self.ids = store.chunk_ids(name, manifest)
        self.count = len(self.ids)
        self.scopes = ScopeView(manifest, self.count)
        # Counted once, not per question: a COUNT over 100k rows is milliseconds of every query.
        self.stored = self.collection.count()
        # bm25s refuses a k larger than its corpus
        self.bm25.similarity_top_k = min(top_k, self.count)

    def dense(self, query_vec: list[float], n: int, allowed: frozenset[str] | None = None):
        """The n nearest of this generation's chunks that `allowed` lets through: ids and cosine distances.

        Chroma's where filter costs in proportion to the rows it lets through (a tenth of 100k chunks:
        retrieval 5.8x slower than unfiltered, BENCHMARKS.md), so while the allowed share is large enough, the
        nearest rows are asked for unfiltered, in excess, and the allowed n of them kept: the same n
        nearest allowed chunks, as long as at least n are found. Else (a small share), the filter."""
        where = self.scopes.where(allowed)
        if where is None:
            return self._nearest(query_vec, n, n)
        keep = self.scopes.keeper(allowed)
        share = self.scopes.allowed_chunks(allowed) / max(self.count, 1)
        if 1.5 * n / share <= OVERFETCH:
            got = self._nearest(query_vec, n, math.ceil(1.5 * n / share), keep, limit=OVERFETCH)
            if got is not None:
                return got
        return self._nearest(query_vec, n, n, keep, where)

    def _nearest(self, query_vec, n: int, ask: int, keep=None, where=None, limit: int | None = None):
        """None when n were not found in `limit` rows."""
        ask = min(ask + max(self.stored - self.count, 0), self.stored)
        pairs: list[tuple[str, float]] = []
        while ask > 0:
            got = self.collection.query(
                query_embeddings=[query_vec], n_results=ask, where=where, include=["distances"]
            )
            pairs = [
                (i, d)
                for i, d in zip(got["ids"][0], got["distances"][0], strict=True)
                if i in self.ids and (keep is None or keep(i))
            ]
            if len(pairs) >= n or len(got["ids"][0]) < ask:
                break
            # A build added rows since this generation was opened: ask for more, up to all there are.
            stored, self.stored = self.stored, self.collection.count()
            if self.stored <= ask and stored == self.stored:
                break
            ask = min(2 * ask, self.stored)
            if limit is not None and ask > limit:
                return None
        return [i for i, _ in pairs[:n]], [d for _, d in pairs[:n]]

    def bm25_ids(self, query: str, allowed: frozenset[str] | None) -> list[str]:
        """BM25's best chunk ids, scored over the allowed chunks only: the others weigh 0, and those
        still listed (fewer matches than k) are dropped. As BM25Retriever._retrieve, with a per-call mask."""
        import bm25s

        r = self.bm25
        restricted = self.scopes.where(allowed) is not None
        tokens = bm25s.tokenize(
            query,
            stemmer=None if r.skip_stemming else r.stemmer,
            token_pattern=r.token_pattern,
            show_progress=False,
        )
        docs, _ = r.bm25.retrieve(
            tokens,
            k=r.similarity_top_k,
            show_progress=False,
            weight_mask=self.scopes.mask(allowed, r.corpus) if restricted else None,
        )
        ids = [d["node_id"] for d in docs[0]]
        return [i for i in ids if allows(self.scopes.scope(i), allowed)] if restricted else ids


class Retriever:
    def __init__(self, cfg: IndexConfig, embed_model, store: GenerationStore | None = None):
        self.cfg = cfg
        self.embed_model = embed_model
        self.store = store or GenerationStore(cfg)
        self._gen: _Generation | None = None
        self._lock = threading.Lock()
        # BM25 runs here beside the question's embedding; its one thread starts with the first question.
        self._bm25_worker = ThreadPoolExecutor(1, thread_name_prefix="expertbot-bm25")

    @property
    def generation(self) -> str | None:
        return self._gen.name if self._gen else None

    def reopen(self) -> bool:
        """Follow the CURRENT pointer; returns True when it moved. Cheap when nothing changed."""
        current = self.store.current()
        if current is None:
            raise NoIndexError(f"no index in {self.store.root} yet; run `expertbot index` first")
        with self._lock:
            if self._gen and self._gen.name == current:
                return False
            self._gen = _Generation(self.store, current, self.cfg.candidates)
            return True

    def retrieve(self, query: str, top_k: int | None = None, allowed: frozenset[str] | None = None) -> Hits:
        """The best top_k chunks for a query. allowed: None for every chunk (an admin's view), else only
        public chunks and those of at least one of these scopes (frozenset(): public only)."""
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        top_k = top_k or self.cfg.top_k
        if self._gen is None:
            self.reopen()
        gen = self._gen  # a reference: a concurrent reopen() never changes the generation mid-query
        where = gen.scopes.where(allowed)
        n = min(self.cfg.candidates, gen.count if where is None else gen.scopes.allowed_chunks(allowed))
        # BM25 needs no embedding: it runs while this thread embeds the question and asks Chroma (at 100k
        # chunks it was a fifth of a query's time). A side weighted 0 is not asked: it would only pad.
        asked = n and query.strip() and self.cfg.bm25_weight
        bm25 = self._bm25_worker.submit(gen.bm25_ids, query, allowed) if asked else None
        query_vec = self.embed_model.get_query_embedding(query)
        if n == 0:
            return Hits([], query, query_vec)
        # Ids and distances only: the texts of the few chunks that make the cut are fetched below.
        dense_ids, distances = gen.dense(query_vec, n, allowed) if self.cfg.dense_weight else ([], [])
        sims = {i: 1.0 - d for i, d in zip(dense_ids, distances, strict=True)}
        bm25_ids = bm25.result() if bm25 else []

        fused: dict[str, float] = {}
        for weight, ids in ((self.cfg.dense_weight, dense_ids), (self.cfg.bm25_weight, bm25_ids)):
            for rank, node_id in enumerate(ids):
                fused[node_id] = fused.get(node_id, 0.0) + weight / (self.cfg.rrf_k + rank + 1)
        best = sorted(fused, key=fused.get, reverse=True)[:top_k]
        if not best:  # everything allowed is restricted in the rows by a build under way
            return Hits([], query, query_vec)

        vectors = any(i not in sims for i in best)  # BM25-only hits: their vectors, to score them
        got = gen.collection.get(
            ids=best, include=["documents", "metadatas", *(["embeddings"] if vectors else [])]
        )
        rows = {}
        for k, node_id in enumerate(got["ids"]):
            rows[node_id] = (got["metadatas"][k], got["documents"][k])
            if node_id not in sims:  # both unit length
                sims[node_id] = float(
                    sum(a * b for a, b in zip(query_vec, got["embeddings"][k], strict=True))
                )
        hits = Hits([], query, query_vec)
        for node_id in best:
            if node_id not in rows:  # listed by BM25 but gone from Chroma (deleted by hand): nothing to cite
                continue
            meta, doc = rows[node_id]
            if not allows(meta.get(SCOPE_KEY), allowed):  # restricted by a build under way: the safe side
                continue
            node = metadata_dict_to_node(meta, text=doc)
            hits.append(
                Hit(
                    id=node_id,
                    file=meta.get("file", ""),
                    section=meta.get("section", ""),
                    title=meta.get("title", ""),
                    url=meta.get("url") or None,
                    text=node.get_content(),
                    score=fused[node_id],
                    similarity=float(sims[node_id]),
                    scopes=parse_scope(gen.scopes.scope(node_id)),
                )
            )
        return hits
