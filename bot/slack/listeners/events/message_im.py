from slack_sdk import WebClient

from bot.slack.context import CONTEXT_KEY


def message_im_callback(event: dict, body: dict, context, client: WebClient) -> None:
    """A direct message: answer it in a thread. Edits, deletions and joins (any subtype) are not questions."""
    if event.get("channel_type") != "im" or event.get("subtype"):
        return
    bot = context[CONTEXT_KEY]
    if bot.answers.is_bot(client, event):
        return
    bot.answers.handle(client, event, bot_user_id=context.bot_user_id, event_id=body.get("event_id"))
