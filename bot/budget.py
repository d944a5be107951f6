"""What a question may cost: a length cap in characters, and a prompt cut to the model's context.

The cap (EXPERTBOT_MAX_QUESTION_CHARS) is checked before anything else, so a huge question costs no
retrieval and no model call. The prompt's budget is the model's context less the answer's tokens,
counted with the engine's own tokenizer and chat template (TextGenerator.count_tokens).
"""

from __future__ import annotations

from collections.abc import Callable

TOO_LONG = (
    "That question is too long for me: it has {length:,} characters, and I take questions of up to "
    "{limit:,}. Please shorten it and ask again."
)
TOO_LONG_FOR_MODEL = (
    "Your question is too long for my language model to read together with the docs: that takes "
    "{tokens:,} tokens, and {limit:,} fit beside its answer. Please shorten it and ask again."
)


def too_long(question: str, limit: int | None) -> str | None:
    """The polite refusal for a question of more than `limit` characters, else None."""
    length = len(question.strip())
    return TOO_LONG.format(length=length, limit=limit) if limit is not None and length > limit else None


class PromptTooLong(ValueError):
    """The question, with the least evidence an answer needs and no history, does not fit the context."""

    def __init__(self, tokens: int, limit: int):
        super().__init__(f"the prompt needs {tokens} tokens; {limit} fit beside the answer")
        self.tokens, self.limit = tokens, limit

    def message(self) -> str:
        """What the asker is told."""
        return TOO_LONG_FOR_MODEL.format(tokens=self.tokens, limit=self.limit)


def fit_prompt(
    generator, max_new_tokens: int | None, system: dict, history: list[dict], evidence: list, user: Callable
) -> tuple[list[dict], list]:
    """(messages, the evidence kept): system, history and user(evidence) cut to fit the budget. The
    oldest history goes first (so that it still starts with a question), then the lowest-ranked evidence
    (evidence is best first); the best piece always stays, else PromptTooLong. A generator that cannot
    count tokens (a remote server) gets the prompt as it is."""
    budget = prompt_budget(generator, max_new_tokens)
    while True:
        messages = [system, *history, {"role": "user", "content": user(evidence)}]
        if budget is None:
            return messages, evidence
        count, limit = budget
        tokens = count(messages)
        if tokens <= limit:
            return messages, evidence
        if history:
            history = history[1:]
            while history and history[0]["role"] != "user":
                history = history[1:]
        elif len(evidence) > 1:
            evidence = evidence[:-1]
        else:
            raise PromptTooLong(tokens, limit)


def prompt_budget(generator, max_new_tokens: int | None) -> tuple[Callable[[list[dict]], int], int] | None:
    """(count_tokens, the most tokens a prompt may take), or None where the generator cannot count."""
    count = getattr(generator, "count_tokens", None)
    context = getattr(generator, "context_tokens", None)
    if count is None or context is None:
        return None
    answer = max_new_tokens or getattr(getattr(generator, "cfg", None), "max_new_tokens", 0)
    return count, int(context) - answer
