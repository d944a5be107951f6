"""What people thought of the answers: the 👍/👎 votes of the last days, and the share of 👎 by source
and by adapter, for `expertbot feedback` and `/retrain-adapter status`.

The votes come from the bot's store, each with the question, the answer's text, its sources and the
adapter that wrote it (kept for EXPERTBOT_FEEDBACK_DAYS). Nothing here is logged.
"""

from __future__ import annotations

from collections import defaultdict

from bot.store import Store

NO_SOURCES = "(no sources: I don't know)"
BASE_MODEL = "none (base model)"
GONE = "(no longer kept)"


def _share(down: int, votes: int) -> float:
    return round(down / votes, 4) if votes else 0.0


def _tally(groups: dict[str, list[str]], name: str) -> list[dict]:
    """{key: [vote, ...]} -> rows {name: key, votes, down, down_share}, most 👎 first."""
    rows = [
        {name: k, "votes": len(v), "down": v.count("down"), "down_share": _share(v.count("down"), len(v))}
        for k, v in groups.items()
    ]
    return sorted(rows, key=lambda r: (-r["down"], -r["down_share"], r[name]))


def feedback_report(store: Store, since_days: float = 7) -> dict:
    """{"since_days", "keep_days", "votes": [...newest first], "summary": {...}} (the --json shape)."""
    store.forget_old_answers()
    votes = store.feedback(since_days)
    by_source: dict[str, list[str]] = defaultdict(list)
    by_adapter: dict[str, list[str]] = defaultdict(list)
    listed = []
    for v in votes:
        kept = v["answered"] is not None
        files = list(dict.fromkeys(s["file"] for s in v["sources"])) if kept else []
        for file in files or ([NO_SOURCES] if kept else [GONE]):
            by_source[file].append(v["vote"])
        adapter = (v["adapter"] or BASE_MODEL) if kept else GONE
        by_adapter[adapter].append(v["vote"])
        listed.append(
            {
                "at": v["at"],
                "vote": v["vote"],
                "user": v["user"],
                "answer_id": v["answer_id"],
                "question": v["question"],
                "answer": v["answer"],
                "sources": v["sources"],
                "adapter": v["adapter"],
                "refused": v["refused"],
            }
        )
    down = sum(v["vote"] == "down" for v in votes)
    summary = {
        "votes": len(votes),
        "down": down,
        "down_share": _share(down, len(votes)),
        "by_source": _tally(by_source, "source"),
        "by_adapter": _tally(by_adapter, "adapter"),
    }
    return {"since_days": since_days, "keep_days": store.keep_days, "votes": listed, "summary": summary}


def _pct(share: float) -> str:
    return f"{share:.0%}"


def summary_lines(report: dict) -> list[str]:
    """The summary as plain lines (the CLI prints them; Slack's status line is built from the same)."""
    s = report["summary"]
    days = report["since_days"]
    if not s["votes"]:
        return [f"No feedback in the last {days} days."]
    lines = [f"Feedback, last {days} days: {s['votes']} votes, {s['down']} 👎 ({_pct(s['down_share'])})"]
    for title, rows, key in (("source", s["by_source"], "source"), ("adapter", s["by_adapter"], "adapter")):
        lines.append(f"👎 by {title}:")
        width = max(len(r[key]) for r in rows)
        lines += [f"  {r[key]:<{width}}  {r['down']} of {r['votes']} ({_pct(r['down_share'])})" for r in rows]
    return lines


def vote_lines(vote: dict, width: int = 300) -> list[str]:
    """One vote for a reader: when, which way, who, the adapter, then the question, answer and sources."""
    icon = "👍" if vote["vote"] == "up" else "👎"
    when = vote["at"][:16].replace("T", " ")
    if vote["question"] is None and vote["answer"] is None:
        return [f"{when}  {icon}  {vote['user']}  answer {vote['answer_id']} {GONE}"]
    adapter = vote["adapter"] or BASE_MODEL
    answer = " ".join((vote["answer"] or "").split())
    sources = ", ".join(
        s["file"] + (f" § {s['section']}" if s.get("section") else "") for s in vote["sources"]
    )
    return [
        f"{when}  {icon}  {vote['user']}  adapter: {adapter}",
        f"  Q: {' '.join((vote['question'] or '').split())}",
        f"  A: {answer[:width] + ('…' if len(answer) > width else '')}",
        f"  sources: {sources or 'none'}",
    ]
