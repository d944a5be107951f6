"""`expertbot`: a stable command-line interface (other tools call it; --json output keeps its shape)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys

import click

from .config import ConfigError, Settings, load_settings
from .links import doc_links

log = logging.getLogger("expertbot")


def _user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean the user must change something: shown as one clean line, never a traceback."""
    from adapters.base import BaseModelNotFoundError, ModelSetupError
    from adapters.generate import UnsafeAdapterError
    from adapters.glossary import GlossaryError
    from adapters.registry import RegistryError
    from indexers import IndexBuildError, StoreError

    from .corrections import CorrectionError
    from .evaluate import QAFileError
    from .slack.serve import SlackSetupError
    from .wiring import AdapterNotFoundError

    return (
        ConfigError,
        IndexBuildError,
        StoreError,
        BaseModelNotFoundError,
        UnsafeAdapterError,
        AdapterNotFoundError,
        GlossaryError,
        RegistryError,
        QAFileError,
        CorrectionError,
        SlackSetupError,
        ModelSetupError,
    )


class CleanErrors(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except Exception as e:
            if isinstance(e, (click.ClickException, click.Abort)):
                raise
            if isinstance(e, _user_errors()):
                raise click.ClickException(str(e)) from None
            raise


def services(ctx: click.Context):
    from .wiring import Services

    obj = ctx.ensure_object(dict)
    if "services" not in obj:
        given = obj.get("settings")  # tests hand settings in; the CLI reads them, and can again
        obj["services"] = Services(given or load_settings(), reload=None if given else load_settings)
    return obj["services"]


@click.group(cls=CleanErrors)
@click.option("-v", "--verbose", is_flag=True, help="Log more (never secrets or message text).")
@click.version_option(package_name="expertbot")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Your company's own expert: answers from your docs, in your words."""
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
    report = svc.indexer.build(full=full, progress=_file_progress())
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
    from .scopes import index_report_lines

    for line in index_report_lines(report.as_dict()):
        click.echo(f"  {line}")


def _file_progress():
    """The count of finished files on stderr: one line kept up to date on a terminal, else one line each
    time it moves (logs and pipes read those)."""
    last, tty = [-1], sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        if done != last[0]:
            last[0] = done
            if tty:
                click.echo(f"\rfiles {done}/{total}" + ("\n" if done >= total else ""), err=True, nl=False)
            else:
                click.echo(f"files {done}/{total}", err=True)

    return report


def _slack_id(kind: str, prefixes: str):
    def check(_ctx, param, value):
        if value is not None and not re.fullmatch(f"[{prefixes}][A-Z0-9]+", value):
            raise click.BadParameter(f"Slack {kind} ids look like {prefixes[0]}0123ABCD, not {value!r}")
        return value

    return check


def as_someone(command):
    """--channel and --user: ask as that person there, under the [scopes] rules (bot/scopes.py)."""
    command = click.option(
        "--user",
        default=None,
        metavar="U…",
        callback=_slack_id("user", "UW"),
        help="Ask as this Slack user (with no --channel: in a DM).",
    )(command)
    return click.option(
        "--channel",
        default=None,
        metavar="C…",
        callback=_slack_id("channel", "CGD"),
        help="Ask in this Slack channel. With neither option: an admin's view of every document.",
    )(command)


def _say_access(access) -> None:
    click.echo(f"access: {access.why}", err=True)


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
    _say_access(access)
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
    from tqdm import tqdm

    from .evaluate import corrections_qa, evaluate, load_qa

    svc = services(ctx)
    access = svc.access_for(channel, user)
    _say_access(access)
    if qa_file == "corrections":
        items = corrections_qa(svc.corrections.approved(), access.allowed)
    else:
        items = load_qa(qa_file)
    with tqdm(total=len(items), desc="eval", unit="q", file=sys.stderr) as bar:
        report = evaluate(
            svc.answerer,
            items,
            generate=not no_generate,
            out=out,
            progress=lambda _: bar.update(),
            allowed=access.allowed,
        )
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
    from .feedback import feedback_report, summary_lines, vote_lines
    from .store import Store

    settings = ctx.obj.get("settings") or load_settings()
    report = feedback_report(Store.in_home(settings.home, keep_days=settings.feedback_days), days)
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
    from .doctor import run_checks

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
    from .manifest import app_manifest

    settings = services(ctx).settings
    click.echo(app_manifest(settings.scopes, settings.experts), nl=False)


@main.command()
@click.option("--http", is_flag=True, help="Serve Slack's Events API over HTTP instead of Socket Mode.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind in HTTP mode.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535))
@click.pass_context
def serve(ctx, http, host, port):
    """Run the bot: Socket Mode with SLACK_APP_TOKEN, HTTP with --http, else the local playground."""
    from .slack.serve import serve as run

    try:
        run(services(ctx), http=http, host=host, port=port)
    except OSError as e:  # most often: the port is taken by another process
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}; try --port") from None


from .cli_adapters import adapters, retrain  # noqa: E402  (they use services(), defined above)
from .cli_corrections import corrections  # noqa: E402

main.add_command(retrain)
main.add_command(adapters)
main.add_command(corrections)

__all__ = ["Settings", "main"]
