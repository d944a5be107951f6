"""What the admin commands post when a job ends, and their status lines: Slack text, from job records."""

from __future__ import annotations

import logging
from pathlib import Path

from bot.feedback import feedback_report
from bot.scopes import index_report_lines
from bot.slack.format import duration, escape
from bot.slack.jobreport import eval_lines
from bot.store import JobRecord

log = logging.getLogger(__name__)


def reindex_summary(job: JobRecord) -> str:
    r = job.result or {}
    counts = ", ".join(f"{len(r.get(k) or [])} {k}" for k in ("added", "changed", "removed", "unchanged"))
    seconds = r.get("seconds", job.progress.get("elapsed_s"))
    skipped = r.get("skipped") or []
    lines = [f"Reindex `{job.id}` finished in {duration(seconds)}: {counts}, {len(skipped)} skipped."]
    for label in ("added", "changed", "removed"):
        files = r.get(label) or []
        if files:
            shown = ", ".join(f"`{escape(str(f))}`" for f in files[:10]) + (" …" if len(files) > 10 else "")
            lines.append(f"• {label}: {shown}")
    for item in skipped[:10]:
        file, reason = (item["file"], item["reason"]) if isinstance(item, dict) else item
        lines.append(f"• skipped `{escape(str(file))}`: {escape(str(reason))}")
    if "chunks_total" in r:
        lines.append(
            f"{r['chunks_total']} chunks in the index, {r.get('chunks_embedded', 0)} embedded this time."
        )
    lines += [f"• {escape(line)}" for line in index_report_lines(r)]
    return "\n".join(lines + eval_lines(r.get("eval")))


def current_adapter(registry) -> str:
    try:
        info = registry.current()
    except Exception:
        log.exception("could not read the adapter registry")
        return "unknown (see the bot's logs)"
    return f"`{escape(info.name)}`" if info else "none (base model)"


def feedback_line(store, days: int = 7) -> str:
    """'Feedback, last 7 days: 12 votes, 3 👎 (25%); most 👎: `a.md` 2 of 4; by adapter: ...'."""
    s = feedback_report(store, days)["summary"]
    if not s["votes"]:
        return f"Feedback, last {days} days: no votes yet."

    def shares(rows, key) -> str:
        return ", ".join(f"`{escape(r[key])}` {r['down']} of {r['votes']}" for r in rows)

    parts = [f"Feedback, last {days} days: {s['votes']} votes, {s['down']} 👎 ({s['down_share']:.0%})"]
    worst = [r for r in s["by_source"] if r["down"]][:3]
    if worst:
        parts.append("most 👎: " + shares(worst, "source"))
    parts.append("👎 by adapter: " + shares(s["by_adapter"], "adapter"))
    return "; ".join(parts) + ". Details: `expertbot feedback`."


def loss_plot(job: JobRecord) -> list[Path]:
    path = (job.result or {}).get("loss_plot")
    return [Path(path)] if path else []


def _accuracy(m: dict | None) -> str:
    if not m:
        return "?"
    text = f"{m.get('accuracy', 0):.0%}"
    return text + (f" ({m['correct']}/{m['total']})" if "correct" in m and "total" in m else "")


def correction_lines(counts: dict, figures: dict | None) -> list[str]:
    """'Corrections: 8 used, 40 training examples; held-out (no retrieval): base 1/8 → adapter 7/8'."""
    if not counts.get("corrections_used") and not counts.get("corrections_scoped"):
        return []
    used, made = counts.get("corrections_used", 0), counts.get("corrections", 0)
    line = f"Corrections: {used} used, {made} training examples"
    if counts.get("corrections_scoped"):
        line += f" ({counts['corrections_scoped']} scoped left out: an adapter answers in every channel)"
    withheld = counts.get("corrections_withheld")
    if withheld:
        line += f"; {withheld} held out of training, asked by the gate with their text"
    if figures:
        held = f"base {_accuracy(figures.get('base'))} → adapter {_accuracy(figures.get('adapter'))}"
        if figures.get("current"):
            held += f" (current {_accuracy(figures['current'])})"
        line += f"; held-out questions{'' if withheld else ' without retrieval'}: {held}"
    return [line]


def retrain_summary(job: JobRecord) -> str:
    r = job.result or {}
    metrics, gate = r.get("metrics") or {}, r.get("gate") or {}
    seconds = r.get("seconds", job.progress.get("elapsed_s"))
    verdict = (
        "promoted: new answers use it" if r.get("promoted") else "not promoted: answers keep the current one"
    )
    accuracy = f"base {_accuracy(metrics.get('base'))} → adapter {_accuracy(metrics.get('adapter'))}"
    if metrics.get("current"):
        accuracy += f" (current {_accuracy(metrics['current'])})"
    lines = [
        f"Adapter retraining `{job.id}` finished in {duration(seconds)}: `{escape(str(r.get('version')))}`, "
        f"{verdict}.",
        f"Terminology accuracy: {accuracy}",
        *correction_lines(r.get("corrections") or {}, metrics.get("corrections")),
        f"Gate, compared with {escape(str(gate.get('reference', '?')))}:",
    ]
    lines += [f"• {escape(str(reason))}" for reason in gate.get("reasons") or []]
    return "\n".join(lines + eval_lines(r.get("eval")))
