"""Configuration of the indexing library. Plain dataclass: the bot builds it from its settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .scopes import validate_scopes

BUNDLED_EMBED_MODEL = "bundled:all-MiniLM-L6-v2"
EMBED_BACKENDS = ("auto", "fp32", "bf16", "llamacpp")  # see indexers/embedding.py

# Everything the loader understands; anything else in the docs folder is reported as skipped.
SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".rst", ".html", ".htm", ".pdf", ".docx")


@dataclass
class IndexConfig:
    data_dir: Path
    docs_dir: Path
    embed_model: str = BUNDLED_EMBED_MODEL
    embed_backend: str = "auto"  # auto: llamacpp where it runs the model, else bf16 or fp32 (embedding.py)
    chroma_url: str | None = None  # unset: embedded PersistentClient under data_dir
    collection_prefix: str = "expertbot"  # namespaces our collections on a shared Chroma server
    chunk_size: int = 180  # in embedder tokens; all-MiniLM-L6-v2 truncates past 256
    chunk_overlap: int = 30
    embed_batch_size: int = 64
    embed_group: int = 256  # chunks embedded and stored together: batches well, keeps progress steady
    top_k: int = 5
    dense_weight: float = 1.0  # reciprocal-rank-fusion weights
    bm25_weight: float = 1.0
    rrf_k: int = 60  # the constant from Cormack et al.; dampens the head of each ranking
    candidates: int = 40  # per retriever, before fusion; 20 ranked worse on python3.11-doc (BENCHMARKS.md)
    keep_generations: int = 2  # the current one and the one before it (answers may still be reading it)
    max_file_mb: float = 20.0  # larger files are skipped unread: a 50 MB text file took minutes to index
    show_progress: bool = True
    # scope name -> globs of documents relative to docs_dir; a document in none is public (scopes.py)
    scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.docs_dir = Path(self.docs_dir)
        self.scopes = validate_scopes(self.scopes)
        if not isinstance(self.chunk_size, int) or self.chunk_size < 96:
            raise ValueError(f"chunk_size must be an integer of at least 96 tokens, got {self.chunk_size!r}")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ValueError(
                f"chunk_overlap must be between 0 and chunk_size-1 ({self.chunk_size - 1}), "
                f"got {self.chunk_overlap!r}"
            )
        for name in ("top_k", "embed_batch_size", "embed_group", "candidates", "rrf_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dense_weight < 0 or self.bm25_weight < 0 or self.dense_weight + self.bm25_weight == 0:
            raise ValueError(
                f"dense_weight and bm25_weight must be >= 0 and not both 0, "
                f"got {self.dense_weight!r} and {self.bm25_weight!r}"
            )
        if self.embed_backend not in EMBED_BACKENDS:
            raise ValueError(
                f"embed_backend must be one of {', '.join(EMBED_BACKENDS)}, got {self.embed_backend!r}"
            )
        if self.keep_generations < 1:
            raise ValueError(f"keep_generations must be at least 1, got {self.keep_generations!r}")
        if (
            isinstance(self.max_file_mb, bool)
            or not isinstance(self.max_file_mb, int | float)
            or not (0 < self.max_file_mb <= 10_000)
        ):
            raise ValueError(
                f"max_file_mb must be a number of megabytes above 0 and up to 10000, got {self.max_file_mb!r}"
            )
        if self.chroma_url is not None and not self.chroma_url.startswith(("http://", "https://")):
            raise ValueError(f"chroma_url must start with http:// or https://, got {self.chroma_url!r}")

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * (1 << 20))

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"
