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


def chunk_id(rel_path: str, text: str, metadata: dict, occurrence: int) -> str:
    """Content-addressed: the same id means the same stored row (text, vector, citation), so a reindex
    reuses every chunk whose id it already has. Not positional: a paragraph inserted at the top of a long
    page changes the ids of the chunks it touches, not of all those after it. `occurrence` tells apart
    chunks of one file with the same text and heading."""
    key = "\x00".join([rel_path, str(occurrence), text, *(str(metadata[k]) for k in sorted(metadata))])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def chunk_document(doc: LoadedDoc, splitter: SentenceSplitter) -> list[TextNode]:
    """One or more chunks per section; never a chunk that straddles two headings.

    Each chunk starts with its section heading, so both BM25 and the embedder see what the text is about
    even when a long section is split, and the model sees it in the prompt.
    """
    nodes: list[TextNode] = []
    seen: dict[str, int] = {}
    for heading, text in doc.sections:
        # Headings are capped so they never eat most of a chunk (config keeps chunk_size >= 96 tokens).
        prefix = f"{heading[:MAX_HEADING_CHARS]}\n" if heading else ""
        # The metadata-aware split reserves room for the heading, so heading + piece still fits.
        pieces = splitter.split_text_metadata_aware(text, prefix)
        for piece in pieces:
            body = prefix + piece
            meta = {"file": doc.rel_path, "title": doc.title, "section": heading, "url": doc.url or ""}
            key = f"{heading}\x00{body}"
            seen[key] = seen.get(key, -1) + 1
            nodes.append(
                TextNode(
                    id_=chunk_id(doc.rel_path, body, meta, seen[key]),
                    text=body,
                    metadata=meta,
                    # Metadata is for citing, not for matching: keep it out of embeddings and prompts.
                    excluded_embed_metadata_keys=list(meta),
                    excluded_llm_metadata_keys=list(meta),
                )
            )
    return nodes
