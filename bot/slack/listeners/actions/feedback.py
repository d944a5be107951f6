import logging

from slack_bolt import Ack
from slack_sdk import WebClient

from bot.slack.context import CONTEXT_KEY
from bot.slack.format import FEEDBACK_ACTIONS

log = logging.getLogger(__name__)

THANKS = {
    "up": "Thanks for the feedback!",
    "down": "Thanks for the feedback! The bot's admins review the answers marked 👎.",
}


def feedback_callback(ack: Ack, body: dict, action: dict, context, client: WebClient) -> None:
    """👍/👎 under an answer: store who voted which way on which answer, then thank them privately."""
    ack()
    bot = context[CONTEXT_KEY]
    vote, user = FEEDBACK_ACTIONS[action["action_id"]], body["user"]["id"]
    bot.store.record_vote(action["value"], user, vote)
    log.info("feedback %s on answer %s", vote, action["value"])
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    thread_ts = (body.get("message") or {}).get("thread_ts")  # the ack shows where the answer is
    if channel:
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        client.chat_postEphemeral(channel=channel, user=user, text=THANKS[vote], **extra)
