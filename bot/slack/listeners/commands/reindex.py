from slack_bolt import Ack
from slack_sdk import WebClient

from bot import operations
from bot.slack.context import CONTEXT_KEY
from bot.slack.delivery import failures_text
from bot.slack.summaries import reindex_summary

from ._admin import admitted, cancel, start_job, status, subcommand, unknown

USAGE = (
    "*/reindex* rebuilds the search index from the docs folder. Answers keep using the current index until "
    "the new one is complete.\n"
    "• `/reindex`: start a reindex job (admins only)\n"
    "• `/reindex status`: the latest reindex job\n"
    "• `/reindex cancel`: stop the running reindex job; answers keep the current index (admins only)\n"
    "• `/reindex help`: this help"
)


def reindex_callback(ack: Ack, command: dict, context, client: WebClient) -> None:
    bot = context[CONTEXT_KEY]
    sub = subcommand(command)
    if sub == "help":
        ack(text=USAGE)
        return
    if sub not in ("", "status", "cancel"):
        unknown(ack, sub, USAGE)
        return
    name = "/reindex" + (f" {sub}" if sub else "")
    if not admitted(bot, ack, command, name):
        return
    if sub == "status":
        status(bot, ack, command, "reindex", name, extra=failures_text(bot.store))  # replies Slack lost
        return
    if sub == "cancel":
        cancel(bot, ack, command, "reindex", name)
        return

    def work(job) -> dict:
        history = operations.EvalHistory(bot.store, job.id, job.kind)  # EXPERTBOT_EVAL_QA's figures
        done = operations.reindex(
            bot.services, progress=job.report, should_stop=job.cancelled.is_set, eval_history=history
        )
        return done.as_dict()

    start_job(bot, ack, client, command, kind="reindex", name=name, work=work, summarize=reindex_summary)
