"""`expertbot` and its commands on answers and the index (adapters: training.py, corrections.py)."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from bot import operations
from bot.config import load_settings
from bot.links import doc_links

from .common import CleanErrors, as_someone, file_progress, say_access, services

log = logging.getLogger("expertbot")


@click.group(cls=CleanErrors)
@click.option("-v", "--verbose", is_flag=True, help="Log more (never secrets or message text).")
@click.version_option(package_name="expertbot")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Your company's own expert: answers from your docs, in your words."""
    from bot.wiring import prepare_process

    prepare_process()  # offline model hubs, quiet libraries: once, before any Services is built
    # OpenMP threads that spin while waiting made the question's embedding 3-10x slower on a busy
    # machine (BENCHMARKS.md, "OpenMP spin-waiting"). libgomp reads this once, when torch loads it,
    # and every command imports torch after this point. A value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.ensure_object(dict)


@main.command()
@click.option(
    "--docs", "docs_dir", type=click.Path(file_okay=False), help="Docs folder (default: EXPERTBOT_DOCS_DIR)."
)
@click.option("--full", is_flag=True, help="Re-embed every document, even unchanged ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def index(ctx, docs_dir, full, as_json):
    """Index the docs folder: new and changed documents are embedded, the rest is reused."""
    if docs_dir:
        ctx.obj["settings"] = load_settings(docs_dir=docs_dir)
    svc = services(ctx)
    svc.index_config.show_progress = sys.stderr.isatty()  # the embedding bar
    # The same reindex as /reindex, less the QA eval: with generation on it would load the LLM, and
    # `expertbot eval` is the command for it.
    report = operations.reindex(svc, full=full, progress=file_progress()).index
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    click.echo(f"Indexed {svc.settings.docs_dir} in {report.seconds:.1f} s")
    for label in ("added", "changed", "removed", "unchanged"):
        click.echo(f"  {label:<10}{len(getattr(report, label)):>6}")
    click.echo(f"  {'skipped':<10}{len(report.skipped):>6}")
    for file, reason in report.skipped:
        click.echo(f"    {file}: {reason}")
    note = " (nothing changed)" if report.chunks_embedded == 0 and not report.rescoped else ""
    click.echo(f"  {'chunks':<10}{report.chunks_total:>6}   {report.chunks_embedded} embedded{note}")
    from bot.scopes import index_report_lines

    for line in index_report_lines(report.as_dict()):
        click.echo(f"  {line}")


@main.command()
@click.argument("question")
@as_someone
@click.option("--json", "as_json", is_flag=True, help="Print {answer, sources, adapter} as JSON.")
@click.option("--no-retrieval", is_flag=True, help="Ask the model alone, without the docs.")
@click.option("--adapter", default=None, metavar="NAME|none", help="Adapter version, folder, or 'none'.")
@click.pass_context
def ask(ctx, question, channel, user, as_json, no_retrieval, adapter):
    """Answer QUESTION from the indexed docs, with sources."""
    if not question.strip():
        raise click.UsageError("QUESTION is empty")
    svc = services(ctx)
    if not no_retrieval and svc.store.current() is None:  # say so before any model is loaded
        from indexers import NoIndexError

        raise NoIndexError(f"no index in {svc.store.root} yet; run `expertbot index` first")
    access = svc.access_for(channel, user)
    stream = svc.answerer.stream(
        question, retrieval=not no_retrieval, adapter=adapter, allowed=access.allowed
    )
    if as_json:
        shown = stream.result().as_dict()
        if svc.settings.scopes:  # the shape stays as it was where no scopes are set
            shown["access"] = access.why
        click.echo(json.dumps(shown, indent=2))
        return
    say_access(access)
    answer = stream.result()  # the checked answer, not the raw model text (see answer.ground)
    click.echo(answer.text)
    if answer.sources:
        click.echo("\nSources:")
        for n, s in enumerate(doc_links(svc.settings).link(answer.sources), 1):
            click.echo(f"  [{n}] {s.file} ({s.section}){' ' + s.url if s.url else ''}")
    click.echo(f"\nadapter: {answer.adapter or 'none (base model)'}", err=True)


@main.command("eval")
@click.option(
    "--qa",
    "qa_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="QA file (JSONL), or 'corrections': the approved corrections as a regression set.",
)
@as_someone
@click.option("--out", type=click.File("w"), help="Write one JSON line per answer here.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--no-generate", is_flag=True, help="Score retrieval only (fast; no LLM).")
@click.pass_context
def evaluate_cmd(ctx, qa_file, channel, user, out, as_json, no_generate):
    """Score source hit@1/@5, MRR, answer and refusal accuracy, and latency on a QA file."""
    svc = services(ctx)
    access = svc.access_for(channel, user)
    say_access(access)
    bar = _Bar("eval", "q")
    try:
        report = operations.evaluate(
            svc, qa_file, generate=not no_generate, allowed=access.allowed, out=out, progress=bar
        ).figures
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        click.echo(f"  {key:<20}{shown:>10}")


@main.command()
@click.option("--since", "days", default=7, show_default=True, type=click.IntRange(min=1), metavar="DAYS")
@click.option("--json", "as_json", is_flag=True, help="Print the votes and the summary as JSON.")
@click.pass_context
def feedback(ctx, days, as_json):
    """The 👍/👎 votes of the last DAYS, with each answer's question, text, sources and adapter, and the
    share of 👎 by source and by adapter. Loads no model."""
    from bot.feedback import feedback_report, summary_lines, vote_lines
    from bot.store import Store

    settings = ctx.obj.get("settings") or load_settings()
    store = Store.in_home(settings.home, keep_days=settings.feedback_days, url=settings.database_url)
    report = feedback_report(store, days)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    for line in summary_lines(report):
        click.echo(line)
    if days > settings.feedback_days:
        click.echo(f"(answers are kept {settings.feedback_days} days: EXPERTBOT_FEEDBACK_DAYS)")
    if report["votes"]:
        click.echo("\nVotes, newest first:")
    for vote in report["votes"]:
        click.echo("\n".join(vote_lines(vote)))


@main.command()
@click.pass_context
def doctor(ctx):
    """Check models, data directory, index and versions; exit 1 if something is wrong."""
    from bot.doctor import run_checks

    ok = True
    for passed, name, detail in run_checks(ctx.obj.get("settings") or load_settings()):
        ok &= passed
        # A warning does not fail the check (the bot runs), but should not read "ok" either.
        label = "FAIL" if not passed else "WARN" if detail.startswith("warning: ") else "ok "
        if label == "WARN":
            detail = detail.removeprefix("warning: ")
        click.echo(f"{label} {name}: {detail}")
    if not ok:
        ctx.exit(1)


@main.command()
@click.pass_context
def manifest(ctx):
    """Print the Slack app manifest for these settings (paste it at api.slack.com/apps)."""
    from bot.manifest import app_manifest

    settings = services(ctx).settings
    click.echo(app_manifest(settings.scopes, settings.experts), nl=False)


@main.command()
@click.option("--http", is_flag=True, help="Serve Slack's Events API over HTTP instead of Socket Mode.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind in HTTP mode.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535))
@click.pass_context
def serve(ctx, http, host, port):
    """Run the bot: Socket Mode with SLACK_APP_TOKEN, HTTP with --http, else the local playground."""
    from bot.playground.server import run_playground
    from bot.slack.serve import serve as run

    try:
        run(services(ctx), http=http, host=host, port=port, playground=run_playground)
    except OSError as e:  # most often: the port is taken by another process
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}; try --port") from None


class _Bar:
    """A tqdm bar on stderr for an operation's progress, opened at its first report (which says the total)."""

    def __init__(self, desc: str, unit: str):
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, p: operations.Progress) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=p.total, desc=self.desc, unit=self.unit, file=sys.stderr)
        self.bar.update((p.done or 0) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
