"""Admin checks fail closed, and only the installed workspace and app reach the bot (issue 13, item 10).

Through the real Bolt app, with requests signed as Slack signs them and a fake Slack Web API that has
guests and can make users.info fail (tests/bot/slack_users.py). No model is loaded: the commands used
here (`status`, refusals) and the unanswered events never reach it.
"""

from __future__ import annotations

import logging
import time

import pytest
from click.testing import CliRunner

from bot.playground.simulate import SlackSimulator
from bot.slack import build_app
from bot.slack.guard import FOREIGN
from bot.store import Store

from .slack_fake import ADMIN, PERSON, SIGNING_SECRET, TOKEN, ack_text, client_for
from .slack_users import FAULTS, UsersFakeSlackAPI

GUEST, SINGLE_GUEST = "UGUEST", "USINGLEGUEST"  # both listed in EXPERTBOT_ADMINS
GUEST_TRIES = ("/reindex", "/retrain-adapter", "/reindex status")
SECRET_WORDS = "the quarterly layoffs plan"  # message text that must never reach the logs


@pytest.fixture
def fake():
    with UsersFakeSlackAPI(token=TOKEN) as api:
        api.add_user(ADMIN, "admin")
        api.add_guest(GUEST)
        api.add_guest(SINGLE_GUEST, single_channel=True)
        yield api


@pytest.fixture
def sim(fake) -> SlackSimulator:
    return SlackSimulator(SIGNING_SECRET, fake=fake)


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "bot.sqlite3"


@pytest.fixture
def make_app(tmp_path, fake, store_path):
    """The real Bolt app over real (lazy, nothing loaded) Services, talking to the fake Slack."""
    from bot.config import load_settings
    from bot.wiring import Services

    def make(admins=(ADMIN, GUEST, SINGLE_GUEST)):
        settings = load_settings(home=tmp_path / "home", docs_dir=tmp_path / "docs", admins=list(admins))
        return build_app(
            Services(settings),
            client=client_for(fake),
            signing_secret=SIGNING_SECRET,
            store=Store(store_path),
            update_interval=0,
        )

    return make


def said(app, sim, command: str, text: str, user: str) -> str:
    """What Slack shows the user who ran the command: its response's text."""
    return ack_text(app.dispatch(sim.command(command, text, user=user, channel="CADMIN")))


def audit(store_path) -> list[tuple[str, str, str]]:
    return [(e.user, e.command, e.decision) for e in Store(store_path).audit_log()]


def test_listed_guests_never_run_admin_commands(make_app, sim, fake, store_path):
    app = make_app()
    for guest in (GUEST, SINGLE_GUEST):
        for tried in GUEST_TRIES:
            command, _, text = tried.partition(" ")
            resp = app.dispatch(sim.command(command, text, user=guest, channel="CADMIN"))
            assert resp.status == 200
            assert "guests can't run" in ack_text(resp)  # shown only to the guest
    assert said(app, sim, "/reindex", "status", ADMIN) == "No job has run yet."  # a full member passes
    assert Store(store_path).jobs() == []
    assert audit(store_path) == [
        *[(g, c, "refused: guest") for g in (GUEST, SINGLE_GUEST) for c in GUEST_TRIES],
        (ADMIN, "/reindex status", "allowed"),
    ]
    assert not fake.calls("chat.postMessage")


@pytest.mark.parametrize("fault", FAULTS)
def test_a_users_info_error_refuses_and_says_to_try_again(make_app, sim, fake, store_path, caplog, fault):
    app = make_app()
    fake.users_info_fault = fault
    resp = app.dispatch(sim.command("/reindex", "", user=ADMIN, channel="CADMIN"))
    assert resp.status == 200
    text = ack_text(resp)
    assert "could not confirm your role" in text and "try again" in text
    assert Store(store_path).jobs() == []
    assert audit(store_path) == [(ADMIN, "/reindex", "refused: role unconfirmed")]
    assert len(fake.calls("users.info")) == 1  # asked once: no retries eating the 3 s ack window
    assert "users.info failed for an admin check" in caplog.text and TOKEN not in caplog.text
    # A failed look-up is not remembered: once Slack answers again, the admin passes.
    fake.users_info_fault = None
    assert said(app, sim, "/reindex", "status", ADMIN) == "No job has run yet."


def test_a_hanging_users_info_refuses_within_slacks_ack_window(make_app, sim, fake, store_path):
    app = make_app()
    hold = fake.hold("users.info")
    try:
        started = time.monotonic()
        resp = app.dispatch(sim.command("/reindex", "", user=ADMIN, channel="CADMIN"))
        waited = time.monotonic() - started
    finally:
        hold.release()
    assert "could not confirm your role" in ack_text(resp)
    assert waited < 10  # the role check's own 2 s timeout, not the WebClient's 30 s
    assert Store(store_path).jobs() == []


def test_roles_are_cached_briefly_so_a_demoted_admin_loses_rights(make_app, sim, fake, store_path):
    app = make_app()
    for _ in range(2):
        assert said(app, sim, "/reindex", "status", ADMIN) == "No job has run yet."
    assert len(fake.calls("users.info")) == 1  # the second command used the cached role
    assert app.expertbot.roles.ttl <= 60
    fake.make_guest(ADMIN)
    app.expertbot.roles.ttl = 0  # the cached minute has passed
    refused = said(app, sim, "/reindex", "status", ADMIN)
    assert "guests can't run" in refused and len(fake.calls("users.info")) == 2
    assert audit(store_path)[-1] == (ADMIN, "/reindex status", "refused: guest")


def test_non_admins_are_refused_without_a_users_info_call(make_app, sim, fake, store_path):
    app = make_app()
    refused = said(app, sim, "/reindex", "", PERSON)
    assert "only the bot's admins" in refused
    assert audit(store_path) == [(PERSON, "/reindex", "refused")]
    assert not fake.calls("users.info")


def test_requests_from_another_workspace_or_app_are_refused(make_app, sim, fake, store_path, caplog):
    caplog.set_level(logging.DEBUG)
    app = make_app()
    other_team = SlackSimulator(SIGNING_SECRET, fake=fake, team_id="TOTHER", api_app_id="AOTHER")
    other_app = SlackSimulator(SIGNING_SECRET, fake=fake, api_app_id="AOTHER")
    store = Store(store_path)

    # Slash commands: an ephemeral refusal in the command's response, and nothing runs.
    resp = app.dispatch(other_team.command("/reindex", "", user=ADMIN, channel="C"))
    assert resp.status == 200 and ack_text(resp) == FOREIGN
    # The installed app's own requests go through (and name the app from then on) ...
    assert said(app, sim, "/reindex", "status", ADMIN) == "No job has run yet."
    # ... so one signed for another app of the same workspace is refused.
    assert said(app, other_app, "/reindex", "", ADMIN) == FOREIGN

    # Events: acked with an empty 200 (no retries), then ignored: not even claimed for de-duplication.
    ours = sim.message_event(SECRET_WORDS, user=PERSON, channel="CTALK", channel_type="channel")
    for who, event_id in ((other_team, "EvTEAM"), (other_app, "EvAPP")):
        mention = who.mention_event(SECRET_WORDS, user=PERSON, channel="CTALK")
        resp = app.dispatch(who.event(mention, event_id=event_id))
        assert resp.status == 200 and resp.body == ""
    resp = app.dispatch(sim.event(ours, event_id="EvOURS"))  # an ordinary channel message: not answered
    assert resp.status == 200
    assert store.claim_event("event:EvTEAM") and store.claim_event("event:EvAPP")  # never seen
    assert not store.claim_event("event:EvOURS")  # the installed workspace's event went on

    # Interactivity (the feedback buttons): acked, no vote recorded.
    button = other_team.button("feedback_up", "ans1", user=PERSON, channel="CTALK", message_ts="1.1")
    resp = app.dispatch(button)
    assert resp.status == 200 and resp.body == ""
    assert store.votes() == []

    assert store.jobs() == []
    assert [c.method for c in fake.calls() if c.method not in ("auth.test", "users.info")] == []
    assert audit(store_path) == [
        (ADMIN, "/reindex", "refused: another workspace"),
        (ADMIN, "/reindex status", "allowed"),
        (ADMIN, "/reindex", "refused: another app"),
        (PERSON, "event app_mention", "refused: another workspace"),
        (PERSON, "event app_mention", "refused: another app"),
        (PERSON, "block_actions", "refused: another workspace"),
    ]
    logged = [r for r in caplog.records if r.name == "bot.slack.guard"]
    refusals = [r for r in logged if r.getMessage().startswith("refused")]
    assert len(refusals) == 5 and all(r.levelno == logging.INFO for r in refusals)
    assert SECRET_WORDS not in caplog.text


def test_an_empty_admin_list_warns_at_start_up_and_in_doctor(make_app, tmp_path, caplog):
    from bot.cli import main
    from bot.config import load_settings

    make_app(admins=[ADMIN])
    assert "EXPERTBOT_ADMINS is empty" not in caplog.text
    make_app(admins=[])
    (warning,) = [r for r in caplog.records if "EXPERTBOT_ADMINS is empty" in r.getMessage()]
    assert warning.levelno == logging.WARNING and "EXPERTBOT_ADMINS=U012AB3CD" in warning.getMessage()

    for admins, expected in (
        ([], "WARN admins: EXPERTBOT_ADMINS is empty"),
        ([ADMIN], "ok  admins: 1 listed"),
    ):
        settings = load_settings(home=tmp_path / "doctor", admins=admins)
        result = CliRunner().invoke(main, ["doctor"], obj={"settings": settings})
        (line,) = [line for line in result.output.splitlines() if " admins: " in line]
        assert expected in line, result.output
