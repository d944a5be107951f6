"""`expertbot`: a stable command-line interface (other tools call it; --json output keeps its shape).

Each command parses its options, calls one of bot.operations (or a part of Services) and prints the
result; common.py holds what they share, so no module here imports the one that imports it."""

from bot.config import Settings

from .commands import main
from .corrections import corrections
from .training import adapters, retrain

main.add_command(retrain)
main.add_command(adapters)
main.add_command(corrections)

__all__ = ["Settings", "main"]
