"""Generation for `ask` with the bundled SmolLM2: tokens/s and time to first token.

Ours is the real path: Answerer.stream(question) from bot.wiring.Services (retrieve, select facts,
prompt, then Generator.stream), with the configured `quantize` (default int4: a 4-bit weight copy,
adapters/quantize.py, decoded by the lean loop of adapters/decode.py). The baseline is a plain greedy
`model.generate` on the float (fp32) model and the same rendered prompt, no streamer: what the
"~27.5 tok/s" in offline-stack.md measured. With quantize=none both sides give the same tokens; with
int4 they may part after a while (bf16 activations); the run counts identical answers and says so.

The baseline runs on a worker thread too. On this shared machine, torch ops on the main thread with
OpenMP's default spin-waiting ran ~5x slower than the same ops on a fresh thread (OMP_WAIT_POLICY=PASSIVE
removed the gap); a main-thread baseline would flatter us for a reason that is not our code.

Times: "time to first token" is from the question to the first text piece (the streamer hands out
whole words, so this is the first word a user would see); the generation-only one starts when
Answerer.stream returns, i.e. after retrieval and fact selection. Tokens are counted with the model's
tokenizer on the streamed text.
"""

from __future__ import annotations

import threading
import time
from statistics import median

from .common import Context, Row, Timer, load_note, say
from .retrieval import questions

NAME = "generation"
QUESTIONS = 10  # answers from selected facts are one sentence: ~2 s per question with its baseline
QUICK_QUESTIONS = 1
# acme answers are too short to show the steady decoding rate (prefill dominates them), so one long
# answer is timed on its own: the figure to hold against the 27.5 tok/s and issue 4's goal of 60.
LONG_PROMPT = "Write a detailed step-by-step guide, with at least ten steps, for a new employee's first week."
LONG_TOKENS = 128


class _Recorder:
    """Runs the real Generator and keeps the messages the answerer sent it, so the baseline gets the very
    same prompt however the answerer builds it (retrieved chunks, selected facts, ...)."""

    def __init__(self, generator):
        self.generator = generator
        self.messages: list[dict] | None = None

    def stream(self, messages, **kw):
        self.messages = messages
        return self.generator.stream(messages, **kw)

    def __getattr__(self, name):
        return getattr(self.generator, name)


def _on_worker(fn, *args):
    """fn(*args) on a fresh thread, as Generator.stream runs generate (see the module docstring)."""
    result: dict = {}

    def work():
        try:
            result["value"] = fn(*args)
        except BaseException as err:  # re-raised on the caller's thread
            result["error"] = err

    worker = threading.Thread(target=work, name="bench-generate")
    worker.start()
    worker.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _plain_generate(
    generator, messages: list[dict], limit: int, model=None
) -> tuple[int, float, float, list[int]]:
    """(new tokens, seconds, seconds for the first token alone, token ids) with plain model.generate on
    model (default: the generator's float model)."""
    import torch

    from adapters.base import end_of_turn_ids

    model, tok = model or generator.model, generator.tokenizer
    inputs = tok(generator.render(messages), return_tensors="pt", add_special_tokens=False).to(model.device)
    stop = end_of_turn_ids(model, tok)
    kwargs = dict(
        **inputs,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        eos_token_id=stop,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else stop[0],
        use_cache=True,
    )

    def generate(max_new_tokens: int):
        with torch.inference_mode():
            return model.generate(**kwargs, max_new_tokens=max_new_tokens)

    with Timer() as first:
        _on_worker(generate, 1)  # prefill + one token: the plain time to first token
    with Timer() as whole:
        out = _on_worker(generate, limit)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    while new and new[-1] in stop:  # the stop token ends the answer; it is not part of the text
        new.pop()
    return len(new), whole.seconds, first.seconds, new


def run(ctx: Context) -> list[Row]:
    services = ctx.services
    answerer, generator = services.answerer, services.generator
    limit = services.settings.max_new_tokens
    with Timer() as load:
        tok = generator.tokenizer  # loads the model (converting the GGUF the very first time)
    say(f"  model loaded in {load.seconds:.1f} s; max_new_tokens={limit} ({load_note()})")
    with Timer() as warm:  # warm-up; with quantize=int4 it also builds the 4-bit copy (once per adapter)
        list(generator.stream([{"role": "user", "content": "Say hello."}], max_new_tokens=8))
    quantize = generator.cfg.quantize
    say(f"  quantize={quantize}; first answer (copy build included) {warm.seconds:.1f} s ({load_note()})")

    wanted = QUICK_QUESTIONS if ctx.quick else QUESTIONS
    recorder = _Recorder(generator)
    answerer.generator = recorder  # put back below; the answerer keeps no other state about it
    try:
        rows = _measure(answerer, recorder, tok, limit, wanted, quantize)
    finally:
        answerer.generator = generator
    rows += _long_answer(generator, tok, 32 if ctx.quick else LONG_TOKENS, quantize)
    note = "quantize=none: no copy" if quantize == "none" else "deepcopy + merge + int4 pack + 8-token answer"
    return rows + [
        Row(NAME, f"first answer after load, quantize={quantize}", warm.seconds, None, "s", False, note)
    ]


def _long_answer(generator, tok, limit: int, quantize: str) -> list[Row]:
    """Decoding rate on one long answer: ours (Generator.stream) against plain fp32 generate."""
    messages = [{"role": "user", "content": LONG_PROMPT}]
    start = time.perf_counter()
    first, pieces = None, []
    for piece in generator.stream(messages, max_new_tokens=limit):
        first = first or time.perf_counter()
        pieces.append(piece)
    end = time.perf_counter()
    n = len(tok("".join(pieces), add_special_tokens=False).input_ids)
    p_n, p_s, p_first, _ = _plain_generate(generator, messages, limit)
    ours_first = (first or end) - start
    ours_rate = (n - 1) / (end - (first or end)) if n > 1 else 0.0
    plain_rate = (p_n - 1) / (p_s - p_first) if p_n > 1 and p_s > p_first else 0.0
    say(f"  long answer: ours {n} tokens in {end - start:.2f} s, plain {p_n} in {p_s:.2f} s ({load_note()})")
    rows = []
    fast = generator._fast.cached(None)  # (int4 copy, LeanDecoder): the same copy through generate()
    if fast is not None and fast[1] is not None:
        g_n, g_s, g_first, _ = _plain_generate(generator, messages, limit, model=fast[0])
        copy_rate = (g_n - 1) / (g_s - g_first) if g_n > 1 and g_s > g_first else 0.0
        rows.append(
            Row(
                NAME,
                "decode tokens/s, the int4 copy: lean loop vs generate()",
                ours_rate,
                copy_rate,
                "tok/s",
                note=f"same int4 weights; generate() {g_n} tokens on a worker thread, torch's thread count",
            )
        )
    return [
        Row(
            NAME,
            f"decode tokens/s, one long answer, quantize={quantize}",
            ours_rate,
            plain_rate,
            "tok/s",
            note=f"{n} tokens after the first piece; plain fp32: after generate(max_new_tokens=1)'s time",
        ),
        Row(
            NAME,
            f"time to first token, long-answer prompt, quantize={quantize}",
            ours_first,
            p_first,
            "s",
            higher_is_better=False,
            note="ours: first streamed piece; plain fp32: generate(max_new_tokens=1)",
        ),
        *rows,
    ]


def _measure(answerer, recorder, tok, limit: int, wanted: int, quantize: str) -> list[Row]:
    generator = recorder.generator
    ours_tokens = ours_gen_s = plain_tokens = plain_s = 0.0
    ttft, ttft_gen, plain_first, same, before = [], [], [], 0, []
    done = 0
    for q in questions(False):
        if done == wanted:
            break
        start = time.perf_counter()
        stream = answerer.stream(q)  # retrieval happens here; generation starts at the first next()
        retrieved = time.perf_counter()
        if stream.refused:  # answered "I don't know" without the model: nothing to time
            continue
        done += 1
        first, pieces = None, []
        for piece in stream:
            first = first or time.perf_counter()
            pieces.append(piece)
        end = time.perf_counter()
        first = first or end  # an empty answer: no piece ever came
        text = "".join(pieces)
        n = len(tok(text, add_special_tokens=False).input_ids)
        ours_tokens += n
        ours_gen_s += end - retrieved
        ttft.append(first - start)
        before.append(retrieved - start)
        ttft_gen.append(first - retrieved)
        p_n, p_s, p_first, p_ids = _plain_generate(generator, recorder.messages, limit)
        plain_tokens += p_n
        plain_s += p_s
        plain_first.append(p_first)
        same += tok.decode(p_ids, skip_special_tokens=True).strip() == text.strip()
        say(
            f"  ours {n} tokens in {end - retrieved:.2f} s "
            f"(first piece {ttft[-1]:.2f} s after the question), "
            f"plain {p_n} tokens in {p_s:.2f} s ({load_note()})"
        )
    say(f"  identical answers from both sides: {same} of {done}")
    mid, mid_gen, mid_plain = median(ttft), median(ttft_gen), median(plain_first)
    note = f"{done} acme questions, greedy, quantize={quantize} vs plain fp32, {ours_tokens:.0f} tokens"
    rows = [
        Row(
            NAME,
            "ask answers: tokens/s, prefill included",
            ours_tokens / ours_gen_s,
            plain_tokens / plain_s,
            "tok/s",
            note=note,
        ),
        Row(
            NAME,
            "time to first token, generation only (median)",
            mid_gen,
            mid_plain,
            "s",
            higher_is_better=False,
            note="baseline: generate(max_new_tokens=1)",
        ),
        Row(
            NAME,
            "time to first token, whole ask (median)",
            mid,
            None,
            "s",
            higher_is_better=False,
            note="question in, first word out: retrieval + facts + prompt + prefill",
        ),
        Row(
            NAME,
            "answerer before the model runs (median)",
            median(before),
            None,
            "s",
            higher_is_better=False,
            note="retrieval + fact selection, inside Answerer.stream",
        ),
    ]
    return rows
