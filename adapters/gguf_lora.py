"""A peft LoRA adapter as a GGUF LoRA file, for llama.cpp (in-process, or llama-server's --lora).

What llama.cpp's own converter (convert_lora_to_gguf.py, in llama-cpp-python's source archive only) does,
for the architectures we train: the same tensor names (gguf-py's name map: blk.N.attn_q.weight.lora_a /
.lora_b), lora_a as [r, in] and lora_b as [out, r] in float32, the general.type / adapter.type keys,
and q/k's lora_b rows permuted as the llama converter permutes the base's q/k rows for its rope layout.

One difference, on purpose: peft's scaling (lora_alpha / r, or / sqrt(r) with rsLoRA, per module with
rank_pattern / alpha_pattern) is folded into lora_b and no adapter.lora.alpha is written. llama.cpp then
scales every pair by 1.0 (times a caller's scale), so per-module ranks and rsLoRA come out as peft computes
them, which a single alpha key cannot express.

Pure numpy + the gguf package: no torch, no model weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

GGUF_LORA_FILE = "adapter_model.gguf"
STAMP_KEY = "expertbot.lora.source"  # sha256 of the peft files + the base's shape it was written for
# GGUF architectures whose peft module names we map, and whether the llama converter permuted q/k.
PERMUTES_QK = {"llama": True, "qwen2": False, "phi3": False}
_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


class LoraConversionError(ValueError):
    """A peft adapter that cannot be written as a GGUF LoRA file; the message says why."""


@dataclass(frozen=True)
class BaseShape:
    """What the conversion needs to know about the base model, read from its GGUF metadata."""

    arch: str
    blocks: int
    heads: int
    kv_heads: int

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> BaseShape:
        arch = meta.get("general.architecture", "")
        if arch not in PERMUTES_QK:
            raise LoraConversionError(
                f"GGUF LoRA files are written for the {', '.join(PERMUTES_QK)} architectures; "
                f"this base model is {arch or 'of an unknown architecture'}"
            )
        heads = int(meta[f"{arch}.attention.head_count"])
        return cls(arch, int(meta[f"{arch}.block_count"]), heads,
                   int(meta.get(f"{arch}.attention.head_count_kv", heads)))  # fmt: skip

    def stamp(self, source_sha: str) -> str:
        return f"{source_sha}/{self.arch}:{self.blocks}:{self.heads}:{self.kv_heads}"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as float32 arrays (bf16 included, which numpy lacks)."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
        data = fh.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[start:end]
        if info["dtype"] == "BF16":  # the top half of a float32
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in _DTYPES:
            array = np.frombuffer(raw, _DTYPES[info["dtype"]]).astype(np.float32)
        else:
            raise LoraConversionError(f"{path}: tensor {name} is {info['dtype']}; supported: BF16, F16, F32")
        out[name] = array.reshape(info["shape"])
    return out


def _pattern_value(patterns: dict, module: str, default):
    # peft's own rule (peft.utils.other.get_pattern_key): a key matches a module name's dotted suffix.
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _scaling(config: dict, module: str) -> float:
    r = _pattern_value(config.get("rank_pattern"), module, config["r"])
    alpha = _pattern_value(config.get("alpha_pattern"), module, config.get("lora_alpha", 8))
    return alpha / (r**0.5) if config.get("use_rslora") else alpha / r


def _check_config(config: dict, folder: Path) -> None:
    unsupported = [
        why
        for why, bad in (
            ("DoRA (use_dora)", config.get("use_dora")),
            ("fan_in_fan_out weights", config.get("fan_in_fan_out")),
            (f"trained biases (bias={config.get('bias')!r})", config.get("bias", "none") != "none"),
            (
                f"whole modules saved beside the LoRA ({config.get('modules_to_save')})",
                config.get("modules_to_save"),
            ),
        )
        if bad
    ]
    if config.get("peft_type", "LORA") != "LORA" or unsupported:
        found = ", ".join(unsupported) or f"peft_type {config.get('peft_type')}"
        raise LoraConversionError(
            f"adapter {folder} uses {found}; a GGUF LoRA file holds plain LoRA pairs only "
            "(LoraConfig with the defaults for those options)"
        )


def _permute_rows(b: np.ndarray, heads: int) -> np.ndarray:
    # conversion/llama.py LlamaModel.permute, on lora_b's output rows (lora_a is unaffected).
    return b.reshape(heads, 2, b.shape[0] // heads // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def lora_pairs(folder: Path, base: BaseShape) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{GGUF base tensor name: (lora_a [r, in], lora_b [out, r] times peft's scaling)} of a peft folder."""
    import gguf

    config = json.loads((folder / "adapter_config.json").read_text())
    _check_config(config, folder)
    tensors = read_safetensors(folder / "adapter_model.safetensors")
    arch = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}[base.arch]
    names = gguf.get_tensor_name_map(arch, base.blocks)
    pairs = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            if not key.endswith(".lora_B.weight"):
                raise LoraConversionError(f"adapter {folder} holds {key}, which is not a LoRA A/B weight")
            continue
        module = key.removesuffix(".lora_A.weight").removeprefix("base_model.model.")
        b = tensors[key.replace(".lora_A.", ".lora_B.")] * _scaling(config, module)
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise LoraConversionError(f"no {base.arch} GGUF tensor matches the adapter's module {module}")
        if PERMUTES_QK[base.arch] and target.endswith(("attn_q.weight", "attn_k.weight")):
            b = _permute_rows(b, base.heads if target.endswith("attn_q.weight") else base.kv_heads)
        pairs[target] = (np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32))
    if not pairs:
        raise LoraConversionError(f"adapter {folder} holds no LoRA weights")
    return pairs


def source_sha(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def write_gguf_lora(folder: Path, base: BaseShape, out: Path) -> Path:
    """Write folder's peft adapter as a GGUF LoRA file at out (atomically) and return out."""
    import gguf

    pairs = lora_pairs(folder, base)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), base.arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_string(STAMP_KEY, base.stamp(source_sha(folder)))
        for name, (a, b) in sorted(pairs.items()):
            writer.add_tensor(f"{name}.lora_a", a)
            writer.add_tensor(f"{name}.lora_b", b)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote GGUF LoRA %s (%d layers) for %s", out, len(pairs), folder.name)
    return out


def _stamp_of(path: Path) -> str | None:
    import gguf

    try:
        field = gguf.GGUFReader(str(path)).fields.get(STAMP_KEY)
    except (OSError, ValueError):
        return None
    return bytes(field.parts[field.data[0]]).decode() if field else None


def gguf_lora_for(folder: Path, base: BaseShape, cache_dir: Path) -> Path:
    """The GGUF LoRA file for a peft folder: its own adapter_model.gguf when that was written from these
    very weights for this base's shape, else a copy converted once into cache_dir (a folder the user gave
    us is never written to)."""
    sha = source_sha(folder)
    inside = folder / GGUF_LORA_FILE
    if inside.is_file() and _stamp_of(inside) == base.stamp(sha):
        return inside
    cached = Path(cache_dir) / f"{folder.name}-{sha}-{base.arch}.gguf"
    return cached if cached.is_file() else write_gguf_lora(folder, base, cached)


def exporter_for(base_gguf: Path):
    """export(folder) for AdapterRegistry: writes folder/adapter_model.gguf for base_gguf's architecture.
    The base's shape is read once, on the first export (llama.cpp reads the header, ~0.3 s)."""
    shape: list[BaseShape] = []

    def export(folder: Path) -> Path:
        if not shape:
            from adapters.llamacpp_model import gguf_metadata

            shape.append(BaseShape.from_metadata(gguf_metadata(Path(base_gguf))))
        return write_gguf_lora(Path(folder), shape[0], Path(folder) / GGUF_LORA_FILE)

    return export
