"""The playground in a real browser: Debian's headless Chromium, driven over the DevTools protocol.

What a new user does on their first visit: ask a question, read the answer and its sources, vote 👎,
run /reindex. With [scopes], what someone trying them does: ask as other people, in another channel.
Assertions are on the page's visible text; an exception or console error in the page fails the test.
`make test` installs Chromium; set PLAYGROUND_SCREENSHOT=docs/playground.png to refresh the README's
screenshot from this test.
"""

from __future__ import annotations

import os
import re

import pytest

from bot.playground.people import CHANNEL, DM
from bot.slack.format import unescape
from bot.store import Store

from .browser import Chromium, find_chromium
from .test_slack_playground import (  # noqa: F401  (fixtures)
    HR_DOC,
    HR_QUESTION,
    MEMBER,
    MEMBER_DM,
    scoped_playground,
    scoped_services,
)

QUESTION = "How long does the Quillmate pairing last?"
FOLLOW_UP = "What if it doesn't work out?"
DM_QUESTION = "What are the support tiers?"


@pytest.fixture
def browser():
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed: `make test` installs it (apt-get install chromium)")
    chromium = Chromium(binary)
    yield chromium
    chromium.close()


def answers(pg, channel: str, count: int) -> list[str]:
    """The texts of the bot's last `count` answers in a channel (their first section, as Slack shows it)."""
    where = lambda p: p.get("channel") == channel and p.get("blocks")  # noqa: E731
    finals = pg.fake.wait_for("chat.update", where, count=count, timeout=120)
    return [
        unescape(next(b for b in f.params["blocks"] if b["type"] == "section")["text"]["text"])
        for f in finals
    ]


def visible(text: str) -> str:
    """Text as innerText shows it: a quote drawn as a bar, not a '>'; spaces collapsed."""
    return " ".join(re.sub(r"(?m)^> ?", "", text).split())


def pickers_shown(browser) -> bool:
    return browser.evaluate("[...document.querySelectorAll('form label')].some((l) => l.offsetParent)")


def send(browser, text: str) -> None:
    browser.click("#text")
    browser.type(text)
    browser.click("#send")


def test_a_new_user_asks_votes_and_reindexes_in_a_real_browser(playground, browser, store_path, tmp_path):
    pg, url = playground
    browser.open(url + "/")
    browser.wait_for_text("Warming up")  # the models are not loaded yet: the page says so
    pg.warm_up()
    browser.wait_until(lambda: "Warming up" not in browser.text(), what="the warm-up notice to go")
    assert not pickers_shown(browser)  # without [scopes] there is one channel and one person: no pickers

    # The answer streams in: edits of one message, drawn in place. The final edit waits until that is seen.
    final = pg.fake.hold("chat.update", lambda p: p.get("channel") == CHANNEL and p.get("blocks"))
    send(browser, QUESTION)
    assert final.held.wait(120)

    def streaming() -> bool:
        shown = " ".join(browser.text("#general .thread").split())
        return shown.endswith(" …") and "Sources:" not in shown

    browser.wait_until(streaming, what="the streamed answer, ending in …")
    final.release()
    browser.wait_for_text(QUESTION, "Sources:", "handbook/onboarding.md", "👍", "👎", within="#general")
    (answer,) = answers(pg, CHANNEL, 1)
    shown = browser.wait_for_text("Sources:", within="#general")
    assert visible(answer) in " ".join(shown.split()) and "Thinking…" not in shown
    png = browser.screenshot(os.environ.get("PLAYGROUND_SCREENSHOT") or tmp_path / "answer.png")
    assert png.startswith(b"\x89PNG")

    browser.click(".actions button", "👎")
    browser.wait_for_text("Only visible to you", "The bot's admins review the answers marked 👎")
    assert [v["vote"] for v in Store(store_path).votes()] == ["down"]  # on disk

    # A follow-up in the answer's thread, without a mention, is answered in that thread.
    browser.click(".reply", last=False)
    browser.choose("#where", "message")
    send(browser, FOLLOW_UP)
    follow_up = answers(pg, CHANNEL, 2)[-1]
    thread = browser.wait_for_text(FOLLOW_UP, visible(follow_up), within="#general .thread")
    assert thread.count("👍") == 2  # both answers, each with its buttons, in the one thread

    browser.click("#replying a")  # back to the channel, then to the DM
    browser.choose("#where", "dm")
    send(browser, DM_QUESTION)
    (dm_answer,) = answers(pg, DM, 1)
    browser.wait_for_text(DM_QUESTION, visible(dm_answer), "Sources:", within="#dm")

    # /reindex typed into the same box, as in Slack; its first progress edit is held so the page shows it.
    browser.choose("#where", "mention")
    reindex = lambda p: p.get("channel") == CHANNEL and "Reindex" in p.get("text", "")  # noqa: E731
    hold = pg.fake.hold("chat.update", reindex)
    send(browser, "/reindex")
    browser.wait_for_text("Progress will be posted in this channel", "⏳ Reindex", "asked by @you")
    hold.release()
    done = browser.wait_for_text("✅ Reindex", "unchanged", timeout=300)
    assert re.search(
        r"Reindex reindex-\w+ finished in \S+: \d+ added, \d+ changed, \d+ removed, \d+ unchanged", done
    )
    assert browser.errors == []


def test_someone_tries_the_scopes_as_other_people_in_other_channels(scoped_playground, browser, tmp_path):  # noqa: F811
    pg, url = scoped_playground
    pg.warm_up()
    browser.open(url + "/")
    people = "document.getElementById('person').options.length"
    browser.wait_until(lambda: browser.evaluate(people) == 4, what="the person picker")
    assert pickers_shown(browser) and "the [scopes] rules" in browser.text("header")

    # As the made-up member of S0HRSTAFF, in their DM: the right pane is that DM, and the HR doc is cited.
    browser.choose("#person", MEMBER)
    browser.choose("#where", "dm")
    browser.wait_for_text("DM: member of S0HRSTAFF and expertbot", within="main")
    send(browser, HR_QUESTION)
    (dm_answer,) = answers(pg, MEMBER_DM, 1)
    shown = browser.wait_for_text(HR_QUESTION, visible(dm_answer), "Sources:", HR_DOC, within="#dm")
    assert "member of S0HRSTAFF" in shown  # the question is signed by the person it was asked as

    # As the guest, in the hr scope's channel: the left pane is that channel, and the HR doc is not cited.
    browser.choose("#person", "UGUEST")
    browser.choose("#channel", "C0HRTEAM")
    browser.choose("#where", "mention")
    browser.wait_for_text("# C0HRTEAM", "DM: a guest and expertbot", within="main")
    assert HR_QUESTION not in browser.text("#dm")  # the guest's DM, not the member's
    send(browser, HR_QUESTION)
    (answer,) = answers(pg, "C0HRTEAM", 1)
    shown = browser.wait_for_text("a guest", HR_QUESTION, visible(answer), within="#general")
    assert HR_DOC not in shown

    browser.choose("#person", MEMBER)  # back to the member: their DM and its answer are there again
    browser.wait_for_text(visible(dm_answer), HR_DOC, within="#dm")
    png = browser.screenshot(os.environ.get("PLAYGROUND_SCOPES_SCREENSHOT") or tmp_path / "scopes.png")
    assert png.startswith(b"\x89PNG")  # PLAYGROUND_SCOPES_SCREENSHOT=path keeps it, to look at
    assert browser.errors == []
