from slack_bolt import Ack
from slack_sdk import WebClient

from bot.slack.context import CONTEXT_KEY
from bot.slack.corrections_flow import decide


def correction_review_callback(ack: Ack, body: dict, action: dict, context, client: WebClient) -> None:
    """Approve / Reject under a correction sent to an expert: only an expert's click decides it."""
    ack()
    decide(context[CONTEXT_KEY], client, body, action)
