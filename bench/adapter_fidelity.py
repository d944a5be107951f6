"""How faithfully llama.cpp runs a trained adapter (its GGUF LoRA file) compared with peft (issue 12).

`python -m bench.adapter_fidelity VERSION_DIR [--weights f16,q8_0,source] [--questions N]`: VERSION_DIR is
a registered adapter version (e.g. var/adapters/acme-v1, from `expertbot retrain`); its meta.json holds
peft's own figures (base and adapter accuracy on the held-out questions) and the questions.

1. Next-token agreement, teacher-forced on the same token ids: llama.cpp with the adapter against peft
   with it, on the general texts and the held-out questions; and how well the adapter's change of the
   logits correlates between the two (the issue saw 0.80 with llama.cpp's converter on the Q4_1 file).
2. The terminology eval, as adapters/evaluate.py runs it (same questions, same per-question token limit,
   greedy, key phrase in the answer), through llama.cpp, base and adapter, beside peft's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from .common import load_note, say


def _messages(row: dict, system: str | None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": row["question"]}
    ]


def agreement(gen, peft_model, tokenizer, texts: list[str], ref) -> tuple[float, float]:
    """(top-1 agreement with peft, correlation of the adapter's logit change) over texts."""
    import torch

    same = total = 0
    corr = []
    for text in texts:
        ids = tokenizer(text).input_ids
        ours_base, ours = gen.logits(ids), gen.logits(ids, adapter=ref)
        with torch.inference_mode():
            theirs = peft_model(torch.tensor([ids])).logits[0].float().numpy()
            with peft_model.disable_adapter():
                theirs_base = peft_model(torch.tensor([ids])).logits[0].float().numpy()
        same += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
        total += len(ids)
        corr.append(np.corrcoef((ours - ours_base).ravel(), (theirs - theirs_base).ravel())[0, 1])
    return same / total, float(np.mean(corr))


def terminology(gen, tokenizer, rows: list[dict], definitions: dict, system, ref, limit: int) -> float:
    from adapters.evaluate import _tokens_to_phrase, contains_phrase

    correct = 0
    for row in rows:
        expected = f"{row['term']}: {definitions[row['term']]}"
        tokens = min(limit, _tokens_to_phrase(tokenizer, expected, row["key_phrase"]) + 8)
        answer = gen.generate(_messages(row, system), max_new_tokens=tokens, adapter=ref)
        correct += contains_phrase(answer, row["key_phrase"])
    return correct / len(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.adapter_fidelity")
    ap.add_argument("version", type=Path)
    ap.add_argument("--weights", default="f16,q8_0,source")
    ap.add_argument("--questions", type=int, default=0, help="first N held-out questions (0: all)")
    ap.add_argument("--cache", type=Path, default=Path(__file__).parent / "_data" / "models")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from peft import PeftModel

    from adapters.base import bundled_gguf, load_base_model
    from adapters.config import ModelConfig
    from adapters.generate import AdapterRef
    from adapters.glossary import load_glossary
    from adapters.llamacpp import LlamaCppGenerator
    from adapters.texts import GENERAL_TEXTS

    meta = json.loads((args.version / "meta.json").read_text())
    rows = meta["answers"]["adapter"][: args.questions or None]
    system = meta["settings"].get("system_prompt")
    limit = meta["settings"].get("eval_max_new_tokens", 64)
    glossary = Path(meta["dataset"]["glossary"])
    definitions = {e.term: e.definition for e in load_glossary(glossary)}
    # peft's own answers to the same questions, as the retrain's evaluation recorded them.
    n = len(rows)
    peft_figures = {k: sum(r["correct"] for r in meta["answers"][k][:n]) / n for k in ("base", "adapter")}
    say(f"{args.version.name}: {n} held-out questions; peft (from meta.json): {peft_figures}")

    cfg = ModelConfig(cache_dir=args.cache, device="cpu")
    model, tokenizer = load_base_model(cfg)
    peft_model = PeftModel.from_pretrained(model, args.version).eval()
    ref = AdapterRef(args.version.name, args.version)
    prompts = [tokenizer.apply_chat_template(_messages(r, system), tokenize=False) for r in rows[:20]]
    texts = list(GENERAL_TEXTS) + prompts
    folder, name = bundled_gguf()
    for weights in args.weights.split(","):
        engine_cfg = ModelConfig(cache_dir=args.cache, device="cpu", gguf_weights=weights)
        gen = LlamaCppGenerator(engine_cfg, folder / name)
        started = time.perf_counter()
        top1, corr = agreement(gen, peft_model, tokenizer, texts, ref)
        base = terminology(gen, tokenizer, rows, definitions, system, None, limit)
        adapted = terminology(gen, tokenizer, rows, definitions, system, ref, limit)
        say(
            f"| {weights} | {top1:.3f} | {corr:.3f} | {base:.1%} -> {adapted:.1%} | "
            f"{peft_figures['base']:.1%} -> {peft_figures['adapter']:.1%} | "
            f"{time.perf_counter() - started:.0f} s, {load_note()} |"
        )


if __name__ == "__main__":
    main()
