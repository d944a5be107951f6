from dataclasses import asdict, is_dataclass

from slack_bolt import Ack
from slack_sdk import WebClient

from bot.evaluate import qa_eval_for_job
from bot.scopes import index_report_lines
from bot.slack.context import CONTEXT_KEY
from bot.slack.delivery import failures_text
from bot.slack.format import duration, escape
from bot.slack.jobreport import eval_lines
from bot.store import JobRecord

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
    services = bot.services

    def work(job) -> dict:
        rescoped = services.reload_scopes()  # an edited [scopes] applies from this reindex on
        report = services.indexer.build(
            progress=lambda done, total: job.progress(done=done, total=total),
            should_stop=job.cancelled.is_set,  # also between embedding batches of one big file
        )
        # Only now does the bot switch to the new index; answers during the build used the old one.
        services.reopen_retriever()
        if rescoped:
            services.apply_scopes()
        if hasattr(report, "as_dict"):
            result = report.as_dict()
        else:
            result = asdict(report) if is_dataclass(report) else dict(report)
        # The new index is live already; its QA figures (EXPERTBOT_EVAL_QA) come after, never failing it.
        qa = qa_eval_for_job(services, bot.store, job)
        return {**result, "eval": qa} if qa else result

    start_job(bot, ack, client, command, kind="reindex", name=name, work=work, summarize=summary)


def summary(job: JobRecord) -> str:
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
