"""EXPERTBOT_EVAL_QA: the QA figures, with their change since the last job, in the /reindex summary.

A real reindex job through the real Bolt app (fake Slack Web API only), scored on a two-question QA
file with retrieval only (EXPERTBOT_EVAL_GENERATE=false keeps it to seconds). A bad QA file stops
start-up with a message naming the setting, and one broken after start-up leaves the job succeeded.
"""

from __future__ import annotations

import json
import logging
import re
import shutil

import pytest

from bot.config import ConfigError, load_settings
from bot.store import Store

from .conftest import ACME_DOCS
from .slack_fake import ADMIN, ack_text
from .test_slack_commands import ZORBLAX, in_channel

QA = [
    {
        "id": "pairing",
        "question": "How long does the Quillmate pairing last for a new starter?",
        "must_contain": ["6 weeks"],
        "source_file": "handbook/onboarding.md",
    },
    {
        "id": "zorblax",
        "question": "Who introduced the Zorblax protocol for refill cartridges?",
        "must_contain": ["Moonwell"],
        "source_file": "zorblax-protocol.md",
    },
]


def write_qa(path, items) -> None:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))


def test_reindex_summaries_carry_the_qa_figures_and_their_change(
    make_app, sim, fake_slack, fresh_home, tmp_path, embed_model, store_path, caplog
):
    from bot.wiring import build_services

    caplog.set_level(logging.DEBUG)
    docs = tmp_path / "docs"
    (docs / "handbook").mkdir(parents=True)
    shutil.copy2(ACME_DOCS / "handbook" / "onboarding.md", docs / "handbook" / "onboarding.md")
    qa = tmp_path / "qa.jsonl"
    write_qa(qa, QA)
    settings = load_settings(
        home=fresh_home, docs_dir=docs, admins=[ADMIN], eval_qa=str(qa), eval_generate=False
    )
    services = build_services(settings, embed_model=embed_model)
    app = make_app(services)

    def reindex(n: int) -> tuple[str, str]:
        started = ack_text(app.dispatch(sim.command("/reindex", "", user=ADMIN, channel="CEVAL")))
        job_id = re.search(r"`(reindex-\w+)`", started).group(1)
        done = in_channel("CEVAL", text="finished in")
        summary = fake_slack.wait_for("chat.postMessage", done, count=n, timeout=300)[n - 1]
        assert Store(store_path).job(job_id).state == "succeeded"
        return job_id, summary.params["text"]

    # First run: the Zorblax doc is not there yet, so one question of two finds its source.
    first_id, first = reindex(1)
    assert "QA eval on `qa.jsonl` (2 questions, retrieval only" in first and "first run" in first
    assert "hit@1 50% · hit@5 50% · MRR 0.50 · p50 " in first
    assert "answers" not in first.split("QA eval")[1]  # no answer figures without generation

    (docs / "zorblax-protocol.md").write_text(ZORBLAX)
    _, second = reindex(2)
    assert "1 added" in second and f"change since `{first_id}`" in second
    assert "hit@1 100% (+50 pp) · hit@5 100% (+50 pp) · MRR 1.00 (+0.50) · p50 " in second

    # A QA file broken after start-up: the reindex still succeeds and says why there are no figures.
    qa.write_text("this is not JSON\n")
    _, third = reindex(3)
    assert "QA eval on `qa.jsonl` failed: QAFileError:" in third and "qa.jsonl:1: expected a JSON" in third
    assert "Traceback" not in third and "The job itself succeeded." in third

    for item in QA:  # the eval's questions never reach the logs
        assert item["question"] not in caplog.text


def test_a_bad_eval_qa_file_stops_start_up_with_a_clean_message(tmp_path, monkeypatch):
    missing = tmp_path / "missing.jsonl"
    monkeypatch.setenv("EXPERTBOT_EVAL_QA", str(missing))
    with pytest.raises(ConfigError, match=r"EXPERTBOT_EVAL_QA: Value error, cannot read QA file .*missing"):
        load_settings()

    broken = tmp_path / "qa.jsonl"
    write_qa(broken, QA[:1])
    with broken.open("a") as f:
        f.write('{"question": "no id"}\n')
    monkeypatch.setenv("EXPERTBOT_EVAL_QA", str(broken))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert f"EXPERTBOT_EVAL_QA: Value error, {broken}:2: expected a JSON object with id, question" in str(
        err.value
    )

    monkeypatch.setenv("EXPERTBOT_EVAL_QA", "")  # empty: off
    assert load_settings().eval_qa is None
