"""`expertbot eval --qa corrections`: the approved corrections as a regression set; the retrain summary lines.

Corrections are facts an expert would add to the acme docs, written here, not the bot's answers.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.corrections import Correction
from bot.evaluate import QAFileError, contains_all, corrections_qa
from bot.slack.summaries import correction_lines

from .conftest import indexed_services

PAIRING = (
    "How long does the Quillmate pairing last?",
    "Since December 2026 the Quillmate pairing lasts 8 weeks.",
)
WIFI = (
    "What is the guest Wi-Fi password in the Lisbon office?",
    "The front desk hands it out; it changes monthly.",
)


def correction(cid: str, question: str, answer: str, scopes=()) -> Correction:
    return Correction(
        cid, question, answer, "U0EXPERT", "2026-12-01T10:00:00Z", "approved", None, tuple(scopes)
    )


def test_a_correction_becomes_a_question_that_must_bring_what_it_corrected():
    pairing, wifi = corrections_qa([correction("p1", *PAIRING), correction("w2", *WIFI)])
    assert (pairing.id, pairing.question, pairing.source_file) == ("correction-p1", PAIRING[0], None)
    assert pairing.must_contain == ["December", "2026", "8"]  # its new values, not the question's "Quillmate"
    assert wifi.must_contain == [WIFI[1]]  # no number or name: short, so said whole
    assert contains_all(f"{PAIRING[1]}\n\nCorrected by U0EXPERT on 2026-12-01.", pairing)
    assert not contains_all("The Quillmate pairing lasts 6 weeks.", pairing)


def test_corrections_that_may_not_be_used_are_not_asked_and_none_at_all_is_a_clear_error():
    hr = correction("h3", "What is the bonus pool?", "It is 3% of profit.", scopes=("hr",))
    public = correction("p1", *PAIRING)
    assert [i.id for i in corrections_qa([hr, public], allowed=frozenset())] == ["correction-p1"]
    assert [i.id for i in corrections_qa([hr, public], allowed=frozenset({"hr"}))] == [
        "correction-h3",
        "correction-p1",
    ]
    with pytest.raises(QAFileError, match="no approved corrections to score that may be used here"):
        corrections_qa([hr], allowed=frozenset())
    with pytest.raises(QAFileError, match="no approved corrections to score; add one with"):
        corrections_qa([])


@pytest.fixture(scope="module")
def svc(tmp_path_factory, model_cache, embed_model, slack_docs):
    return indexed_services(
        tmp_path_factory, model_cache, embed_model, slack_docs, "corrections-eval", max_new_tokens=16
    )


def test_eval_scores_the_approved_corrections_through_the_answer_path(svc, tmp_path):
    svc.corrections.add(*PAIRING, by="U0EXPERT")
    svc.corrections.add(*WIFI, by="U0EXPERT")
    pending = svc.corrections.add("Who runs the Ferry?", "Tobias Wrenfield does.", approved=False)
    out = tmp_path / "answers.jsonl"
    result = CliRunner().invoke(
        main, ["eval", "--qa", "corrections", "--json", "--out", str(out)], obj={"services": svc}
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["items"] == 2 and report["answers_right"] == "2/2"  # the pending one is not asked
    assert report["source_hit@1"] is None and report["mrr"] is None  # no source files: nothing to rank
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["sources"][0].startswith("corrections/") for r in records)
    # Once removed, the correction is no longer there to answer: the regression set shrinks with it.
    svc.corrections.remove(svc.corrections.approved()[0].id)
    again = CliRunner().invoke(main, ["eval", "--qa", "corrections", "--json"], obj={"services": svc})
    assert json.loads(again.stdout)["items"] == 1
    svc.corrections.remove(pending.id)


def test_eval_with_no_corrections_says_how_to_add_one(svc):
    for c in svc.corrections.list():
        svc.corrections.remove(c.id)
    result = CliRunner().invoke(main, ["eval", "--qa", "corrections"], obj={"services": svc})
    assert result.exit_code == 1 and "no approved corrections to score" in result.output
    assert "Traceback" not in result.output


def test_the_retrain_summary_says_how_many_corrections_were_used_and_how_the_held_out_ones_scored():
    counts = {"corrections": 40, "corrections_used": 10, "corrections_scoped": 2, "corrections_heldout": 10}
    figures = {
        "base": {"accuracy": 0.1, "correct": 1, "total": 10},
        "adapter": {"accuracy": 0.7, "correct": 7, "total": 10},
    }
    (line,) = correction_lines(counts, figures)
    assert line == (
        "Corrections: 10 used, 40 training examples "
        "(2 scoped left out: an adapter answers in every channel); "
        "held-out questions without retrieval: base 10% (1/10) → adapter 70% (7/10)"
    )
    assert correction_lines({}, None) == []  # no corrections: no line
    (line,) = correction_lines({**counts, "corrections_scoped": 0, "corrections_withheld": 2}, figures)
    assert line == (
        "Corrections: 10 used, 40 training examples; 2 held out of training, asked by the gate with their "
        "text; held-out questions: base 10% (1/10) → adapter 70% (7/10)"
    )
