"""An index shared through a Chroma server (issue 17): what a second host pays to follow it.

`python -m bench.shared_index [--chunks N ...]`. A Chroma server (`chroma run`) on 127.0.0.1 holds the
vectors, the pointer and the manifests; host A builds N synthetic chunks (bench/synthetic.py) into it, and
host B, with an empty data folder of its own, opens the same index. Printed, for each size:
- opening the current generation on A, whose BM25 files are on its disk (the baseline), and on B the first
  time, when it rebuilds them from the generation's rows on the server; the ratio is the rebuild's cost;
- the per-question check of the pointer (`Retriever.reopen` when nothing changed): a local file on an
  embedded index against a read from the server;
- that B's hybrid hits equal A's on the same questions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import load_note


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chroma_server(path: Path):
    port = free_port()
    exe = Path(sys.executable).with_name("chroma")
    cmd = [str(exe), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the Chroma server did not start in 90 s")


def timed(fn, rounds: int = 1) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def pointer_checks(retriever, n: int = 50) -> float:
    """The median cost of reopen() when nothing changed: what every question pays."""
    retriever.reopen()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        retriever.reopen()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(chunks: int, work: Path, emb, sentences, vectors, url: str) -> dict:
    from bot.config import load_settings
    from indexers import Indexer, Retriever
    from indexers.embedding import embed_tokenizer

    from . import synthetic
    from .retrieval import questions

    count = embed_tokenizer(emb)
    docs = synthetic.write_corpus(
        work / f"docs-{chunks}", sentences, [len(count(s)) for s in sentences], chunks
    )
    fake = synthetic.make_embedder(emb, vectors)

    def host(name: str, chroma_url: str | None):
        settings = load_settings(home=work / f"{name}-{chunks}", docs_dir=docs)
        cfg = settings.index_config()
        return dataclasses.replace(cfg, show_progress=False, chroma_url=chroma_url,
                                   collection_prefix=f"bench{chunks}")  # fmt: skip

    a, b, local = host("a", url), host("b", url), host("local", None)
    started = time.perf_counter()
    Indexer(a, fake).build(full=True)
    built_s = time.perf_counter() - started
    Indexer(local, fake).build(full=True)  # the same chunks embedded in-process: the pointer's baseline
    open_a = timed(lambda: Retriever(a, emb).reopen(), rounds=3)
    on_b = Retriever(b, emb)
    open_b_first = timed(on_b.reopen)
    open_b_again = timed(lambda: Retriever(b, emb).reopen(), rounds=3)
    on_a, on_local = Retriever(a, emb), Retriever(local, emb)
    qs = questions(False)[:20]
    same = sum([h.id for h in on_a.retrieve(q)] == [h.id for h in on_b.retrieve(q)] for q in qs)
    check_local, check_shared = pointer_checks(on_local), pointer_checks(on_b)
    return {
        "chunks": chunks,
        "build_on_a_s": round(built_s, 1),
        "open_on_a_s (local BM25, baseline)": round(open_a, 3),
        "open_on_b_first_s (BM25 rebuilt from the server)": round(open_b_first, 3),
        "rebuild_cost_ratio (lower is better)": round(open_b_first / open_a, 2),
        "open_on_b_again_s": round(open_b_again, 3),
        "pointer_check_ms: embedded file": round(check_local * 1000, 3),
        "pointer_check_ms: Chroma server": round(check_shared * 1000, 3),
        "same_hits_on_b": f"{same}/{len(qs)}",
        "load": load_note(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.shared_index", description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, nargs="+", default=[10_000], help="index sizes (default 10000)")
    args = ap.parse_args(argv)
    from indexers import load_embed_model

    from . import synthetic

    work = Path(tempfile.mkdtemp(prefix="bench-shared-"))
    # A SIGTERM (kill, pkill) then unwinds through the finally below, which stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    proc, url = chroma_server(work / "server")
    try:
        emb = load_embed_model()
        sentences = synthetic.source_sentences()
        vectors = synthetic.sentence_vectors(emb, sentences)
        for n in args.chunks:
            print(json.dumps(run(n, work, emb, sentences, vectors, url), indent=1), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
