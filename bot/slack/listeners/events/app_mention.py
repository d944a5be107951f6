from slack_sdk import WebClient

from bot.slack.context import CONTEXT_KEY


def app_mention_callback(event: dict, body: dict, context, client: WebClient) -> None:
    """A mention in a channel: answer in the message's thread. Bolt has already acked the event."""
    bot = context[CONTEXT_KEY]
    if bot.answers.is_bot(client, event):
        return
    bot.answers.handle(
        client, event, bot_user_id=context.bot_user_id, event_id=body.get("event_id"), body=body
    )
