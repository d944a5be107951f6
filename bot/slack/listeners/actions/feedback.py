import logging

from slack_bolt import Ack
from slack_sdk import WebClient

from bot.slack.context import CONTEXT_KEY
from bot.slack.corrections_flow import open_modal
from bot.slack.format import FEEDBACK_ACTIONS

log = logging.getLogger(__name__)

THANKS = {
    "up": "Thanks for the feedback!",
    "down": "Thanks for the feedback! The bot's admins review the answers marked 👎.",
}


def feedback_callback(ack: Ack, body: dict, action: dict, context, client: WebClient) -> None:
    """👍/👎 under an answer: store who voted which way on which answer, open the correction modal for a
    👎, then thank them privately (also when the modal is dismissed, or Slack would not open it, or the
    client shows no modals, like the playground's page)."""
    ack()
    bot = context[CONTEXT_KEY]
    vote, user, answer_id = FEEDBACK_ACTIONS[action["action_id"]], body["user"]["id"], action["value"]
    bot.store.record_vote(answer_id, user, vote)
    log.info("feedback %s on answer %s", vote, answer_id)
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    thread_ts = (body.get("message") or {}).get("thread_ts")  # the ack shows where the answer is
    if vote == "down":  # first: the click's trigger id is good for 3 s only
        open_modal(client, bot.store, body.get("trigger_id"), answer_id=answer_id, channel=channel,
                   thread_ts=thread_ts)  # fmt: skip
    if channel:
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        client.chat_postEphemeral(channel=channel, user=user, text=THANKS[vote], **extra)
