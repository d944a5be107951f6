"""What every generation backend shares: the interface the answerer uses, argument checks, streaming help.

Three backends implement TextGenerator: adapters.llamacpp (llama.cpp in-process, for GGUF models),
adapters.server (any OpenAI-compatible server) and adapters.generate (transformers, for safetensors
models such as Phi-3). bot.wiring picks one; nothing else needs to know which.
"""

from __future__ import annotations

import codecs
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from adapters.generate import AdapterRef


class TextGenerator(Protocol):
    """Answers chat messages, on the base model (adapter=None) or a LoRA adapter, piece by piece."""

    def stream(
        self, messages: list[dict], *, max_new_tokens: int | None = None, adapter: AdapterRef | None = None
    ) -> Iterator[str]: ...

    def generate(self, messages: list[dict], **kw) -> str: ...

    def describe(self) -> str:
        """One line for the start-up log: which engine, which model, where."""
        ...


class PromptEngine:
    """stream() and generate() for the in-process engines, which render the chat template themselves.

    A subclass has cfg.max_new_tokens, render(messages) -> prompt and _stream(prompt, limit, adapter), a
    generator: it runs only from the first next(), so stream() checks its arguments now instead."""

    def stream(
        self, messages: list[dict], *, max_new_tokens: int | None = None, adapter: AdapterRef | None = None
    ) -> Iterator[str]:
        """Text pieces of the answer as they are generated. Closing the iterator early stops generation."""
        from adapters.generate import check_safe_adapter

        limit = check_max_new_tokens(self.cfg.max_new_tokens if max_new_tokens is None else max_new_tokens)
        if adapter is not None:
            check_safe_adapter(adapter.path)  # fail now, not at the first next()
        return self._stream(self.render(messages), limit, adapter)

    def generate(self, messages: list[dict], **kw) -> str:
        """The whole answer at once; same arguments as stream()."""
        return "".join(self.stream(messages, **kw))

    def count_tokens(self, messages: list[dict]) -> int:
        """The prompt's length for messages in this engine's own chat template and tokenizer: what a
        caller's token budget is measured with (a subclass has prompt_ids(prompt) and context_tokens,
        the most tokens a prompt and its answer may take together)."""
        return len(self.prompt_ids(self.render(messages)))


def check_messages(messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for m in messages:
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise ValueError(f"each message needs string 'role' and 'content', got {m!r}")
    return messages


def check_max_new_tokens(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"max_new_tokens must be a positive integer, got {value!r}")
    return value


def utf8_pieces(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text from the bytes of successive tokens. A byte-level token may end inside a multi-byte character;
    its bytes wait for the next token instead of showing up as a replacement character."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in chunks:
        if text := decoder.decode(chunk):
            yield text
    if tail := decoder.decode(b"", final=True):
        yield tail


def pieces_on_worker(
    make_pieces: Callable[[threading.Event], Iterator[str]], name: str = "expertbot-decode"
) -> Iterator[str]:
    """make_pieces(stop)'s text pieces, produced on a worker thread and handed over through a queue.

    The consumer (a Slack handler) makes a slow network call every second to show the answer so far;
    decoding on its own thread keeps going meanwhile. Closing this iterator sets stop, which make_pieces
    checks after every token, so the worker stops at the next one; its exception, if any, is raised here.
    """
    pieces: queue.Queue = queue.Queue()
    stop = threading.Event()
    done = object()

    def work():
        try:
            for piece in make_pieces(stop):
                pieces.put(piece)
                if stop.is_set():
                    break
        except BaseException as err:  # handed to the consumer
            pieces.put(err)
        finally:
            pieces.put(done)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while (item := pieces.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
