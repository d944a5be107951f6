"""Feedback an admin can read: votes cast in Slack, read back by `expertbot feedback` (with the question,
the answer, its sources and adapter) and summed up in `/retrain-adapter status`. Nothing of it is logged."""

from __future__ import annotations

import json
import logging
import sqlite3

from click.testing import CliRunner

from bot.cli import main

from .slack_fake import ADMIN, PERSON, ack_text, ask, blocks_of

QUESTION = "How long does the Quillmate pairing last?"
UNKNOWN = "What is the airspeed velocity of an unladen swallow?"


def vote(app, sim, fake, final, placeholder, action, user, channel):
    (buttons,) = blocks_of(final, "actions")
    click = sim.button(
        action,
        buttons["elements"][0]["value"],
        user=user,
        channel=channel,
        message_ts=placeholder.response["ts"],
    )
    assert app.dispatch(click).status == 200
    fake.wait_for("chat.postEphemeral", lambda p: p.get("user") == user and p.get("channel") == channel)


def test_votes_are_listed_with_their_answers_and_summed_up_by_source_and_adapter(
    make_app, sim, fake_slack, store_path, caplog
):
    app = make_app()
    with caplog.at_level(logging.DEBUG):
        _, placeholder, final = ask(app, sim, fake_slack, QUESTION, channel="CFB1")
        vote(app, sim, fake_slack, final, placeholder, "feedback_down", PERSON, "CFB1")
        vote(app, sim, fake_slack, final, placeholder, "feedback_up", ADMIN, "CFB1")
        _, placeholder2, refused = ask(app, sim, fake_slack, UNKNOWN, channel="CFB2")
        vote(app, sim, fake_slack, refused, placeholder2, "feedback_down", PERSON, "CFB2")

        env = {"EXPERTBOT_HOME": str(store_path.parent)}  # the data dir the bot's store lives in
        result = CliRunner().invoke(main, ["feedback", "--json"], env=env, catch_exceptions=False)
        text = CliRunner().invoke(main, ["feedback", "--since", "30"], env=env, catch_exceptions=False)
        status = ack_text(app.dispatch(sim.command("/retrain-adapter", "status", user=ADMIN, channel="CFB1")))
    assert "Quillmate" not in caplog.text and "swallow" not in caplog.text  # no message text in the logs

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["since_days"] == 7 and report["keep_days"] == 90
    votes = report["votes"]
    assert [(v["vote"], v["user"]) for v in votes] == [("down", PERSON), ("up", ADMIN), ("down", PERSON)]
    assert votes[0]["question"] == UNKNOWN and votes[0]["sources"] == [] and votes[0]["refused"] is True
    answer_text = next(b for b in final.params["blocks"] if b["type"] == "section")["text"]["text"]
    assert votes[1]["question"] == QUESTION and votes[1]["answer"].split()[:4] == answer_text.split()[:4]
    assert votes[1]["sources"][0]["file"] == "handbook/onboarding.md" and votes[1]["adapter"] is None
    summary = report["summary"]
    assert (summary["votes"], summary["down"], summary["down_share"]) == (3, 2, 0.6667)
    by_source = {r["source"]: (r["down"], r["votes"]) for r in summary["by_source"]}
    assert by_source == {"handbook/onboarding.md": (1, 2), "(no sources: I don't know)": (1, 1)}
    assert summary["by_adapter"] == [
        {"adapter": "none (base model)", "votes": 3, "down": 2, "down_share": 0.6667}
    ]

    shown = text.output
    assert "Feedback, last 30 days: 3 votes, 2 👎 (67%)" in shown
    assert (
        "handbook/onboarding.md" in shown
        and f"Q: {QUESTION}" in shown
        and "adapter: none (base model)" in shown
    )
    assert "Feedback, last 7 days: 3 votes, 2 👎 (67%)" in status
    assert "`handbook/onboarding.md` 1 of 2" in status and "`none (base model)` 2 of 3" in status


def test_feedback_past_the_kept_days_is_gone(make_app, sim, fake_slack, store_path):
    app = make_app()
    _, placeholder, final = ask(app, sim, fake_slack, QUESTION, channel="CFBOLD")
    vote(app, sim, fake_slack, final, placeholder, "feedback_down", PERSON, "CFBOLD")
    db = sqlite3.connect(store_path)
    with db:  # the answer was given 91 days ago
        db.execute("UPDATE answers SET created = '2000-01-01T00:00:00.000000Z'")
        db.execute("UPDATE answer_texts SET created = '2000-01-01T00:00:00.000000Z'")
    env = {"EXPERTBOT_HOME": str(store_path.parent), "EXPERTBOT_FEEDBACK_DAYS": "90"}
    result = CliRunner().invoke(main, ["feedback"], env=env, catch_exceptions=False)
    assert result.output.strip() == "No feedback in the last 7 days."
    assert db.execute("SELECT count(*) FROM answer_texts").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM feedback").fetchone() == (0,)
    bad = CliRunner().invoke(main, ["feedback", "--since", "0"], env=env)
    assert bad.exit_code == 2 and "--since" in bad.output
