import logging
from pathlib import Path

from slack_bolt import Ack
from slack_sdk import WebClient

from bot.evaluate import qa_eval_for_job
from bot.feedback import feedback_report
from bot.slack.context import CONTEXT_KEY
from bot.slack.format import duration, escape
from bot.slack.jobreport import eval_lines
from bot.store import JobRecord

from ._admin import admitted, cancel, start_job, status, subcommand, unknown

log = logging.getLogger(__name__)

USAGE = (
    "*/retrain-adapter* trains a new terminology adapter on the glossary. It is promoted only if it passes "
    "the gate; answers keep using the current adapter until then.\n"
    "• `/retrain-adapter`: start retraining (admins only)\n"
    "• `/retrain-adapter status`: the latest retraining job, the adapter in use and the last week's 👍/👎\n"
    "• `/retrain-adapter rollback`: go back to the previous adapter (admins only)\n"
    "• `/retrain-adapter cancel`: stop the running retraining, keeping the current adapter (admins only)\n"
    "• `/retrain-adapter help`: this help"
)


def retrain_adapter_callback(ack: Ack, command: dict, context, client: WebClient) -> None:
    bot = context[CONTEXT_KEY]
    sub = subcommand(command)
    if sub == "help":
        ack(text=USAGE)
        return
    if sub not in ("", "status", "rollback", "cancel"):
        unknown(ack, sub, USAGE)
        return
    name = "/retrain-adapter" + (f" {sub}" if sub else "")
    if not admitted(bot, ack, command, name):
        return
    services = bot.services
    if sub == "status":
        extra = f"Adapter in use: {current_adapter(services)}.\n{feedback_line(bot.store)}"
        status(bot, ack, command, "retrain", name, extra=extra)
        return
    if sub == "rollback":
        rollback(bot, ack, command, name)
        return
    if sub == "cancel":
        cancel(bot, ack, command, "retrain", name)
        return

    def work(job) -> dict:
        def progress(p) -> None:
            training = p.stage == "train"
            whole = getattr(p, "eta_total_s", None)  # the whole retrain's, when the budget sizes it
            job.progress(
                done=p.step if training else None,
                total=p.total_steps if training else None,
                stage=p.stage,
                loss=p.loss,
                message=p.message,
                eta_s=whole if whole is not None else (p.eta_s if training else None),
            )

        result = result_dict(services.retrain(progress=progress, should_stop=job.cancelled.is_set))
        # Scored with the adapter answers use now: the new one if promoted, else the one kept.
        qa = qa_eval_for_job(services, bot.store, job)
        return {**result, "eval": qa} if qa else result

    start_job(
        bot,
        ack,
        client,
        command,
        kind="retrain",
        name=name,
        work=work,
        summarize=summary,
        attachments=loss_plot,
        first=up_front(services),
    )


def up_front(services) -> dict:
    """The first message's progress: how long the retrain will take, before anything is measured."""
    try:
        cfg = services.settings.train_config()
    except ValueError:  # a bad EXPERTBOT_RETRAIN: the job itself reports it, naming the field
        return {}
    if cfg.max_steps is None and cfg.time_budget_s:
        return {
            "stage": "plan",
            "message": f"starting; sized to take about {round(cfg.time_budget_s / 60)} min (the training "
            "steps are fitted to EXPERTBOT_RETRAIN's time_budget_s)",
            "eta_s": cfg.time_budget_s,
        }
    steps = f"max_steps={cfg.max_steps}" if cfg.max_steps else f"{cfg.epochs} epochs, no time budget"
    return {"stage": "plan", "message": f"{steps}: the time it takes shows once training starts"}


def current_adapter(services) -> str:
    try:
        info = services.registry.current()
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


def rollback(bot, ack: Ack, command: dict, name: str) -> None:
    user = command["user_id"]
    try:
        info = bot.services.registry.rollback()
    except (ValueError, LookupError, FileNotFoundError) as exc:  # nothing to roll back to
        bot.store.audit(user, name, "failed")
        ack(text=f"Could not roll back: {escape(str(exc))}")
        return
    bot.store.audit(user, name, "rolled back")
    now = f"`{escape(info.name)}`" if info else "no adapter (the base model)"
    ack(text=f"Rolled back. New answers use {now}.")


def result_dict(result) -> dict:
    """The figures the summary needs, as JSON for the jobs table (not the per-question answers)."""
    verdict = result.verdict
    return {
        "version": result.version,
        "promoted": bool(result.promoted),
        "gate": {
            "promote": bool(verdict.promote),
            "reasons": list(verdict.reasons),
            "reference": verdict.reference,
        },
        "metrics": result.metrics,
        "train": result.train,
        "loss_plot": str(result.loss_plot) if result.loss_plot else None,
        "seconds": result.seconds,
        "corrections": {
            key: result.dataset.get(key, 0)
            for key in ("corrections", "corrections_used", "corrections_scoped", "corrections_heldout")
        },
    }


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
    if figures:
        held = f"base {_accuracy(figures.get('base'))} → adapter {_accuracy(figures.get('adapter'))}"
        if figures.get("current"):
            held += f" (current {_accuracy(figures['current'])})"
        line += f"; held-out questions without retrieval: {held}"
    return [line]


def summary(job: JobRecord) -> str:
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
