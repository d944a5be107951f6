"""What every `expertbot` command shares: clean errors, the Services it works on, and Slack id options."""

from __future__ import annotations

import re
import sys

import click

from bot.config import ConfigError, load_settings
from bot.operations import Progress


def _user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean the user must change something: shown as one clean line, never a traceback."""
    from adapters.base import BaseModelNotFoundError, ModelSetupError
    from adapters.generate import UnsafeAdapterError
    from adapters.glossary import GlossaryError
    from adapters.registry import RegistryError
    from bot.corrections import CorrectionError
    from bot.evaluate import QAFileError
    from bot.slack.serve import SlackSetupError
    from bot.wiring import AdapterNotFoundError
    from indexers import IndexBuildError, StoreError

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
    from bot.wiring import Services

    obj = ctx.ensure_object(dict)
    if "services" not in obj:
        given = obj.get("settings")  # tests hand settings in; the CLI reads them, and can again
        obj["services"] = Services(given or load_settings(), reload=None if given else load_settings)
    return obj["services"]


def file_progress():
    """The count of finished files on stderr: one line kept up to date on a terminal, else one line each
    time it moves (logs and pipes read those)."""
    last, tty = [-1], sys.stderr.isatty()

    def report(p: Progress) -> None:
        done, total = p.done or 0, p.total or 0
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


def say_access(access) -> None:
    click.echo(f"access: {access.why}", err=True)
