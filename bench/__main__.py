"""`python -m bench [NAME ...] [--quick] [--repeat N]`: run benchmarks, print each table and a summary.

A benchmark that fails is reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Module per benchmark, in running order: cheap ones first, so a --quick smoke fails fast.
BENCHMARKS = ("embed", "index", "retrieval", "generation", "train", "slack-load")
ALIASES = {"ask": ("retrieval", "generation")}


def offline() -> None:
    # Same safety net as bot.wiring: the models are local files, and a hub lookup would hang or fail.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        ram = 0.0
    import torch

    return (
        f"{os.cpu_count()} cpus ({cpu}), {ram:.0f} GiB RAM, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}, "
        # Spin-waiting OpenMP threads behave very differently on a shared machine; record the policy.
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, {time.strftime('%Y-%m-%d %H:%M')}"
    )


def parse(argv: list[str]) -> argparse.Namespace:
    names = ", ".join(BENCHMARKS + tuple(ALIASES))
    ap = argparse.ArgumentParser(
        prog="python -m bench", description="expertbot benchmarks (figures, not tests)"
    )
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"which to run (default: all): {names}")
    ap.add_argument("--quick", action="store_true", help="a short smoke run: tiny inputs, one round")
    ap.add_argument(
        "--repeat", type=int, default=1, help="repeat the timed builds/rounds N times, keep the best"
    )
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error(f"--repeat must be a positive integer, got {args.repeat}")
    chosen: list[str] = []
    for name in args.names or BENCHMARKS:
        expanded = ALIASES.get(name, (name,))
        unknown = [n for n in expanded if n not in BENCHMARKS]
        if unknown:
            ap.error(f"unknown benchmark {name!r}; choose from {names}")
        chosen += [n for n in expanded if n not in chosen]
    args.names = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    offline()
    from .common import Context, load_note, say, table

    say(f"machine: {machine()}")
    failed, rows = [], []
    with tempfile.TemporaryDirectory(prefix="expertbot-bench-") as tmp:
        ctx = Context(Path(tmp), quick=args.quick, repeat=args.repeat)
        for name in args.names:
            say(f"\n== {name} ({load_note()})")
            started = time.perf_counter()
            try:
                got = importlib.import_module(f"bench.{name.replace('-', '_')}").run(ctx)  # slack-load
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            rows += got
            say(table(got))
            say(f"({name} took {time.perf_counter() - started:.0f} s; {load_note()})")
    if rows:
        say("\n== summary\n" + table(rows, with_bench=True))
    if failed:
        say(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
