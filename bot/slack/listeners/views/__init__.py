from slack_bolt import App

from bot.slack.corrections_flow import CALLBACK_ID

from .correction import correction_submission


def register(app: App) -> None:
    app.view(CALLBACK_ID)(correction_submission)
