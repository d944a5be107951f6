"""Experts' corrections in a retrain: base vs adapter on held-out paraphrases, asked without retrieval.

`python -m bench.corrections [--steps N] [--terms N]`. Ten approved corrections, written from the acme
docs as an expert would correct them (a changed value, a new owner: facts the base model cannot know),
go through the bot's own `expertbot retrain` path (bot.operations.adapters.train_adapter: a few glossary
terms plus the corrections, a fixed number of steps). Then each correction's question is asked again in words
written here, which neither the training data nor the gate's held-out wordings use, the way `expertbot
ask --no-retrieval` asks it: the bot's answering engine (llama.cpp on the bundled model), once with no
adapter and once with the new one. An answer is right when it holds the corrected value.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACME = REPO / "examples" / "acme"

# (question as corrected, the expert's answer, a paraphrase asked afterwards, what a right answer holds)
CORRECTIONS = [
    ("How long does the Quillmate pairing last for a new starter?",
     "Since January the Quillmate pairing lasts 8 weeks.",
     "For how many weeks is a new starter paired with their Quillmate?", "8 weeks"),
    ("What are our core hours?",
     "Core hours are now 10:00 to 15:00 Dunmore time.",
     "Between which times do the core hours run?", "15:00"),
    ("How many days per week must I be in the office?",
     "Everyone is expected in the office at least 3 days per week.",
     "What is the minimum number of office days each week?", "3 days"),
    ("How many days a year can I work from another country under WFA?",
     "Under WFA you may work abroad for up to 30 working days a year.",
     "What is the yearly limit on working from abroad with WFA?", "30 working days"),
    ("When is a new starter's laptop shipped?",
     "The laptop is shipped 10 working days before the start date.",
     "How many days before my start date is my laptop sent?", "10 working days"),
    ("How long must a release bake in Drydock?",
     "A release candidate must bake in Drydock for at least 72 hours.",
     "What is the minimum Drydock bake time before a Ferry departs?", "72 hours"),
    ("What p95 latency must Gutter stay below for the Green Gate?",
     "The Green Gate now needs Gutter's p95 latency below 250 ms.",
     "Which latency limit does Gutter have to meet to pass the Green Gate?", "250 ms"),
    ("Who is the Release Manager?",
     "The Release Manager is now Tobias Wrenfield.",
     "Who runs our releases as Release Manager these days?", "Tobias Wrenfield"),
    ("Who is the Head of People?",
     "Our Head of People is now Amara Lindqvist.",
     "Which person leads the People team?", "Amara Lindqvist"),
    ("When does a Ferry depart?",
     "A Ferry now departs every second Tuesday at 09:00 UTC.",
     "On which day of the week does the Ferry leave?", "Tuesday"),
]  # fmt: skip


def run(steps: int, terms: int, work: Path) -> dict:
    from adapters.dataset import CorrectionItem, correction_withheld
    from adapters.evaluate import contains_phrase
    from bot.config import load_settings
    from bot.operations.adapters import train_adapter
    from bot.wiring import Services

    glossary = work / "glossary.jsonl"
    glossary.write_text("".join((ACME / "glossary.jsonl").read_text().splitlines(keepends=True)[:terms]))
    settings = load_settings(
        home=work / "home", docs_dir=ACME / "docs", glossary=glossary, max_new_tokens=48,
        retrain={"max_steps": steps},
    )  # fmt: skip
    svc = Services(settings)
    added = [svc.corrections.add(q, a, by="U0EXPERT") for q, a, _, _ in CORRECTIONS]
    # The retrain holds a share out of training for the gate (adapters.dataset): scored apart below.
    withheld = [correction_withheld(CorrectionItem(c.id, c.question, c.answer)) for c in added]
    started = time.monotonic()
    result = train_adapter(
        svc, progress=lambda p: print(f"  {p.stage}: {p.message or p.step}", file=sys.stderr)
    )
    seconds = time.monotonic() - started
    rows, right = [], {(side, w): 0 for side in ("base", "adapter") for w in (False, True)}
    for (_, _, paraphrase, must), held in zip(CORRECTIONS, withheld, strict=True):
        row = {"question": paraphrase, "must": must, "withheld_from_training": held}
        for side, spec in (("base", "none"), ("adapter", result.version)):
            text = svc.answerer.answer(paraphrase, retrieval=False, adapter=spec).text
            ok = contains_phrase(text, must)
            right[side, held] += ok
            row[side] = {"answer": text, "right": ok}
        rows.append(row)
    n_held = sum(withheld)
    n = len(CORRECTIONS) - n_held
    return {
        "corrections": len(CORRECTIONS),
        "trained": n,
        "training_examples_from_corrections": result.dataset.get("corrections"),
        "steps": result.train["steps"],
        "retrain_s": round(seconds),
        "base_right": f"{right['base', False]}/{n}",
        "adapter_right": f"{right['adapter', False]}/{n}",
        "ratio": round(right["adapter", False] / right["base", False], 2) if right["base", False] else None,
        "withheld_base_right": f"{right['base', True]}/{n_held}",
        "withheld_adapter_right": f"{right['adapter', True]}/{n_held}",
        "gate_heldout": result.metrics.get("corrections"),
        "promoted": result.promoted,
        "gate": result.verdict.reasons,
        "answers": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.corrections", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="training steps (default 40)")
    ap.add_argument("--terms", type=int, default=4, help="glossary terms trained beside the corrections")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-corrections-"))
    try:
        report = run(args.steps, args.terms, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
