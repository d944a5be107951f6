"""Experts correct the bot in Slack (issue 16): 👎 opens a modal (views.open), its submission becomes a
correction, approved at once for an expert and else sent to the experts' DMs with Approve / Reject.

The real Bolt app against the fake Slack Web API; the corrections are read back from the database file
with a Corrections of their own. Each test has a bot of its own (Services over a copy of the shared
index, with EXPERTBOT_EXPERTS set), so no correction it adds changes the answers other tests expect.
"""

from __future__ import annotations

import json
import logging
import shutil
from urllib.parse import parse_qs

import pytest

from bot.corrections import Corrections
from bot.slack.corrections_flow import GONE, LIVE, NOT_EXPERT, PENDING
from bot.slack.listeners.actions.feedback import THANKS
from bot.store import Store

from .slack_fake import ADMIN, PERSON, ask, blocks_of, sources_text

EXPERT, GROUPIE, GROUP = "UEXPERT", "UGROUPIE", "SEXPERTS"
QUESTION = "How long does the Quillmate pairing last?"
FIXED = "The Quillmate pairing lasts six weeks, with a check-in every Friday."


@pytest.fixture
def services(slack_services, tmp_path):
    """A bot whose experts are EXPERT and the user group GROUP (ADMIN is its admin, so an expert too)."""
    from bot.config import load_settings
    from bot.wiring import build_services

    base = slack_services.settings
    home = tmp_path / "home"
    shutil.copytree(base.home / "index", home / "index", ignore=shutil.ignore_patterns("build.lock"))
    (home / "models").symlink_to((base.home / "models").resolve(), target_is_directory=True)
    settings = load_settings(home=home, docs_dir=base.docs_dir, max_new_tokens=base.max_new_tokens,
                             admins=base.admins, experts=[EXPERT, GROUP])  # fmt: skip
    # The same embedder and engine: no second model load.
    return build_services(
        settings, embed_model=slack_services.embed_model, generator=slack_services.generator
    )


@pytest.fixture
def people(fake_slack):
    for user in (EXPERT, GROUPIE, ADMIN, PERSON):
        fake_slack.add_user(user, user.lower())
    fake_slack.add_usergroup(GROUP, [GROUPIE])


def on_disk(services) -> Corrections:
    """The corrections as the database file holds them (a connection of its own)."""
    return Corrections(services.settings.home, services.embed_model.get_query_embedding)


def thumbs_down(app, sim, fake, final, placeholder, user, channel):
    """`user` clicks 👎 under the answer; returns (the click's trigger id, the modal views.open opened)."""
    (buttons,) = blocks_of(final, "actions")
    down = next(b for b in buttons["elements"] if b["action_id"] == "feedback_down")
    click = sim.button("feedback_down", down["value"], user=user, channel=channel,
                       message_ts=placeholder.response["ts"])  # fmt: skip
    trigger = json.loads(parse_qs(click.raw_body)["payload"][0])["trigger_id"]
    assert app.dispatch(click).status == 200
    opened = fake.wait_for("views.open", lambda p: p.get("trigger_id") == trigger)[0]
    assert opened.response["ok"], opened.response
    return trigger, opened.response["view"]


def submit(app, sim, view, text, *, user, source=""):
    resp = app.dispatch(sim.view_submission(view, {"correction": text, "source": source}, user=user))
    assert resp.status == 200
    return json.loads(resp.body) if resp.body else {}


def ephemeral_to(fake, user, text):
    return fake.wait_for("chat.postEphemeral", lambda p: p.get("user") == user and p.get("text") == text)


def corrections_audit(store_path):
    return [(e.user, e.decision) for e in Store(store_path).audit_log() if e.command == "correction"]


def test_thumbs_down_opens_the_modal_and_an_experts_correction_is_live_and_cited(
    services, people, make_app, sim, fake_slack, store_path, caplog
):
    app = make_app(services)
    with caplog.at_level(logging.DEBUG):
        _, placeholder, final = ask(app, sim, fake_slack, QUESTION, channel="CCOR1")
        trigger, view = thumbs_down(app, sim, fake_slack, final, placeholder, EXPERT, "CCOR1")
        assert submit(app, sim, view, FIXED, user=EXPERT) == {}  # an empty ack: the modal closes
        ephemeral_to(fake_slack, EXPERT, LIVE)

    answer_id = json.loads(view["private_metadata"])["answer_id"]
    assert view["callback_id"] == "expertbot_correction" and view["title"]["text"] == "Correct this answer"
    assert json.loads(view["private_metadata"]) == {
        "answer_id": answer_id,
        "channel": "CCOR1",
        "thread_ts": None,
    }
    inputs = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert inputs["correction"]["label"]["text"] == "What would the right answer be?"
    assert (
        inputs["correction"]["element"]["multiline"] and inputs["correction"]["element"]["max_length"] == 4000
    )
    assert not inputs["correction"].get("optional") and inputs["source"]["optional"] is True
    assert inputs["source"]["label"]["text"] == "Source document"
    assert Store(store_path).votes(answer_id)[0]["vote"] == "down"  # the vote is still recorded
    ephemeral_to(fake_slack, EXPERT, THANKS["down"])  # thanked as before, the modal on top

    (fixed,) = on_disk(services).approved()
    assert (fixed.question, fixed.answer, fixed.by, fixed.answer_id) == (QUESTION, FIXED, EXPERT, answer_id)
    assert fixed.scopes == () and fixed.source is None
    assert corrections_audit(store_path) == [(EXPERT, f"approved {fixed.id}")]
    assert "Quillmate" not in caplog.text and "six weeks" not in caplog.text

    # The next person who asks is answered from it at once, and sees it cited.
    _, _, again = ask(app, sim, fake_slack, QUESTION, channel="CCOR2", user=ADMIN)
    assert f"corrections/{fixed.id}" in sources_text(again)
    shown = " ".join(b["text"]["text"] for b in blocks_of(again, "section"))
    assert "six weeks" in shown and f"Corrected by <@{EXPERT}> on {fixed.date}" in shown


def test_a_non_experts_correction_waits_for_an_expert_who_approves_it_from_a_dm(
    services, people, make_app, sim, fake_slack, store_path
):
    app = make_app(services)
    _, placeholder, final = ask(app, sim, fake_slack, QUESTION, channel="CCOR3")
    _, view = thumbs_down(app, sim, fake_slack, final, placeholder, PERSON, "CCOR3")
    proposed = "It lasts <b>six</b> weeks & @channel should know"
    assert submit(app, sim, view, proposed, user=PERSON) == {}
    ephemeral_to(fake_slack, PERSON, PENDING)

    (pending,) = on_disk(services).list("pending")
    assert pending.by == PERSON and pending.answer == proposed and not on_disk(services).approved()
    # Each expert is sent a DM: the listed one, the admin, the group's member.
    opened = fake_slack.wait_for("conversations.open", count=3)
    assert [c.params["users"] for c in opened] == [EXPERT, ADMIN, GROUPIE]
    dms = {c.params["users"]: c.response["channel"]["id"] for c in opened}
    posts = fake_slack.wait_for("chat.postMessage", lambda p: p["channel"] in dms.values(), count=3)
    review = next(c for c in posts if c.params["channel"] == dms[EXPERT])
    text = " ".join(b["text"]["text"] for b in blocks_of(review, "section"))
    assert QUESTION in text and "&lt;b&gt;six&lt;/b&gt; weeks &amp; @\u200bchannel" in text  # escaped
    assert f"<@{PERSON}> proposes" in text and "The bot's answer" in text
    (buttons,) = blocks_of(review, "actions")
    assert [(b["action_id"], b["value"]) for b in buttons["elements"]] == [
        ("correction_approve", pending.id),
        ("correction_reject", pending.id),
    ]

    def click(action, user, dm_of):
        dm = dms[dm_of]
        posted = next(c for c in posts if c.params["channel"] == dm)
        req = sim.button(action, pending.id, user=user, channel=dm, message_ts=posted.response["ts"],
                         block_id="expertbot_correction_review")  # fmt: skip
        assert app.dispatch(req).status == 200

    click("correction_approve", PERSON, EXPERT)  # a non-expert's click decides nothing
    ephemeral_to(fake_slack, PERSON, NOT_EXPERT)
    assert on_disk(services).get(pending.id).status == "pending"

    click("correction_approve", GROUPIE, GROUPIE)  # an expert through the user group
    # Every expert's DM now shows the verdict, not only the one clicked: nobody reviews it twice.
    updates = fake_slack.wait_for("chat.update", lambda p: p.get("channel") in dms.values(), count=3)
    assert on_disk(services).get(pending.id).status == "approved"
    for dm in dms.values():
        (update,) = [u for u in updates if u.params["channel"] == dm]
        posted = next(c for c in posts if c.params["channel"] == dm)
        assert update.params["ts"] == posted.response["ts"]
        decided = [e["elements"][0]["text"] for e in blocks_of(update, "context")]
        assert f"✅ Approved by <@{GROUPIE}>" in decided and not blocks_of(update, "actions")

    click("correction_reject", EXPERT, EXPERT)  # too late: it is decided
    ephemeral_to(fake_slack, EXPERT, "This correction was already approved.")
    assert on_disk(services).get(pending.id).status == "approved"
    assert corrections_audit(store_path) == [
        (PERSON, f"proposed {pending.id}"),
        (PERSON, f"refused: not an expert (approved {pending.id})"),
        (GROUPIE, f"approved {pending.id}"),
        (EXPERT, f"refused: already approved ({pending.id})"),
    ]


def recorded_answer(store_path, answer_id, *, scopes=(), channel="CCOR5"):
    """An answer as the bot records it (store and texts), without generating one."""
    Store(store_path).record_answer(
        answer_id, channel=channel, message_ts="1.000001", thread_ts="1.000001", asked_by=PERSON,
        adapter=None, sources=[{"file": "handbook/onboarding.md", "section": "", "scopes": list(scopes)}],
        refused=False, question=QUESTION, text="Two weeks.",
    )  # fmt: skip


def open_modal_for(app, sim, fake, answer_id, user, channel="CCOR5"):
    req = sim.button("feedback_down", answer_id, user=user, channel=channel, message_ts="1.000001",
                     thread_ts="1.000001")  # fmt: skip
    assert app.dispatch(req).status == 200
    opened = fake.wait_for("views.open", lambda p: answer_id in json.dumps(p.get("view")))[0]
    return opened.response["view"], req


def test_empty_oversized_mention_only_and_sourceless_corrections_are_refused_in_the_modal(
    services, people, make_app, sim, fake_slack, store_path
):
    app = make_app(services)
    recorded_answer(store_path, "a-refused")
    view, _ = open_modal_for(app, sim, fake_slack, "a-refused", EXPERT)
    refusals = [submit(app, sim, view, text, user=EXPERT) for text in ("  ", "x" * 5000, "<!channel> <@U1>")]
    for refusal in refusals:
        assert refusal["response_action"] == "errors" and list(refusal["errors"]) == ["correction"]
    why = [r["errors"]["correction"] for r in refusals]
    assert why[0] == "The correction is empty."
    assert why[1].startswith("The correction is 5,000 characters long; at most 4,000")
    assert "only mentions" in why[2]
    bad = submit(app, sim, view, FIXED, user=EXPERT, source="../secrets.txt")
    assert bad == {"response_action": "errors", "errors": {"source": bad["errors"]["source"]}}
    assert "inside the docs folder" in bad["errors"]["source"]
    missing = submit(app, sim, view, FIXED, user=EXPERT, source="handbook/nothing.md")
    assert "no document handbook/nothing.md" in missing["errors"]["source"]
    gone = dict(view, private_metadata=json.dumps({"answer_id": "never-answered", "channel": "CCOR5"}))
    assert submit(app, sim, gone, FIXED, user=EXPERT)["errors"] == {"correction": GONE}

    assert on_disk(services).list() == []  # nothing stored
    assert corrections_audit(store_path) == [  # the reasons, never what was written
        (EXPERT, "refused: the correction is empty"),
        (EXPERT, "refused: the correction is 5,000 characters long; at most 4,000 are kept"),
        (EXPERT, "refused: the correction holds only mentions (such as <!channel>); write it out in words"),
        (EXPERT, "refused: no such source document"),
        (EXPERT, "refused: no such source document"),
        (EXPERT, "refused: answer no longer kept"),
    ]


def test_a_failed_group_lookup_makes_no_expert_and_the_correction_keeps_the_answers_scopes(
    services, people, make_app, sim, fake_slack, store_path
):
    app = make_app(services)
    del fake_slack.usergroups[GROUP]  # usergroups.users.list now fails (no_such_subteam): fail closed
    recorded_answer(store_path, "a-scoped", scopes=("hr",))
    view, _ = open_modal_for(app, sim, fake_slack, "a-scoped", GROUPIE)
    assert submit(app, sim, view, FIXED, user=GROUPIE, source="support/support-escalation.txt") == {}
    ephemeral_to(fake_slack, GROUPIE, PENDING)
    (pending,) = on_disk(services).list("pending")
    assert pending.scopes == ("hr",) and pending.source == "support/support-escalation.txt"
    opened = fake_slack.wait_for("conversations.open", count=2)  # the listed expert and the admin only
    assert sorted(c.params["users"] for c in opened) == sorted([EXPERT, ADMIN])


def test_when_slack_will_not_open_the_modal_the_voter_is_still_thanked(
    services, people, make_app, sim, fake_slack, store_path, caplog
):
    app = make_app(services)
    recorded_answer(store_path, "a-twice")
    with caplog.at_level(logging.INFO):
        _, click = open_modal_for(app, sim, fake_slack, "a-twice", PERSON)
        assert app.dispatch(click).status == 200  # the same click again: its trigger id is used up
        failed = fake_slack.wait_for("views.open", count=2)[1]
        assert failed.response == {"ok": False, "error": "exchanged_trigger_id"}
        assert len(ephemeral_to(fake_slack, PERSON, THANKS["down"])) >= 1
        fake_slack.wait_for("chat.postEphemeral", lambda p: p.get("user") == PERSON, count=2)
    assert "views.open failed for answer a-twice (exchanged_trigger_id)" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # handled, no traceback
    assert [v["vote"] for v in Store(store_path).votes("a-twice")] == ["down"]
