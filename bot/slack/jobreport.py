"""Job messages in Slack: a progress message kept up to date, then a summary when the job ends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from slack_sdk import WebClient

from bot.evaluate import FIGURES
from bot.slack.format import duration, escape
from bot.store import JobRecord, Store

log = logging.getLogger(__name__)

TITLES = {"reindex": "Reindex", "retrain": "Adapter retraining"}
STATE_ICONS = {"running": "⏳", "succeeded": "✅", "failed": "❌", "interrupted": "⚠️", "cancelled": "🛑"}
# What a job that stopped before the end leaves in place (a build or a training run switches last).
UNCHANGED = {
    "reindex": "Answers keep using the current index.",
    "retrain": "Answers keep using the current adapter.",
}


def job_line(job: JobRecord) -> str:
    title = TITLES.get(job.kind, job.kind)
    return f"{STATE_ICONS.get(job.state, '')} {title} `{job.id}` (asked by <@{job.requested_by}>)"


def progress_detail(job: JobRecord) -> str:
    """'3 of 12 files · ETA 20s' for reindex; 'step 10 of 60 · loss 1.234 · ETA 1m 40s' for retraining."""
    p = job.progress
    parts = []
    if p.get("stage") == "qa_eval":
        parts.append(f"QA eval: {p.get('done', 0)} of {p.get('total', '?')} questions")
    elif job.kind == "reindex" and "total" in p:
        parts.append(f"{p.get('done', 0)} of {p['total']} files")
    elif job.kind == "retrain":
        if p.get("stage") == "train" and p.get("total"):
            parts.append(f"step {p.get('done', 0)} of {p['total']}")
            if p.get("loss") is not None:
                parts.append(f"loss {p['loss']:.3f}")
        elif p.get("message"):
            parts.append(escape(str(p["message"])))
    if job.state == "running" and p.get("eta_s") is not None:
        parts.append(f"ETA {duration(p['eta_s'])}")
    return " · ".join(parts) or "starting…"


def _figure(value, how: str) -> str:
    return {"pct": f"{value:.0%}", "num": f"{value:.2f}", "s": f"{value:.2f} s"}[how]


def _change(value, before, how: str) -> str:
    if before is None:
        return ""
    diff = value - before
    if how == "pct":
        diff = round(diff * 100)
        return " (=)" if diff == 0 else f" ({diff:+d} pp)"
    text = f"{diff:+.2f}" + (" s" if how == "s" else "")
    return " (=)" if text.lstrip("+-").startswith("0.00") else f" ({text})"


def eval_lines(ev: dict | None) -> list[str]:
    """The QA eval block of a job summary: the figures and their change since the last job's eval."""
    if not ev:
        return []
    qa = f"`{escape(str(ev.get('qa', '?')))}`"
    if ev.get("error"):
        return [f"QA eval on {qa} failed: {escape(ev['error'])}. The job itself succeeded."]
    if ev.get("generate"):
        used = f"adapter `{escape(ev['adapter'])}`" if ev.get("adapter") else "the base model (no adapter)"
        what = f"answers by {used}, as in use now"
    else:
        what = "retrieval only (EXPERTBOT_EVAL_GENERATE=false)"
    prev = ev.get("previous") or {}
    if prev.get("figures"):
        since = f"change since `{escape(prev['job'])}`"
    elif prev.get("qa_changed"):
        since = f"the QA file or EXPERTBOT_EVAL_GENERATE changed since `{escape(prev['job'])}`: no comparison"
    else:
        since = "first run"
    before = prev.get("figures") or {}
    shown = [
        f"{label} {_figure(ev['figures'][key], how)}{_change(ev['figures'][key], before.get(key), how)}"
        for key, label, how in FIGURES
        if ev["figures"].get(key) is not None
    ]
    head = f"QA eval on {qa} ({ev.get('items')} questions, {what}, {duration(ev.get('seconds'))}; {since}):"
    return [head, " · ".join(shown)]


def progress_text(job: JobRecord) -> str:
    if job.state == "running":
        return f"{job_line(job)}: {progress_detail(job)}"
    if job.state == "succeeded":
        return f"{job_line(job)}: finished in {duration(job.progress.get('elapsed_s'))}."
    kept = UNCHANGED.get(job.kind, "")
    if job.state == "interrupted":
        why = escape(job.error or "the bot stopped while it ran")
        parts = [f"{job_line(job)}: interrupted ({why}).", kept, "Run the command again."]
        return " ".join(filter(None, parts))
    if job.state == "cancelled":
        return f"{job_line(job)}: {escape(job.error or 'cancelled')} before it finished. {kept}".rstrip()
    return f"{job_line(job)}: failed ({escape(job.error or 'error')}). The details are in the bot's logs."


class JobMessages:
    """Callbacks for JobRunner.start that keep one Slack message per job up to date.

    Updates are throttled to one per `interval` seconds (Slack rate-limits chat.update); the final
    state always gets through. `summarize` turns a finished job into the summary posted under it, and
    `attachments` names files (the loss plot) to upload with it.
    """

    def __init__(
        self,
        client: WebClient,
        store: Store,
        *,
        summarize: Callable[[JobRecord], str],
        attachments: Callable[[JobRecord], list[Path]] | None = None,
        interval: float = 1.0,
    ):
        self.client, self.store, self.interval = client, store, interval
        self.summarize, self.attachments = summarize, attachments
        self.ts: str | None = None
        self._last = 0.0
        self._lock = threading.Lock()

    def callbacks(self) -> dict:
        return {"on_start": self.on_start, "on_progress": self.on_progress, "on_finish": self.on_finish}

    def on_start(self, job: JobRecord) -> None:
        posted = self.client.chat_postMessage(
            channel=job.channel, text=progress_text(job), unfurl_links=False
        )
        self.ts, self._last = posted["ts"], time.monotonic()
        self.store.set_job_message(job.id, self.ts)

    def on_progress(self, job: JobRecord) -> None:
        with self._lock:
            if self.ts is None or time.monotonic() - self._last < self.interval:
                return
            self._last = time.monotonic()
        self.client.chat_update(channel=job.channel, ts=self.ts, text=progress_text(job))

    def on_finish(self, job: JobRecord) -> None:
        if self.ts is not None:
            self.client.chat_update(channel=job.channel, ts=self.ts, text=progress_text(job))
        if job.state == "cancelled":  # said in the channel too: who ran it may not be who cancelled it
            self.client.chat_postMessage(channel=job.channel, text=progress_text(job), unfurl_links=False)
        if job.state != "succeeded":
            return
        summary = self.summarize(job)
        files = [p for p in (self.attachments(job) if self.attachments else []) if p and Path(p).is_file()]
        if not files:
            self.client.chat_postMessage(channel=job.channel, text=summary, unfurl_links=False)
            return
        # The summary rides along as the upload's comment, so text and plot arrive as one message.
        uploads = [
            {"file": str(p), "filename": Path(p).name, "title": f"{job.id}: {Path(p).stem}"} for p in files
        ]
        self.client.files_upload_v2(file_uploads=uploads, channel=job.channel, initial_comment=summary)


def report_interrupted(client: WebClient, jobs: list[JobRecord]) -> None:
    """Tell each interrupted job's channel, and fix its progress message so it no longer says 'running'."""
    for job in jobs:
        try:
            if job.message_ts:
                client.chat_update(channel=job.channel, ts=job.message_ts, text=progress_text(job))
            client.chat_postMessage(channel=job.channel, text=progress_text(job))
        except Exception:
            log.exception("could not report interrupted job %s", job.id)
