from slack_bolt import App

from bot.slack.format import FEEDBACK_ACTIONS

from .feedback import feedback_callback


def register(app: App) -> None:
    for action_id in FEEDBACK_ACTIONS:
        app.action(action_id)(feedback_callback)
