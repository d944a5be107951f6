"""Loading, chunking, embedding, storing, retrieving and citing company documents.

A library: it never reads the environment and never imports `bot` or `adapters`.
Names are imported on first use (PEP 562), so importing this package, or a light module of it such as
indexers.facts, does not pull in LlamaIndex (~2 s): `expertbot --help` and a question asked before any
index answer at once.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "IndexBuildError": "build",
    "Indexer": "build",
    "IndexReport": "build",
    "BUNDLED_EMBED_MODEL": "config",
    "SUPPORTED_SUFFIXES": "config",
    "IndexConfig": "config",
    "load_embed_model": "embedding",
    "Hit": "retrieve",
    "NoIndexError": "retrieve",
    "Retriever": "retrieve",
    "GenerationStore": "store",
    "StoreError": "store",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'indexers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
