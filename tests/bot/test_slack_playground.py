"""The no-tokens playground: a local page driving the same Bolt app, showing what the bot would post."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from bot.playground import CHANNEL, DM


def call(url, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def answered(pg, channel):
    where = lambda p: p.get("channel") == channel and p.get("blocks")  # noqa: E731
    return pg.fake.wait_for("chat.update", where, timeout=120)[-1]


def test_the_playground_answers_mentions_and_dms_and_runs_commands(playground):
    pg, url = playground
    status, page = call(url + "/")
    assert status == 200 and "expertbot playground" in page

    assert (
        call(url + "/send", {"kind": "mention", "text": "How long does the Quillmate pairing last?"})[0]
        == 200
    )
    final = answered(pg, CHANNEL)
    assert any("handbook/onboarding.md" in json.dumps(b) for b in final.params["blocks"])
    assert call(url + "/send", {"kind": "dm", "text": "What are the support tiers?"})[0] == 200
    answered(pg, DM)

    assert call(url + "/send", {"kind": "/reindex", "text": "help"})[0] == 200
    assert (
        call(url + "/send", {"kind": "/retrain-adapter", "text": "status"})[0] == 200
    )  # the page's user is admin
    state = json.loads(call(url + "/state")[1])
    notes = [n["text"] for n in state["notes"]]
    assert notes[0].startswith("*/reindex*") and "Adapter in use" in notes[1]
    bot_posts = [m for m in state["messages"] if m["user"] == state["bot"]]
    assert {m["channel"] for m in bot_posts} == {CHANNEL, DM} and all(m.get("thread_ts") for m in bot_posts)
    status, body = call(url + "/send", {"kind": "/deploy", "text": ""})
    assert status == 400 and "/reindex and /retrain-adapter" in json.loads(body)["error"]
    assert call(url + "/send", {"kind": "/reindex", "text": "help", "where": "dm"})[0] == 200  # in the DM
    assert json.loads(call(url + "/state")[1])["notes"][-1]["channel"] == DM
