"""What both admin commands share: the admin check with its audit entry, starting a job, status."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt import Ack
from slack_sdk import WebClient

from bot.jobs import JobBusyError, JobsStoppedError
from bot.slack.context import ADMIN, NOT_LISTED, UNCONFIRMED, BotContext
from bot.slack.format import escape
from bot.slack.guard import GUEST
from bot.slack.jobreport import TITLES, UNCHANGED, JobMessages, job_line, progress_text

log = logging.getLogger(__name__)

REFUSAL = "Sorry, only the bot's admins can run `{name}`. Ask one of them, or see `{command} help`."
REFUSALS = {
    GUEST: "Sorry, guests can't run `{name}`, even when listed as the bot's admins. Ask an admin who is a "
    "full member of the workspace, or see `{command} help`.",
    UNCONFIRMED: "Sorry, I could not confirm your role with Slack just now, so `{name}` did not run. "
    "Please try again in a minute.",
}


def subcommand(command: dict) -> str:
    words = (command.get("text") or "").strip().lower().split()
    return words[0] if words else ""


def admitted(bot: BotContext, ack: Ack, command: dict, name: str) -> bool:
    """Listed admins whom Slack confirms as full members pass; anyone else, a guest, or a user whose role
    users.info could not confirm gets an ephemeral refusal. Refusals are audited here with their reason,
    what runs is audited by start_job/status (never the text)."""
    user = command["user_id"]
    decision = bot.admin_check(user)
    if decision == ADMIN:
        return True
    bot.store.audit(user, name, "refused" if decision == NOT_LISTED else f"refused: {decision}")
    log.info("refused %s: %s", name, "not an admin" if decision == NOT_LISTED else decision)
    ack(text=REFUSALS.get(decision, REFUSAL).format(name=name, command=command["command"]))
    return False


def unknown(ack: Ack, sub: str, usage: str) -> None:
    ack(text=f"Unknown option `{escape(sub)}`.\n{usage}")


def start_job(
    bot: BotContext,
    ack: Ack,
    client: WebClient,
    command: dict,
    *,
    kind: str,
    name: str,
    work: Callable,
    summarize: Callable,
    attachments: Callable | None = None,
    first: dict | None = None,
) -> None:
    """Start the job; `first` is the progress its first channel message shows (e.g. how long it takes)."""
    user, channel = command["user_id"], command["channel_id"]
    messages = JobMessages(
        client, bot.store, summarize=summarize, attachments=attachments, interval=bot.update_interval
    )
    try:
        job = bot.jobs.start(
            kind, work, requested_by=user, channel=channel, progress=first, **messages.callbacks()
        )
    except JobsStoppedError as stopped:
        bot.store.audit(user, name, "refused: shutting down")
        ack(text=f"Not started: {stopped}.")
        return
    except JobBusyError as busy:
        bot.store.audit(user, name, "busy", busy.running.id)
        ack(
            text=f"Not started: {job_line(busy.running)} is still running. See `{command['command']} status`."
        )
        return
    bot.store.audit(user, name, "started", job.id)
    ack(text=f"Started `{job.id}`. Progress will be posted in this channel.")


def cancel(bot: BotContext, ack: Ack, command: dict, kind: str, name: str) -> None:
    """Ask the running job of `kind` to stop (admins only, audited). It stops at its next check, before
    it switches anything, so what answers use stays as it is."""
    user = command["user_id"]
    job = bot.jobs.cancel(kind, by=user)
    if job is None:
        running = bot.store.running_job(kind)
        bot.store.audit(user, name, "nothing to cancel", running.id if running else None)
        if running is None:
            ack(text=f"No {TITLES.get(kind, kind).lower()} job is running, so there is nothing to cancel.")
        else:  # the store says running, but no thread here runs it: another process of the bot does
            ack(text=f"{job_line(running)} runs in another process of the bot; cancel it there.")
        return
    bot.store.audit(user, name, "cancelled", job.id)
    ack(text=f"Cancelling `{job.id}`: it stops at its next step. {UNCHANGED.get(kind, '')}".rstrip())


def status(bot: BotContext, ack: Ack, command: dict, kind: str, name: str, extra: str = "") -> None:
    bot.store.audit(command["user_id"], name, "allowed")
    jobs = bot.store.jobs(kind=kind)
    latest = progress_text(jobs[-1]) if jobs else "No job has run yet."
    ack(text="\n".join(filter(None, [latest, extra])))
