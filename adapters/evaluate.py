"""Measure an adapter: terminology accuracy on held-out paraphrases, and general perplexity.

Both are measured for the base model and the adapter on exactly the same questions and text, in the
same process, so the promotion gate compares like with like.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from adapters.dataset import Question
from adapters.texts import GENERAL_TEXTS

log = logging.getLogger(__name__)

KEY_PHRASE_WORDS = 4


_STOPWORDS = frozenset(
    "a an the and or but of to in on at by for with from as is are was were be been being it its this that "
    "these those we our us you your they their them he she his her which who whom what when where why how "
    "not no do does did can could should would will may might must have has had than then there here into "
    "over under about after before up down out so such also any all each some more most other only own "
    "same very just one two used use using e g i ie eg etc".split()
)


def words(text: str) -> list[str]:
    """Lowercase alphanumeric words; answers and key phrases are compared in this form."""
    return re.findall(r"[a-z0-9%]+", text.lower())


def key_phrase(definition: str, term: str = "", width: int = KEY_PHRASE_WORDS) -> str:
    """The first run of `width` consecutive definition words with at least two content words.

    Why this span: one or two words turn up in a wrong answer by chance ("weekly", "incident"), and the
    whole definition is too strict for greedy decoding of a small model, which may drop a clause late
    in a long definition. Three consecutive words of the company's own wording with two content words
    (not stopwords, not the term, not single letters) are very unlikely unless the model learned the
    definition. The first such run is where the definition's substance starts, which is what an answer
    says first; greedy decoding that went wrong there never recovers. Deterministic and readable off
    the glossary; a glossary may override it with `key_phrase`.
    """
    ws = words(definition)
    if len(ws) <= width:
        return " ".join(ws)
    skip = _STOPWORDS | set(words(term))

    def content(i: int) -> int:
        return sum(1 for w in ws[i : i + width] if w not in skip and len(w) > 1)

    starts = range(len(ws) - width + 1)
    best = next((i for i in starts if content(i) >= width - 1), None)
    if best is None:  # a definition made of stopwords: take its most contentful run
        best = max(starts, key=lambda i: (content(i), -i))
    return " ".join(ws[best : best + width])


# A token with a digit (6, 4.2, 55%, KA-55812, v3) or a run of capitalised words (Moonwell Quire, SSO).
_VALUE = re.compile(r"[A-Za-z]*\d[\w.%/-]*|(?:[A-Z][\w'-]*)(?:\s+[A-Z][\w'-]*)*")


def correction_keys(question: str, answer: str, limit: int = 3) -> list[str]:
    """What an answer must say to give this correction: its numbers and names that the question does not
    already hold (echoing the question proves nothing), at most `limit`, in order. A capitalised word that
    opens a sentence is a name only when the question does not hold it in lower case either."""
    asked = set(words(question))
    keys: list[str] = []
    for m in _VALUE.finditer(answer):
        text = m.group().strip(".,;:/-")
        opens = m.start() == 0 or re.search(r"[.!?:]\s*$", answer[: m.start()])
        first = text.split()[0]
        if opens and not any(c.isdigit() for c in text) and first[1:].islower():
            # "The", "Since December": a sentence's first word is capitalised anyway, so not a name
            text = text[len(first) :].strip()
        ws = [w for w in words(text) if w not in _STOPWORDS]
        if not ws or all(w in asked for w in ws) or text in keys:
            continue
        keys.append(text)
    return keys[:limit]


def correction_key(question: str, answer: str) -> str:
    """The one phrase a held-out correction question is scored on, as key_phrase is for a term: its first
    new number or name, else the answer's key phrase."""
    keys = correction_keys(question, answer, limit=1)
    if not keys:
        return key_phrase(answer)
    key, ws = words(keys[0]), words(answer)
    # A bare number ("6") turns up by chance; with its unit ("6 weeks") it says the corrected value.
    at = next((i for i in range(len(ws)) if ws[i : i + len(key)] == key), None)
    if len(key) == 1 and key[0].isdigit() and at is not None and at + 1 < len(ws):
        if ws[at + 1] not in _STOPWORDS and not ws[at + 1].isdigit():
            key = [*key, ws[at + 1]]
    return " ".join(key)


def contains_phrase(answer: str, phrase: str) -> bool:
    return f" {phrase} " in f" {' '.join(words(answer))} "


@dataclass
class EvalResult:
    accuracy: float
    correct: int
    total: int
    perplexity: float
    answers: list[dict] = field(default_factory=list)  # question, term, key_phrase, answer, correct

    def summary(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 4),
            "correct": self.correct,
            "total": self.total,
            "perplexity": round(self.perplexity, 3),
        }


def perplexity(model, tokenizer, texts: Sequence[str] = GENERAL_TEXTS) -> float:
    """Token-weighted perplexity of plain text (no chat template: this checks the language model itself)."""
    import torch

    device = next(model.parameters()).device
    nll, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"].to(device)
            if ids.shape[1] < 2:
                continue
            loss = model(input_ids=ids, labels=ids).loss.float().item()
            nll += loss * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    if not count:
        raise ValueError("perplexity needs at least one text of two or more tokens")
    return math.exp(nll / count)


def _phrase_stopper(tokenizer, prompt_len: int, phrases: Sequence[str]):
    """Per-row stop once the answer holds its key phrase: the verdict cannot change after that."""
    from transformers import StoppingCriteria

    class Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            import torch

            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            return torch.tensor(
                [contains_phrase(t, p) for t, p in zip(texts, phrases, strict=True)], device=input_ids.device
            )

    return Stop()


def generate_batch(
    model,
    tokenizer,
    conversations: Sequence[list[dict]],
    *,
    max_new_tokens: Sequence[int] | int = 96,
    stop_phrases: Sequence[str] | None = None,
    batch_size: int = 16,
) -> list[str]:
    """Greedy answers to chat conversations, in left-padded batches of similar length.

    max_new_tokens may be given per conversation (a batch uses its largest); stop_phrases stops a
    row as soon as its answer holds its phrase.
    """
    import torch
    from transformers import StoppingCriteriaList

    from adapters.base import end_of_turn_ids

    limits = (
        [max_new_tokens] * len(conversations) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    )
    device = next(model.parameters()).device
    prompts = [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # less padding
    out: list[str] = [""] * len(prompts)
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            enc = tokenizer(
                [prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False
            )
            enc = enc.to(device)
            width = enc["input_ids"].shape[1]
            stop = None
            if stop_phrases is not None:
                stop = StoppingCriteriaList(
                    [_phrase_stopper(tokenizer, width, [stop_phrases[i] for i in idx])]
                )
            with torch.no_grad():
                gen = model.generate(
                    **enc,
                    max_new_tokens=max(limits[i] for i in idx),
                    do_sample=False,
                    num_beams=1,
                    eos_token_id=end_of_turn_ids(model, tokenizer),
                    pad_token_id=tokenizer.pad_token_id,
                    stopping_criteria=stop,
                )
            texts = tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)
            for i, text in zip(idx, texts, strict=True):
                out[i] = text.strip()
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad
    return out


def answer_questions(
    model,
    tokenizer,
    questions: Sequence[Question],
    phrases: Sequence[str],
    *,
    max_new_tokens: int = 96,
    batch_size: int = 16,
) -> list[str]:
    """Greedy answers to the held-out questions as a bare chat turn (no retrieval).

    Generation is the cost of evaluation, so it is bounded: a row stops once it holds its key phrase,
    and a row gets only the tokens a correct answer needs to reach its key phrase (+8): a model that
    does not know a term rambles, and more rambling cannot make it right.
    """
    limits = [
        min(max_new_tokens, _tokens_to_phrase(tokenizer, q.expected(), p) + 8)
        for q, p in zip(questions, phrases, strict=True)
    ]
    return generate_batch(model, tokenizer, [q.messages() for q in questions], max_new_tokens=limits,
                          stop_phrases=phrases, batch_size=batch_size)  # fmt: skip


def _tokens_to_phrase(tokenizer, expected: str, phrase: str) -> int:
    """Tokens of the expected answer up to the end of its key phrase (all of it if not found)."""
    ids = tokenizer(expected, add_special_tokens=False)["input_ids"]
    for n in range(1, len(ids) + 1):
        if contains_phrase(tokenizer.decode(ids[:n]), phrase):
            return n
    return len(ids)


def question_phrases(questions: Sequence[Question]) -> list[str]:
    return [" ".join(words(q.key_phrase or _default_phrase(q))) for q in questions]


def _default_phrase(q: Question) -> str:
    if q.kind == "correction":
        return correction_key(q.term, q.definition)
    return key_phrase(q.definition, q.term)


def _answer_rows(model, tokenizer, questions: Sequence[Question], *, max_new_tokens: int, batch_size: int):
    phrases = question_phrases(questions)
    answers = answer_questions(
        model, tokenizer, questions, phrases, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    return [
        {
            "term": q.term,
            "kind": q.kind,
            "question": q.question,
            "key_phrase": p,
            "answer": a,
            "correct": contains_phrase(a, p),
        }
        for q, p, a in zip(questions, phrases, answers, strict=True)
    ]


def _result(rows: list[dict], ppl: float) -> EvalResult:
    correct = sum(r["correct"] for r in rows)
    return EvalResult(correct / len(rows) if rows else 0.0, correct, len(rows), ppl, rows)


@contextmanager
def _merged(peft_model):
    """Merge LoRA into the weights while evaluating: unmerged LoRA made CPU generation ~2.5x slower.

    Not for quantized (4-bit) bases, where merging would round the adapter into NF4.
    """
    base = peft_model.get_base_model()
    if getattr(base, "hf_quantizer", None) is not None or getattr(base, "is_loaded_in_4bit", False):
        yield
        return
    peft_model.merge_adapter()
    try:
        yield
    finally:
        peft_model.unmerge_adapter()


def compare(
    peft_model,
    tokenizer,
    questions: Sequence[Question],
    *,
    current=None,
    progress=None,
    deadline: float | None = None,
    max_new_tokens: int = 96,
    batch_size: int = 16,
    texts: Sequence[str] = GENERAL_TEXTS,
) -> dict[str, EvalResult]:
    """Base (adapter disabled), the new adapter, and optionally the current adapter, on the same questions.

    current: an AdapterRef-like object (name, path) already checked to hold safetensors only; it is
    loaded next to the new adapter and removed again. The models answer batch by batch, each of them on
    every batch, so that with a deadline (a time.monotonic() value) the evaluation can stop early and
    still score all models on the same questions: a batch is not started when the last one's pace says it
    would end past the deadline (the first always runs). Why: the pace measured before training is not
    the pace after it on a shared machine, and a retrain has to end in its time budget.
    progress(questions_done, questions_total) after each batch.
    """
    names = ["base", "adapter"] + (["current"] if current is not None else [])
    active = peft_model.active_adapter
    if current is not None:
        peft_model.load_adapter(str(current.path), adapter_name="current", is_trainable=False)
    rows: dict[str, list[dict]] = {n: [] for n in names}
    was_training = peft_model.training
    peft_model.eval()
    try:
        done, round_s = 0, 0.0
        while done < len(questions):
            if deadline is not None and done and time.monotonic() + round_s > deadline:
                log.info("time budget: evaluating on the first %d of %d questions", done, len(questions))
                break
            part = questions[done : done + batch_size]
            began = time.monotonic()
            for which in names:
                with _as_model(peft_model, which, active):
                    rows[which] += _answer_rows(
                        peft_model, tokenizer, part, max_new_tokens=max_new_tokens, batch_size=batch_size
                    )
            round_s, done = time.monotonic() - began, done + len(part)
            if progress:
                progress(done, len(questions))
        results = {}
        for which in names:
            with _as_model(peft_model, which, active):
                results[which] = _result(rows[which], perplexity(peft_model, tokenizer, texts))
            log.info("%s: %s", which, results[which].summary())
        return results
    finally:
        peft_model.train(was_training)
        if current is not None:
            peft_model.set_adapter(active)
            peft_model.delete_adapter("current")


@contextmanager
def _as_model(peft_model, which: str, active: str):
    """The model compare() scores: the base (adapter disabled), the new adapter or the current one, merged."""
    if which == "base":
        with peft_model.disable_adapter():
            yield
        return
    peft_model.set_adapter("current" if which == "current" else active)
    with _merged(peft_model):
        yield
