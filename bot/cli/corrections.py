"""`expertbot corrections ...`: experts' corrections from the command line (bot/corrections.py)."""

from __future__ import annotations

import json

import click

from .common import services


def _corrections(ctx):
    return services(ctx).corrections


def _show(correction) -> None:
    who = f" by {correction.by}" if correction.by else ""
    click.echo(f"{correction.id}  {correction.status:<10} {correction.at[:19]}Z{who}")
    click.echo(f"  Q: {correction.question}")
    click.echo(f"  A: {correction.answer}")
    if correction.source or correction.scopes:
        scopes = f" (scopes: {', '.join(correction.scopes)})" if correction.scopes else ""
        click.echo(f"  source: {correction.source or '-'}{scopes}")


@click.group()
def corrections() -> None:
    """Experts' corrections: answered at once, cited as corrections/<id>, trained on at the next retrain."""


@corrections.command("add")
@click.option("--question", required=True, help="The question, as people ask it.")
@click.option("--answer", required=True, help="The right answer.")
@click.option(
    "--by", default=None, metavar="USER", help="Who corrected it (a Slack user ID is shown as a mention)."
)
@click.option(
    "--source", default=None, metavar="FILE", help="The document it corrects, relative to the docs folder."
)
@click.pass_context
def add(ctx, question, answer, by, source):
    """Add an approved correction."""
    from indexers.scopes import scopes_of

    svc = services(ctx)
    scopes: tuple[str, ...] = ()
    if source:
        path = svc.settings.docs_dir / source
        if not path.is_file():
            raise click.BadParameter(
                f"{source} is not a file in the docs folder {svc.settings.docs_dir}", param_hint="--source"
            )
        scopes = scopes_of(source, svc.index_config.scopes)  # never shown where its document may not be
    _show(svc.corrections.add(question, answer, by=by, source=source, scopes=scopes))


@corrections.command("list")
@click.option("--pending", is_flag=True, help="Only those waiting for an expert.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print [{"id", "question", "answer", "by", "at", "status", "source"}].',
)
@click.pass_context
def list_cmd(ctx, pending, as_json):
    """List corrections, newest first."""
    found = _corrections(ctx).list("pending" if pending else None)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in found], indent=2))
        return
    if not found:
        click.echo("no corrections yet" if not pending else "no corrections are pending")
    for correction in found:
        _show(correction)


def _decision(name: str, verb: str):
    @corrections.command(name)
    @click.argument("correction_id")
    @click.pass_context
    def decide(ctx, correction_id):
        store = _corrections(ctx)
        _show(getattr(store, name)(correction_id))

    decide.help = f"{verb} a correction."
    return decide


approve = _decision("approve", "Approve")
reject = _decision("reject", "Reject")
remove = _decision("remove", "Remove")
