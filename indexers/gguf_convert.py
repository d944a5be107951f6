"""A GGUF copy of a sentence-transformers BERT model for llama.cpp (indexers/gguf_embed.py), made once.

Written with the `gguf` package the way llama.cpp's convert_hf_to_gguf.py writes BertModel: the WordPiece
vocabulary as "bert" with phantom-space tokens, non-causal attention, the sentence-transformers pooling.
The weights are read from model.safetensors through numpy: converting needs no torch either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Bump when what convert() writes changes: copies and index fingerprints carry it (1-4: development only).
CONVERSION = 5
_NEEDED = ("config.json", "tokenizer.json", "model.safetensors")
# name: (the layers' matrices, the token table, the file type). The token table is only looked rows up in:
# Q8_0 halves it again (23 -> 12 MB) and moved the bundled model's vectors by 5e-6 in cosine.
WEIGHTS = {
    "f32": ("F32", "F32", "ALL_F32"),
    "f16": ("F16", "Q8_0", "MOSTLY_F16"),
    "bf16": ("BF16", "Q8_0", "MOSTLY_BF16"),
}


class EmbedSetupError(ValueError):
    """The model cannot run in llama.cpp; the message says what is supported and what to set instead."""


def _unsupported(model_dir: Path, why: str) -> EmbedSetupError:
    return EmbedSetupError(
        f"embed backend 'llamacpp' cannot run {model_dir}: {why}. It supports sentence-transformers BERT "
        "models with a WordPiece tokenizer.json, model.safetensors and mean or CLS pooling (like the "
        "bundled all-MiniLM-L6-v2); set embed_backend to 'fp32' or 'bf16' for this model"
    )


def _read_json(path: Path) -> dict | list:
    return json.loads(path.read_text(encoding="utf-8"))


def _pooling(model_dir: Path) -> tuple[str, bool]:
    """The sentence-transformers pooling ("mean" or "cls") and whether a Normalize module follows it."""
    modules_file = model_dir / "modules.json"
    modules = _read_json(modules_file) if modules_file.is_file() else []
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    extra = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
    if extra:  # a Dense layer after pooling, for example: llama.cpp would leave it out
        raise _unsupported(model_dir, f"its modules.json has {', '.join(extra)} after the transformer")
    pooling = next((m for m in modules if m.get("type", "").endswith(".Pooling")), None)
    if pooling is None:
        return "mean", False  # what sentence-transformers does with a bare transformer folder
    config = _read_json(model_dir / pooling["path"] / "config.json")
    modes = [k for k, v in config.items() if k.startswith("pooling_mode") and v]
    if modes == ["pooling_mode_mean_tokens"]:
        return "mean", "Normalize" in kinds
    if modes == ["pooling_mode_cls_token"]:
        return "cls", "Normalize" in kinds
    raise _unsupported(model_dir, f"its pooling is {', '.join(modes) or 'none'}")


def max_seq_length(model_dir: Path) -> int:
    """Where sentence-transformers truncates (special tokens included): its own setting, else the model's."""
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.is_file() and (n := _read_json(st_config).get("max_seq_length")):
        return int(n)
    limit = _read_json(model_dir / "config.json").get("max_position_embeddings", 512)
    tok_config = model_dir / "tokenizer_config.json"
    if tok_config.is_file():
        limit = min(limit, int(_read_json(tok_config).get("model_max_length", limit)))
    return int(limit)


def check_convertible(model_dir: Path) -> dict:
    """The model's config.json, once it is known to be a BERT this module can convert."""
    model_dir = Path(model_dir)
    missing = [name for name in _NEEDED if not (model_dir / name).is_file()]
    if missing:
        raise _unsupported(model_dir, f"{', '.join(missing)} is missing")
    config = _read_json(model_dir / "config.json")
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        raise _unsupported(model_dir, f"it is a {config.get('model_type')!r} model, not a plain BERT")
    if config.get("hidden_act", "gelu") != "gelu":
        raise _unsupported(model_dir, f"its activation is {config.get('hidden_act')!r}, not gelu")
    tokenizer = _read_json(model_dir / "tokenizer.json")
    if tokenizer.get("model", {}).get("type") != "WordPiece":
        raise _unsupported(model_dir, "its tokenizer is not WordPiece")
    _pooling(model_dir)
    return config


def _label(model_dir: Path) -> str:
    """A readable name: the folder's, or its package's for a folder called model (the bundled one's)."""
    return model_dir.parent.name if model_dir.name == "model" else model_dir.name


def gguf_file(model_dir: Path, cache_dir: Path, weights: str = "f32") -> Path:
    """The GGUF copy of model_dir in cache_dir, converted on first use (~1 s for the bundled model)."""
    model_dir = Path(model_dir)
    check_convertible(model_dir)
    digest = hashlib.sha256(f"{CONVERSION}:{weights}".encode())
    for name in ("config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json"):
        if (model_dir / name).is_file():
            digest.update((model_dir / name).read_bytes())
    # The weights by size and mtime, not content: hashing them would cost every start-up ~0.2 s.
    st = (model_dir / "model.safetensors").stat()
    digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    target = Path(cache_dir) / f"{_label(model_dir)}-{digest.hexdigest()[:12]}.{weights.upper()}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    log.info("writing a GGUF copy of the embedder %s to %s (once)", model_dir, target)
    try:
        convert(model_dir, tmp, weights)
        os.replace(tmp, target)  # atomic: another process sees the whole file or none
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _vocab(model_dir: Path):
    """Token texts and types as llama.cpp's WPM tokenizer reads them: "##x" becomes "x" and every other
    word piece gets a leading "\u2581" (a phantom space); special tokens stay as they are."""
    import gguf

    tokenizer = _read_json(model_dir / "tokenizer.json")
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    n_vocab = _read_json(model_dir / "config.json").get("vocab_size", len(vocab))
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED] * n_vocab
    for text, i in vocab.items():
        if text in special:
            tokens[i], types[i] = text, gguf.TokenType.CONTROL
        else:
            tokens[i] = text[2:] if text.startswith("##") else "\u2581" + text
            types[i] = gguf.TokenType.NORMAL
    return tokens, types


def convert(model_dir: Path, out: Path, weights: str = "f32") -> None:
    """Write model_dir (a sentence-transformers BERT) as a llama.cpp GGUF file, its tensors in the types
    WEIGHTS names."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    model_dir = Path(model_dir)
    config = check_convertible(model_dir)
    if weights not in WEIGHTS:
        raise ValueError(f"GGUF embedder weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    matrices, token_table, ftype = WEIGHTS[weights]
    pooling, _ = _pooling(model_dir)
    n_layer = config["num_hidden_layers"]
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(_label(model_dir))
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(n_layer)
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config.get("layer_norm_eps", 1e-12))
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN if pooling == "mean" else gguf.PoolingType.CLS)
    writer.add_file_type(getattr(gguf.LlamaFileType, ftype))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types = _vocab(model_dir)
    writer.add_tokenizer_model("bert")  # llama.cpp's WPM vocabulary
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(config.get("type_vocab_size", 2))
    # [CLS] is written as bos, [SEP] as eos and sep, as convert_hf_to_gguf.py does. GGUF has no "cls" key,
    # and asking for one only logs a warning.
    kinds = ("bos", "eos", "unk", "sep", "pad", "mask")
    gguf.SpecialVocab(model_dir, special_token_types=kinds, n_vocab=len(tokens)).add_to_gguf(
        writer, quiet=True
    )

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)
    for name, data in load_file(str(model_dir / "model.safetensors")).items():
        name = name.removeprefix("bert.")
        if name == "embeddings.position_ids" or name.startswith(("pooler.", "cls.")):
            continue  # not part of the embedding (buffers, the NSP pooler, the masked-LM head)
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise _unsupported(model_dir, f"its tensor {name!r} has no llama.cpp BERT counterpart")
        # The 1-D norms and biases stay F32, as convert_hf_to_gguf.py keeps them, and so do the small position
        # and type tables: llama.cpp adds the type row as it is, and its add of a BF16 operand aborts.
        small = data.ndim == 2 and new not in ("token_types.weight", "position_embd.weight")
        kind = getattr(gguf.GGMLQuantizationType, matrices if small else "F32")
        if new == "token_embd.weight" and data.shape[-1] % gguf.GGML_QUANT_SIZES[kind.Q8_0][0] == 0:
            kind = getattr(gguf.GGMLQuantizationType, token_table)  # Q8_0 packs rows in blocks of 32
        data = gguf.quants.quantize(data.astype(np.float32), kind)
        writer.add_tensor(new, data, raw_dtype=kind)  # BF16 comes as bytes: the writer derives its shape
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
