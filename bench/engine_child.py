"""One generation engine measured in a process of its own, so that its peak RSS is its own.

`python bench/engine_child.py ENGINE CACHE_DIR JOB.json` prints one JSON line. Run it as a script path,
not as a module: for the old int4 loop, PYTHONPATH names an export of the last commit that had it
(bench/generation.py: OLD_ENGINE_COMMIT), and `adapters` is imported from there; for the others,
PYTHONPATH is this tree. Engines: "llama.cpp" (ours), its LLAMA_VARIANTS, "transformers fp32", "int4 loop".
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# ModelConfig fields of each llama.cpp variant measured beside the default ("llama.cpp", ours).
LLAMA_VARIANTS = {
    "llama.cpp": {},
    "llama.cpp F16, no flash attn": {"flash_attn": False},
    "llama.cpp BF16": {"gguf_weights": "bf16"},
    "llama.cpp + 6 draft tokens": {"draft_tokens": 6},
}


def make(engine: str, cache: Path):
    """(generator, count(text) -> tokens) for engine."""
    from adapters.config import ModelConfig

    if engine.startswith("llama.cpp"):
        from adapters.base import bundled_gguf
        from adapters.llamacpp import LlamaCppGenerator

        folder, name = bundled_gguf()
        cfg = ModelConfig(cache_dir=cache, device="cpu", **LLAMA_VARIANTS[engine])
        gen = LlamaCppGenerator(cfg, folder / name)
        return gen, lambda text: len(gen.engine.tokenize(text))
    from adapters.generate import Generator

    options = {"quantize": "int4" if engine == "int4 loop" else "none"}
    if "quantize" not in ModelConfig.__dataclass_fields__:  # this tree: transformers has no quantize
        options = {}
    gen = Generator(ModelConfig(cache_dir=cache, device="cpu", **options))
    return gen, lambda text: len(gen.tokenizer(text, add_special_tokens=False).input_ids)


def timed(gen, messages, limit: int, **kw) -> tuple[float, float, str]:
    """(seconds to the first piece, seconds to the end, text) of one streamed answer."""
    start = time.perf_counter()
    first, pieces = None, []
    for piece in gen.stream(messages, max_new_tokens=limit, **kw):
        first = first or time.perf_counter()
        pieces.append(piece)
    end = time.perf_counter()
    return (first or end) - start, end - start, "".join(pieces)


def llama_extras(gen, job: dict) -> dict:
    """In-process batching (does a decode step of 4 tokens cost 4x one?) and the adapter switch time."""
    from adapters.generate import AdapterRef

    engine, out = gen.engine, {}
    ids = engine.tokenize(gen.render(job["long"]))
    engine.prefill(ids)
    position = len(ids)
    for width in (1, 4):
        start, steps = time.perf_counter(), 16
        for _ in range(steps):  # positions past the prompt, as parallel answers' next tokens would be
            engine.evaluate(ids[:width], position)
            position += width
        out[f"decode_step_{width}_ms"] = (time.perf_counter() - start) / steps * 1000
    if job.get("adapter"):
        ref = AdapterRef("bench-v1", Path(job["adapter"]))
        started = time.perf_counter()
        gen.generate(job["long"], max_new_tokens=1, adapter=ref)  # converts and loads it: first use
        out["adapter_first_use_s"] = time.perf_counter() - started
        gen.switches.clear()
        for _ in range(3):
            gen.generate(job["long"], max_new_tokens=1)
            gen.generate(job["long"], max_new_tokens=1, adapter=ref)
        out["switch_ms"] = sorted(gen.switches)[len(gen.switches) // 2] * 1000
    return out


def main(engine: str, cache: str, job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    started = time.perf_counter()
    gen, count = make(engine, Path(cache))
    timed(gen, [{"role": "user", "content": "Say hello."}], 8)  # loads the model (and builds any copy)
    out: dict = {"engine": engine, "first_answer_s": time.perf_counter() - started}
    out["prompt_tokens"] = [count(gen.render(m)) for m in job["rag"]]
    firsts, wholes, tokens, texts = [], [], [], []
    for messages in job["rag"]:
        first, whole, text = timed(gen, messages, job["limit"])
        firsts.append(first)
        wholes.append(whole)
        tokens.append(count(text))
        texts.append(text)
    out.update(ttft_s=firsts, whole_s=wholes, answer_tokens=tokens)
    first, whole, text = timed(gen, job["long"], job["long_limit"])
    n = count(text)
    texts.append(text)
    out.update(long_tokens=n, decode_tps=(n - 1) / (whole - first) if n > 1 and whole > first else 0.0)
    if engine == "llama.cpp":
        out.update(llama_extras(gen, job))
    if engine.startswith("llama.cpp"):
        out["drafts"] = vars(gen.drafts)
        out["texts"] = texts
    # VmHWM, not getrusage's ru_maxrss: that one keeps the forked parent's peak across exec.
    status = Path("/proc/self/status").read_text().splitlines()
    out["peak_rss_mib"] = int(next(line.split()[1] for line in status if line.startswith("VmHWM"))) / 1024
    out["load1"] = os.getloadavg()[0]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
