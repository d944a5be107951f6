"""Split loaded documents into chunks that follow headings, with ids that are stable across runs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import TextNode

from .loading import LoadedDoc

MAX_HEADING_CHARS = 80


def make_splitter(chunk_size: int, chunk_overlap: int, tokenize: Callable[[str], list]) -> SentenceSplitter:
    # Count in the embedder's own tokens: a chunk longer than its window would be silently truncated.
    return SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap, tokenizer=tokenize)


def chunk_id(rel_path: str, ordinal: int, text: str) -> str:
    return hashlib.sha256(f"{rel_path}\x00{ordinal}\x00{text}".encode()).hexdigest()[:32]


def chunk_document(doc: LoadedDoc, splitter: SentenceSplitter, doc_hash: str) -> list[TextNode]:
    """One or more chunks per section; never a chunk that straddles two headings.

    Each chunk starts with its section heading, so both BM25 and the embedder see what the text is about
    even when a long section is split, and the model sees it in the prompt.
    """
    nodes: list[TextNode] = []
    for heading, text in doc.sections:
        # Headings are capped so they never eat most of a chunk (config keeps chunk_size >= 96 tokens).
        prefix = f"{heading[:MAX_HEADING_CHARS]}\n" if heading else ""
        # The metadata-aware split reserves room for the heading, so heading + piece still fits.
        pieces = splitter.split_text_metadata_aware(text, prefix)
        for piece in pieces:
            body = prefix + piece
            nodes.append(
                TextNode(
                    id_=chunk_id(doc.rel_path, len(nodes), body),
                    text=body,
                    metadata={
                        "file": doc.rel_path,
                        "title": doc.title,
                        "section": heading,
                        "url": doc.url or "",
                        "doc_hash": doc_hash,
                    },
                    # Metadata is for citing, not for matching: keep it out of embeddings and prompts.
                    excluded_embed_metadata_keys=["file", "title", "section", "url", "doc_hash"],
                    excluded_llm_metadata_keys=["file", "title", "section", "url", "doc_hash"],
                )
            )
    return nodes
