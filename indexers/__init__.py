"""Loading, chunking, embedding, storing, retrieving and citing company documents.

A library: it never reads the environment and never imports `bot` or `adapters`.
Heavy imports happen inside functions, so importing this package is cheap.
"""

from .build import IndexBuildError, Indexer, IndexReport
from .config import BUNDLED_EMBED_MODEL, SUPPORTED_SUFFIXES, IndexConfig
from .embedding import load_embed_model
from .retrieve import Hit, NoIndexError, Retriever
from .store import GenerationStore, StoreError

__all__ = [
    "BUNDLED_EMBED_MODEL",
    "SUPPORTED_SUFFIXES",
    "GenerationStore",
    "Hit",
    "IndexBuildError",
    "IndexConfig",
    "IndexReport",
    "Indexer",
    "NoIndexError",
    "Retriever",
    "StoreError",
    "load_embed_model",
]
