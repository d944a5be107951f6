from slack_bolt import Ack
from slack_sdk import WebClient

from bot.slack.context import CONTEXT_KEY
from bot.slack.corrections_flow import Refused, read_submission, submit


def correction_submission(ack: Ack, body: dict, view: dict, context, client: WebClient) -> None:
    """The correction modal sent: refused with its reason shown in the modal, or closed and then stored
    (after the ack: the expert check and the experts' DMs may take longer than Slack's 3 s)."""
    bot = context[CONTEXT_KEY]
    try:
        submission = read_submission(bot, body, view)
    except Refused as no:
        bot.store.audit(body["user"]["id"], "correction", f"refused: {no.why}")
        ack(response_action="errors", errors={no.block_id: no.shown})
        return
    ack()
    submit(bot, client, submission)
