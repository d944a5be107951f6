"""Adapter training against the Phi-3 Cookbook recipe: tokens/s, peak RSS and validation loss.

Ours is adapters.train.train_lora with TrainConfig's defaults (answer-only loss, padding to the longest
example of each batch, the KL anchor on plain prose) and max_steps set. The baseline is the Cookbook's
FineTrainingScript.py as written where a CPU allows: TRL's SFTTrainer on the full chat-template text
(loss on every token, no answer-only masking), every batch padded to max_seq_length, LoRA added with
the Cookbook's sample_finetune.py settings (target "all-linear", dropout 0.05), learning rate 1e-4 with
a linear schedule and gradient checkpointing. Same model, same examples (built by adapters.dataset from
the acme glossary), same batch size, LoRA rank and number of optimizer steps; BENCHMARKS.md lists what
had to change for a CPU.

Each side trains in its own subprocess, so its peak RSS (ru_maxrss, model load included) is its own.
Both adapters are then scored by one function in a third process: mean cross-entropy on the answer
tokens (and on every token) of the same held-out validation examples, never each trainer's own
eval_loss. Tokens/s counts useful (non-pad) example tokens; the raw figure adds the padding computed.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from .common import DATA, REPO, Context, Row, load_note, say

NAME = "train"
GLOSSARY = REPO / "examples" / "acme" / "glossary.jsonl"
TERMS = 20  # 86 training examples: 11 steps per epoch at batch 8, on both sides
# One epoch: ours evaluates and checkpoints per epoch and the recipe saves per epoch, so both finish
# their epoch's work. A recipe step takes ~40 s when 5 helpers share the 2 cores; more steps do not fit.
STEPS = 11
QUICK_STEPS = 2
MAX_SEQ_LENGTH = 128  # FineTrainingScript.py; the data (45-93 tokens) just fits it
RECIPE_LR = 1e-4  # FineTrainingScript.py


def _dataset():
    from adapters.dataset import build_dataset
    from adapters.glossary import load_glossary
    from adapters.train import TrainConfig

    cfg = TrainConfig()
    # The handwritten general examples: retrain() would have the base model answer them first
    # (self_distill_general), a generation pass that is not part of either trainer.
    return build_dataset(
        load_glossary(GLOSSARY)[:TERMS],
        val_templates=cfg.val_templates,
        templates_per_term=cfg.templates_per_term,
        general_fraction=cfg.general_fraction,
        seed=cfg.seed,
    )


def _model_dir() -> Path:
    from adapters.base import bundled_gguf, converted_path
    from adapters.config import ModelConfig

    cfg = ModelConfig(cache_dir=DATA / "models", device="cpu")
    return converted_path(cfg, *bundled_gguf())


def _padded_width(lengths: list[int], batch: int, width: int | None, rounds: int = 2000) -> float:
    """Mean tokens per example actually computed: width when padded to it, else the expected batch max."""
    if width:
        return float(width)
    rng = random.Random(0)
    return sum(max(rng.sample(lengths, batch)) for _ in range(rounds)) / rounds


def _train_ours(steps: int, out: Path, precision: str | None = None) -> dict:
    from adapters.base import load_base_model
    from adapters.config import ModelConfig
    from adapters.dataset import encode
    from adapters.train import TrainConfig, train_lora, use_bf16

    cfg = TrainConfig(max_steps=steps, bf16={None: None, "fp32": False, "bf16": True}[precision])
    ds = _dataset()
    model, tok = load_base_model(ModelConfig(cache_dir=DATA / "models", device="cpu"))
    stamps: list[float] = []

    def progress(p) -> None:
        if p.stage == "train" and p.eval_loss is None:
            stamps.append(time.perf_counter())

    outcome = train_lora(cfg, model, tok, ds, out, progress, resume=False)
    lengths = [len(x["input_ids"]) for x in encode(ds.train, tok, cfg.max_length)]
    return {
        "steps": outcome.steps,
        "seconds": outcome.seconds,
        "stamps": stamps,
        "lengths": lengths,
        "width": _padded_width(lengths, cfg.batch_size, None),
        "batch": cfg.batch_size * cfg.grad_accum,
        "adapter": str(outcome.adapter_dir),
        "lr": cfg.learning_rate,
        "anchor_weight": cfg.anchor_weight,
        "lora_r": cfg.lora_r,
        "lora_alpha": cfg.lora_alpha,
        "bf16": use_bf16(cfg, "cpu"),
    }


def _train_recipe(steps: int, max_len: int, out: Path, precision: str = "bf16") -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from adapters.train import TrainConfig

    ours = TrainConfig()  # batch size and LoRA rank/alpha shared with ours
    ds = _dataset()
    path = _model_dir()
    # FineTrainingScript.py loads float16 weights and trains with fp16=True; CPUs have no fast fp16 (3 steps
    # did not finish in 5 minutes), so bf16 stands in: same half-precision weights, bf16 autocast.
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.model_max_length = max_len
    tok.pad_token = tok.unk_token  # sample_finetune.py: unk, not eos, so eos keeps its loss
    tok.padding_side = "right"

    def texts(examples):
        return Dataset.from_list(
            [{"text": tok.apply_chat_template(list(x.messages), tokenize=False)} for x in examples]
        )

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        eval_strategy="steps",
        per_device_train_batch_size=ours.batch_size,
        per_device_eval_batch_size=ours.batch_size,
        gradient_accumulation_steps=ours.grad_accum,
        gradient_checkpointing=True,
        learning_rate=RECIPE_LR,
        max_steps=steps,
        save_strategy="epoch",
        logging_steps=10,
        optim="adamw_torch",  # the recipe's paged_adamw_32bit pages through CUDA unified memory
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        lr_scheduler_type="linear",
        dataset_text_field="text",
        max_length=max_len,
        pad_to_multiple_of=max_len,  # every batch padded to max_seq_length
        packing=False,
        report_to="none",
        use_cpu=True,
        seed=ours.seed,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=ours.lora_r,
        lora_alpha=ours.lora_alpha,
        lora_dropout=0.05,
        bias="none",
        task_type="CAUSAL_LM",
        target_modules="all-linear",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=texts(ds.train),
        eval_dataset=texts(ds.validation),
        processing_class=tok,
        peft_config=lora,
        callbacks=[Stamp()],
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.model.save_pretrained(out / "adapter", safe_serialization=True)
    lengths = [len(x["input_ids"]) for x in trainer.train_dataset]
    return {
        "steps": trainer.state.global_step,
        "seconds": seconds,
        "stamps": stamps,
        "lengths": lengths,
        "width": _padded_width(lengths, ours.batch_size, max_len),
        "batch": ours.batch_size * ours.grad_accum,
        "adapter": str(out / "adapter"),
        "lr": RECIPE_LR,
        "lora_r": lora.r,
        "lora_alpha": lora.lora_alpha,
    }


def _evaluate(adapters: dict[str, str]) -> dict:
    """One scoring function for every adapter: mean CE on answer tokens and on all tokens, validation set."""
    import torch
    from peft import PeftModel

    from adapters.base import load_base_model
    from adapters.config import ModelConfig
    from adapters.dataset import IGNORE_INDEX, collate, encode

    model, tok = load_base_model(ModelConfig(cache_dir=DATA / "models", device="cpu"))
    examples = encode(_dataset().validation, tok, 512)
    pad = tok.pad_token_id

    def losses(m) -> dict:
        sums = {"answer": [0.0, 0], "full": [0.0, 0]}
        with torch.no_grad():
            for i in range(0, len(examples), 8):
                batch = collate(examples[i : i + 8], pad)
                logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                logp = torch.log_softmax(logits[:, :-1].float(), -1)
                full = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
                for key, labels in (("answer", batch["labels"]), ("full", full)):
                    target = labels[:, 1:]
                    keep = target != IGNORE_INDEX
                    nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                    sums[key][0] += float(nll[keep].sum())
                    sums[key][1] += int(keep.sum())
        return {k: s / n for k, (s, n) in sums.items()}

    out = {"base": losses(model)}
    peft = None
    for label, path in adapters.items():
        if peft is None:
            peft = PeftModel.from_pretrained(model, path, adapter_name=label)
        else:
            peft.load_adapter(path, adapter_name=label)
        peft.set_adapter(label)
        peft.eval()
        out[label] = losses(peft)
    out["examples"] = len(examples)
    return out


def _worker(argv: list[str]) -> None:
    kind, spec = argv[0], json.loads(argv[1])
    if kind == "ours":
        result = _train_ours(spec["steps"], Path(spec["out"]), spec.get("precision"))
    elif kind == "recipe":
        result = _train_recipe(
            spec["steps"], spec["max_len"], Path(spec["out"]), spec.get("precision", "bf16")
        )
    else:
        result = _evaluate(spec["adapters"])
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(spec["result"]).write_text(json.dumps(result))


def _spawn(kind: str, spec: dict) -> dict:
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.train", kind, json.dumps(spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(f"bench.train {kind} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(Path(spec["result"]).read_text())


def _figures(r: dict) -> dict:
    tokens = sum(r["lengths"]) / len(r["lengths"]) * r["batch"] * r["steps"]
    raw = r["width"] * r["batch"] * r["steps"]
    gaps = [b - a for a, b in zip(r["stamps"], r["stamps"][1:], strict=False)]
    step = median(gaps) if gaps else r["seconds"] / max(r["steps"], 1)
    per_step = tokens / max(r["steps"], 1)
    return {
        "useful_tps": tokens / r["seconds"],
        "raw_tps": raw / r["seconds"],
        "step_tps": per_step / step,
        "step_s": step,
    }


def run(ctx: Context) -> list[Row]:
    steps = QUICK_STEPS if ctx.quick else STEPS
    # (label, side, precision): ours with TrainConfig's default (bf16 autocast where the CPU has native
    # bf16), the recipe in bf16 (its half precision, on a CPU) and, in a full run, both in fp32, so the
    # speed of the method shows apart from the speed of the number format.
    plan = [("ours", "ours", None), ("recipe", "recipe", "bf16")]
    plan += [] if ctx.quick else [("ours-fp32", "ours", "fp32"), ("recipe-fp32", "recipe", "fp32")]
    results: dict[str, dict] = {}
    for rnd in range(ctx.repeat):  # rounds in this order, the best train() of each side kept
        for label, side, precision in plan:
            out = ctx.tmp(f"train-{label}-{rnd}")
            spec = {"steps": steps, "max_len": MAX_SEQ_LENGTH, "precision": precision, "out": str(out)}
            started = time.perf_counter()
            r = _spawn(side, spec | {"result": str(out / "result.json")})
            if label not in results or r["seconds"] < results[label]["seconds"]:
                results[label] = r
            say(
                f"  {label}: {r['steps']} steps, train() {r['seconds']:.1f} s, "
                f"peak RSS {r['peak_rss_mib']:.0f} MiB, median step {_figures(r)['step_s']:.1f} s "
                f"(process {time.perf_counter() - started:.0f} s; {load_note()})"
            )
    out = ctx.tmp("train-eval")
    adapters = {k: v["adapter"] for k, v in results.items()}
    scores = _spawn("eval", {"adapters": adapters, "result": str(out / "result.json")})
    say(f"  validation losses on {scores['examples']} held-out examples: {json.dumps(scores)}")
    return [
        row
        for base in ("recipe", "recipe-fp32", "ours-fp32")
        if base in results
        for row in rows(results, scores, base)
    ]


def rows(results: dict[str, dict], scores: dict, base: str) -> list[Row]:
    ours, recipe = results["ours"], results[base]
    fo, fr = _figures(ours), _figures(recipe)
    tag = f" vs {base}"
    steps = f"{ours['steps']} vs {recipe['steps']} steps, batch {ours['batch']}"
    out = [
        Row(NAME, "useful tok/s, train()" + tag, fo["useful_tps"], fr["useful_tps"], "tok/s", note=steps),
        Row(NAME, "useful tok/s, median step" + tag, fo["step_tps"], fr["step_tps"], "tok/s", note="no eval"),
        Row(NAME, "raw tok/s incl. pad" + tag, fo["raw_tps"], fr["raw_tps"], "tok/s", note="ours: est."),
        Row(
            NAME,
            "peak RSS" + tag,
            ours["peak_rss_mib"],
            recipe["peak_rss_mib"],
            "MiB",
            higher_is_better=False,
        ),
    ]
    for key, what in (("answer", "val loss, answer tokens"), ("full", "val loss, all tokens")):
        ref = f"base model {scores['base'][key]:.3f}"
        out.append(
            Row(NAME, what + tag, scores["ours"][key], scores[base][key], higher_is_better=False, note=ref)
        )
    return out


if __name__ == "__main__":
    _worker(sys.argv[1:])
