from slack_sdk import WebClient

from bot.slack.context import CONTEXT_KEY

DIRECT = ("im", "mpim")  # a DM and a group DM: every message is for the bot
CHANNELS = ("channel", "group")  # public and private channels: only follow-ups in its own threads


def message_callback(event: dict, body: dict, context, client: WebClient) -> None:
    """A message without a mention: answered in a DM or group DM, and in a channel when it replies in a
    thread the bot has answered in. Edits, deletions and joins (any subtype) are not questions."""
    if event.get("subtype"):
        return
    bot = context[CONTEXT_KEY]
    if event.get("channel_type") not in DIRECT and not is_follow_up(bot, event):
        return
    if bot.answers.is_bot(client, event):
        return
    bot.answers.handle(
        client, event, bot_user_id=context.bot_user_id, event_id=body.get("event_id"), body=body
    )


def is_follow_up(bot, event: dict) -> bool:
    """A reply in a channel thread the bot answered in, addressed to no one (a mention of the bot comes
    as app_mention too; one of someone else is for them)."""
    thread = event.get("thread_ts")
    if event.get("channel_type") not in CHANNELS or not thread or thread == event.get("ts"):
        return False
    if "<@" in (event.get("text") or ""):
        return False
    return bot.store.answered_in(event["channel"], thread)
