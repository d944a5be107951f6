"""Where an index lives: generations of (Chroma collection, BM25 index, manifest) and a pointer to the
current one.

A reindex writes a new generation (manifest + BM25 index) and only then rewrites the small CURRENT
pointer with os.replace, which is atomic on POSIX. Readers follow the pointer, so a build that crashes or
is killed halfway never touches what is being served; the orphan is cleaned up by the next build.

Vectors live in Chroma. A full build makes a new collection; an incremental build adds its new chunks to
the collection of the generation it starts from, so unchanged chunks are never copied. Chunk ids are
content hashes, so a row never changes once written, and a generation's manifest lists the ids it is
made of: readers keep to those, and rows that no kept generation lists are deleted after a switch.

The same code serves the embedded PersistentClient and a Chroma server. With a server, several hosts
share one index without sharing a disk: the pointer and every generation's manifest are kept in a small
Chroma collection of their own (`<prefix>-meta`) as well, and a host that finds a generation without its
BM25 files rebuilds them once from the generation's rows on the server (their text and metadata are there:
the same nodes, so the same BM25 index), then keeps them on its own disk.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import time
import uuid
import zlib
from pathlib import Path

from .config import IndexConfig

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
BM25_DIR = "bm25"
META_SUFFIX = "-meta"  # not "_": cleanup() drops the collections named "<prefix>_…" no generation uses
MANIFEST_KEY = "manifest/"

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    pass


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def bm25_retriever_class():
    from llama_index.retrievers.bm25 import BM25Retriever

    # bm25s sets its own logger to DEBUG when imported; put it back in line with everyone else's.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return BM25Retriever


def open_chroma(cfg: IndexConfig):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if cfg.chroma_url:
        from urllib.parse import urlparse

        url = urlparse(cfg.chroma_url)
        try:
            client = chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 80),
                ssl=url.scheme == "https",
                settings=settings,
            )
            client.heartbeat()
        except Exception as e:
            raise StoreError(f"cannot reach the Chroma server at {cfg.chroma_url}: {e}") from None
        return client
    path = cfg.index_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


class GenerationStore:
    def __init__(self, cfg: IndexConfig, client=None):
        self.cfg = cfg
        self.root = cfg.index_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self._client = client
        self.shared = bool(cfg.chroma_url)  # a server: pointer and manifests are kept there for every host
        self.meta_name = f"{cfg.collection_prefix}{META_SUFFIX}"
        self._meta = None

    @property
    def client(self):
        if self._client is None:
            self._client = open_chroma(self.cfg)
        return self._client

    # --- pointer -------------------------------------------------------------------------------
    def _pointer(self) -> dict | None:
        """CURRENT's content: on the server where the index is shared (a local file is an index built before
        it was: read, and written there at the next switch), else the local file."""
        if self.shared:
            kept = self._read_meta(CURRENT)
            if kept is not None:
                return kept
        try:
            return json.loads((self.root / CURRENT).read_text())
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise StoreError(
                f"{self.root / CURRENT} is damaged ({e}); run `expertbot index --full`"
            ) from None

    def current(self) -> str | None:
        pointer = self._pointer()
        if pointer is None:
            return None
        try:
            return pointer["generation"]
        except (KeyError, TypeError) as e:
            where = f"{self.meta_name} on {self.cfg.chroma_url}" if self.shared else self.root / CURRENT
            raise StoreError(f"{where} is damaged ({e}); run `expertbot index --full`") from None

    def history(self) -> list[str]:
        try:
            return (self._pointer() or {}).get("history", [])
        except StoreError:
            return []

    def switch_to(self, generation: str) -> None:
        previous = self.current()
        history = ([previous] if previous else []) + [g for g in self.history() if g != previous]
        pointer = {
            "generation": generation,
            "history": history[: self.cfg.keep_generations],
            "switched": time.time(),
        }
        if self.shared:
            self._write_meta(CURRENT, pointer)
        write_json_atomic(self.root / CURRENT, pointer)  # what this host served last, and a fallback

    # --- shared metadata (a Chroma server) -----------------------------------------------------------
    def _meta_collection(self):
        if self._meta is None:  # one dimension: the records are looked up by id, never by vector
            self._meta = self.client.get_or_create_collection(self.meta_name)
        return self._meta

    def _read_meta(self, key: str):
        got = self._meta_collection().get(ids=[key], include=["documents"])
        if not got["ids"]:
            return None
        return json.loads(zlib.decompress(base64.b64decode(got["documents"][0])))

    def _write_meta(self, key: str, data) -> None:
        # Compressed: a manifest at 100k chunks is megabytes of JSON, and Chroma indexes documents' words.
        text = base64.b64encode(zlib.compress(json.dumps(data, sort_keys=True).encode(), 6)).decode()
        self._meta_collection().upsert(ids=[key], documents=[text], embeddings=[[0.0]])

    # --- generations ---------------------------------------------------------------------------
    def new_generation(self) -> str:
        gen = time.strftime("g%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
        (self.root / gen).mkdir()
        return gen

    def dir(self, generation: str) -> Path:
        return self.root / generation

    def collection_name(self, generation: str) -> str:
        return f"{self.cfg.collection_prefix}_{generation}"

    def collection_of(self, generation: str, manifest: dict | None = None) -> str:
        """The collection holding a generation's vectors: its own, or one it shares with those before it.
        manifest: the generation's, where the caller has read it already (at 100k chunks it is megabytes)."""
        manifest = self.manifest(generation) if manifest is None else manifest
        return (manifest or {}).get("collection") or self.collection_name(generation)

    def collection(self, generation: str, create: bool = False, manifest: dict | None = None):
        name = self.collection_name(generation) if create else self.collection_of(generation, manifest)
        if create:
            # Cosine space: 1 - distance is the cosine similarity the refusal threshold is set in.
            return self.client.create_collection(name, metadata={"hnsw:space": "cosine"})
        try:
            return self.client.get_collection(name)
        except Exception as e:
            raise StoreError(
                f"index generation {generation} has no Chroma collection {name!r} ({e}); "
                "run `expertbot index --full` to build it again"
            ) from None

    def manifest(self, generation: str | None) -> dict | None:
        if generation is None:
            return None
        try:
            return json.loads((self.dir(generation) / MANIFEST).read_text())
        except FileNotFoundError:
            if not self.shared:
                return None
        manifest = self._read_meta(MANIFEST_KEY + generation)  # built on another host
        if manifest is not None:
            self.dir(generation).mkdir(exist_ok=True)
            write_json_atomic(self.dir(generation) / MANIFEST, manifest)
        return manifest

    def write_manifest(self, generation: str, manifest: dict) -> None:
        """Before switch_to(): a reader on any host that follows the pointer finds the manifest there."""
        if self.shared:
            self._write_meta(MANIFEST_KEY + generation, manifest)
        write_json_atomic(self.dir(generation) / MANIFEST, manifest)

    def bm25_dir(self, generation: str, manifest: dict | None = None) -> Path:
        """The generation's BM25 files; where the index is shared and this host has none (another host built
        it), they are rebuilt from the generation's rows on the server first."""
        path = self.dir(generation) / BM25_DIR
        if self.shared and not path.exists():
            self._rebuild_bm25(generation, manifest or self.manifest(generation))
        return path

    def write_bm25(self, generation: str, nodes: list) -> None:
        """The generation's BM25 index over these nodes (a build's, or a rebuild from the server's rows)."""
        path = self.dir(generation) / BM25_DIR
        tmp = path.with_name(f".{BM25_DIR}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        bm25 = bm25_retriever_class().from_defaults(nodes=nodes, similarity_top_k=self.cfg.candidates)
        bm25.persist(str(tmp), show_progress=False)
        os.replace(tmp, path)  # a reader never opens half-written files

    def _rebuild_bm25(self, generation: str, manifest: dict | None) -> None:
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        started = time.monotonic()
        docs = (manifest or {}).get("docs", {})
        # The builder's corpus order (BM25 ties keep it), duplicates too: the same index, not a like one.
        listed = [c for rel in (manifest or {}).get("order") or sorted(docs) for c in docs[rel]["chunks"]]
        ids = sorted(set(listed))
        collection = self.collection(generation, manifest=manifest)
        found, step = {}, 5000
        for i in range(0, len(ids), step):
            got = collection.get(ids=ids[i : i + step], include=["documents", "metadatas"])
            for key, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
                found[key] = (text, meta)
        if len(found) != len(ids):
            raise StoreError(
                f"index generation {generation} lists {len(ids)} chunks but the Chroma server has "
                f"{len(found)} of them; run `expertbot index --full`"
            )
        nodes = []
        for key in listed:
            node = metadata_dict_to_node(found[key][1])
            node.set_content(found[key][0])
            nodes.append(node)
        self.write_bm25(generation, nodes)
        log.info("rebuilt the BM25 index of generation %s from %d chunks on the server in %.1f s",
                 generation, len(nodes), time.monotonic() - started)  # fmt: skip

    def chunk_ids(self, generation: str | None, manifest: dict | None = None) -> set[str]:
        """Every chunk a generation is made of (files kept at their last good version included)."""
        manifest = self.manifest(generation) if manifest is None else manifest
        docs = (manifest or {}).get("docs", {})
        return {chunk for doc in docs.values() for chunk in doc["chunks"]}

    def cleanup(self, rows: bool = True) -> list[str]:
        """Drop every generation that is neither current nor kept in history (old ones and crashed builds),
        every collection no kept generation uses, and, with `rows`, the rows no kept generation lists.

        A build calls it with rows=False before it starts, so that what a crashed build already embedded
        into the shared collection is reused rather than thrown away, and with rows=True after its switch."""
        keep = [g for g in [self.current(), *self.history()[: self.cfg.keep_generations - 1]] if g]
        used: dict[str, set[str]] = {}  # collection -> the chunk ids kept generations list in it
        for gen in keep:
            manifest = self.manifest(gen)
            used.setdefault(self.collection_of(gen, manifest), set()).update(self.chunk_ids(gen, manifest))
        removed = []
        for path in self.root.iterdir():
            if path.is_dir() and path.name.startswith("g") and path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        prefix = f"{self.cfg.collection_prefix}_"
        for name in self._collection_names():
            if name.startswith(prefix) and name not in used:
                self.client.delete_collection(name)
                if name[len(prefix) :] not in removed:
                    removed.append(name[len(prefix) :])
        for name, ids in used.items() if rows else ():
            self._delete_unlisted(name, ids)
        if self.shared:
            kept = self._meta_collection().get(include=[])["ids"]
            gone = [k for k in kept if k.startswith(MANIFEST_KEY) and k[len(MANIFEST_KEY) :] not in keep]
            if gone:
                self._meta_collection().delete(ids=gone)
        return removed

    def _delete_unlisted(self, name: str, listed: set[str]) -> None:
        """Delete a shared collection's rows that no kept generation lists (chunks replaced two builds ago,
        or added by a build that crashed). A COUNT first: listing every id is only needed when some are
        extra."""
        try:
            collection = self.client.get_collection(name)
        except Exception:  # a generation whose collection is gone is reported by whoever opens it
            return
        if collection.count() <= len(listed):
            return
        extra = [i for i in collection.get(include=[])["ids"] if i not in listed]
        step = self.client.get_max_batch_size()
        for i in range(0, len(extra), step):
            collection.delete(ids=extra[i : i + step])

    def _collection_names(self) -> list[str]:
        return [c if isinstance(c, str) else c.name for c in self.client.list_collections()]
