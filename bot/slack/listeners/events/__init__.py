from slack_bolt import App

from .app_mention import app_mention_callback
from .message import message_callback

# manifest.yml's bot_events must match these (tests/bot/test_manifest.py checks): "message" stands for
# message.im, message.mpim, message.channels and message.groups.
EVENTS = {"app_mention": app_mention_callback, "message": message_callback}


def register(app: App) -> None:
    for event_type, callback in EVENTS.items():
        app.event(event_type)(callback)
