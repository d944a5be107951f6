"""Generation engines side by side (issue 12): llama.cpp in-process (ours), plain transformers fp32, and the
old int4 loop as the reference; then the server backend, one question at a time against 10 at once.

Each engine runs in a fresh process of its own (bench/engine_child.py), so its peak RSS is its own and
libgomp reads the same OMP_WAIT_POLICY (the bot's PASSIVE) in each. Rounds interleave the engines: this
2-core machine is shared, and only figures from the same minutes compare. The old int4 loop is run from an
export (`git archive`) of OLD_ENGINE_COMMIT, the last commit that had adapters/quantize.py and decode.py.

Besides ours (the default settings), other llama.cpp settings run in the same rounds, each against the
int4 loop, with how many of their greedy answers match ours word for word.

Prompts: acme questions, each with its 4 retrieved chunks whole (bot.answer.build_user_prompt without
facts) under the bot's system prompt: ~480 tokens, the RAG prompt the issue's goal names. Time to first
token runs from the stream() call to the first text piece: prompt pass + first token. Decode tok/s is
measured on one long answer (128 tokens, no retrieval), after its first piece.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from statistics import median

from .common import DATA, REPO, Context, Row, Timer, load_note, say
from .retrieval import questions

NAME = "generation"
OLD_ENGINE_COMMIT = "a8ac76128dae8eebdf95758d9b29627dd4911ee7"
# Ours first, then other llama.cpp settings (the old default without flash attention, BF16 weights,
# prompt-lookup drafts: bench/engine_child.py LLAMA_VARIANTS), then the baselines.
VARIANTS = ("llama.cpp F16, no flash attn", "llama.cpp BF16", "llama.cpp + 6 draft tokens")
ENGINES = ("llama.cpp", *VARIANTS, "transformers fp32", "int4 loop")
ROUNDS, RAG_PROMPTS, CONCURRENT = 3, 3, 10
LONG = [{"role": "user", "content": "Write a detailed step-by-step guide, with at least ten steps, for a new "
         "employee's first week."}]  # fmt: skip


def rag_prompts(services, wanted: int) -> list[list[dict]]:
    """Messages of the acme questions whose prompt with whole chunks is nearest 480 tokens (~4 chars each)."""
    from bot.answer import SYSTEM_PROMPT, build_user_prompt

    candidates = []
    for q in questions(False)[:20]:
        hits = services.retriever.retrieve(q, top_k=services.settings.top_k)
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": build_user_prompt(q, hits)}]  # fmt: skip
        size = sum(len(m["content"]) for m in messages)
        candidates.append((abs(size - 480 * 4), messages))
    return [m for _, m in sorted(candidates, key=lambda c: c[0])[:wanted]]


def old_tree(workdir: Path) -> Path | None:
    """This repository at OLD_ENGINE_COMMIT, exported (read-only for the repository: no checkout)."""
    target = workdir / "old-engine"
    if (target / "adapters" / "decode.py").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_ENGINE_COMMIT, "adapters"],
                             capture_output=True)  # fmt: skip
    if archive.returncode != 0:
        why = archive.stderr.decode()[:200]
        say(f"  int4 loop skipped: git archive {OLD_ENGINE_COMMIT[:7]} failed ({why})")
        return None
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def child(engine: str, job_file: Path, old: Path | None) -> dict | None:
    path = str(old if engine == "int4 loop" else REPO)
    env = {**os.environ, "PYTHONPATH": path, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    script = REPO / "bench" / "engine_child.py"
    done = subprocess.run([sys.executable, str(script), engine, str(DATA / "models"), str(job_file)],
                          env=env, capture_output=True, text=True, timeout=1800)  # fmt: skip
    if done.returncode != 0:
        say(f"  {engine} failed: {done.stderr[-1500:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def engines(ctx: Context, job: dict) -> list[Row]:
    from bench.llm_server import random_smollm2_adapter

    rounds = 1 if ctx.quick else ROUNDS
    job["adapter"] = str(random_smollm2_adapter(ctx.tmp("bench-adapter") / "bench-v1"))
    job_file = ctx.tmp("generation") / "job.json"
    job_file.write_text(json.dumps(job))
    old = old_tree(ctx.workdir)
    runs: dict[str, list[dict]] = {e: [] for e in ENGINES}
    for r in range(rounds):
        for engine in ENGINES:
            if engine == "int4 loop" and old is None:
                continue
            got = child(engine, job_file, old)
            if got:
                runs[engine].append(got)
                say(f"  round {r + 1} {engine}: decode {got['decode_tps']:.1f} tok/s, first token "
                    f"{median(got['ttft_s']):.2f} s, answer {median(got['whole_s']):.2f} s, peak RSS "
                    f"{got['peak_rss_mib']:.0f} MiB (load {got['load1']:.1f})")  # fmt: skip
    return engine_rows(runs)


def engine_rows(runs: dict[str, list[dict]]) -> list[Row]:
    ours = runs["llama.cpp"]
    if not ours:
        return []
    prompt = median(t for run in ours for t in run["prompt_tokens"])
    rows = []
    pairs = [("llama.cpp", base) for base in ("int4 loop", "transformers fp32")]
    pairs += [(variant, "int4 loop") for variant in VARIANTS if runs[variant]]
    for engine, base in pairs:
        mine, theirs = runs[engine], runs[base]
        loads = ", ".join(f"{r['load1']:.1f}" for r in mine)
        note = f"{len(mine)} interleaved rounds, medians; 1-min load after each of these: {loads}"
        if engine != "llama.cpp":
            same = sum(a == b for a, b in zip(mine[0]["texts"], ours[0]["texts"], strict=True))
            d = mine[0]["drafts"]
            note += f"; greedy text as ours in {same}/{len(ours[0]['texts'])} answers"
            if d["steps"]:
                note += f"; drafts: {d['kept']}/{d['guessed']} guesses kept in {d['steps']} steps"
        for metric, key, unit, higher in (
            ("decode tok/s, 128-token answer", "decode_tps", "tok/s", True),
            (f"time to first token, {prompt:.0f}-token RAG prompt", "ttft_s", "s", False),
            ("whole answer, RAG prompt (up to 96 tokens)", "whole_s", "s", False),
            ("peak RSS of the process", "peak_rss_mib", "MiB", False),
        ):
            rows.append(Row(NAME, f"{metric}: {engine} vs {base}", _median(mine, key),
                            _median(theirs, key) if theirs else None, unit, higher, note))  # fmt: skip
    step1, step4 = (median(r[k] for r in ours) for k in ("decode_step_1_ms", "decode_step_4_ms"))
    note = f"{step1:.1f} ms per 1-token step, {step4:.1f} ms per 4-token step"
    rows.append(Row(NAME, "in-process batching: tokens/s of 4-token decode steps vs 1-token", 4000 / step4,
                    1000 / step1, "tok/s", note=note))  # fmt: skip
    if "switch_ms" in ours[0]:
        note = f"first use (convert + load): {ours[0]['adapter_first_use_s']:.2f} s"
        switch = median(r["switch_ms"] for r in ours)
        rows.append(
            Row(NAME, "adapter switch (llama_set_adapters_lora), median", switch, None, "ms", False, note)
        )
    return rows


def _median(runs: list[dict], key: str) -> float:
    """The median over rounds of each round's figure (itself a median where a round has several)."""
    return median(median(r[key]) if isinstance(r[key], list) else r[key] for r in runs)


def server_backend(ctx: Context) -> list[Row]:
    """10 acme questions through `python -m llama_cpp.server`: one at a time, then all 10 at once."""
    from bench.llm_server import llama_cpp_server, served_model_file
    from bot.config import load_settings
    from bot.wiring import build_services

    base = ctx.services
    model = served_model_file(DATA / "models" / "llamacpp")
    with llama_cpp_server(ctx.tmp("llm-server"), model) as url:
        services = build_services(
            load_settings(home=base.settings.home, docs_dir=base.settings.docs_dir, llm_url=url),
            embed_model=base.embed_model,
        )
        # Questions the bot answers (not refused on retrieval); streams are lazy: nothing is sent yet.
        asked = [q for q in questions(False) if not services.answerer.stream(q).refused]
        asked = asked[: 2 if ctx.quick else CONCURRENT]
        services.answerer.answer(asked[0])  # warm-up
        with Timer() as one:
            for q in asked:
                services.answerer.answer(q)
        say(f"  server, one at a time: {len(asked)} answers in {one.seconds:.1f} s ({load_note()})")
        with Timer() as many:
            workers = [threading.Thread(target=services.answerer.answer, args=(q,)) for q in asked]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        say(f"  server, {len(asked)} at once: {many.seconds:.1f} s ({load_note()})")
    note = "llama-cpp-python's server decodes one request at a time (vLLM / llama-server --parallel batch)"
    metric = f"server backend: answers/minute, {len(asked)} at once vs one at a time"
    rate = len(asked) * 60
    return [Row(NAME, metric, rate / many.seconds, rate / one.seconds, "answers/min", note=note)]


def serve_rss(ctx: Context) -> list[Row]:
    """Peak RSS of a real `expertbot serve` (playground) once it has warmed up: embedder, index, LLM."""
    from bench.llm_server import free_port

    settings = ctx.services.settings
    env = {**os.environ, "EXPERTBOT_HOME": str(settings.home), "EXPERTBOT_DOCS_DIR": str(settings.docs_dir)}
    command = [str(Path(sys.executable).parent / "expertbot"), "serve", "--port", str(free_port())]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:  # it names its URL once the warm-up is done
            if "expertbot playground" in line:
                break
        status = Path(f"/proc/{proc.pid}/status").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
    return [Row(NAME, "peak RSS of `expertbot serve`, models loaded", peak, 600, "MiB", False,
                f"baseline column: the goal; {load_note()}")]  # fmt: skip


def run(ctx: Context) -> list[Row]:
    job = {"rag": rag_prompts(ctx.services, 1 if ctx.quick else RAG_PROMPTS), "long": LONG,
           "limit": ctx.services.settings.max_new_tokens, "long_limit": 32 if ctx.quick else 128}  # fmt: skip
    return engines(ctx, job) + serve_rss(ctx) + server_backend(ctx)
