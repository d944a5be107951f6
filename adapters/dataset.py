"""Turn a glossary into chat fine-tuning examples: paraphrased questions, grounded answers, general chat.

The split holds out question *templates*, not terms: every term is seen in training, and the
validation questions ask about the same terms in wordings the model never saw. That is what the
bot needs (people phrase questions their own way) and it is what adapters/evaluate.py measures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from adapters.glossary import GlossaryEntry, find_glossary, load_glossary
from adapters.texts import GENERAL_QA

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # torch CrossEntropyLoss ignore_index: prompt tokens carry no loss


@dataclass(frozen=True)
class Template:
    id: str
    text: str
    acronym_only: bool = False


TEMPLATES: tuple[Template, ...] = (
    Template("what_is", "What is {term}?"),
    Template("mean_here", "What does {term} mean here?"),
    Template("new_hire", "Explain {term} to a new hire."),
    Template("define", "Define {term}."),
    Template("we_mean", "What do we mean by {term}?"),
    Template("heard", "I keep hearing people say {term}. What is that?"),
    Template("refers", "Can you tell me what {term} refers to?"),
    Template("in_company", "In our company, what is {term}?"),
    Template("quick", "Quick question: what's {term}?"),
    # Only asked of acronyms whose expansion we can find; never held out (see split below).
    Template("stand_for", "What does {term} stand for?", acronym_only=True),
)

# The excerpt format for context-grounded examples; short, like a retrieved chunk in a RAG prompt.
CONTEXT_PROMPT = (
    "Answer using this excerpt from our documentation.\n\nExcerpt:\n{context}\n\nQuestion: {question}"
)
MAX_CONTEXT_CHARS = 700


@dataclass(frozen=True)
class CorrectionItem:
    """An expert's approved correction, as plain data (adapters/ never imports bot/)."""

    id: str
    question: str
    answer: str
    scoped: bool = False  # it may be shown only in some channels (the bot's [scopes])


# Wordings a correction's question is asked in again: the same question, the way people rephrase it in
# chat. "asked" (the question as the expert corrected it) is always trained; one of the others is held
# out for each correction, never trained, and asked by the gate.
CORRECTION_TEMPLATES: tuple[Template, ...] = (
    Template("asked", "{q}"),
    Template("quick", "Quick question: {q}"),
    Template("tell_me", "Can you tell me this? {q}"),
    Template("colleague", "A colleague asked me: {q}"),
    Template("wondering", "Hi! I was wondering about this. {q}"),
    Template("briefly", "{q} Please answer briefly."),
    Template("new_hire", "I'm new here. {q}"),
)
MAX_CORRECTION_CHECKS = 20  # held-out correction questions the gate asks (each costs one answer a model)
# One approved correction in HELDOUT_EVERY is never trained (chosen by its id's hash, so adding others never
# moves it) once there are MIN_FOR_HELDOUT: the gate asks it with its text as the excerpt, the way the bot
# serves a retrieved correction, so an adapter that stops answering from corrections is not promoted. With
# fewer, every one is trained: holding out one of three would cost more than the check is worth.
HELDOUT_EVERY, MIN_FOR_HELDOUT = 5, 5
WITHHELD = "withheld"  # the template id of a held-out-share correction's gate question


_SMALL_WORDS = {"of", "and", "the", "for", "to", "in", "a", "an", "&", "on", "as"}


@dataclass(frozen=True)
class Example:
    messages: tuple[dict, ...]  # chat messages; the last one is the assistant's answer
    kind: str  # term | alias | acronym | context | general | correction | correction_context
    term: str | None = None
    template: str | None = None


@dataclass(frozen=True)
class Question:
    """A held-out paraphrase asked without retrieval: the terminology-accuracy test item."""

    term: str
    question: str
    template: str
    definition: str
    key_phrase: str | None = None  # glossary override; else evaluate.key_phrase(definition)
    system_prompt: str | None = None
    kind: str = "term"  # "correction": term is the corrected question, definition its answer

    def messages(self) -> list[dict]:
        return list(_chat(self.question, None, self.system_prompt))

    def expected(self) -> str:
        """The trained answer (evaluate uses its length to bound generation)."""
        return self.definition if self.kind == "correction" else f"{self.term}: {self.definition}"


@dataclass
class TerminologyDataset:
    entries: list[GlossaryEntry]
    train: list[Example]
    validation: list[Example]
    questions: list[Question]
    train_templates: list[str]
    heldout_templates: list[str]
    hash: str
    source: str | None = None
    # Held-out wordings of approved corrections' questions: the gate's check that none was forgotten.
    correction_questions: list[Question] = field(default_factory=list)
    correction_info: dict = field(default_factory=dict)  # used, scoped (left out), examples, heldout

    def summary(self) -> dict:
        return {
            **self.correction_info,
            "terms": len(self.entries),
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "heldout_questions": len(self.questions),
            "heldout_templates": self.heldout_templates,
            "dataset_hash": self.hash,
            "glossary": self.source,
        }


def acronym_expansion(entry: GlossaryEntry) -> str | None:
    """ "SLO" -> "service level objective" when an alias or the definition spells it out."""
    term = entry.term.rstrip("s") if entry.term.endswith("s") and entry.term[:-1].isupper() else entry.term
    if not re.fullmatch(r"[A-Z][A-Z0-9&]{1,7}", term) or sum(c.isalpha() for c in term) < 2:
        return None
    letters = [c.lower() for c in term if c.isalpha()]
    for text in (*entry.aliases, entry.definition):
        words = re.findall(r"[A-Za-z][\w'-]*|&", text)
        for start in range(len(words)):
            span = _spell(words, start, letters)
            if span:
                return " ".join(words[start:span])
    return None


def _spell(words: list[str], i: int, letters: list[str]) -> int | None:
    """End index if words[i:] spell `letters` by initials (small words may be skipped), else None."""
    for k, letter in enumerate(letters):
        while i < len(words) and k > 0 and words[i].lower() in _SMALL_WORDS and words[i][0].lower() != letter:
            i += 1
        if i >= len(words) or words[i][0].lower() != letter:
            return None
        # A hyphenated word can give two letters: "Follow-up Action" -> FUA is too clever; keep it simple.
        i += 1
    return i


def heldout_templates(n: int, seed: int = 0) -> list[str]:
    """The ids of the n templates held out for validation, the same for the same seed on any machine."""
    pool = [t.id for t in TEMPLATES if not t.acronym_only]
    if not 1 <= n < len(pool):
        raise ValueError(f"val_templates must be between 1 and {len(pool) - 1}, got {n}")
    return sorted(pool, key=lambda tid: hashlib.sha256(f"{seed}:{tid}".encode()).hexdigest())[:n]


def _answer(entry: GlossaryEntry, asked_as: str | None = None) -> str:
    if asked_as and asked_as != entry.term:
        return f"{asked_as} is another name for {entry.term}. {entry.term}: {entry.definition}"
    return f"{entry.term}: {entry.definition}"


def _chat(question: str, answer: str | None, system: str | None = None) -> tuple[dict, ...]:
    """System prompt (optional; None = the template's default), user turn, and the answer if given."""
    out = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": question})
    if answer is not None:
        out.append({"role": "assistant", "content": answer})
    return tuple(out)


def _context_examples(entry, contexts, templates, k: int, index: int, system: str | None) -> list[Example]:
    names = [entry.term, *entry.aliases]
    chunks = [c for c in contexts(entry.term) if any(n.casefold() in c.casefold() for n in names)]
    out = []
    for j, chunk in enumerate(chunks[:k]):
        chunk = _around_mention(chunk, names)
        template = templates[(index + j) % len(templates)]
        question = template.text.format(term=entry.term)
        mention = next(
            (
                s
                for s in re.split(r"(?<=[.!?])\s+", chunk)
                if any(n.casefold() in s.casefold() for n in names)
            ),
            "",
        )
        answer = _answer(entry)
        if mention and mention.casefold() not in entry.definition.casefold():
            answer += f" The documentation adds: {mention.strip()}"
        prompt = CONTEXT_PROMPT.format(context=chunk, question=question)
        out.append(Example(_chat(prompt, answer, system), "context", entry.term, template.id))
    return out


def _around_mention(chunk: str, names: list[str]) -> str:
    chunk = " ".join(chunk.split())
    if len(chunk) <= MAX_CONTEXT_CHARS:
        return chunk
    at = min(
        (chunk.casefold().find(n.casefold()) for n in names if n.casefold() in chunk.casefold()), default=0
    )
    start = max(0, min(at - MAX_CONTEXT_CHARS // 3, len(chunk) - MAX_CONTEXT_CHARS))
    return chunk[start : start + MAX_CONTEXT_CHARS]


def _hashed(seed: int, *parts: str) -> str:
    return hashlib.sha256(":".join((str(seed), *parts)).encode()).hexdigest()


def correction_heldout(item: CorrectionItem, seed: int = 0) -> Template:
    """The wording of this correction's question that is never trained: the same on any machine."""
    pool = [t for t in CORRECTION_TEMPLATES if t.id != "asked"]
    return min(pool, key=lambda t: _hashed(seed, item.id, t.id))


def correction_withheld(item: CorrectionItem, seed: int = 0) -> bool:
    """Whether this correction is in the held-out share (when there are enough to hold one out)."""
    return int(_hashed(seed, "withheld", item.id), 16) % HELDOUT_EVERY == 0


def _correction_examples(items, k: int | None, contexts: bool, seed: int, system: str | None):
    """(train, validation, gate questions, info) from approved corrections.

    An adapter answers in every channel, so a scoped correction (one that may be shown only where its
    documents may) never trains it: it is counted as left out, and the bot still answers it from the
    corrections table where it may be used.
    """
    used = [c for c in items if not c.scoped]
    withheld = [c for c in used if correction_withheld(c, seed)] if len(used) >= MIN_FOR_HELDOUT else []
    train, validation, questions = [], [], []
    checked = set(sorted((c.id for c in used), key=lambda i: _hashed(seed, i))[:MAX_CORRECTION_CHECKS])
    for c in used:
        if c in withheld:
            prompt = CONTEXT_PROMPT.format(context=c.answer[:MAX_CONTEXT_CHARS], question=c.question)
            questions.append(Question(c.question, prompt, WITHHELD, c.answer, None, system, "correction"))
            continue
        held = correction_heldout(c, seed)
        rest = sorted((t for t in CORRECTION_TEMPLATES if t.id not in ("asked", held.id)),
                      key=lambda t: _hashed(seed, c.id, t.id))  # fmt: skip
        wordings = [CORRECTION_TEMPLATES[0], *rest][: k or None]
        for t in wordings:
            chat = _chat(t.text.format(q=c.question), c.answer, system)
            train.append(Example(chat, "correction", c.question, t.id))
        if contexts:  # the correction is its own excerpt: how a retrieved correction reads in a prompt
            prompt = CONTEXT_PROMPT.format(context=c.answer[:MAX_CONTEXT_CHARS], question=c.question)
            train.append(Example(_chat(prompt, c.answer, system), "correction_context", c.question, "asked"))
        asked = held.text.format(q=c.question)
        validation.append(Example(_chat(asked, c.answer, system), "correction", c.question, held.id))
        if c.id in checked:
            questions.append(Question(c.question, asked, held.id, c.answer, None, system, "correction"))
    info = {
        "corrections": len(train),  # training examples made from approved corrections
        "corrections_used": len(used),
        "corrections_scoped": len(items) - len(used),
        "corrections_heldout": len(questions),
        "corrections_withheld": len(withheld),  # never trained; asked by the gate with their text
    }
    return train, validation, questions, info


def build_dataset(
    glossary: Path | Sequence[GlossaryEntry] | None = None,
    *,
    docs_dir: Path | None = None,
    contexts: Callable[[str], list[str]] | None = None,
    val_templates: int = 2,
    contexts_per_term: int = 1,
    templates_per_term: int | None = 3,
    general_fraction: float = 0.2,
    seed: int = 0,
    system_prompt: str | None = None,
    general: Sequence[tuple[str, str]] | None = None,
    corrections: Sequence[CorrectionItem] = (),
) -> TerminologyDataset:
    """Examples from a glossary (a file, entries, or glossary.* found under docs_dir).

    contexts(term) returns text chunks about a term (the bot passes retrieved chunks); adapters/ never
    imports indexers/, so retrieval comes in as a plain function. system_prompt: the one the bot
    answers with, so training looks like use (None keeps the chat template's default).
    templates_per_term: training questions per term, rotated through the training templates so that
    every template is still used across the glossary (None = all); this is what keeps an epoch short.
    general: (question, answer) pairs mixed in against forgetting; None = GENERAL_QA. retrain() passes
    the base model's own answers to GENERAL_QA's questions, which anchor it where it already does well.
    corrections: experts' approved answers, trained as the glossary is (wordings, with the answer as
    its own excerpt); each has a held-out wording for the gate (correction_questions), and a share of
    them is never trained: the gate asks those with their text as the excerpt (correction_withheld).
    """
    source = None
    if glossary is None:
        if docs_dir is None:
            raise ValueError("build_dataset needs a glossary file, glossary entries, or a docs_dir to search")
        glossary = find_glossary(docs_dir)
    if isinstance(glossary, str | Path):
        source = str(glossary)
        entries = load_glossary(Path(glossary))
    else:
        entries = list(glossary)
    if not entries:
        raise ValueError("the glossary has no entries")
    if not 0 <= general_fraction < 1:
        raise ValueError(f"general_fraction must be in [0, 1), got {general_fraction}")
    if contexts_per_term < 0:
        raise ValueError(f"contexts_per_term must be >= 0, got {contexts_per_term}")

    held = heldout_templates(val_templates, seed)
    train_t = [t for t in TEMPLATES if t.id not in held and not t.acronym_only]
    train: list[Example] = []
    validation: list[Example] = []
    questions: list[Question] = []
    k = len(train_t) if templates_per_term is None else templates_per_term
    if not 1 <= k <= len(train_t):
        raise ValueError(f"templates_per_term must be between 1 and {len(train_t)} or None, got {k}")
    for i, e in enumerate(entries):
        mine = {train_t[(i * k + j) % len(train_t)].id for j in range(k)}
        for t in TEMPLATES:
            if t.acronym_only or (t.id not in held and t.id not in mine):
                continue
            question = t.text.format(term=e.term)
            ex = Example(_chat(question, _answer(e), system_prompt), "term", e.term, t.id)
            if t.id in held:
                validation.append(ex)
                questions.append(Question(e.term, question, t.id, e.definition, e.key_phrase, system_prompt))
            else:
                train.append(ex)
        for j, alias in enumerate(e.aliases):
            t = train_t[(i + j) % len(train_t)]
            chat = _chat(t.text.format(term=alias), _answer(e, alias), system_prompt)
            train.append(Example(chat, "alias", e.term, t.id))
        expansion = acronym_expansion(e)
        if expansion:
            answer = f"{e.term} stands for {expansion}. {e.definition}"
            chat = _chat(f"What does {e.term} stand for?", answer, system_prompt)
            train.append(Example(chat, "acronym", e.term, "stand_for"))
        if contexts is not None and contexts_per_term:
            train.extend(_context_examples(e, contexts, train_t, contexts_per_term, i, system_prompt))

    fixed_train, fixed_val, fixed_q, fixed_info = _correction_examples(
        corrections, templates_per_term, bool(contexts_per_term), seed, system_prompt
    )
    train += fixed_train
    validation += fixed_val

    # General examples: a shuffled (by seed) split of GENERAL_QA, a few kept for validation loss so
    # early stopping also sees damage to general answers.
    pairs = list(GENERAL_QA if general is None else general)
    if len(pairs) < 4:
        raise ValueError(f"general needs at least 4 (question, answer) pairs, got {len(pairs)}")
    general = sorted(pairs, key=lambda qa: hashlib.sha256(f"{seed}:{qa[0]}".encode()).hexdigest())
    val_general, train_general = general[:3], general[3:]
    want = round(general_fraction * len(train) / (1 - general_fraction))
    for k in range(want):  # repeat the list when the glossary is large
        q, a = train_general[k % len(train_general)]
        train.append(Example(_chat(q, a, system_prompt), "general"))
    validation.extend(Example(_chat(q, a, system_prompt), "general") for q, a in val_general)

    digest = hashlib.sha256(
        json.dumps(
            {"train": [asdict(x) for x in train], "validation": [asdict(x) for x in validation]},
            sort_keys=True,
        ).encode()
    ).hexdigest()
    ds = TerminologyDataset(
        entries, train, validation, questions, [t.id for t in train_t], held, digest, source,
        fixed_q, fixed_info,
    )  # fmt: skip
    log.info("dataset: %s", ds.summary())
    return ds


def encode_example(example: Example, tokenizer, max_length: int) -> dict | None:
    """input_ids/attention_mask/labels with the prompt masked; None when the prompt leaves no room."""
    messages = list(example.messages)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        # Some templates rewrite earlier turns once an answer follows; masking by prefix would be wrong.
        raise ValueError(
            "the tokenizer's chat template does not render the prompt as a prefix of the dialogue"
        )
    # The chat template already holds any BOS/role tokens: adding special tokens again would double them.
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    if len(prompt_ids) >= max_length - 1:
        return None
    input_ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def encode(examples: Sequence[Example], tokenizer, max_length: int = 256) -> list[dict]:
    out = [encode_example(x, tokenizer, max_length) for x in examples]
    dropped = sum(x is None for x in out)
    if dropped:
        log.warning("%d examples dropped: prompt longer than max_length=%d", dropped, max_length)
    return [x for x in out if x is not None]


def collate(batch: list[dict], pad_token_id: int) -> dict:
    """Pad to the longest in the batch (not to max_length): on a CPU padding is wasted compute."""
    import torch

    width = max(len(x["input_ids"]) for x in batch)

    def pad(key, value):
        return torch.tensor([x[key] + [value] * (width - len(x[key])) for x in batch])

    return {
        "input_ids": pad("input_ids", pad_token_id),
        "attention_mask": pad("attention_mask", 0),
        "labels": pad("labels", IGNORE_INDEX),
    }
