"""What one question, or one person, may cost the bot: the length cap, the per-user rate, the time limit,
and shutdown; through the real Bolt app, real answers and the fake Slack Web API."""

from __future__ import annotations

import time

from bot.slack.answering import PLACEHOLDER, RESTARTED, RESTARTING, TIMEOUT
from bot.slack.limits import UserRate
from bot.store import Store

from .slack_fake import PERSON, ask, in_thread_of, placeholder_for, sources_text

QUESTION = "How long does the Quillmate pairing last?"
NOT_IN_DOCS = "What is the airspeed velocity of an unladen swallow?"  # "I don't know" with no model call


def test_a_1mb_mention_is_refused_within_a_second_and_the_next_question_is_answered(
    make_app, sim, fake_slack, store_path
):
    app = make_app()
    huge = ("How long does the Quillmate pairing last? " * 25_000)[: 1_000_000 - 1] + "?"
    event = sim.mention_event(huge, user=PERSON, channel="CHUGE")
    request = sim.event(event)
    started = time.monotonic()
    assert app.dispatch(request).status == 200
    (reply,) = fake_slack.wait_for("chat.postMessage", in_thread_of(event), timeout=30)
    refused_in = reply.at - started
    assert refused_in < 1.0, f"refused after {refused_in:.2f} s"
    assert "1,000,000 characters" in reply.params["text"] and "up to 4,000" in reply.params["text"]
    assert reply.params["text"] != PLACEHOLDER and not fake_slack.calls("chat.update")  # no answer begun
    assert not Store(store_path).answered_in("CHUGE", event["ts"])

    _, _, final = ask(app, sim, fake_slack, QUESTION, channel="CNEXT")  # the bot is not stalled
    assert "handbook/onboarding.md" in sources_text(final)


def test_a_person_past_the_rate_is_told_when_to_ask_again_and_it_is_audited(
    make_app, sim, fake_slack, store_path
):
    app = make_app(user_rate=2)
    for channel in ("CRATE1", "CRATE2"):
        ask(app, sim, fake_slack, NOT_IN_DOCS, channel=channel)
    event = sim.mention_event(NOT_IN_DOCS, user=PERSON, channel="CRATE3")
    assert app.dispatch(sim.event(event)).status == 200
    text = placeholder_for(fake_slack, event).params["text"]
    assert "you have asked 2 questions in the last minute" in text
    wait = int(text.split("ask again in ")[1].split()[0])
    assert 1 <= wait <= 60
    audit = [(a.user, a.command, a.decision) for a in Store(store_path).audit_log()]
    assert audit == [(PERSON, "question", "rate_limited")]  # who and when; never what was asked
    ask(app, sim, fake_slack, NOT_IN_DOCS, channel="CRATE4", user="USOMEONE")  # others are still answered


def test_the_rate_is_a_sliding_minute_and_zero_turns_it_off():
    now = [1000.0]
    rate = UserRate(2, clock=lambda: now[0])
    assert rate.admit("U1") == 0 and rate.admit("U1") == 0
    assert rate.admit("U1") == 60 and rate.admit("U2") == 0  # per person
    now[0] += 59.5
    assert rate.admit("U1") == 1  # refused questions do not count: still the first one's minute
    now[0] += 0.5
    assert rate.admit("U1") == 0
    assert all(UserRate(0).admit("U1") == 0 for _ in range(100))


def test_an_answer_past_the_time_limit_is_stopped_and_the_asker_told(make_app, sim, fake_slack):
    app = make_app(answer_timeout=0.001)  # no real answer is that quick: retrieval alone takes longer
    event = sim.mention_event(QUESTION, user=PERSON, channel="CSLOW")
    assert app.dispatch(sim.event(event)).status == 200
    ts = placeholder_for(fake_slack, event).response["ts"]
    note = TIMEOUT.format(seconds=0.001)
    fake_slack.wait_for("chat.update", lambda p: p.get("ts") == ts and p.get("text") == note)

    app.expertbot.answers.answer_timeout = 120.0
    _, _, final = ask(app, sim, fake_slack, QUESTION, channel="CFAST")  # the model was freed: answered
    assert "handbook/onboarding.md" in sources_text(final)
    edits = fake_slack.calls("chat.update", lambda p: p.get("ts") == ts)
    assert edits[-1].params["text"] == note  # the stopped answer never came back over its note


def test_shutdown_gives_every_waiting_placeholder_a_final_message(make_app, sim, fake_slack):
    app = make_app(max_concurrent_answers=1, answer_queue_size=2)
    answers = app.expertbot.answers
    # The first answer streams; its first edit is held inside "Slack", so it is surely still in flight.
    hold = fake_slack.hold("chat.update", lambda p: p.get("channel") == "CSTOP1" and p["text"].endswith(" …"))
    events = [sim.mention_event(QUESTION, user=PERSON, channel=c) for c in ("CSTOP1", "CSTOP2")]
    assert app.dispatch(sim.event(events[0])).status == 200
    assert hold.held.wait(60)
    assert app.dispatch(sim.event(events[1])).status == 200  # queued behind it
    placeholders = [placeholder_for(fake_slack, e).response["ts"] for e in events]

    started = time.monotonic()
    answers.shutdown(timeout=1.0)
    assert time.monotonic() - started < 5
    for ts in placeholders:  # in flight and queued alike
        edits = fake_slack.calls(
            "chat.update", lambda p, ts=ts: p.get("ts") == ts and not p["text"].endswith(" …")
        )
        assert [e.params["text"] for e in edits] == [RESTARTED]

    later = sim.mention_event(QUESTION, user=PERSON, channel="CSTOP3")
    assert app.dispatch(sim.event(later)).status == 200
    assert placeholder_for(fake_slack, later).params["text"] == RESTARTING  # no new answers taken

    hold.release()  # the stuck answer thread goes on, sees it was stopped, and posts nothing more
    answers._pool.shutdown(wait=True)  # (joins the answer threads)
    edits = fake_slack.calls(
        "chat.update", lambda p: p.get("ts") == placeholders[0] and not p["text"].endswith(" …")
    )
    assert [e.params["text"] for e in edits] == [RESTARTED]
