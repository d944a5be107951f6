"""What both admin commands share: the admin check with its audit entry, starting a job, status."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt import Ack
from slack_sdk import WebClient

from bot.jobs import JobBusyError
from bot.slack.context import BotContext
from bot.slack.format import escape
from bot.slack.jobreport import JobMessages, job_line, progress_text

log = logging.getLogger(__name__)

REFUSAL = "Sorry, only the bot's admins can run `{name}`. Ask one of them, or see `{command} help`."


def subcommand(command: dict) -> str:
    words = (command.get("text") or "").strip().lower().split()
    return words[0] if words else ""


def admitted(bot: BotContext, ack: Ack, command: dict, name: str) -> bool:
    """Admins pass; anyone else gets an ephemeral refusal. Both decisions are audited (never the text)."""
    user = command["user_id"]
    if bot.is_admin(user):
        return True
    bot.store.audit(user, name, "refused")
    log.info("refused %s for a non-admin", name)
    ack(text=REFUSAL.format(name=name, command=command["command"]))
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
) -> None:
    user, channel = command["user_id"], command["channel_id"]
    messages = JobMessages(
        client, bot.store, summarize=summarize, attachments=attachments, interval=bot.update_interval
    )
    try:
        job = bot.jobs.start(kind, work, requested_by=user, channel=channel, **messages.callbacks())
    except JobBusyError as busy:
        bot.store.audit(user, name, "busy", busy.running.id)
        ack(
            text=f"Not started: {job_line(busy.running)} is still running. See `{command['command']} status`."
        )
        return
    bot.store.audit(user, name, "started", job.id)
    ack(text=f"Started `{job.id}`. Progress will be posted in this channel.")


def status(bot: BotContext, ack: Ack, command: dict, kind: str, name: str, extra: str = "") -> None:
    bot.store.audit(command["user_id"], name, "allowed")
    jobs = bot.store.jobs(kind=kind)
    latest = progress_text(jobs[-1]) if jobs else "No job has run yet."
    ack(text="\n".join(filter(None, [latest, extra])))
