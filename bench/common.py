"""What every benchmark shares: the run context, result rows, timing helpers and the table printer.

Benchmarks are not tests: nothing here asserts a time. Each figure is printed next to its baseline,
measured in the same run on the same inputs, because this machine's speed drifts from minute to minute.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "_data"  # gitignored: downloaded manual, converted model
ACME_DOCS = REPO / "examples" / "acme" / "docs"
ACME_QA = REPO / "examples" / "acme" / "qa.jsonl"


@dataclass
class Row:
    """One figure of ours beside its baseline's. The ratio always reads 'x times better than baseline'."""

    bench: str
    metric: str
    ours: float
    baseline: float | None = None
    unit: str = ""
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.ours <= 0 or self.baseline <= 0:
            return None
        return self.ours / self.baseline if self.higher_is_better else self.baseline / self.ours


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(rows: list[Row], with_bench: bool = False) -> str:
    """A Markdown table: the same text goes to the terminal and, by hand, into BENCHMARKS.md."""
    head = (["benchmark"] if with_bench else []) + [
        "metric",
        "ours",
        "baseline",
        "ratio (>1: ours better)",
        "note",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        unit = f" {r.unit}" if r.unit else ""
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        base = fmt(r.baseline) + (unit if r.baseline is not None else "")
        cells = ([r.bench] if with_bench else []) + [r.metric, fmt(r.ours) + unit, base, ratio, r.note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: with 53 questions, p95 is an observed latency, not an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def load_note() -> str:
    """Load average next to the figures: others share these 2 cores, and a busy spell shows up here."""
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} cpus"


def say(msg: str) -> None:
    print(msg, flush=True)


class Context:
    """Per-run state handed to every benchmark: expensive objects are built once, on first use.

    Lives in main(), never at module level (house rule: no global singletons).
    """

    def __init__(self, workdir: Path, quick: bool = False, repeat: int = 1):
        self.workdir = workdir
        self.quick = quick
        self.repeat = repeat

    def tmp(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @functools.cached_property
    def embed_model(self):
        """The HuggingFaceEmbedding our indexer uses, shared by our pipeline and the LlamaIndex baseline."""
        from bot.wiring import settle_heap
        from indexers import load_embed_model

        model = load_embed_model()
        # The first forward passes allocate and pick kernels; no benchmark should pay for that.
        model.get_text_embedding_batch(["warm-up text for the embedder"] * 16, show_progress=False)
        settle_heap()  # as bot.wiring.Services.load_indexer does once it has loaded the embedder
        return model

    @functools.cached_property
    def services(self):
        """bot's own wiring over a throw-away home, with the acme index built: what `ask` runs on."""
        from bot.config import load_settings
        from bot.wiring import Services
        from indexers import Indexer

        home = self.tmp("ask-home")
        # The GGUF -> safetensors conversion (538 MB, ~15 s) is kept between runs in bench/_data;
        # the index and everything else stay in the temporary home.
        models = DATA / "models"
        models.mkdir(parents=True, exist_ok=True)
        if not (home / "models").exists():
            (home / "models").symlink_to(models, target_is_directory=True)
        overrides = {"max_new_tokens": 32} if self.quick else {}
        services = Services(load_settings(home=home, docs_dir=ACME_DOCS, **overrides))
        # Services' own indexer draws progress bars (show_progress defaults on); same store, no bars.
        quiet = dataclasses.replace(services.index_config, show_progress=False)
        report = Indexer(quiet, services.embed_model, services.store).build(progress=None, full=True)
        say(f"  ask index: {report.chunks_total} chunks from {ACME_DOCS.relative_to(REPO)}")
        return services
