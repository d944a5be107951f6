"""Answer quality on a real manual: `python -m bench.manual_eval [--no-generate] [--acme]`.

Materialises the python3.11-doc subset (bench/corpora.py) into bench/_data/manual-docs, indexes it
once into a reusable home (bench/_data/manual-home/<chunking>; an unchanged build is a no-op) and runs
bot.evaluate on bench/python_manual_qa.jsonl through the bot's own wiring (what `expertbot eval` runs).
`--acme` runs examples/acme/qa.jsonl the same way, in its own home. `--set top_k=5` overrides a bot
setting, `--index bm25_weight=0.5` an IndexConfig field the settings do not expose.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from .common import ACME_DOCS, ACME_QA, DATA, REPO

MANUAL_QA = REPO / "bench" / "python_manual_qa.jsonl"
MANUAL_DOCS = DATA / "manual-docs"
HOMES = DATA / "manual-home"


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = _value(value.strip())
    return out


def services_for(docs: Path, home_root: Path, settings: dict, index: dict):
    """The bot's wiring over docs, with its index built (incrementally: a no-op when nothing changed)."""
    from bot.config import load_settings
    from bot.wiring import Services
    from indexers import Indexer

    probe = load_settings(home=home_root, docs_dir=docs, **settings)
    from indexers.loading import LOADER_VERSION

    home = home_root / f"chunks-{probe.chunk_size}-{probe.chunk_overlap}-loader{LOADER_VERSION}"
    home.mkdir(parents=True, exist_ok=True)
    models = DATA / "models"  # the converted LLM is kept between runs
    models.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(models, target_is_directory=True)
    services = Services(load_settings(home=home, docs_dir=docs, **settings))
    cfg = dataclasses.replace(services.index_config, **index)
    services.__dict__["index_config"] = cfg  # before the retriever is built, so it reads these fields
    started = time.perf_counter()
    report = Indexer(cfg, services.embed_model, services.store).build()
    print(
        f"index {docs.name}: {report.chunks_total} chunks, {report.chunks_embedded} embedded, "
        f"{time.perf_counter() - started:.0f}s",
        file=sys.stderr,
    )
    return services


def run_eval(services, qa: Path, generate: bool, out: Path | None) -> dict:
    from bot.evaluate import evaluate, load_qa

    items = load_qa(qa)
    with open(out, "w") if out else open(os.devnull, "w") as sink:
        report = evaluate(services.answerer, items, generate=generate, out=sink)
    if out:
        _show_failures(items, out)
    return report


def _show_failures(items, out: Path) -> None:
    from bot.evaluate import contains_all

    by_id = {i.id: i for i in items}
    for line in out.read_text().splitlines():
        rec = json.loads(line)
        item = by_id[rec["id"]]
        answerable = not item.expect_refusal
        bad_source = answerable and item.source_file not in rec["sources"][:5]
        if "answer" not in rec:
            bad_answer = False
        elif answerable:
            bad_answer = not contains_all(rec["answer"], item)
        else:
            bad_answer = bool(rec["sources"])
        if bad_source or bad_answer:
            answer = rec.get("answer", "").replace("\n", " ")[:160]
            print(f"  MISS {item.id} src={'x' if bad_source else 'ok'} want={item.must_contain} :: {answer}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.manual_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--no-generate", action="store_true", help="retrieval figures only (no LLM)")
    parser.add_argument("--acme", action="store_true", help="also run examples/acme/qa.jsonl")
    parser.add_argument("--only-acme", action="store_true", help="run examples/acme/qa.jsonl only")
    parser.add_argument("--home", type=Path, default=HOMES, help="reusable homes (one per chunking)")
    parser.add_argument("--qa", type=Path, default=MANUAL_QA)
    parser.add_argument("--set", nargs="*", default=[], help="bot settings, e.g. top_k=5")
    parser.add_argument("--index", nargs="*", default=[], help="IndexConfig fields, e.g. bm25_weight=0.5")
    parser.add_argument("--out", type=Path, help="write per-question records here (prefix; -manual/-acme)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .corpora import manual_docs

    settings, index = _pairs(args.set), _pairs(args.index)
    runs = []
    if not args.only_acme:
        docs = manual_docs(MANUAL_DOCS)
        if docs is None:
            return 1
        runs.append(("python3.11-doc", docs, args.qa, args.home))
    if args.acme or args.only_acme:
        runs.append(("acme", ACME_DOCS, ACME_QA, args.home.with_name(args.home.name + "-acme")))
    results = {}
    for label, docs, qa, home in runs:
        out = Path(f"{args.out}-{label}.jsonl") if args.out else None
        started = time.perf_counter()
        report = run_eval(services_for(docs, home, settings, index), qa, not args.no_generate, out)
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["load"] = os.getloadavg()[0]
        results[label] = report
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    keys = [k for k in next(iter(results.values()))]
    print("| metric | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for key in keys:
        cells = [r.get(key) for r in results.values()]
        shown = [f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells]
        print(f"| {key} | " + " | ".join(shown) + " |")
    print(f"settings {settings or 'defaults'}, index {index or 'defaults'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
