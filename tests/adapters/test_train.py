"""LoRA training: config validation, the Phi-3 path, QLoRA, crash + resume, and real terminology learning."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.config import ModelConfig
from adapters.dataset import build_dataset
from adapters.registry import AdapterRegistry
from adapters.train import TrainConfig, complete_checkpoint, train_lora

REPO = Path(__file__).resolve().parents[2]
ACME_GLOSSARY = REPO / "examples" / "acme" / "glossary.jsonl"

# Made-up terms and company wording a base model cannot know.
TINY_GLOSSARY = [
    {"term": "Zorblax", "definition": "The purple checklist that approves late invoices every Friday."},
    {"term": "Quillnet", "definition": "Our private chat server for the night shift, hosted in Lisbon."},
    {"term": "Frobday", "definition": "The last Thursday of each month, when nobody may deploy code."},
    {"term": "GMR", "definition": "Green Mug Review: a five minute peer check before any customer demo."},
]


def write_glossary(path: Path, rows) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"max_steps": -1}, "max_steps must be a positive integer or None, got -1"),
        ({"learning_rate": 2}, "learning_rate must be a number in (0, 1), got 2"),
        ({"lora_dropout": 1.0}, "lora_dropout must be a number in [0, 1), got 1.0"),
        ({"name": "Acme Terms"}, "name must be lowercase letters"),
        ({"name": "acme-v2"}, "name must not end in -v<N>"),
        ({"target_modules": []}, "override must be a non-empty list"),
        ({"qlora": "yes"}, "qlora must be True, False or None"),
        ({"bf16": 1}, "bf16 must be True, False or None"),
        ({"save_total_limit": 1}, "save_total_limit must be >= 2"),
        ({"templates_per_term": 0}, "templates_per_term must be a positive integer or None, got 0"),
        ({"system_prompt": ""}, "system_prompt must be a non-empty string or None"),
    ],
)
def test_train_config_names_the_bad_field(kwargs, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**kwargs)
    assert message in str(err.value)


def test_phi3_lora_wraps_its_fused_layers_and_reloads_identically(tiny_phi3, tmp_path):
    import torch
    from peft import PeftModel

    base, tokenizer = tiny_phi3
    ds = build_dataset(write_glossary(tmp_path / "g.jsonl", TINY_GLOSSARY))
    cfg = TrainConfig(max_steps=2, batch_size=4, learning_rate=1e-2, lora_dropout=0.0)
    out = train_lora(cfg, copy.deepcopy(base), tokenizer, ds, tmp_path / "work")
    wrapped = sorted(n for n, m in out.model.named_modules() if hasattr(m, "lora_A") and "." in n)
    assert {n.rsplit(".", 1)[-1] for n in wrapped} == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert len(wrapped) == 4 * base.config.num_hidden_layers
    assert out.steps == 2 and (out.adapter_dir / "adapter_model.safetensors").is_file()
    assert not list(out.adapter_dir.glob("*.bin"))

    ids = tokenizer("What is Zorblax?", return_tensors="pt")["input_ids"]
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base), out.adapter_dir).eval()
    with torch.no_grad():
        trained, again, plain = out.model(ids).logits, reloaded(ids).logits, base(ids).logits
    assert torch.equal(trained, again)
    assert not torch.allclose(trained, plain)  # the 2 steps changed something worth saving


def test_qlora_runs_on_cpu_end_to_end_and_the_gate_records_its_verdict(tiny_phi3_dir, tmp_path):
    """QLoRA (NF4 + double quant) through retrain(); the random model learns nothing, so no promotion."""
    from adapters.pipeline import retrain

    reg = AdapterRegistry(tmp_path / "adapters")
    seen = []
    model_cfg = ModelConfig(base_model=str(tiny_phi3_dir), device="cpu", cache_dir=tmp_path / "models")
    cfg = TrainConfig(name="tiny", qlora=True, max_steps=2, batch_size=4, eval_max_new_tokens=8)
    result = retrain(
        model_cfg,
        cfg,
        reg,
        glossary=write_glossary(tmp_path / "g.jsonl", TINY_GLOSSARY),
        progress=seen.append,
    )
    assert result.train["qlora"] is True and result.train["steps"] == 2
    assert result.version == "tiny-v1" and not result.promoted and reg.current() is None
    assert "does not beat the base model" in result.verdict.reasons[0]
    stored = reg.get("tiny-v1")
    assert stored.gate == result.verdict.to_dict() and stored.metrics == result.metrics
    assert stored.settings["qlora"] is True and stored.dataset_hash == result.dataset["dataset_hash"]
    assert {"dataset", "load", "train", "evaluate", "register", "done"} <= {p.stage for p in seen}
    steps = [p for p in seen if p.stage == "train" and p.loss is not None]
    assert steps[-1].step == steps[-1].total_steps == 2 and steps[-1].eta_s == 0
    assert result.loss_plot is not None and result.loss_plot.read_bytes()[:4] == b"\x89PNG"


def test_qlora_where_bitsandbytes_cannot_run_is_a_clear_error(tiny_phi3_dir, tmp_path, monkeypatch):
    """No bitsandbytes (or one that can't do NF4 here): a ModelSetupError naming the way out, no training."""
    from adapters.base import ModelSetupError
    from adapters.pipeline import retrain

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    monkeypatch.setitem(sys.modules, "bitsandbytes.functional", None)
    reg = AdapterRegistry(tmp_path / "adapters")
    model_cfg = ModelConfig(base_model=str(tiny_phi3_dir), device="cpu", cache_dir=tmp_path / "models")
    with pytest.raises(ModelSetupError, match="QLoRA needs bitsandbytes.*--qlora"):
        retrain(
            model_cfg,
            TrainConfig(name="tiny", qlora=True, max_steps=2),
            reg,
            glossary=write_glossary(tmp_path / "g.jsonl", TINY_GLOSSARY),
        )
    assert reg.list() == [] and not (tmp_path / "adapters" / ".work").exists()


_KILLED_RUN = """
import sys, time
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
from adapters.dataset import build_dataset
from adapters.train import TrainConfig, train_lora
base, glossary, work, ready = sys.argv[1:5]
def progress(p):
    # Step 3's log comes after checkpoint-2 was saved: say so, then hang until killed.
    if p.step >= 3 and p.loss is not None:
        Path(ready).write_text(str(p.step))
        time.sleep(600)
cfg = TrainConfig(**{cfg})
train_lora(cfg, AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base),
           build_dataset(Path(glossary)), Path(work), progress)
"""


def test_a_killed_run_resumes_from_its_last_complete_checkpoint(tiny_phi3_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = dict(max_steps=6, eval_steps=2, batch_size=4, save_total_limit=3)
    glossary = write_glossary(tmp_path / "g.jsonl", TINY_GLOSSARY)
    work, ready = tmp_path / "work", tmp_path / "ready"
    script = _KILLED_RUN.replace("{cfg}", repr(settings))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [sys.executable, "-c", script, str(tiny_phi3_dir), str(glossary), str(work), str(ready)]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300  # a guard against a hang, not a timing assertion
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), (
            proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "no progress"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ckpts = work / "checkpoints"
    assert complete_checkpoint(ckpts / "checkpoint-2")
    # What a kill during a save leaves: weights written, trainer_state.json not yet.
    half = ckpts / "checkpoint-4"
    shutil.rmtree(half, ignore_errors=True)
    half.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(ckpts / "checkpoint-2" / name, half / name)

    out = train_lora(
        TrainConfig(**settings),
        AutoModelForCausalLM.from_pretrained(tiny_phi3_dir),
        AutoTokenizer.from_pretrained(tiny_phi3_dir),
        build_dataset(glossary),
        work,
    )
    assert out.resumed_from == str(ckpts / "checkpoint-2")
    assert out.steps == 6
    logged = [h["step"] for h in out.log_history if "loss" in h]
    assert logged == [1, 2, 3, 4, 5, 6]  # steps 1-2 come from before the kill, 3-6 from this run
    assert complete_checkpoint(ckpts / "checkpoint-4")  # rewritten properly by the resumed run


def _acme_subset(tmp_path: Path, n: int) -> Path:
    if ACME_GLOSSARY.is_file():
        rows = [json.loads(line) for line in ACME_GLOSSARY.read_text().splitlines() if line.strip()][:n]
    else:  # the example company's glossary is written elsewhere; until it lands, made-up terms
        rows = TINY_GLOSSARY
    return write_glossary(tmp_path / "glossary.jsonl", rows)


SYSTEM = "You are a helpful assistant for the company's staff. Answer briefly."


def _learn(smollm_model_config, tmp_path, terms: int, **overrides):
    from adapters.pipeline import retrain

    reg = AdapterRegistry(tmp_path / "adapters")
    cfg = TrainConfig(name="acme", system_prompt=SYSTEM, **overrides)
    result = retrain(smollm_model_config, cfg, reg, glossary=_acme_subset(tmp_path, terms))
    return reg, result


def test_real_training_teaches_the_terms_without_retrieval(smollm_model_config, tmp_path):
    """SmolLM2 + LoRA on a few acme terms: held-out paraphrases, no retrieval, adapter vs base."""
    from adapters.base import load_base_model
    from adapters.evaluate import contains_phrase
    from adapters.generate import Generator

    reg, result = _learn(smollm_model_config, tmp_path, 4, max_steps=24, batch_size=4)
    base, adapter = result.metrics["base"], result.metrics["adapter"]
    assert adapter["total"] == base["total"] == 8  # 4 terms x 2 held-out templates, same questions
    assert adapter["accuracy"] >= base["accuracy"] + 0.5, result.summary_lines()
    assert result.promoted and reg.current().name == result.version == "acme-v1"
    assert reg.current().metrics["adapter"] == adapter and result.loss_plot.is_file()

    # The inference side, given the registry's current version, answers in the company's words.
    meta = json.loads((reg.current().path / "meta.json").read_text())
    right = next(a for a in meta["answers"]["adapter"] if a["correct"])
    generator = Generator(smollm_model_config, *load_base_model(smollm_model_config))
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": right["question"]}]
    answer = generator.generate(messages, adapter=reg.current().ref(), max_new_tokens=48)
    assert contains_phrase(answer, right["key_phrase"])
    assert not contains_phrase(generator.generate(messages, max_new_tokens=48), right["key_phrase"])


@pytest.mark.slow
def test_the_gate_refuses_a_worse_adapter_after_real_training(smollm_model_config, tmp_path):
    reg, first = _learn(smollm_model_config, tmp_path, 4, max_steps=24, batch_size=4)
    assert first.promoted
    from adapters.pipeline import retrain

    # One tiny step: an adapter that barely differs from the base, so worse than the current one.
    cfg = TrainConfig(name="acme", system_prompt=SYSTEM, max_steps=1, learning_rate=1e-5)
    worse = retrain(smollm_model_config, cfg, reg, glossary=_acme_subset(tmp_path, 4))
    assert worse.version == "acme-v2" and not worse.promoted
    assert worse.verdict.reference == "current adapter acme-v1"
    assert worse.metrics["current"]["accuracy"] > worse.metrics["adapter"]["accuracy"]
    assert "does not beat current adapter acme-v1" in worse.verdict.reasons[0]
    assert reg.current().name == "acme-v1" and reg.get("acme-v2").gate["promote"] is False


@pytest.mark.slow
def test_default_settings_on_the_acme_glossary(smollm_model_config, tmp_path):
    """The defaults, 20 acme terms: the figures the README quotes come from this run."""
    reg, result = _learn(smollm_model_config, tmp_path, 20)
    print("\n".join(result.summary_lines()))
    assert result.metrics["adapter"]["accuracy"] >= result.metrics["base"]["accuracy"] + 0.3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"time_budget_s": 0},
            "time_budget_s must be a positive integer of seconds (e.g. 900) or None, got 0",
        ),
        ({"time_budget_s": "15m"}, "time_budget_s must be a positive integer"),
        ({"time_budget_s": 30}, "time_budget_s must be at least 60 seconds"),
    ],
)
def test_the_time_budget_is_validated_naming_the_field(kwargs, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**kwargs)
    assert message in str(err.value)


def test_the_default_retrain_has_a_15_minute_budget_that_max_steps_overrides():
    assert TrainConfig().time_budget_s == 900 and TrainConfig(time_budget_s=None).time_budget_s is None


def test_fit_steps_fits_training_and_its_evaluations_in_the_budget():
    from adapters.budget import fit_steps

    # 80 steps of 1 s and an evaluation of 10 s every 50 steps (and at the end): 80 + 2 x 10 = 100.
    assert fit_steps(100, 1.0, 10.0, planned=1000, eval_every=50) == (80, 100.0)
    assert fit_steps(100, 1.0, 0.0, planned=30, eval_every=10) == (30, 30.0)  # what epochs ask fits
    assert fit_steps(1, 5.0, 5.0, planned=10, eval_every=5) == (1, 10.0)  # nothing fits: one step
    assert fit_steps(50, 1.0, 0.0, planned=100, eval_every=100, done=20) == (70, 50.0)  # a resumed run


def test_the_evaluation_sample_covers_every_term_it_can():
    from adapters.budget import MIN_EVAL_QUESTIONS, eval_questions, sample_questions
    from adapters.dataset import Question

    questions = [Question(t, f"{t} {k}?", f"tpl{k}", "def") for t in "abcdefghij" for k in range(2)]
    picked = sample_questions(questions, 10, seed=3)
    assert sorted(q.term for q in picked) == list("abcdefghij")  # one of each term before any second
    assert picked == [q for q in questions if q in picked]  # in their order
    assert sample_questions(questions, 99) == questions
    # 30% of the time left, at 1 s an answer, 2 models and retrieval (RAG_ANSWER_COST 2, twice): 6 s each.
    assert eval_questions(100, 1.0, models=2, rag=True, total=160) == MIN_EVAL_QUESTIONS
    assert eval_questions(1000, 1.0, models=2, rag=True, total=160) == 50
    assert eval_questions(1000, None, models=2, rag=True, total=160) == 160  # nothing measured: all


def test_a_time_budget_cuts_the_steps_to_what_fits_from_a_measured_step_time(tiny_phi3, tmp_path):
    import math

    base, tokenizer = tiny_phi3
    ds = build_dataset(write_glossary(tmp_path / "g.jsonl", TINY_GLOSSARY))
    cfg = TrainConfig(epochs=100, batch_size=4, time_budget_s=None)  # the budget is train_lora's own here
    seen = []
    out = train_lora(
        cfg, copy.deepcopy(base), tokenizer, ds, tmp_path / "work", seen.append, time_budget_s=2.0
    )
    plan = out.plan
    per_epoch = math.ceil(len(ds.train) / cfg.batch_size)
    assert plan["planned"] == 100 * per_epoch and 1 <= plan["steps"] < plan["planned"]
    assert plan["step_s"] > 0 and out.steps <= plan["steps"]  # early stopping may end it sooner
    # What it planned fits: its steps at the measured step time, and an evaluation per epoch begun.
    evals = math.ceil(plan["steps"] / per_epoch)
    assert plan["steps"] * plan["step_s"] + evals * plan["eval_s"] <= 2.0 or plan["steps"] == 1
    first = seen[0]  # said before the first step
    assert first.stage == "plan" and first.total_steps == plan["steps"] and "measured" in first.message
    # Steps slower than measured (a busy machine) make the run stop sooner, never later.
    assert 1 <= [p.total_steps for p in seen if p.stage == "train"][-1] <= plan["steps"]


def test_a_retrain_told_to_stop_mid_training_registers_nothing(tiny_phi3_dir, tmp_path):
    from adapters.pipeline import retrain
    from adapters.train import TrainingCancelled

    reg = AdapterRegistry(tmp_path / "adapters")
    model_cfg = ModelConfig(base_model=str(tiny_phi3_dir), device="cpu", cache_dir=tmp_path / "models")
    cfg = TrainConfig(name="tiny", max_steps=500, batch_size=4, self_distill_general=False)
    steps = []

    def progress(p):
        if p.stage == "train" and p.loss is not None:
            steps.append(p.step)

    with pytest.raises(TrainingCancelled, match="cancelled"):
        retrain(
            model_cfg,
            cfg,
            reg,
            glossary=write_glossary(tmp_path / "g.jsonl", TINY_GLOSSARY),
            progress=progress,
            should_stop=lambda: len(steps) >= 3,
        )
    assert 3 <= steps[-1] < 10  # stopped at the next step it reached, far from 500
    assert reg.list() == [] and reg.current() is None


def test_compare_stops_at_its_deadline_with_every_model_scored_on_the_same_questions(tiny_phi3, tmp_path):
    """The evaluation after training keeps to the time budget: past the deadline no new batch starts, and
    base, new and current adapter are each scored on the same first questions."""
    import torch
    from peft import LoraConfig, get_peft_model

    from adapters.evaluate import compare
    from adapters.generate import AdapterRef

    base, tokenizer = tiny_phi3
    questions = build_dataset(write_glossary(tmp_path / "g.jsonl", TINY_GLOSSARY)).questions
    assert len(questions) > 2
    lora = LoraConfig(r=4, target_modules=["qkv_proj", "o_proj"], init_lora_weights=False)
    torch.manual_seed(1)
    get_peft_model(copy.deepcopy(base), lora).save_pretrained(tmp_path / "current")
    model = get_peft_model(copy.deepcopy(base), lora)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    current = AdapterRef("current-v1", tmp_path / "current")
    kw = dict(current=current, max_new_tokens=4, batch_size=2, texts=["A short text to score."])

    seen = []
    full = compare(model, tokenizer, questions, progress=lambda n, total: seen.append((n, total)), **kw)
    models = ["base", "adapter", "current"]
    assert {k: r.total for k, r in full.items()} == dict.fromkeys(models, len(questions))
    assert seen[-1] == (len(questions), len(questions))

    cut = compare(model, tokenizer, questions, deadline=time.monotonic(), **kw)
    assert {k: r.total for k, r in cut.items()} == dict.fromkeys(models, 2)
    for which in cut:  # the same questions, answered as the full run answered them (greedy)
        assert [r["question"] for r in cut[which].answers] == [q.question for q in questions[:2]]
        assert cut[which].answers == full[which].answers[:2]
    assert (
        full["adapter"].answers != full["base"].answers
        or full["current"].perplexity != full["base"].perplexity
    )
    # The current adapter was removed again and the weights are as they were (merges undone).
    assert list(model.peft_config) == ["default"]
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[k], after[k], atol=1e-5) for k in before)


def test_the_reference_with_retrieval_is_recounted_on_the_questions_the_candidate_answered():
    from adapters.pipeline import _first

    reference = {"accuracy": 0.75, "correct": 3, "total": 4, "right": [True, False, True, True], "qa": "x"}
    cut = _first(reference, {"right": [False, False]})
    assert cut == {"accuracy": 0.5, "correct": 1, "total": 2, "right": [True, False], "qa": "x"}
    assert _first(reference, {"right": [True] * 4}) is reference  # nothing was cut
    assert _first({"accuracy": 0.5, "correct": 1, "total": 2}, {"right": [True]})["total"] == 2  # no lists


@pytest.mark.slow
def test_a_retrain_under_a_time_budget_ends_within_it_and_says_when(tiny_phi3_dir, tmp_path):
    """The budgeted path (adapters/pipeline.py): the evaluation timed and sized, training given what is left,
    the ETA carried by every report; the whole call ends near the budget, never far past it."""
    from adapters.pipeline import retrain

    reg = AdapterRegistry(tmp_path / "adapters")
    model_cfg = ModelConfig(base_model=str(tiny_phi3_dir), device="cpu", cache_dir=tmp_path / "models")
    cfg = TrainConfig(
        name="tiny", time_budget_s=60, batch_size=4, eval_max_new_tokens=8, self_distill_general=False
    )
    reports = []
    started = time.monotonic()
    result = retrain(
        model_cfg,
        cfg,
        reg,
        glossary=write_glossary(tmp_path / "g.jsonl", TINY_GLOSSARY),
        progress=reports.append,
    )
    took = time.monotonic() - started
    assert result.train["steps"] > 0 and result.metrics["adapter"]["total"] > 0
    assert took < 60 * 1.25, took
    etas = [r.eta_total_s for r in reports if r.eta_total_s is not None]
    assert etas and etas[0] <= 60 and all(e >= 0 for e in etas)
    assert reports[-1].stage == "done"
