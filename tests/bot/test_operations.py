"""bot.operations on real parts: a real index build over a small docs folder (real Chroma, real BM25), the
real jobs store, a real adapter registry. The front ends (CLI, Slack) only format what these return."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot import operations
from bot.config import load_settings
from bot.operations import Progress
from bot.store import Store

from .test_slack_commands import ACME, ZORBLAX

LEAVE = "# Leave\n\nEveryone at Acme Quillworks gets 27 days of paid leave a year.\n"
QA = [
    {
        "id": "leave",
        "question": "How many days of paid leave do we get?",
        "must_contain": ["27 days"],
        "source_file": "leave.md",
    },
    {
        "id": "zorblax",
        "question": "Who introduced the Zorblax protocol for refill cartridges?",
        "must_contain": ["Moonwell"],
        "source_file": "zorblax-protocol.md",
    },
]


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "leave.md").write_text(LEAVE)
    return folder


def services_over(home: Path, docs: Path, embed_model, **settings):
    from bot.wiring import build_services

    return build_services(load_settings(home=home, docs_dir=docs, **settings), embed_model=embed_model)


def files_found(services, question: str) -> list[str]:
    return [hit.file for hit in services.retriever.retrieve(question, top_k=3)]


def test_reindex_builds_switches_the_retriever_and_reports_each_file(fresh_home, docs, embed_model):
    services = services_over(fresh_home, docs, embed_model)
    seen: list[Progress] = []
    first = operations.reindex(services, progress=seen.append)
    assert first.index.added == ["leave.md"] and first.eval is None and not first.scopes_changed
    assert first.as_dict() == first.index.as_dict()  # `expertbot index --json` keeps its shape
    assert seen and {p.stage for p in seen} == {"index"} and (seen[-1].done, seen[-1].total) == (1, 1)
    assert not {"generator", "answerer"} & set(services._parts)  # `expertbot index` loads no LLM
    retriever = services.retriever  # the one answers use, built before the next reindex
    assert "zorblax-protocol.md" not in files_found(services, "Who introduced the Zorblax protocol?")

    (docs / "zorblax-protocol.md").write_text(ZORBLAX)
    second = operations.reindex(services)
    assert second.index.added == ["zorblax-protocol.md"] and second.index.unchanged == ["leave.md"]
    assert second.reopened and services.retriever is retriever  # switched in place, no new retriever
    assert files_found(services, "Who introduced the Zorblax protocol?")[0] == "zorblax-protocol.md"


def test_a_reindex_asked_to_stop_switches_nothing(fresh_home, docs, embed_model):
    from indexers.build import BuildCancelled

    services = services_over(fresh_home, docs, embed_model)
    operations.reindex(services)
    pointer = fresh_home / "index" / "CURRENT"
    before = pointer.read_bytes()
    (docs / "zorblax-protocol.md").write_text(ZORBLAX)
    with pytest.raises(BuildCancelled):
        operations.reindex(services, should_stop=lambda: True)
    assert pointer.read_bytes() == before
    assert "zorblax-protocol.md" not in files_found(services, "Who introduced the Zorblax protocol?")


def test_reindex_with_a_job_history_scores_the_qa_file_and_compares_with_the_last_job(
    fresh_home, docs, embed_model, tmp_path
):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(item) + "\n" for item in QA))
    services = services_over(fresh_home, docs, embed_model, eval_qa=str(qa), eval_generate=False)
    store = Store(tmp_path / "bot.sqlite3")

    def job(job_id: str, seen: list) -> operations.ReindexReport:
        store.add_job(job_id, "reindex", requested_by="U1", channel="C1")
        history = operations.EvalHistory(store, job_id, "reindex")
        done = operations.reindex(services, progress=seen.append, eval_history=history)
        store.finish_job(job_id, "succeeded", result=done.as_dict())
        return done

    seen: list[Progress] = []
    first = job("reindex-1", seen)
    assert first.eval["figures"]["source_hit@1"] == 0.5 and first.eval["previous"] is None
    assert first.as_dict()["eval"] == first.eval and first.as_dict()["added"] == ["leave.md"]
    evals = [p for p in seen if p.stage == "qa_eval"]
    assert (evals[0].done, evals[-1].done, evals[-1].total) == (0, 2, 2)

    (docs / "zorblax-protocol.md").write_text(ZORBLAX)
    second = job("reindex-2", [])
    assert second.eval["figures"]["source_hit@1"] == 1.0
    assert second.eval["previous"] == {"job": "reindex-1", "figures": first.eval["figures"]}


def test_evaluate_scores_a_qa_file_and_stops_between_questions(fresh_home, docs, embed_model, tmp_path):
    (docs / "zorblax-protocol.md").write_text(ZORBLAX)
    services = services_over(fresh_home, docs, embed_model)
    operations.reindex(services)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(item) + "\n" for item in QA))

    out, seen = io.StringIO(), []
    report = operations.evaluate(services, qa, generate=False, out=out, progress=seen.append)
    assert report.items == 2 and report.figures["source_hit@1"] == 1.0 and report.figures["mrr"] == 1.0
    assert "answer_accuracy" not in report.figures  # retrieval only: no LLM
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == ["leave", "zorblax"]
    assert [(p.done, p.total) for p in seen] == [(0, 2), (1, 2), (2, 2)]

    stopped = io.StringIO()
    with pytest.raises(operations.OperationCancelled, match="after 1 of 2 questions"):
        operations.evaluate(services, qa, generate=False, out=stopped, should_stop=lambda: True)
    assert len(stopped.getvalue().splitlines()) == 1


def _version(tmp_path: Path, name: str) -> Path:
    """A peft-shaped folder the registry accepts: safetensors weights and an adapter_config.json."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = tmp_path / name
    folder.mkdir()
    save_file({"lora_A": np.zeros((2, 2), dtype=np.float32)}, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_promote_keeps_to_the_gate_unless_forced_and_rollback_walks_back(tmp_path, fresh_home):
    from adapters.registry import AdapterRegistry, RegistryError

    registry = AdapterRegistry(tmp_path / "adapters")
    meta = {"base_model": "bundled", "dataset_hash": "test", "metrics": {}, "settings": {}}
    registry.register("terms", _version(tmp_path, "a"), {**meta, "gate": {"promote": True}})
    registry.register(
        "terms", _version(tmp_path, "b"), {**meta, "gate": {"promote": False, "reasons": ["accuracy fell"]}}
    )

    assert operations.promote(registry, "terms-v1").name == "terms-v1"
    with pytest.raises(
        operations.GateRefusedError, match="terms-v2 failed its promotion gate: accuracy fell"
    ):
        operations.promote(registry, "terms-v2")
    assert registry.current().name == "terms-v1"
    assert operations.promote(registry, "terms-v2", force=True).name == "terms-v2"
    assert operations.rollback(registry).name == "terms-v1"
    base = operations.rollback(registry)
    assert base.current is None and registry.current() is None  # the base model
    with pytest.raises(RegistryError, match="nothing to roll back"):
        operations.rollback(registry)

    # The CLI says the same, with what to do about it.
    from bot.cli import main
    from bot.wiring import build_services

    svc = build_services(load_settings(home=fresh_home), registry=registry)
    refused = CliRunner().invoke(main, ["adapters", "promote", "terms-v2"], obj={"services": svc})
    assert refused.exit_code == 1
    assert (
        "terms-v2 failed its promotion gate: accuracy fell. Promote it anyway with --force." in refused.output
    )
    forced = CliRunner().invoke(
        main, ["adapters", "promote", "terms-v2", "--force", "--json"], obj={"services": svc}
    )
    assert json.loads(forced.stdout) == {"current": "terms-v2"}


def test_retrain_plan_says_the_steps_or_the_time_budget(tmp_path):
    steps = operations.retrain_plan(load_settings(home=tmp_path, retrain={"max_steps": 5}))
    assert steps.fields() == {
        "stage": "plan",
        "message": "max_steps=5: the time it takes shows once training starts",
    }
    budget = operations.retrain_plan(load_settings(home=tmp_path, retrain={"time_budget_s": 600}))
    assert budget.eta_s == 600 and "about 10 min" in budget.message


def test_a_retrain_asked_to_stop_after_its_first_stage_registers_nothing(
    fresh_home, docs, embed_model, tmp_path
):
    from adapters.train import TrainingCancelled

    glossary = tmp_path / "glossary.jsonl"
    glossary.write_text("".join((ACME / "glossary.jsonl").read_text().splitlines(keepends=True)[:3]))
    services = services_over(fresh_home, docs, embed_model, glossary=glossary)
    seen: list[Progress] = []
    with pytest.raises(TrainingCancelled):
        operations.retrain(services, progress=seen.append, should_stop=lambda: bool(seen))
    assert [(p.stage, p.message, p.done) for p in seen] == [("dataset", "building the dataset", None)]
    assert services.registry.list() == [] and services.registry.current() is None
