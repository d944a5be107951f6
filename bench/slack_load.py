"""A burst of mentions against a real `expertbot serve --http`: acks, their latency, and every reply.

The bot runs as `python -m bot serve --http` in its own process, over an index of examples/acme, posting
to the local fake Slack Web API (bot/playground/fakeapi.py) in this process. Each burst is N signed
app_mention events, distinct event ids and users (so no per-user rate limit applies), each on its own
connection, all released at once by a barrier (the probe in issue 13 sent 100 within 0.03 s). An ack is
the HTTP response: its latency runs from connecting to the last byte. Afterwards each event's thread is read:
  answered  a placeholder that became a final message (an answer, or a note such as "I don't know")
  busy      told "busy" at once (past max_concurrent_answers + answer_queue_size)
  other     any other single reply (e.g. a "restarting" note)
  lost      no reply, or a placeholder never finished within the settle time: must be 0

Baseline: the old http.server path is gone (its listen queue of 5 reset 59 of 100 in the probe), so the
baseline is the same server taking a burst of 10, which fits any queue: ratio = how much slower the acks
get when the burst is ten times larger (a ratio near 1 means the burst costs the acks nothing).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import ACME_DOCS, DATA, Context, Row, load_note, percentile, say

NAME = "slack-load"
BURST, BASELINE_BURST = 100, 10
QUICK_BURST, QUICK_BASELINE_BURST = 30, 5
SECRET, TOKEN = "bench-signing-secret", "xoxb-bench-token"
QUESTIONS = ["How long does onboarding take?", "Who do I page for a SEV1?", "How do I escalate a ticket?"]
SETTLE_S = 300  # answers on a CPU take seconds each; the burst's last one may wait behind 8 others


class ServedBot:
    """`python -m bot -v serve --http --port 0` with its log read as it comes (the pipe never fills)."""

    def __init__(self, env: dict[str, str]):
        cmd = [sys.executable, "-m", "bot", "-v", "serve", "--http", "--port", "0"]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"serve never logged {pattern!r}:\n" + "".join(self.lines[-30:]))
                self._cond.wait(min(left, 1.0))

    def stop(self) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - started


def bot_env(home: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}  # loopback only
    env.update(
        EXPERTBOT_CONFIG="",
        EXPERTBOT_HOME=str(home),
        EXPERTBOT_DOCS_DIR=str(ACME_DOCS),
        EXPERTBOT_MAX_NEW_TOKENS="24",  # short answers: the acks and the replies are measured, not prose
        EXPERTBOT_USER_RATE="0",
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=api_url,
    )
    return env


def send(port: int, body: bytes, headers: dict[str, str], go: threading.Barrier) -> tuple[int, float]:
    """POST one signed event on its own connection: (HTTP status or 0 for none, seconds to the answer)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    data = (f"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
    go.wait()
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(data)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0
    except OSError:
        status = 0  # reset or refused: what the old server did to most of a burst
    return status, time.monotonic() - started


def burst(port: int, sim, size: int, tag: str) -> tuple[list[dict], list[tuple[int, float]], float]:
    """Send `size` mentions at once; (events, (status, latency) per event, seconds the sends spanned)."""
    from bot.playground.simulate import http_parts

    events = [
        sim.mention_event(QUESTIONS[i % len(QUESTIONS)], user=f"U{tag}{i:03d}", channel=f"C{tag}")
        for i in range(size)
    ]
    parts = [http_parts(sim.event(e, event_id=f"Ev{tag}{i:03d}")) for i, e in enumerate(events)]
    go = threading.Barrier(size)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=size) as pool:
        acks = list(pool.map(lambda p: send(port, p[0], p[1], go), parts))
    return events, acks, time.monotonic() - started


def outcome(fake, event: dict) -> str:
    from bot.slack.answering import BUSY, PLACEHOLDER

    thread = [m for m in fake.thread(event["channel"], event["ts"]) if m.get("bot_id")]
    if not thread:
        return "lost"
    first = thread[0]["text"]
    if first == BUSY:
        return "busy"
    if first == PLACEHOLDER or first.endswith(" …"):  # still the placeholder, or still streaming
        return "pending"
    return "answered" if thread[0].get("edited") else "other"


def settle(fake, events: list[dict], timeout: float) -> dict[str, int]:
    """Wait until no event is pending (or the timeout); count the outcomes, pending ones as lost."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {k: 0 for k in ("answered", "busy", "other", "lost", "pending")}
        for event in events:
            counts[outcome(fake, event)] += 1
        waiting = counts["pending"] + counts["lost"]
        if not waiting or time.monotonic() > deadline:
            counts["lost"] += counts.pop("pending")
            return counts
        time.sleep(0.5)


def measure(port: int, sim, fake, size: int, tag: str) -> dict:
    events, acks, spread = burst(port, sim, size, tag)
    latencies = [t for status, t in acks if status == 200]
    statuses = sorted({s for s, _ in acks})
    say(f"  burst of {size}: sent within {spread:.2f} s; statuses {statuses}; {load_note()}")
    counts = settle(fake, events, SETTLE_S)
    figures = {
        "acked": len(latencies),
        "p50": percentile(latencies, 50) * 1000 if latencies else float("nan"),
        "p99": percentile(latencies, 99) * 1000 if latencies else float("nan"),
        "max": max(latencies) * 1000 if latencies else float("nan"),
        **counts,
    }
    say(
        f"  burst of {size}: acked {figures['acked']}/{size} with 200, ack p50 {figures['p50']:.0f} ms, "
        f"p99 {figures['p99']:.0f} ms, max {figures['max']:.0f} ms; answered {counts['answered']}, "
        f"busy {counts['busy']}, other {counts['other']}, lost {counts['lost']}"
    )
    return figures


def run(ctx: Context) -> list[Row]:
    from bot.playground.fakeapi import FakeSlackAPI
    from bot.playground.simulate import SlackSimulator

    size, base_size = (QUICK_BURST, QUICK_BASELINE_BURST) if ctx.quick else (BURST, BASELINE_BURST)
    home = ctx.tmp("slack-load-home")
    models = DATA / "models"  # the converted LLM, kept between runs as bench.common does
    models.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(models, target_is_directory=True)
    with FakeSlackAPI(token=TOKEN) as fake:
        env = bot_env(home, fake.url)
        subprocess.run([sys.executable, "-m", "bot", "index"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)  # fmt: skip
        bot = ServedBot(env)
        try:
            port = int(bot.wait_for(r"listening on http://127\.0\.0\.1:(\d+)/", 300).group(1))
            bot.wait_for(r"models loaded|warm-up did not finish", 600)  # warm, so acks race no loading
            sim = SlackSimulator(SECRET, fake=fake)
            base = measure(port, sim, fake, base_size, "BASE")
            ours = measure(port, sim, fake, size, "LOAD")
        finally:
            took = bot.stop()
        log = "".join(bot.lines)
    say(f"  serve stopped {took:.1f} s after SIGTERM (rc {bot.proc.returncode}); "
        f"tracebacks in its log: {log.count('Traceback')}")  # fmt: skip
    note = f"burst of {size}; baseline: the same server's burst of {base_size}"
    rows = [
        Row(
            NAME,
            f"acked with 200 (of {size})",
            ours["acked"],
            note=f"baseline: {base['acked']} of {base_size}",
        ),
        Row(NAME, "ack latency p50", ours["p50"], base["p50"], "ms", False, note),
        Row(NAME, "ack latency p99 (must be < 1000)", ours["p99"], base["p99"], "ms", False, note),
        Row(NAME, "ack latency max (Slack retries at 3000)", ours["max"], base["max"], "ms", False, note),
    ]
    for key in ("answered", "busy", "other", "lost"):  # counts of different bursts: no ratio
        rows.append(Row(NAME, f"{key} (of {size})", ours[key], note=f"baseline: {base[key]} of {base_size}"))
    rows.append(Row(NAME, "SIGTERM to exit", took, None, "s", False, f"rc {bot.proc.returncode}"))
    return rows
