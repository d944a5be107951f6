"""One listener per file, registered per kind like Slack's bolt-python starter template."""

from slack_bolt import App

from bot.slack.listeners import actions, commands, events, views


def register_listeners(app: App) -> None:
    actions.register(app)
    commands.register(app)
    events.register(app)
    views.register(app)
