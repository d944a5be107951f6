"""Experts' approved corrections in a retrain: training examples, a held-out wording of each, the gate.

The corrections are facts an expert would add to the acme docs (a changed value, a new rule), written
here, not the bot's answers.
"""

from __future__ import annotations

import json

from adapters.config import ModelConfig
from adapters.dataset import (
    CONTEXT_PROMPT,
    CORRECTION_TEMPLATES,
    CorrectionItem,
    build_dataset,
    correction_heldout,
    correction_withheld,
)
from adapters.evaluate import correction_key, correction_keys, question_phrases
from adapters.gate import decide
from adapters.registry import AdapterRegistry
from adapters.train import TrainConfig

# Made-up terms a base model cannot know, as in test_train.py.
TINY_GLOSSARY = [
    {"term": "Zorblax", "definition": "The purple checklist that approves late invoices every Friday."},
    {"term": "Frobday", "definition": "The last Thursday of each month, when nobody may deploy code."},
]


def write_glossary(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


FIXES = [
    CorrectionItem("a1", "How long does the Quillmate pairing last?", "The pairing now lasts 8 weeks."),
    CorrectionItem("b2", "Which room hosts the Friday demo?", "The Friday demo moved to the Kestrel Room."),
    CorrectionItem("c3", "What is the minimum password length?", "The minimum is now 20 characters."),
    CorrectionItem(
        "d4", "Who signs off expense claims over budget?", "Claims over budget need Moonwell Quire."
    ),
]
SCOPED = CorrectionItem("e5", "What is the board's bonus pool?", "It is 3% of profit.", scoped=True)


def _wordings(ds, question: str, kinds=("correction",)) -> list[str]:
    return [x.messages[-2]["content"] for x in ds.train if x.term == question and x.kind in kinds]


def test_each_correction_trains_its_own_wording_and_holds_out_another_the_same_way_every_time():
    ds = build_dataset(tiny_entries(), corrections=[*FIXES, SCOPED], templates_per_term=3)
    again = build_dataset(tiny_entries(), corrections=[*FIXES, SCOPED], templates_per_term=3)
    assert ds.hash == again.hash and ds.correction_questions == again.correction_questions
    assert [q.term for q in ds.correction_questions] == [c.question for c in FIXES]
    for c, q in zip(FIXES, ds.correction_questions, strict=True):
        trained = _wordings(ds, c.question)
        assert c.question in trained and len(trained) == 3  # as asked, plus two other wordings
        assert q.question not in trained and q.template == correction_heldout(c).id != "asked"
        assert q.kind == "correction" and q.expected() == c.answer
        (grounded,) = [x for x in ds.train if x.term == c.question and x.kind == "correction_context"]
        assert c.answer in grounded.messages[-2]["content"] and grounded.messages[-1]["content"] == c.answer
    # Scoped: never in the training data, and counted as left out.
    assert not any(SCOPED.answer in x.messages[-1]["content"] for x in ds.train + ds.validation)
    info = ds.summary()
    assert info["corrections"] == 4 * (3 + 1) and info["corrections_used"] == 4
    assert info["corrections_scoped"] == 1 and info["corrections_heldout"] == 4
    # Another id is another wording draw, from the same pool.
    picks = {correction_heldout(CorrectionItem(f"x{n}", "Q?", "A.")).id for n in range(40)}
    assert picks <= {t.id for t in CORRECTION_TEMPLATES} - {"asked"} and len(picks) > 2


def test_a_share_of_many_corrections_is_never_trained_and_the_gate_asks_it_with_its_text():
    many = [CorrectionItem(f"id{n}", f"What is rule {n}?", f"Rule {n} now needs {n + 2} signatures.")
            for n in range(12)]  # fmt: skip
    ds = build_dataset(tiny_entries(), corrections=many, templates_per_term=2)
    withheld = [c for c in many if correction_withheld(c)]
    assert 0 < len(withheld) < len(many)  # by id hash: about one in five
    seen = "\n".join(m["content"] for x in ds.train + ds.validation for m in x.messages)
    for c in withheld:
        assert c.answer not in seen and c.question not in seen  # not trained, not in validation loss
        (q,) = [q for q in ds.correction_questions if q.term == c.question]
        assert q.template == "withheld" and q.expected() == c.answer
        assert q.question == CONTEXT_PROMPT.format(context=c.answer, question=c.question)
    for c in many:
        if c not in withheld:
            assert c.answer in seen
    info = ds.summary()
    assert info["corrections_withheld"] == len(withheld) and info["corrections_used"] == 12
    assert info["corrections_heldout"] == 12  # one gate question each: a wording, or the withheld one
    # The same id is withheld whatever else is approved; with fewer than five, none is.
    assert (
        correction_withheld(withheld[0])
        and build_dataset(tiny_entries(), corrections=[withheld[0], *FIXES[:2]]).summary()[
            "corrections_withheld"
        ]
        == 0
    )


def tiny_entries():
    from adapters.glossary import GlossaryEntry

    return [GlossaryEntry(r["term"], r["definition"]) for r in TINY_GLOSSARY]


def test_a_correction_is_scored_on_what_it_adds_not_on_what_the_question_says():
    assert correction_keys(FIXES[0].question, FIXES[0].answer) == [
        "8"
    ]  # "Quillmate" and "pairing" were asked
    assert correction_key(FIXES[0].question, FIXES[0].answer) == "8 weeks"  # a bare number is too easy
    assert correction_keys(FIXES[1].question, FIXES[1].answer) == ["Kestrel Room"]  # "Friday" was asked
    assert correction_key(FIXES[2].question, FIXES[2].answer) == "20 characters"
    ds = build_dataset(tiny_entries(), corrections=FIXES)
    assert question_phrases(ds.correction_questions) == [
        "8 weeks",
        "kestrel room",
        "20 characters",
        "moonwell quire",
    ]


def test_the_gate_refuses_an_adapter_that_answers_fewer_held_out_corrections():
    fig = lambda c, t: {"accuracy": c / t, "correct": c, "total": t, "perplexity": 10.0}  # noqa: E731
    better = dict(candidate=fig(3, 4), reference=fig(1, 4), reference_name="the base model")
    ok = decide(**better, corrections={"adapter": fig(2, 2), "reference": fig(1, 2)})
    assert (
        ok.promote and "held-out corrections: the base model 1/2 -> adapter 2/2: none forgotten" in ok.reasons
    )
    worse = decide(**better, corrections={"adapter": fig(0, 2), "reference": fig(1, 2)})
    assert not worse.promote
    assert worse.reasons[-1] == (
        "held-out corrections: the base model 1/2 -> adapter 0/2: the adapter answers fewer corrections"
    )


def test_a_real_retrain_trains_the_corrections_and_scores_their_held_out_wordings(tiny_phi3_dir, tmp_path):
    """The whole pipeline on the tiny random model: it learns nothing, so the figures are its own, but every
    piece is real (dataset, LoRA training, compare, gate, registry)."""
    from adapters.pipeline import retrain

    reg = AdapterRegistry(tmp_path / "adapters")
    model_cfg = ModelConfig(base_model=str(tiny_phi3_dir), device="cpu", cache_dir=tmp_path / "models")
    cfg = TrainConfig(
        name="tiny", max_steps=2, batch_size=4, eval_max_new_tokens=8, self_distill_general=False
    )
    result = retrain(
        model_cfg,
        cfg,
        reg,
        glossary=write_glossary(tmp_path / "g.jsonl", TINY_GLOSSARY),
        corrections=[*FIXES, SCOPED],
    )
    assert result.dataset["corrections"] == 4 * 4 and result.dataset["corrections_scoped"] == 1
    held = result.metrics["corrections"]
    assert set(held) == {"base", "adapter"} and held["base"]["total"] == held["adapter"]["total"] == 4
    assert result.metrics["adapter"]["total"] == 2 * len(TINY_GLOSSARY)  # the glossary's own, recounted apart
    line = next(r for r in result.verdict.reasons if r.startswith("held-out corrections: "))
    a, b = held["base"], held["adapter"]
    assert line.startswith(
        f"held-out corrections: the base model {a['correct']}/4 -> adapter {b['correct']}/4"
    )
    summary = "\n".join(result.summary_lines())
    assert (
        "corrections: 4 used (1 scoped left out: an adapter answers in every channel), 16 training examples"
        in summary
    )
    assert f"held-out questions without retrieval: base {a['correct']}/4, adapter {b['correct']}/4" in summary
    meta = json.loads((reg.get(result.version).path / "meta.json").read_text())
    asked = [r["question"] for r in meta["correction_answers"]["adapter"]]
    assert asked == [correction_heldout(c).text.format(q=c.question) for c in FIXES]
    assert meta["gate"]["reasons"] == result.verdict.reasons and meta["dataset"]["corrections"] == 16


def test_the_retrain_summary_says_how_many_corrections_were_held_out_of_training():
    from adapters.pipeline import correction_line

    counts = {"corrections_used": 10, "corrections_withheld": 2, "corrections": 40}
    figures = {"base": {"correct": 1, "total": 10}, "adapter": {"correct": 7, "total": 10}}
    assert correction_line(counts, figures) == (
        "corrections: 10 used, 2 of them held out of training (the gate asks them with their text as the "
        "excerpt), 40 training examples; held-out questions (wordings without retrieval, held-out share with "
        "it): base 1/10, adapter 7/10"
    )
