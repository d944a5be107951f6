"""Glossary parsing, the template hold-out split, answer-only labels, and the evaluation key phrase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.dataset import (
    GENERAL_QA,
    IGNORE_INDEX,
    TEMPLATES,
    acronym_expansion,
    build_dataset,
    collate,
    encode_example,
)
from adapters.evaluate import contains_phrase, key_phrase
from adapters.glossary import GlossaryEntry, GlossaryError, find_glossary, load_glossary

ROWS = [
    {"term": "Zorblax", "definition": "The purple checklist that approves late invoices every Friday."},
    {
        "term": "SLO",
        "definition": "Our service level objective: 99.9% uptime, measured monthly.",
        "aliases": ["slo"],
    },
    {
        "term": "Blue Book",
        "definition": "The runbook, with commas, for incident response.",
        "aliases": ["BB", "runbook"],
    },
]


def write_jsonl(path: Path, rows=ROWS) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_the_three_formats_read_the_same_glossary(tmp_path):
    jsonl = load_glossary(write_jsonl(tmp_path / "g.jsonl"))
    csv = tmp_path / "g.csv"
    csv.write_text(
        "Term,Definition,Aliases\n"
        "Zorblax,The purple checklist that approves late invoices every Friday.,\n"
        'SLO,"Our service level objective: 99.9% uptime, measured monthly.",slo\n'
        'Blue Book,"The runbook, with commas, for incident response.",BB;runbook\n'
    )
    md = tmp_path / "glossary.md"
    md.write_text(
        "# Glossary\n\nSome intro text.\n\n"
        "- **Zorblax**: The purple checklist that approves\n  late invoices every Friday.\n"
        "- **SLO** (slo): Our service level objective: 99.9% uptime, measured monthly.\n"
        "* **Blue Book:** (ignored) The runbook, with commas, for incident response.\n"
    )
    md_entries = load_glossary(md)
    strip = [(e.term, e.definition, e.aliases) for e in jsonl]
    assert [(e.term, e.definition, e.aliases) for e in load_glossary(csv)] == strip
    assert [(e.term, e.definition) for e in md_entries[:2]] == [s[:2] for s in strip[:2]]
    assert md_entries[1].aliases == ("slo",)
    assert md_entries[2].term == "Blue Book" and md_entries[2].definition.endswith("for incident response.")


@pytest.mark.parametrize(
    "name, text, where, what",
    [
        (
            "g.jsonl",
            '{"term": "A", "definition": "x"}\n{"term": "B", "definition": \n',
            ":2:",
            "not valid JSON",
        ),
        ("g.jsonl", '{"term": "A", "definition": "x"}\n\n{"term": "B"}\n', ":3:", "'definition' must be"),
        (
            "g.jsonl",
            '{"term": "A", "definition": "x"}\n{"term": "a", "definition": "y"}\n',
            ":2:",
            "defined twice",
        ),
        ("g.jsonl", '["A", "x"]\n', ":1:", "expected a JSON object"),
        ("g.csv", "name,meaning\nA,x\n", ":1:", "missing term, definition"),
        ("g.csv", "term,definition\nA,x\nB,,\n", ":3:", "more fields than columns"),
        ("g.csv", "term,definition\nA,x\n,y\n", ":3:", "'term' must be"),
        (
            "g.md",
            "- **A**: x\n- **B** is missing its colon and bold end\n- B**: y\n",
            ":3:",
            "not `- **Term**",
        ),
        ("g.md", "# just a heading\n\nprose\n", "", "no entries"),
        ("g.txt", "A: x\n", "", "unsupported format '.txt'"),
    ],
)
def test_bad_glossaries_name_the_file_and_line(tmp_path, name, text, where, what):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(GlossaryError) as err:
        load_glossary(path)
    assert f"{path}{where}" in str(err.value) and what in str(err.value)


def test_missing_glossary_and_autofind(tmp_path):
    with pytest.raises(GlossaryError, match="does not exist"):
        load_glossary(tmp_path / "nope.jsonl")
    docs = tmp_path / "docs"
    (docs / "team" / "deep").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=str(docs)):
        find_glossary(docs)
    write_jsonl(docs / "team" / "deep" / "glossary.jsonl")
    (docs / "team" / "glossary.md").write_text("- **A**: x\n")
    (docs / "team" / "glossary.csv").write_text("term,definition\nA,x\n")
    assert find_glossary(docs) == docs / "team" / "glossary.csv"  # shallowest, then jsonl > csv > md
    ds = build_dataset(docs_dir=docs)
    assert ds.source == str(docs / "team" / "glossary.csv")


def test_acronyms_are_expanded_from_aliases_or_definition():
    assert (
        acronym_expansion(GlossaryEntry("KRD", "Key Rotation Day: the first Tuesday.")) == "Key Rotation Day"
    )
    assert (
        acronym_expansion(GlossaryEntry("BSP", "x", ("Blotter Stream Partition",)))
        == "Blotter Stream Partition"
    )
    assert (
        acronym_expansion(GlossaryEntry("QRB", "The Quire Review Board, which signs."))
        == "Quire Review Board"
    )
    assert acronym_expansion(GlossaryEntry("IRL", "The lead who coordinates.")) is None
    assert acronym_expansion(GlossaryEntry("Zorblax", "Zany old rules")) is None  # not an acronym


def test_split_holds_out_templates_not_terms(tmp_path):
    glossary = write_jsonl(tmp_path / "g.jsonl")
    ds = build_dataset(glossary, val_templates=2, seed=0)
    held = set(ds.heldout_templates)
    assert len(held) == 2 and not held & set(ds.train_templates)
    terms = {r["term"] for r in ROWS}
    # Every term is trained on and every term is asked in a held-out wording.
    assert {x.term for x in ds.train if x.kind == "term"} == terms
    assert {q.term for q in ds.questions} == terms and {q.template for q in ds.questions} == held
    # 3 questions per term, rotated: across the glossary every training template is still used.
    assert {x.template for x in ds.train if x.kind == "term"} == set(ds.train_templates)
    assert all(sum(x.term == t and x.kind == "term" for x in ds.train) == 3 for t in terms)
    train_questions = {x.messages[-2]["content"] for x in ds.train}
    assert not train_questions & {q.question for q in ds.questions}
    assert all(x.template in held or x.kind == "general" for x in ds.validation)
    # Deterministic: same inputs, same split and hash; another seed holds out other templates.
    again = build_dataset(glossary, val_templates=2, seed=0)
    assert again.hash == ds.hash and again.heldout_templates == ds.heldout_templates
    assert build_dataset(glossary, val_templates=2, seed=1).hash != ds.hash
    # The acronym gets its "stand for" question; aliases are asked about too.
    assert any(
        x.kind == "acronym" and "service level objective" in x.messages[-1]["content"] for x in ds.train
    )
    assert any(x.kind == "alias" and "BB" in x.messages[-2]["content"] for x in ds.train)


def test_general_examples_and_context_grounded_examples(tmp_path):
    glossary = write_jsonl(tmp_path / "g.jsonl")
    asked = []

    def contexts(term):
        asked.append(term)
        return ["Unrelated chunk about lunch.", f"Ops notes. The {term} lives in the wiki. Ask on-call."]

    ds = build_dataset(glossary, contexts=contexts, general_fraction=0.25, system_prompt="Be brief.")
    assert asked == [r["term"] for r in ROWS]
    grounded = [x for x in ds.train if x.kind == "context"]
    assert len(grounded) == len(ROWS)
    for x in grounded:
        assert "lunch" not in x.messages[-2]["content"]  # only chunks that mention the term
        assert f"The {x.term} lives in the wiki." in x.messages[-2]["content"]
        assert x.messages[-1]["content"].endswith(f"The documentation adds: The {x.term} lives in the wiki.")
    general = [x for x in ds.train if x.kind == "general"]
    assert 0.2 <= len(general) / len(ds.train) <= 0.3
    assert {x.messages[-2]["content"] for x in general} <= {q for q, _ in GENERAL_QA}
    assert all(x.messages[0] == {"role": "system", "content": "Be brief."} for x in ds.train + ds.validation)
    assert ds.questions[0].messages()[0]["content"] == "Be brief."


def test_labels_cover_only_the_answer(smollm):
    _, tokenizer = smollm
    ds = build_dataset([GlossaryEntry("Zorblax", "The purple checklist that approves late invoices.")])
    example = ds.train[0]
    enc = encode_example(example, tokenizer, max_length=256)
    labels, ids = enc["labels"], enc["input_ids"]
    answer_at = next(i for i, x in enumerate(labels) if x != IGNORE_INDEX)
    assert all(x == IGNORE_INDEX for x in labels[:answer_at]) and labels[answer_at:] == ids[answer_at:]
    prompt = tokenizer.apply_chat_template(
        list(example.messages[:-1]), tokenize=False, add_generation_prompt=True
    )
    assert tokenizer.decode(ids[:answer_at]) == prompt  # the model's own chat template
    answer = tokenizer.decode(ids[answer_at:])
    assert answer.startswith(example.messages[-1]["content"]) and tokenizer.eos_token in answer
    # Too-long prompts are dropped rather than trained on with no answer tokens.
    assert encode_example(example, tokenizer, max_length=answer_at) is None
    batch = collate([enc, encode_example(ds.train[-1], tokenizer, 256)], tokenizer.pad_token_id)
    width = max(len(ids), len(encode_example(ds.train[-1], tokenizer, 256)["input_ids"]))
    assert batch["input_ids"].shape == batch["labels"].shape == (2, width)


def test_every_template_mentions_the_term():
    assert all("{term}" in t.text for t in TEMPLATES)


def test_key_phrase_is_the_first_distinctive_run_of_the_definition():
    definition = "A bundle of one or more documents sent out together for signature, seen as a single task."
    # The first 4 words holding 3 content words: "A bundle of one" has just one.
    assert key_phrase(definition, "Sheaf") == "documents sent out together"
    # The term itself and stopwords do not count as content.
    assert key_phrase("The Foo Bar is the thing of the big red lever.", "Foo Bar") == "the big red lever"
    assert key_phrase("Too short", "x") == "too short"
    assert contains_phrase("Sheaf: a bundle of documents, sent out together", "documents sent out together")
    assert not contains_phrase("documents are sent out together", "documents sent out together")
