from slack_bolt import App

from .reindex import reindex_callback
from .retrain_adapter import retrain_adapter_callback

# manifest.yml's slash commands must match these (tests/bot/test_manifest.py checks).
COMMANDS = {"/reindex": reindex_callback, "/retrain-adapter": retrain_adapter_callback}


def register(app: App) -> None:
    for name, callback in COMMANDS.items():
        app.command(name)(callback)
