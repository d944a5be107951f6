"""Output safety and Slack's limits: escaping, neutralized mentions, splitting, sources, buttons."""

from __future__ import annotations

import json

from bot.answer import Answer, Source
from bot.slack.format import (
    MAX_BLOCKS,
    MAX_SECTION_CHARS,
    answer_messages,
    escape,
    split_text,
    strip_mentions,
)

ZWSP = "\u200b"


def all_text(messages) -> str:
    return json.dumps(messages, ensure_ascii=False)


def test_model_output_cannot_ping_mention_or_link():
    out = escape(
        "Hey <!channel> and <!here|here>, ask <@U123ABC> or <#C1|general> & see <https://evil.example|this>"
    )
    assert "<" not in out and ">" not in out
    assert "&lt;!channel&gt;" in out and "&lt;@U123ABC&gt;" in out and " &amp; " in out
    plain = escape("@channel @here @everyone, email me@here.com")
    assert (
        "@channel" not in plain.replace(ZWSP, "X") and f"@{ZWSP}here" in plain and f"@{ZWSP}everyone" in plain
    )


def test_an_answer_with_channel_pings_is_neutralized_in_every_block():
    answer = Answer(
        "<!channel> the release is at 10:00 <@U0ADMIN> @here", [Source("a.md", "Intro", 0.9)], None
    )
    messages = answer_messages(answer, "ans1")
    text = all_text(messages)
    assert "<!channel>" not in text and "<@U0ADMIN>" not in text and "@here" not in text
    assert "&lt;!channel&gt;" in messages[0]["text"]


def test_long_answers_are_split_within_slack_limits():
    paragraph = "Quills & nibs <are> fine. " * 40  # ~1000 chars, escaping makes it longer
    answer = Answer("\n\n".join([paragraph] * 200), [Source("a.md", "S", 0.9)], None)
    messages = answer_messages(answer, "ans1")
    assert len(messages) > 1
    for message in messages:
        assert len(message["blocks"]) <= MAX_BLOCKS
        for block in message["blocks"]:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= MAX_SECTION_CHARS
                assert "&amp" not in block["text"]["text"][-4:]  # never cut inside an entity
    assert [b["type"] for b in messages[-1]["blocks"]][-2:] == ["context", "actions"]  # sources, buttons last
    assert all(b["type"] == "section" for m in messages[:-1] for b in m["blocks"])
    joined = " ".join(b["text"]["text"] for m in messages for b in m["blocks"] if b["type"] == "section")
    assert joined.split() == escape(answer.text).split()  # nothing lost or duplicated


def test_hard_splits_never_break_an_entity():
    pieces = split_text("&amp;" * 1000, limit=3000)
    assert all(len(p) <= 3000 and p.endswith(";") for p in pieces) and "".join(pieces) == "&amp;" * 1000


def test_sources_link_when_the_doc_has_a_url_and_refusals_cite_nothing():
    sources = [
        Source(
            "it/helpdesk-faq.html", "Which VPN do we use?", 0.8, "https://intranet.acme.example/it?a=1&b=2"
        ),
        Source("handbook/onboarding.md", "Your first day", 0.7),
        Source("x|y.md", "A", 0.5, "javascript:alert(1)"),
    ]
    (message,) = answer_messages(Answer("Tunnelvane.", sources, "terms-v2"), "ans1")
    context = [b for b in message["blocks"] if b["type"] == "context"]
    sources_line = context[0]["elements"][0]["text"]
    assert (
        "<https://intranet.acme.example/it?a=1&amp;b=2|it/helpdesk-faq.html § Which VPN do we use?>"
        in sources_line
    )
    assert "handbook/onboarding.md § Your first day" in sources_line
    assert "javascript" not in sources_line  # only http(s) links
    assert "terms-v2" in context[1]["elements"][0]["text"]
    buttons = message["blocks"][-1]["elements"]
    assert [(b["action_id"], b["value"], b["text"]["text"]) for b in buttons] == [
        ("feedback_up", "ans1", "👍"),
        ("feedback_down", "ans1", "👎"),
    ]

    (refusal,) = answer_messages(Answer("I don't know.", [], None, refused=True), "ans2")
    assert refusal["text"] == "I don't know."
    assert not [b for b in refusal["blocks"] if b["type"] == "context"]


def test_mentions_of_the_bot_are_stripped_from_questions():
    assert strip_mentions("<@UBOT> what is Inkdrop? <@UOTHER>", "UBOT") == "what is Inkdrop? <@UOTHER>"
    assert strip_mentions("<@UBOT|expertbot>   hi", "UBOT") == "hi"
