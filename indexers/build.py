"""Incremental, build-then-swap indexing.

Each build writes a fresh generation: a manifest of the chunk ids it is made of, and a BM25 index. An
incremental build adds only chunks it has never stored to the collection it shares with the generation
before it (see store.py); unchanged files cost a hash, and an edited file costs only its changed chunks.
Nothing the current generation uses is modified, and the pointer moves only once the new one is complete;
the one exception is a chunk's scope metadata, updated in place when scopes change (scopes.py says why
readers of the current generation stay on the safe side).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import scopes
from .chunking import chunk_document, make_splitter
from .config import IndexConfig
from .embedding import embed_tokenizer, embedder_backend
from .loading import LOADER_VERSION, SkipFile, load_file
from .scan import DocsScan, scan_docs
from .store import GenerationStore

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (files done, files total)


class IndexBuildError(RuntimeError):
    """A build that cannot proceed. The current generation is untouched."""


class BuildCancelled(IndexBuildError):  # noqa: N818 - a request to stop, not a fault
    """The caller's should_stop said stop. The current generation is untouched; the next build cleans up
    what this one left."""


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    chunks_total: int = 0
    chunks_embedded: int = 0
    rescoped: int = 0  # chunks whose scopes changed: their rows' metadata, updated in place
    scoped: dict[str, int] = field(default_factory=dict)  # scope -> chunks
    warnings: list[str] = field(default_factory=list)
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
            "chunks_rescoped": self.rescoped,
            "scoped": self.scoped,
            "warnings": self.warnings,
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


def _stop_if_asked(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise BuildCancelled("the index build was cancelled; the current index is unchanged")


def _checking(should_stop: Callable[[], bool], progress: Progress | None) -> Progress:
    """A progress callback that first stops the build if asked: the build loop reports every file."""

    def report(done: int, total: int) -> None:
        _stop_if_asked(should_stop)
        if progress is not None:
            progress(done, total)

    return report


class Indexer:
    def __init__(self, cfg: IndexConfig, embed_model, store: GenerationStore | None = None):
        self.cfg = cfg
        self.embed_model = embed_model
        self.store = store or GenerationStore(cfg)
        self._should_stop: Callable[[], bool] | None = None

    def fingerprint(self) -> dict:
        """Anything that changes what a chunk or its vector is; a change means a full re-embed."""
        return {
            "embed_model": self.cfg.embed_model,
            "embed_backend": embedder_backend(self.embed_model),  # bf16 and fp32 vectors never mix
            "chunk_size": self.cfg.chunk_size,
            "chunk_overlap": self.cfg.chunk_overlap,
            "loader": LOADER_VERSION,
        }

    def build(
        self,
        progress: Progress | None = None,
        full: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> IndexReport:
        """Build a new generation and switch to it. should_stop() is asked before each file and each
        embedding batch; when it says True the build raises BuildCancelled before switching."""
        started = time.perf_counter()
        if should_stop is not None:
            progress = _checking(should_stop, progress)
        docs_dir = self.cfg.docs_dir
        if not docs_dir.is_dir():
            raise IndexBuildError(
                f"docs folder {docs_dir} does not exist; set EXPERTBOT_DOCS_DIR to a folder of documents"
            )
        try:
            scan = scan_docs(docs_dir, self.cfg.max_file_bytes)
        except OSError as e:
            raise IndexBuildError(f"cannot read the docs folder {docs_dir}: {e.strerror or e}") from None
        if not scan.files and not scan.skipped:
            raise IndexBuildError(
                f"docs folder {docs_dir} is empty; add .md, .txt, .rst, .html, .pdf or .docx files"
            )
        if not scan.files:
            raise IndexBuildError(
                f"no document in {docs_dir} could be indexed: "
                + "; ".join(f"{f}: {r}" for f, r in scan.skipped[:5])
            )
        with self._lock():
            self._should_stop = should_stop  # set under the build lock: one build at a time uses it
            # Orphans of a crashed build go before we add another generation; rows it stored stay, to be
            # reused by this build where their content is the same.
            self.store.cleanup(rows=False)
            report = self._build(scan, progress, full)
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

    def _build(self, scan: DocsScan, progress: Progress | None, full: bool) -> IndexReport:
        from llama_index.vector_stores.chroma import ChromaVectorStore

        report = IndexReport()
        files = scan.files
        old_gen = self.store.current()
        old = self.store.manifest(old_gen) or {}
        if old.get("fingerprint") != self.fingerprint():
            full = True  # chunks or vectors would differ: nothing can be reused
        old_docs = {} if full else old.get("docs", {})
        # Sizes and mtimes, taken before any file is read: a file edited mid-build then differs next time.
        stats = {p.relative_to(self.cfg.docs_dir).as_posix(): _stat_key(p) for p in files}
        # What the scan left out is part of "nothing changed": a new link loop or a new size limit is news.
        left_out = [list(s) for s in scan.skipped]
        report.warnings = scopes.unmatched_globs(self.cfg.scopes, stats)
        same_scan = old.get("files") and (stats, left_out) == (old["files"], old.get("left_out"))
        if old_docs and same_scan and scopes.scopes_current(old_docs, self.cfg.scopes):
            # Same files, same bytes, same settings: the current generation already is this index.
            report.unchanged = sorted(old_docs)
            # The old report, but what is left out by rule no longer says it was just removed.
            rule = {f: r for f, r in scan.skipped if f not in scan.unreadable}
            report.skipped = [(f, rule.get(f, r)) for f, r in old.get("skipped", [])]
            report.chunks_total, report.generation = old.get("chunks", 0), old_gen
            report.scoped = scopes.scoped_counts(old_docs, self.cfg.scopes)
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
        step = min(self.store.client.get_max_batch_size(), 4096)
        nodes_of.update(scopes.stored_nodes(collection, {rel: old_docs[rel] for rel in same}, step))

        def flush() -> None:
            nonlocal pending
            if old_docs and pending:  # chunks of an edited file that did not change are stored already
                pending = scopes.drop_stored(collection, pending)
            if pending:
                texts = [n.get_content() for n in pending]
                vectors, step = [], self.cfg.embed_group
                for start in range(0, len(texts), step):  # one big file is many batches: stop between
                    _stop_if_asked(self._should_stop)
                    vectors += self.embed_model.get_text_embedding_batch(
                        texts[start : start + step], show_progress=self.cfg.show_progress
                    )
                for node, vector in zip(pending, vectors, strict=True):
                    node.embedding = vector
                vector_store.add(pending)
                report.chunks_embedded += len(pending)
            pending = []

        unlisted = self._left_out(scan, old_docs, docs, late, report)

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
                    nodes = chunk_document(
                        load_file(path, rel, self.cfg.max_file_bytes, scan.identity[rel]), splitter
                    )
                    scopes.tag(nodes, scopes.scope_string(scopes.scopes_of(rel, self.cfg.scopes)))
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
        nodes_of.update(scopes.stored_nodes(collection, {rel: old_docs[rel] for rel in late}, step))
        order = [p.relative_to(self.cfg.docs_dir).as_posix() for p in files] + unlisted
        all_nodes = [n for rel in order for n in nodes_of.get(rel, [])]
        if progress:
            progress(total, total)
        report.removed = sorted(set(old_docs) - set(docs))  # a file that broke is in docs: kept
        if not all_nodes:
            raise IndexBuildError(
                f"no document in {self.cfg.docs_dir} could be indexed: "
                + "; ".join(f"{f}: {r}" for f, r in report.skipped[:5])
            )
        report.rescoped, report.scoped = scopes.rescope(collection, docs, nodes_of, self.cfg.scopes, step)
        self.store.write_bm25(gen, all_nodes)
        report.chunks_total = len(all_nodes)
        report.generation = gen
        self.store.write_manifest(
            gen,
            {
                "fingerprint": self.fingerprint(),
                "collection": collection.name,
                "docs": docs,
                "chunks": len(all_nodes),
                # The files in BM25's corpus order: a host rebuilding it from the rows (store.py) ranks ties
                # the same way.
                "order": [rel for rel in order if nodes_of.get(rel)],
                "built": time.time(),
                "files": stats,
                "left_out": left_out,
                "skipped": report.skipped,
            },
        )
        self.store.switch_to(gen)
        self.store.cleanup()
        return report

    @staticmethod
    def _left_out(scan: DocsScan, old_docs: dict, docs: dict, late: list, report: IndexReport) -> list[str]:
        """Reports what the scan left out; returns the files it keeps that are not in scan.files. A file
        left out by rule (outside the folder, a loop, too large) is no document of the folder any more:
        its previous version goes. One that could not be read, or that is in a folder that could not be
        listed, keeps its last good version, as a file that breaks does."""
        kept: list[str] = []
        for rel, reason in scan.skipped:
            if rel in scan.unreadable:
                own = [f for f in old_docs if f == rel or (rel.endswith("/") and f.startswith(rel))]
                for f in own:
                    docs[f] = old_docs[f]
                late.extend(own)
                kept.extend(own)
                if rel.endswith("/") and own:  # a folder
                    reason += (
                        f"; kept what was indexed from it before ({len(own)} file{'s' * (len(own) > 1)})"
                    )
                elif own:
                    reason += "; kept the previously indexed version"
            elif rel in old_docs:
                reason += "; removed its previously indexed version"
            report.skipped.append((rel, reason))
        return kept
