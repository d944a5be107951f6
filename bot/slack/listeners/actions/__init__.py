from slack_bolt import App

from bot.slack.corrections_flow import REVIEW_ACTIONS
from bot.slack.format import FEEDBACK_ACTIONS

from .correction import correction_review_callback
from .feedback import feedback_callback


def register(app: App) -> None:
    for action_id in FEEDBACK_ACTIONS:
        app.action(action_id)(feedback_callback)
    for action_id in REVIEW_ACTIONS:
        app.action(action_id)(correction_review_callback)
