"""Chat generation with transformers + peft: the float model, for safetensors bases (e.g. Phi-3), and
logits / perplexity for training and the promotion gate. GGUF bases answer through llama.cpp instead
(adapters/llamacpp.py); bot.wiring chooses.

One model serves every request, so a lock serialises generation; the adapter is picked while holding
it, which means an answer always finishes on the adapter it started with.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.base import end_of_turn_ids, ensure_chat_template, load_base_model
from adapters.config import ModelConfig
from adapters.engine import PromptEngine, check_messages

log = logging.getLogger(__name__)

SAFE_ADAPTER_FILE = "adapter_model.safetensors"
# Pickle-based formats: torch.load on them can run arbitrary code, so we never open them.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class UnsafeAdapterError(ValueError):
    """An adapter that is not stored as safetensors (pickle-based weights are never loaded)."""


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter on disk: a peft folder with adapter_config.json and adapter_model.safetensors."""

    name: str
    path: Path

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"AdapterRef name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "path", Path(self.path))


def check_safe_adapter(path: Path) -> None:
    """Refuse anything but a safetensors peft adapter folder, looking only at file names."""
    path = Path(path)
    if not path.is_dir():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise UnsafeAdapterError(
                f"adapter {path} is a pickle file; only safetensors adapters are supported "
                f"(a peft folder with {SAFE_ADAPTER_FILE})"
            )
        raise FileNotFoundError(f"adapter folder {path} does not exist")
    # Only adapter_model.* is adapter weights; peft never reads other files (e.g. training_args.bin).
    pickles = sorted(p.name for p in path.glob("adapter_model*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles or not (path / SAFE_ADAPTER_FILE).is_file():
        found = f"found {', '.join(pickles)}" if pickles else f"{SAFE_ADAPTER_FILE} is missing"
        raise UnsafeAdapterError(
            f"adapter {path} refused: only safetensors adapters are supported ({found}); "
            "re-save it with peft's save_pretrained(safe_serialization=True)"
        )
    if not (path / "adapter_config.json").is_file():
        raise ValueError(f"adapter folder {path} has no adapter_config.json; is it a peft adapter?")


def _cancel_criteria(event: threading.Event):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        # Lets an abandoned stream stop the generate thread at the next token.
        def __call__(self, input_ids, scores, **kwargs):
            import torch

            return torch.full(
                (input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([_Cancelled()])


class Generator(PromptEngine):
    """Answers chat messages with the base model (adapter=None) or a LoRA adapter.

    Loading an adapter wraps the model with peft in place: pass a model nobody else uses as a plain model.
    """

    def __init__(self, cfg: ModelConfig, model=None, tokenizer=None):
        if (model is None) != (tokenizer is None):
            raise ValueError("pass both model and tokenizer, or neither (then they load lazily from cfg)")
        self.cfg = cfg
        self._model = None
        self._tokenizer = None
        self._peft = None  # the PeftModel around _model once an adapter is loaded
        self._adapters: dict[str, tuple[Path, str]] = {}  # name -> (resolved path, peft adapter name)
        self._loaded = 0
        self._lock = threading.Lock()  # one generation at a time
        self._load_lock = threading.Lock()
        if model is not None:
            self._attach(model, tokenizer)

    def _attach(self, model, tokenizer) -> None:
        peft = sys.modules.get("peft")  # a PeftModel implies peft is already imported
        if peft is not None and isinstance(model, peft.PeftModel):
            self._peft = model
            model = model.get_base_model()
        ensure_chat_template(model, tokenizer)
        self._stop_ids = end_of_turn_ids(model, tokenizer)
        if getattr(model.config, "model_type", None) == "phi3" and len(self._stop_ids) < 2:
            log.warning("this phi3 tokenizer has no single <|end|> token; answers stop only at eos")
        self._model, self._tokenizer = model, tokenizer

    def _ensure_loaded(self) -> None:
        with self._load_lock:
            if self._model is None:
                self._attach(*load_base_model(self.cfg))

    @property
    def model(self):
        """The model that runs: the PeftModel once an adapter was loaded, else the base model."""
        self._ensure_loaded()
        return self._peft if self._peft is not None else self._model

    @property
    def tokenizer(self):
        self._ensure_loaded()
        return self._tokenizer

    def render(self, messages: list[dict]) -> str:
        """The prompt for messages in the model's own chat template, ending where the answer starts."""
        check_messages(messages)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt's tokens, as _stream encodes them."""
        return self.tokenizer(prompt, add_special_tokens=False).input_ids

    @property
    def context_tokens(self) -> int:
        """The most positions the model attends to (its tokenizer may say fewer)."""
        positions = getattr(self.model.config, "max_position_embeddings", None) or 4096
        return min(positions, self.tokenizer.model_max_length or positions)

    def describe(self) -> str:
        where = f"on {self._model.device}" if self._model is not None else "(not loaded yet)"
        return f"transformers, {self.cfg.base_model} {where}"

    # -- adapters ---------------------------------------------------------------------------------

    def _load_adapter(self, ref: AdapterRef) -> str:
        """Load ref once (cached by name) and return its peft adapter name. Caller holds the lock."""
        check_safe_adapter(ref.path)
        path = ref.path.resolve()
        known = self._adapters.get(ref.name)
        if known is not None and known[0] == path:
            return known[1]
        # peft names become module keys; ours may contain dots or dashes, so map them.
        self._loaded += 1
        peft_name = f"adapter_{self._loaded}"
        log.info("loading adapter %s from %s", ref.name, path)
        if self._peft is None:
            from peft import PeftModel

            self._peft = PeftModel.from_pretrained(
                self._model, path, adapter_name=peft_name, is_trainable=False
            )
            self._peft.eval()
        else:
            self._peft.load_adapter(path, adapter_name=peft_name, is_trainable=False)
        if known is not None:  # same name, new folder (re-trained): the old weights go
            self._peft.delete_adapter(known[1])
        self._adapters[ref.name] = (path, peft_name)
        return peft_name

    @contextmanager
    def _use(self, adapter: AdapterRef | None):
        """The model to run with adapter (None = base) selected. Caller holds the lock."""
        if adapter is not None:
            peft_name = self._load_adapter(adapter)  # creates self._peft on the first adapter
            self._peft.set_adapter(peft_name, inference_mode=True)
            yield self._peft
        elif self._peft is None:
            yield self._model
        else:
            with self._peft.disable_adapter():
                yield self._peft

    # -- generation -------------------------------------------------------------------------------

    def _stream(self, prompt: str, limit: int, adapter: AdapterRef | None) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        tok = self._tokenizer
        with self._lock, self._use(adapter) as model:
            inputs = tok(prompt, return_tensors="pt", add_special_tokens=False).to(self._model.device)
            streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
            cancel = threading.Event()
            kwargs = dict(
                **inputs,
                max_new_tokens=limit,
                streamer=streamer,
                stopping_criteria=_cancel_criteria(cancel),
                eos_token_id=self._stop_ids,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else self._stop_ids[0],
                use_cache=True,
            )
            if self.cfg.temperature > 0:
                kwargs.update(do_sample=True, temperature=self.cfg.temperature)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            errors: list[BaseException] = []

            def run():
                try:
                    with torch.inference_mode():
                        model.generate(**kwargs)
                except BaseException as err:  # handed to the consumer below
                    errors.append(err)
                    streamer.end()  # unblock the consumer

            thread = threading.Thread(target=run, name="expertbot-generate", daemon=True)
            thread.start()
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            finally:
                cancel.set()
                thread.join()
            if errors:
                raise errors[0]

    def logits(self, text: str, *, adapter: AdapterRef | None = None):
        """Next-token logits (float32, CPU, shape [tokens, vocab]) for text: for tests and evaluation."""
        import torch

        self._ensure_loaded()
        ids = self._tokenizer(text, return_tensors="pt").input_ids.to(self._model.device)
        with self._lock, self._use(adapter) as model, torch.inference_mode():
            return model(input_ids=ids).logits[0].float().cpu()

    def perplexity(self, texts: list[str], adapter: AdapterRef | None = None) -> float:
        """exp(mean next-token negative log-likelihood) over all tokens of texts (the promotion gate)."""
        import torch

        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a non-empty list of strings")
        self._ensure_loaded()
        tok = self._tokenizer
        max_len = min(tok.model_max_length, getattr(self._model.config, "max_position_embeddings", 4096))
        total, count = 0.0, 0
        with self._lock, self._use(adapter) as model, torch.inference_mode():
            for text in texts:
                ids = tok(text, return_tensors="pt", truncation=True, max_length=max_len).input_ids
                n = ids.shape[1] - 1  # predicted tokens
                if n < 1:
                    continue
                ids = ids.to(self._model.device)
                loss = model(input_ids=ids, labels=ids).loss  # mean over the n predicted tokens
                total += loss.float().item() * n
                count += n
        if count == 0:
            raise ValueError("perplexity needs at least one text of two or more tokens")
        return math.exp(total / count)
