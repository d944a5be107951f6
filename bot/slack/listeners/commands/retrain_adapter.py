from slack_bolt import Ack
from slack_sdk import WebClient

from bot import operations
from bot.slack.context import CONTEXT_KEY
from bot.slack.format import escape
from bot.slack.summaries import current_adapter, feedback_line, loss_plot, retrain_summary

from ._admin import admitted, cancel, start_job, status, subcommand, unknown

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
        extra = f"Adapter in use: {current_adapter(services.registry)}.\n{feedback_line(bot.store)}"
        status(bot, ack, command, "retrain", name, extra=extra)
        return
    if sub == "rollback":
        rollback(bot, ack, command, name)
        return
    if sub == "cancel":
        cancel(bot, ack, command, "retrain", name)
        return

    def work(job) -> dict:
        # The QA eval after it scores what answers use then: the new adapter if promoted, else the one kept.
        history = operations.EvalHistory(bot.store, job.id, job.kind)
        done = operations.retrain(
            services, progress=job.report, should_stop=job.cancelled.is_set, eval_history=history
        )
        return done.as_dict()

    plan = operations.retrain_plan(services.settings)  # the first message says how long it takes
    first = plan.fields() if plan else {}
    start_job(
        bot,
        ack,
        client,
        command,
        kind="retrain",
        name=name,
        work=work,
        summarize=retrain_summary,
        attachments=loss_plot,
        first=first,
    )


def rollback(bot, ack: Ack, command: dict, name: str) -> None:
    user = command["user_id"]
    try:
        change = operations.rollback(bot.services.registry)
    except (ValueError, LookupError, FileNotFoundError) as exc:  # nothing to roll back to
        bot.store.audit(user, name, "failed")
        ack(text=f"Could not roll back: {escape(str(exc))}")
        return
    bot.store.audit(user, name, "rolled back")
    now = f"`{escape(change.name)}`" if change.current else "no adapter (the base model)"
    ack(text=f"Rolled back. New answers use {now}.")
