"""What the bot asks of each part `bot.wiring.build_services` puts together, and nothing more.

Each Protocol lists only the calls bot/ makes (answer.py, budget.py, evaluate.py, wiring.py, the Slack
listeners, the CLI), so a test can hand in a small fake or another real part through `build_services`'
overrides. The parts wiring builds by default (indexers.Retriever, the adapters' generators, LlamaIndex's
HuggingFaceEmbedding, adapters.registry.AdapterRegistry, indexers.GenerationStore) offer more: the indexers
and the training pipeline, which get them handed in, use that.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol


class Embedder(Protocol):
    """Text to vectors, the way the index was embedded (bot.corrections, indexers.facts, the warm-up)."""

    def get_query_embedding(self, query: str) -> list[float]: ...

    def get_text_embedding_batch(self, texts: list[str], **kw: Any) -> list[list[float]]: ...


class Retriever(Protocol):
    """The hybrid search over the current index generation (bot.answer, bot.evaluate)."""

    def reopen(self) -> bool:
        """Follow a reindex that finished since the last call; True when the generation moved."""
        ...

    def retrieve(
        self, query: str, top_k: int | None = None, allowed: frozenset[str] | None = None
    ) -> Sequence[Any]:
        """Hits best first (each with text, file, section, similarity, url, scopes); `allowed`: the
        scopes the asker may read (None: every document). May carry `query_vector` (bot.answer)."""
        ...


class Generator(Protocol):
    """Chat messages in, answer pieces out, on the base model or a LoRA adapter (adapters.engine).

    Optional, read with getattr: count_tokens(messages) and context_tokens (bot.budget fits the prompt
    with them), cfg.max_new_tokens, startup_warnings(adapter) (logged by the warm-up)."""

    def stream(
        self, messages: list[dict], *, max_new_tokens: int | None = None, adapter: Any = None
    ) -> Iterator[str]: ...

    def generate(self, messages: list[dict], **kw: Any) -> str: ...

    def describe(self) -> str: ...


class Registry(Protocol):
    """Adapter versions and the pointer to the current one (the CLI, /retrain-adapter, resolve_adapter).
    The training pipeline also calls register() and reads root: it is handed the real registry."""

    def current(self) -> Any | None: ...

    def list(self) -> list[Any]: ...

    def get(self, name: str) -> Any: ...

    def promote(self, name: str) -> Any: ...

    def rollback(self) -> Any | None: ...


class Store(Protocol):
    """The index's generations on disk (or in a Chroma server): which one is current, and where."""

    root: Path

    def current(self) -> str | None: ...


__all__ = ["Embedder", "Generator", "Registry", "Retriever", "Store"]
