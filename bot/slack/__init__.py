"""The Slack side of expertbot: a Bolt app over the answering and job machinery."""

from bot.slack.app import build_app

__all__ = ["build_app"]
