"""Answer quality on real manuals: `python -m bench.manual_eval [SET ...] [--no-generate]`.

Sets: the Debian manuals of bench/manuals.py (apache is tuned on; git and handbook are held out, and
their failures are not listed), the python3.11-doc subset (bench/corpora.py) and examples/acme, both
kept as regression sets. Each set is indexed once into a reusable home (bench/_data/manual-home-SET/
<chunking>; an unchanged build is a no-op), then bot.evaluate runs its QA file through the bot's own
wiring (what `expertbot eval` runs). `--set top_k=5` overrides a bot setting, `--index bm25_weight=0.5`
an IndexConfig field the settings do not expose.
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
    from bot.wiring import build_services
    from indexers import Indexer

    probe = load_settings(home=home_root, docs_dir=docs, **settings)
    from indexers.loading import LOADER_VERSION

    home = home_root / f"chunks-{probe.chunk_size}-{probe.chunk_overlap}-loader{LOADER_VERSION}"
    home.mkdir(parents=True, exist_ok=True)
    models = DATA / "models"  # the converted LLM is kept between runs
    models.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(models, target_is_directory=True)
    chosen = load_settings(home=home, docs_dir=docs, **settings)
    cfg = dataclasses.replace(chosen.index_config(), **index)
    services = build_services(chosen, index_config=cfg)  # the retriever built later reads these fields
    started = time.perf_counter()
    report = Indexer(cfg, services.embed_model, services.store).build()
    print(
        f"index {docs.name}: {report.chunks_total} chunks, {report.chunks_embedded} embedded, "
        f"{time.perf_counter() - started:.0f}s",
        file=sys.stderr,
    )
    return services


def run_eval(services, qa: Path, generate: bool, out: Path | None, show_failures: bool) -> dict:
    from bot.evaluate import evaluate, load_qa

    items = load_qa(qa)
    with open(out, "w") if out else open(os.devnull, "w") as sink:
        report = evaluate(services.answerer, items, generate=generate, out=sink)
    if out and show_failures:
        _show_failures(items, out)
    return report


def _show_failures(items, out: Path) -> None:
    from bot.evaluate import contains_all

    by_id = {i.id: i for i in items}
    for line in out.read_text().splitlines():
        rec = json.loads(line)
        item = by_id[rec["id"]]
        answerable = not item.expect_refusal
        bad_source = answerable and item.source_file not in rec["retrieved"][:5]
        if "answer" not in rec:
            bad_answer = False
        elif answerable:
            bad_answer = not contains_all(rec["answer"], item)
        else:
            bad_answer = bool(rec["sources"])
        if bad_source or bad_answer:
            answer = rec.get("answer", "").replace("\n", " ")[:200]
            print(f"  MISS {item.id} src={'x' if bad_source else 'ok'} want={item.must_contain} :: {answer}")


def _sets(names: list[str], home: Path):
    """(label, docs, qa, home, role) for each named set; Debian manuals from bench/manuals.py."""
    from . import manuals
    from .corpora import manual_docs

    by_name = {m.name: m for m in manuals.MANUALS}
    for name in names:
        if name == "python":
            docs, qa, role = manual_docs(MANUAL_DOCS), MANUAL_QA, "regression"
        elif name == "acme":
            docs, qa, role = ACME_DOCS, ACME_QA, "regression"
        elif name in by_name:
            docs, qa, role = manuals.docs(by_name[name]), by_name[name].qa, by_name[name].role
        else:
            raise SystemExit(f"unknown set {name!r}; known: {', '.join([*by_name, 'python', 'acme'])}")
        if docs is not None:
            yield name, docs, qa, home.with_name(f"{home.name}-{name}"), role


ALL_SETS = ["apache", "git", "handbook", "python", "acme"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.manual_eval", description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=ALL_SETS, help=f"default: {' '.join(ALL_SETS)}")
    parser.add_argument("--no-generate", action="store_true", help="retrieval figures only (no LLM)")
    parser.add_argument("--home", type=Path, default=HOMES, help="reusable homes (one per set and chunking)")
    parser.add_argument("--set", nargs="*", default=[], help="bot settings, e.g. top_k=5")
    parser.add_argument("--index", nargs="*", default=[], help="IndexConfig fields, e.g. bm25_weight=0.5")
    parser.add_argument("--out", type=Path, help="write per-question records here (prefix; -NAME.jsonl)")
    parser.add_argument(
        "--show-heldout", action="store_true", help="also list the held-out sets' failures (not while tuning)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settings, index = _pairs(args.set), _pairs(args.index)
    results = {}
    for label, docs, qa, home, role in _sets(args.sets, args.home):
        out = Path(f"{args.out}-{label}.jsonl") if args.out else None
        started = time.perf_counter()
        show = role != "heldout" or args.show_heldout
        if not show:
            print(f"{label}: held out, failures not listed", file=sys.stderr)
        report = run_eval(services_for(docs, home, settings, index), qa, not args.no_generate, out, show)
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["load"] = os.getloadavg()[0]
        results[f"{label} ({role})"] = report
    if not results:
        return 1
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
