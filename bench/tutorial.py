"""The baseline: LlamaIndex's starter-tutorial pipeline, as a user would write it on day one.

`VectorStoreIndex.from_documents(SimpleDirectoryReader(docs).load_data())` with the default in-memory
SimpleVectorStore, persisted to disk as the tutorial's next step does (ours persists too). The embedder
is a plain LlamaIndex HuggingFaceEmbedding on the same weights (tutorial_embed_model: fp32, batch 64,
what our indexer itself used before it had backends), passed explicitly: llama_index Settings are never
touched. The splitter is passed explicitly as well, but it is the default one
(SentenceSplitter(), 1024 cl100k tokens, overlap 200): cl100k ships inside llama-index-core, so this
needs no network.

With its default splitter the tutorial makes ~7x fewer chunks than we do, and the embedder reads only
the first 256 tokens of each, so it also does far less work. `chunk_size=` gives the same pipeline our
chunk size, counted in the embedder's tokens: the like-for-like comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .common import Timer


def tutorial_embed_model(batch_size: int = 64):
    """HuggingFaceEmbedding as the tutorial writes it, on the bundled weights, with our batch size."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from indexers import BUNDLED_EMBED_MODEL
    from indexers.embedding import resolve_embed_model

    model = HuggingFaceEmbedding(
        model_name=resolve_embed_model(BUNDLED_EMBED_MODEL), device="cpu", embed_batch_size=batch_size
    )
    model.get_text_embedding_batch(["warm-up text for the embedder"] * 16)  # as Context.embed_model does
    return model


@dataclass
class TutorialBuild:
    index: object  # VectorStoreIndex
    seconds: float
    chunks: int
    documents: int


def build_tutorial_index(
    docs: Path, embed_model, persist_dir: Path, chunk_size: int | None = None, chunk_overlap: int = 30
) -> TutorialBuild:
    from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter

    from indexers.embedding import embed_tokenizer

    splitter = SentenceSplitter()
    if chunk_size is not None:
        splitter = SentenceSplitter(
            chunk_size=chunk_size, chunk_overlap=chunk_overlap, tokenizer=embed_tokenizer(embed_model)
        )
    with Timer() as t:
        # recursive=True: the tutorial's folder is flat, ours are not, and both sides must see the same files.
        documents = SimpleDirectoryReader(str(docs), recursive=True).load_data(show_progress=False)
        index = VectorStoreIndex.from_documents(
            documents, embed_model=embed_model, transformations=[splitter], show_progress=False
        )
        index.storage_context.persist(persist_dir=str(persist_dir))
    return TutorialBuild(index, t.seconds, len(index.docstore.docs), len(documents))
