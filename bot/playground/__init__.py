"""The local playground: try the bot without a Slack workspace (what `make run` starts with no tokens).

It is the real bot (bot.slack's Bolt app and listeners) talking to a local stand-in for Slack:
- fakeapi: a fake of Slack's Web API on 127.0.0.1 that records every call (the tests use it too);
- simulate: requests shaped and signed the way Slack sends them;
- people: the channels and people the page can ask as (from [scopes]);
- app: Playground, the bot wired to those two; server: the page (page.py) and run_playground.
This package builds on bot.slack; nothing in bot.slack imports it.
"""
