"""Mentions and DMs, end to end: signed requests into the real Bolt app, real answers, fake Slack."""

from __future__ import annotations

import logging

from bot.links import DocLinks
from bot.slack.answering import APOLOGY, BUSY, NO_INDEX, PLACEHOLDER
from bot.store import Store

from .slack_fake import PERSON, ask, blocks_of, final_update, in_thread_of, placeholder_for, sources_text

QUESTION = "How long does the Quillmate pairing last?"


def test_mention_gets_a_placeholder_then_the_answer_in_the_thread_with_sources(
    make_app, sim, fake_slack, store_path
):
    app = make_app()
    event, placeholder, final = ask(app, sim, fake_slack, QUESTION)

    assert placeholder.params["text"] == PLACEHOLDER
    assert placeholder.params["thread_ts"] == event["ts"]  # in the thread of the question
    assert placeholder.params["unfurl_links"] is False and placeholder.params["unfurl_media"] is False
    sections = blocks_of(final, "section")
    assert sections and sections[0]["text"]["text"].strip()
    assert "handbook/onboarding.md" in sources_text(final)
    (buttons,) = blocks_of(final, "actions")
    assert [e["action_id"] for e in buttons["elements"]] == ["feedback_up", "feedback_down"]
    # Streamed: with update_interval=0 every piece updates the message before the final edit.
    partial = fake_slack.calls(
        "chat.update", lambda p: p.get("ts") == placeholder.response["ts"] and not p.get("blocks")
    )
    assert partial and all(p.params["text"].endswith(" …") for p in partial)
    answer = Store(store_path).answer(buttons["elements"][0]["value"])
    assert answer["channel"] == "CGENERAL" and answer["asked_by"] == PERSON
    assert {"file": "handbook/onboarding.md"}.items() <= answer["sources"][0].items()


def test_updates_are_throttled_to_the_update_interval(make_app, sim, fake_slack):
    app = make_app(update_interval=3600)  # nothing may be edited within the hour: only the final edit
    _, placeholder, _ = ask(app, sim, fake_slack, QUESTION)
    assert len(fake_slack.calls("chat.update", lambda p: p.get("ts") == placeholder.response["ts"])) == 1


def test_a_dm_is_answered_in_a_thread(make_app, sim, fake_slack):
    app = make_app()
    event, placeholder, final = ask(
        app, sim, fake_slack, "What are the support tiers?", channel="DPERSON", dm=True
    )
    assert placeholder.params["thread_ts"] == event["ts"]
    assert blocks_of(final, "section")


def test_a_follow_up_in_a_thread_uses_the_thread_as_context(make_app, sim, fake_slack, slack_services):
    follow_up = "What if it doesn't work out?"
    assert slack_services.answerer.stream(follow_up).refused  # on its own, nothing in the docs matches it
    app = make_app()
    first, _, _ = ask(app, sim, fake_slack, QUESTION)
    _, _, final = ask(app, sim, fake_slack, follow_up, thread_ts=first["ts"])

    replies = fake_slack.calls("conversations.replies", lambda p: p.get("ts") == first["ts"])
    assert replies and len(replies[-1].response["messages"]) >= 3  # question, answer, follow-up
    # With the thread's question as context it is answered from the onboarding handbook.
    assert "handbook/onboarding.md" in sources_text(final)


def test_a_follow_up_without_a_mention_is_answered_only_in_threads_the_bot_answered_in(
    make_app, sim, fake_slack
):
    app = make_app()
    first, _, _ = ask(app, sim, fake_slack, QUESTION, channel="CFOLLOW")

    def message(text, thread_ts=None, channel="CFOLLOW"):
        event = sim.message_event(
            text, user=PERSON, channel=channel, channel_type="channel", thread_ts=thread_ts
        )
        assert app.dispatch(sim.event(event)).status == 200
        return event

    message("What if it doesn't work out?", thread_ts=first["ts"])  # message.channels, no mention
    (placeholder,) = fake_slack.wait_for("chat.postMessage", in_thread_of(first), count=2)[1:]
    final = final_update(fake_slack, "CFOLLOW", placeholder.response["ts"])
    assert "handbook/onboarding.md" in sources_text(final)  # answered with the thread as context

    other_thread = fake_slack.add_message("CFOLLOW", "lunch?", user="UOTHER")
    ignored = [
        message("What are the support tiers?"),  # top level, no mention: not for the bot
        message("What are the support tiers?", thread_ts=other_thread),  # a thread it never answered in
        message("<@UOTHER> what do you think?", thread_ts=first["ts"]),  # addressed to someone else
    ]
    # A reply that mentions the bot comes twice (message.channels and app_mention): answered once.
    twice = sim.mention_event("And the support tiers?", user=PERSON, channel="CFOLLOW", thread_ts=first["ts"])
    as_message = {**twice, "type": "message", "channel_type": "channel"}
    assert app.dispatch(sim.event(as_message)).status == 200
    assert app.dispatch(sim.event(twice)).status == 200
    ask(
        app, sim, fake_slack, "What are the support tiers?", channel="CLATER"
    )  # all events before it are done
    assert len(fake_slack.calls("chat.postMessage", in_thread_of(first))) == 3  # two follow-ups answered
    assert not any(fake_slack.calls("chat.postMessage", in_thread_of(e)) for e in ignored[:2])


def test_a_group_dm_is_answered_like_a_dm(make_app, sim, fake_slack):
    app = make_app()
    event = sim.message_event(
        "What are the support tiers?", user=PERSON, channel="GGROUPDM", channel_type="mpim"
    )
    assert app.dispatch(sim.event(event)).status == 200
    placeholder = placeholder_for(fake_slack, event)
    assert placeholder.params["thread_ts"] == event["ts"]
    assert blocks_of(final_update(fake_slack, "GGROUPDM", placeholder.response["ts"]), "section")


def test_sources_link_into_the_published_docs(make_app, sim, fake_slack, slack_docs):
    app = make_app(links=DocLinks("https://docs.acme.example/", slack_docs))
    _, _, final = ask(app, sim, fake_slack, QUESTION, channel="CLINKS")
    assert "<https://docs.acme.example/handbook/onboarding.md#your-quillmate|" in sources_text(final)


def test_i_dont_know_is_said_plainly_without_sources(make_app, sim, fake_slack):
    app = make_app()
    _, _, final = ask(app, sim, fake_slack, "What is the airspeed velocity of an unladen swallow?")
    assert "know" in final.params["text"].lower()
    assert sources_text(final) is None


def test_a_retry_does_not_post_twice_even_after_a_restart(make_app, sim, fake_slack):
    app = make_app()
    event = sim.mention_event(QUESTION, user=PERSON, channel="CRETRY")
    body_id = "EvRETRY0001"
    assert app.dispatch(sim.event(event, event_id=body_id)).status == 200
    placeholder = placeholder_for(fake_slack, event)
    final_update(fake_slack, "CRETRY", placeholder.response["ts"])
    assert app.dispatch(sim.event(event, event_id=body_id, retry_num=1)).status == 200

    restarted = make_app()  # a new process would open the same database
    assert restarted.dispatch(sim.event(event, event_id=body_id, retry_num=2)).status == 200
    # A later question is answered, so the app is alive and any duplicate reply would have come first.
    ask(restarted, sim, fake_slack, "What are the support tiers?", channel="COTHER")
    assert len(fake_slack.calls("chat.postMessage", lambda p: p.get("channel") == "CRETRY")) == 1


def test_past_the_queue_bound_users_are_told_the_bot_is_busy(make_app, sim, fake_slack):
    app = make_app(max_concurrent_answers=1, answer_queue_size=0)
    hold = fake_slack.hold("chat.update", lambda p: p.get("channel") == "CBUSY1")  # first answer stalls
    first = sim.mention_event(QUESTION, user=PERSON, channel="CBUSY1")
    app.dispatch(sim.event(first))
    assert hold.held.wait(60)

    second = sim.mention_event("What are the support tiers?", user=PERSON, channel="CBUSY2")
    assert app.dispatch(sim.event(second)).status == 200
    assert placeholder_for(fake_slack, second).params["text"] == BUSY
    hold.release()
    final_update(fake_slack, "CBUSY1", placeholder_for(fake_slack, first).response["ts"])


def test_the_bot_ignores_other_bots(make_app, sim, fake_slack):
    app = make_app()
    fake_slack.add_user("UBOTUSER", "robot", is_bot=True)
    from_app = sim.mention_event(QUESTION, user="UOTHERAPP", channel="CBOTS")
    from_app["bot_id"] = "BOTHER"
    assert app.dispatch(sim.event(from_app)).status == 200
    assert (
        app.dispatch(sim.event(sim.mention_event(QUESTION, user="UBOTUSER", channel="CBOTS"))).status == 200
    )
    ask(app, sim, fake_slack, "What are the support tiers?", channel="CPEOPLE")  # a person still gets answers
    assert not fake_slack.calls("chat.postMessage", lambda p: p.get("channel") == "CBOTS")


def test_a_failure_gets_a_short_apology_and_keeps_the_question_out_of_the_logs(
    make_app, sim, fake_slack, tmp_path, embed_model, caplog
):
    from bot.config import load_settings
    from bot.wiring import build_services

    # A data dir whose index pointer is damaged: retrieval fails inside the real Answerer.
    broken = build_services(
        load_settings(home=tmp_path / "broken-home", docs_dir=tmp_path / "none"), embed_model=embed_model
    )
    (broken.store.root / "CURRENT").write_text("{not json")
    app = make_app(services=broken)
    secret_question = "What is the secret codename XYZZY-4471?"
    with caplog.at_level(logging.DEBUG):
        _, _, final = ask(app, sim, fake_slack, secret_question, channel="CFAIL")
    assert final.params["text"] == APOLOGY
    assert "answering event" in caplog.text  # the details went to the log...
    assert "XYZZY" not in caplog.text and "xoxb-" not in caplog.text  # ...without the question or the token


def test_before_any_index_the_asker_is_told_to_run_reindex(make_app, sim, fake_slack, tmp_path, embed_model):
    from bot.config import load_settings
    from bot.wiring import build_services

    fresh = build_services(
        load_settings(home=tmp_path / "empty-home", docs_dir=tmp_path / "none"), embed_model=embed_model
    )
    _, _, final = ask(make_app(services=fresh), sim, fake_slack, QUESTION, channel="CNOINDEX")
    assert final.params["text"] == NO_INDEX and "/reindex" in NO_INDEX


def test_a_feedback_click_is_stored_with_who_which_answer_and_which_vote(
    make_app, sim, fake_slack, store_path
):
    app = make_app()
    _, placeholder, final = ask(app, sim, fake_slack, QUESTION, channel="CFEEDBACK")
    (buttons,) = blocks_of(final, "actions")
    answer_id = buttons["elements"][0]["value"]
    for action in ("feedback_up", "feedback_down"):  # a second click changes the vote
        click = sim.button(
            action, answer_id, user="UVOTER", channel="CFEEDBACK", message_ts=placeholder.response["ts"]
        )
        assert app.dispatch(click).status == 200
    fake_slack.wait_for("chat.postEphemeral", lambda p: p.get("user") == "UVOTER", count=2)
    votes = Store(store_path).votes()
    assert [(v["answer_id"], v["user"], v["vote"]) for v in votes] == [(answer_id, "UVOTER", "down")]
    assert Store(store_path).answer(answer_id)["message_ts"] == placeholder.response["ts"]
