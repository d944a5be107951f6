"""Incremental, build-then-swap indexing.

Each build writes a fresh generation: a manifest of the chunk ids it is made of, and a BM25 index. An
incremental build adds only chunks it has never stored to the collection it shares with the generation
before it (see store.py); unchanged files cost a hash, and an edited file costs only its changed chunks.
Nothing the current generation uses is modified, and the pointer moves only once the new one is complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .chunking import chunk_document, make_splitter
from .config import IndexConfig
from .embedding import embed_tokenizer, embedder_backend
from .loading import LOADER_VERSION, SkipFile, list_files, load_file
from .store import BM25_DIR, MANIFEST, GenerationStore, bm25_retriever_class, write_json_atomic

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (files done, files total)


class IndexBuildError(RuntimeError):
    """A build that cannot proceed. The current generation is untouched."""


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    chunks_total: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    generation: str = ""

    def as_dict(self) -> dict:
        return {
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "chunks_total": self.chunks_total,
            "chunks_embedded": self.chunks_embedded,
            "seconds": round(self.seconds, 3),
            "generation": self.generation,
        }


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stat_key(path: Path) -> list:
    try:
        st = path.stat()
    except OSError:
        return [-1, -1]
    return [st.st_size, st.st_mtime_ns]


class Indexer:
    def __init__(self, cfg: IndexConfig, embed_model, store: GenerationStore | None = None):
        self.cfg = cfg
        self.embed_model = embed_model
        self.store = store or GenerationStore(cfg)

    def fingerprint(self) -> dict:
        """Anything that changes what a chunk or its vector is; a change means a full re-embed."""
        return {
            "embed_model": self.cfg.embed_model,
            "embed_backend": embedder_backend(self.embed_model),  # bf16 and fp32 vectors never mix
            "chunk_size": self.cfg.chunk_size,
            "chunk_overlap": self.cfg.chunk_overlap,
            "loader": LOADER_VERSION,
        }

    def build(self, progress: Progress | None = None, full: bool = False) -> IndexReport:
        started = time.perf_counter()
        docs_dir = self.cfg.docs_dir
        if not docs_dir.is_dir():
            raise IndexBuildError(
                f"docs folder {docs_dir} does not exist; set EXPERTBOT_DOCS_DIR to a folder of documents"
            )
        files = list_files(docs_dir)
        if not files:
            raise IndexBuildError(
                f"docs folder {docs_dir} is empty; add .md, .txt, .rst, .html, .pdf or .docx files"
            )
        with self._lock():
            # Orphans of a crashed build go before we add another generation; rows it stored stay, to be
            # reused by this build where their content is the same.
            self.store.cleanup(rows=False)
            report = self._build(files, progress, full)
        report.seconds = time.perf_counter() - started
        return report

    def _lock(self):
        lock_path = self.store.root / "build.lock"
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise IndexBuildError(
                "another index build is running on this data directory; try again when it ends"
            ) from None
        return handle  # closing the file releases the lock

    def _build(self, files: list[Path], progress: Progress | None, full: bool) -> IndexReport:
        from llama_index.vector_stores.chroma import ChromaVectorStore

        report = IndexReport()
        old_gen = self.store.current()
        old = self.store.manifest(old_gen) or {}
        if old.get("fingerprint") != self.fingerprint():
            full = True  # chunks or vectors would differ: nothing can be reused
        old_docs = {} if full else old.get("docs", {})
        # Sizes and mtimes, taken before any file is read: a file edited mid-build then differs next time.
        stats = {p.relative_to(self.cfg.docs_dir).as_posix(): _stat_key(p) for p in files}
        if old_docs and old.get("files") and stats == old["files"]:
            # Same files, same bytes, same settings: the current generation already is this index.
            report.unchanged = sorted(old_docs)
            report.skipped = [tuple(s) for s in old.get("skipped", [])]
            report.chunks_total, report.generation = old.get("chunks", 0), old_gen
            if progress:
                progress(len(files), len(files))
            return report

        gen = self.store.new_generation()
        # A full build starts a new collection; an incremental one adds to the current generation's, whose
        # readers keep to the ids their own manifest lists, so they never see what is added here.
        collection = (
            self.store.collection(old_gen, manifest=old)
            if old_docs
            else self.store.collection(gen, create=True)
        )
        vector_store = ChromaVectorStore(chroma_collection=collection)
        splitter = make_splitter(
            self.cfg.chunk_size, self.cfg.chunk_overlap, embed_tokenizer(self.embed_model)
        )
        docs: dict[str, dict] = {}
        pending: list = []
        first_pending = 0  # index of the first file whose chunks wait to be embedded
        nodes_of: dict[str, list] = {}  # file -> its nodes, for BM25, in file order whatever came first
        late: list[str] = []  # files that broke and keep their last good version
        total = len(files)
        digests: dict[str, str | OSError] = {}
        for path in files:
            rel = path.relative_to(self.cfg.docs_dir).as_posix()
            try:
                digests[rel] = file_hash(path)
            except OSError as e:
                digests[rel] = e
        same = [rel for rel, digest in digests.items() if old_docs.get(rel, {}).get("hash") == digest]
        nodes_of.update(self._stored_nodes(collection, {rel: old_docs[rel] for rel in same}))

        def flush() -> None:
            nonlocal pending
            if old_docs and pending:  # chunks of an edited file that did not change are stored already
                stored = set(collection.get(ids=[n.node_id for n in pending], include=[])["ids"])
                pending = [n for n in pending if n.node_id not in stored]
            if pending:
                texts = [n.get_content() for n in pending]
                vectors = self.embed_model.get_text_embedding_batch(
                    texts, show_progress=self.cfg.show_progress
                )
                for node, vector in zip(pending, vectors, strict=True):
                    node.embedding = vector
                vector_store.add(pending)
                report.chunks_embedded += len(pending)
            pending = []

        def skip(rel: str, reason: str, prior: dict | None) -> None:
            if prior:  # a file that broke keeps its last good version: nothing indexed is lost
                reason += "; kept the previously indexed version"
                late.append(rel)
                docs[rel] = prior
            report.skipped.append((rel, reason))

        for i, path in enumerate(files, 1):
            rel = path.relative_to(self.cfg.docs_dir).as_posix()
            prior = old_docs.get(rel)
            try:
                digest = digests[rel]
                if isinstance(digest, OSError):
                    raise digest
                if rel in nodes_of:  # unchanged: its rows are in the shared collection already
                    report.unchanged.append(rel)
                    docs[rel] = prior
                else:
                    nodes = chunk_document(load_file(path, rel), splitter)
                    (report.changed if prior else report.added).append(rel)
                    docs[rel] = {"hash": digest, "chunks": [n.node_id for n in nodes]}
                    pending.extend(nodes)
                    nodes_of[rel] = nodes
            except OSError as e:
                skip(rel, f"unreadable: {e.strerror or e}", prior)
            except SkipFile as e:
                skip(rel, str(e), prior)
            if len(pending) >= self.cfg.embed_group:
                flush()
            if pending and not first_pending:
                first_pending = i
            elif not pending:
                first_pending = 0
            if progress:  # a file is done once its chunks are stored
                progress(first_pending - 1 if pending else i, total)
        flush()
        nodes_of.update(self._stored_nodes(collection, {rel: old_docs[rel] for rel in late}))
        all_nodes = [
            n for path in files for n in nodes_of.get(path.relative_to(self.cfg.docs_dir).as_posix(), [])
        ]
        if progress:
            progress(total, total)
        report.removed = sorted(set(old_docs) - set(docs) - {f for f, _ in report.skipped})
        if not all_nodes:
            raise IndexBuildError(
                f"no document in {self.cfg.docs_dir} could be indexed: "
                + "; ".join(f"{f}: {r}" for f, r in report.skipped[:5])
            )
        self._write_bm25(gen, all_nodes)
        report.chunks_total = len(all_nodes)
        report.generation = gen
        write_json_atomic(
            self.store.dir(gen) / MANIFEST,
            {
                "fingerprint": self.fingerprint(),
                "collection": collection.name,
                "docs": docs,
                "chunks": len(all_nodes),
                "built": time.time(),
                "files": stats,
                "skipped": report.skipped,
            },
        )
        self.store.switch_to(gen)
        self.store.cleanup()
        return report

    def _stored_nodes(self, collection, prior: dict[str, dict]) -> dict[str, list]:
        """Files' chunks as stored (text and citation, no vectors): BM25 is rebuilt over every chunk.
        Returns each file's nodes, in chunk order."""
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        ids = [chunk for doc in prior.values() for chunk in doc["chunks"]]
        step = min(self.store.client.get_max_batch_size(), 4096)
        node_of = {}
        for i in range(0, len(ids), step):
            got = collection.get(ids=ids[i : i + step], include=["documents", "metadatas"])
            for id_, meta, text in zip(got["ids"], got["metadatas"], got["documents"], strict=True):
                node_of[id_] = metadata_dict_to_node(meta, text=text)
        return {rel: [node_of[c] for c in doc["chunks"] if c in node_of] for rel, doc in prior.items()}

    def _write_bm25(self, gen: str, nodes: list) -> None:
        retriever = bm25_retriever_class().from_defaults(nodes=nodes, similarity_top_k=self.cfg.candidates)
        retriever.persist(str(self.store.dir(gen) / BM25_DIR), show_progress=False)
