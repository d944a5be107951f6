"""Who may see which scope: the [scopes] settings, and AccessResolver against Slack's answers.

The bot's real slack_sdk WebClient (its production retry handlers, a short backoff) talks to the fake
Slack Web API over HTTP, with faults injected on the wire (tests/bot/slack_faults.py); the checks are
on the Access returned and on the calls Slack received.
"""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from bot.scopes import (
    Access,
    AccessResolver,
    ScopeRule,
    check_scope_names,
    doc_globs,
    needs_usergroups,
)
from bot.slack.app import web_client

from .slack_fake import TOKEN
from .slack_faults import FaultySlackAPI

TEAM = "TFAKE"  # the fake's team_id: the installed workspace
HR_CHANNEL, OTHER_CHANNEL, DM = "C0HRTEAM", "C0GENERAL", "D0DIRECT"
HR_LEAD, HR_STAFFER, PERSON, GUEST = "U0HRLEAD", "U0STAFFER", "U0PERSON", "U0GUEST"
HR_GROUP = "S0HRSTAFF"


def rules(**extra) -> dict[str, ScopeRule]:
    hr = {"docs": ["hr/**"], "channels": [HR_CHANNEL], "users": [HR_LEAD], "usergroups": [HR_GROUP]}
    return {"hr": ScopeRule(**{**hr, **extra}), "finance": ScopeRule(docs=["finance/*.md"])}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake():
    with FaultySlackAPI(token=TOKEN, team_id=TEAM) as api:
        for user in (HR_LEAD, HR_STAFFER, PERSON):
            api.add_user(user, user.lower())
        api.add_user(GUEST, "guest", is_restricted=True)
        api.add_usergroup(HR_GROUP, [HR_STAFFER])
        yield api


@pytest.fixture
def client(fake):
    return web_client(TOKEN, fake.url, backoff=0.01)  # the bot's own client: 5xx are retried 3 times


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def resolver(clock) -> AccessResolver:
    return AccessResolver(rules(), team_id=TEAM, ttl_s=300.0, clock=clock)


# -- settings ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "table, field, says",
    [
        ({"docs": ["hr/**"], "chanels": ["C0HRTEAM"]}, "chanels", "Extra inputs are not permitted"),
        ({"docs": ["hr/**"], "channels": ["#hr"]}, "channels", "C0123ABCD or G0123ABCD; not '#hr'"),
        ({"docs": ["hr/**"], "channels": ["c0hrteam"]}, "channels", "not 'c0hrteam'"),
        ({"docs": ["hr/**"], "channels": ["D0DIRECT"]}, "channels", "not 'D0DIRECT'"),
        ({"docs": ["hr/**"], "users": ["alice"]}, "users", "U0123ABCD or W0123ABCD; not 'alice'"),
        ({"docs": ["hr/**"], "usergroups": ["U0HRLEAD"]}, "usergroups", "S0123ABCD; not 'U0HRLEAD'"),
        ({"channels": ["C0HRTEAM"]}, "docs", "Field required"),
        ({"docs": []}, "docs", "at least 1 item"),
        ({"docs": ["../secrets/*"]}, "docs", "relative to the docs folder"),
        ({"docs": ["/etc/*"]}, "docs", "not '/etc/*'"),
    ],
)
def test_a_bad_scope_names_the_setting(table, field, says):
    with pytest.raises(ValidationError) as e:
        ScopeRule(**table)
    (err,) = e.value.errors()
    assert err["loc"][0] == field
    assert says in str(e.value)


def test_a_good_scope_and_its_defaults():
    rule = ScopeRule(docs=["hr/**", "benefits.html"], channels=["C0HRTEAM", "G0PRIVATE"], users=["W0LEAD"])
    assert (rule.usergroups, rule.guests) == ([], False)
    scopes = {"hr": rule, "finance": ScopeRule(docs=["finance/**"], usergroups=[HR_GROUP])}
    assert doc_globs(scopes) == {"hr": ("hr/**", "benefits.html"), "finance": ("finance/**",)}
    assert needs_usergroups(scopes) and not needs_usergroups({"hr": rule})


class _Settings(BaseModel):  # how bot/config.py's Settings takes [scopes]
    scopes: dict[str, ScopeRule] = {}

    @field_validator("scopes")
    @classmethod
    def _names(cls, value):
        return check_scope_names(value)


def test_scope_names_and_nested_errors_as_settings_see_them():
    ok = _Settings(scopes={"hr_2024-team": {"docs": ["hr/**"]}})
    assert isinstance(ok.scopes["hr_2024-team"], ScopeRule)
    with pytest.raises(ValidationError, match=r"scope names are 1-64 letters.*not 'h r'"):
        _Settings(scopes={"h r": {"docs": ["hr/**"]}})
    with pytest.raises(ValidationError, match="not 'x"):
        _Settings(scopes={"x" * 65: {"docs": ["hr/**"]}})
    with pytest.raises(ValidationError) as e:
        _Settings(scopes={"hr": {"docs": ["hr/**"], "user": ["U0HRLEAD"]}})
    assert e.value.errors()[0]["loc"] == ("scopes", "hr", "user")


# -- channels ------------------------------------------------------------------------------------------
def test_in_the_scoped_channel_the_scope_is_granted(resolver, client, fake):
    access = resolver.resolve(client, channel=HR_CHANNEL, user=PERSON, team=TEAM)
    assert access == Access(frozenset({"hr"}), f"channel {HR_CHANNEL}: hr")
    assert [c.params["user"] for c in fake.calls("users.info")] == [PERSON]  # the guest check
    assert fake.calls("usergroups.users.list") == []  # groups grant in DMs only


def test_another_channel_gets_public_documents_without_asking_slack(resolver, client, fake):
    access = resolver.resolve(client, channel=OTHER_CHANNEL, user=PERSON, team=TEAM)
    assert access == Access(frozenset(), f"channel {OTHER_CHANNEL}: no scope")
    assert fake.calls() == []


def test_a_dm_rule_does_not_apply_in_a_channel(resolver, client):
    assert resolver.resolve(client, channel=OTHER_CHANNEL, user=HR_LEAD).allowed == frozenset()
    assert resolver.resolve(client, channel=OTHER_CHANNEL, user=HR_STAFFER).allowed == frozenset()


# -- DMs -----------------------------------------------------------------------------------------------
def test_a_dm_from_a_listed_user(resolver, client, fake):
    access = resolver.resolve(client, channel=DM, user=HR_LEAD)
    assert access == Access(frozenset({"hr"}), f"DM from {HR_LEAD}: hr (user)")
    assert fake.calls("usergroups.users.list") == []  # listed by name: no group lookup needed
    # No channel at all is a DM too (the CLI's --user without --channel).
    assert resolver.resolve(client, channel=None, user=HR_LEAD).allowed == {"hr"}


def test_a_dm_from_a_user_group_member(resolver, client, fake):
    access = resolver.resolve(client, channel=DM, user=HR_STAFFER)
    assert access == Access(frozenset({"hr"}), f"DM from {HR_STAFFER}: hr (user group {HR_GROUP})")
    assert [c.params["usergroup"] for c in fake.calls("usergroups.users.list")] == [HR_GROUP]


def test_a_dm_from_anyone_else(resolver, client, fake):
    assert resolver.resolve(client, channel=DM, user=PERSON) == Access(
        frozenset(), f"DM from {PERSON}: no scope"
    )
    assert fake.calls("users.info") == []  # nothing to grant: no guest check


def test_scopes_granted_several_ways_are_all_named(clock, client, fake):
    fake.add_usergroup("S0FINANCE", [HR_LEAD])
    scopes = {**rules(), "finance": ScopeRule(docs=["finance/**"], usergroups=["S0FINANCE"])}
    access = AccessResolver(scopes, team_id=TEAM, clock=clock).resolve(client, channel=DM, user=HR_LEAD)
    assert access == Access(
        frozenset({"hr", "finance"}), f"DM from {HR_LEAD}: finance (user group S0FINANCE), hr (user)"
    )


# -- guests --------------------------------------------------------------------------------------------
def test_a_guest_in_the_scoped_channel_gets_public_documents(resolver, client, fake):
    fake.add_user("U0SINGLE", "single", is_restricted=True, is_ultra_restricted=True)
    assert resolver.resolve(client, channel=HR_CHANNEL, user=GUEST) == Access(
        frozenset(), "guest: public documents only"
    )
    assert resolver.resolve(client, channel=HR_CHANNEL, user="U0SINGLE").allowed == frozenset()
    fake.add_usergroup(HR_GROUP, [GUEST])  # a guest in the group, in a DM: the same
    assert (
        AccessResolver(rules(), team_id=TEAM).resolve(client, channel=DM, user=GUEST).allowed == frozenset()
    )


def test_a_guest_where_the_scope_allows_guests(clock, client):
    resolver = AccessResolver(rules(guests=True), team_id=TEAM, clock=clock)
    access = resolver.resolve(client, channel=HR_CHANNEL, user=GUEST)
    assert access == Access(frozenset({"hr"}), f"channel {HR_CHANNEL} (a guest): hr")


# -- failures: closed ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "how",
    [{"status": 500}, {"status": 200, "error": "fatal_error"}, {"drop": True}],
    ids=["http-500", "ok-false", "dropped"],
)
def test_users_info_failing_grants_nothing(resolver, client, fake, how, caplog):
    fake.fail("users.info", 1000, **how)  # every try, the client's retries included
    with caplog.at_level(logging.WARNING, logger="bot.scopes"):
        access = resolver.resolve(client, channel=HR_CHANNEL, user=HR_LEAD)
    assert access == Access(frozenset(), "users.info failed: public documents only")
    assert fake.faults_for("users.info") >= 1
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "bot.scopes"]
    assert warning.startswith("users.info failed (") and HR_LEAD not in warning
    # Not cached: once Slack answers again, so does the grant.
    fake.faults.clear()
    assert resolver.resolve(client, channel=HR_CHANNEL, user=HR_LEAD).allowed == {"hr"}


def test_an_unknown_user_grants_nothing(resolver, client):
    # users.info answers user_not_found (ok: false) for someone Slack does not know.
    assert resolver.resolve(client, channel=HR_CHANNEL, user="U0NOBODY").allowed == frozenset()


def test_usergroups_failing_grants_nothing_and_is_retried(resolver, client, fake):
    fake.fail("usergroups.users.list", 1, status=200, error="missing_scope")
    assert resolver.resolve(client, channel=DM, user=HR_STAFFER) == Access(
        frozenset(), "usergroups.users.list failed: public documents only"
    )
    assert resolver.cache_age() is None  # the failure was not cached
    assert resolver.resolve(client, channel=DM, user=HR_STAFFER).allowed == {"hr"}
    # Asked again on the next question: the faulted call (which the fake does not record) and this one.
    assert (fake.faults_for("usergroups.users.list"), len(fake.calls("usergroups.users.list"))) == (1, 1)


def test_a_failing_usergroup_withholds_even_what_a_users_list_grants(clock, client, fake):
    # Fail closed, as the issue says: a user whose memberships are unknown has no grants at all.
    scopes = {**rules(), "finance": ScopeRule(docs=["finance/**"], users=[HR_STAFFER])}
    resolver = AccessResolver(scopes, team_id=TEAM, clock=clock)
    fake.fail("usergroups.users.list", 1, status=500)
    assert resolver.resolve(client, channel=DM, user=HR_STAFFER).allowed == frozenset()
    assert resolver.resolve(client, channel=DM, user=HR_STAFFER).allowed == {"hr", "finance"}


def test_an_unknown_usergroup_grants_nothing(clock, client):
    resolver = AccessResolver(rules(usergroups=["S0GONE"]), team_id=TEAM, clock=clock)
    assert resolver.resolve(client, channel=DM, user=HR_STAFFER).allowed == frozenset()  # no_such_subteam


# -- other workspaces, shared channels, admin view -----------------------------------------------------
def test_another_workspace_or_a_shared_channel_gets_public_documents(resolver, client, fake):
    other = resolver.resolve(client, channel=HR_CHANNEL, user=HR_LEAD, team="T0OTHER")
    assert other == Access(frozenset(), "another workspace: public documents only")
    shared = resolver.resolve(client, channel=HR_CHANNEL, user=HR_LEAD, team=TEAM, shared=True)
    assert shared == Access(frozenset(), "shared channel: public documents only")
    assert resolver.resolve(client, channel=DM, user=HR_LEAD, team="T0OTHER").allowed == frozenset()
    assert fake.calls() == []


def test_no_channel_and_no_user_is_the_admin_view(resolver, client, fake):
    assert resolver.resolve(client, channel=None, user=None) == Access(None, "admin view: every document")
    assert fake.calls() == []


def test_no_scopes_restricts_nothing_and_asks_slack_nothing(client, fake):
    resolver = AccessResolver({}, team_id=TEAM)
    for channel, user, team in [(HR_CHANNEL, GUEST, TEAM), (DM, PERSON, "T0OTHER"), (None, None, None)]:
        assert resolver.resolve(client, channel=channel, user=user, team=team).allowed is None
    assert fake.calls() == []


def test_without_slack_users_are_members_and_groups_are_empty(resolver):
    assert resolver.resolve(None, channel=HR_CHANNEL, user=GUEST).allowed == {"hr"}  # not a guest check
    assert resolver.resolve(None, channel=HR_CHANNEL, user=None).allowed == {"hr"}
    assert resolver.resolve(None, channel=None, user=HR_LEAD).allowed == {"hr"}
    assert resolver.resolve(None, channel=None, user=HR_STAFFER).allowed == frozenset()  # groups unknown


def test_odd_ids_get_public_documents(resolver, client):
    assert resolver.resolve(client, channel=HR_CHANNEL, user=None).allowed == frozenset()  # who asked?
    assert resolver.resolve(client, channel=DM, user=None).allowed == frozenset()
    assert resolver.resolve(client, channel="XWHATEVER", user=HR_LEAD).allowed == frozenset()


# -- the cache -----------------------------------------------------------------------------------------
def test_group_membership_and_roles_are_cached_for_the_ttl(resolver, client, fake, clock):
    assert resolver.cache_age() is None
    assert resolver.resolve(client, channel=DM, user=HR_STAFFER).allowed == {"hr"}
    clock.now += 120
    assert resolver.cache_age() == 120
    fake.add_usergroup(HR_GROUP, [])  # removed from the group in Slack: holds until the TTL is up
    assert resolver.resolve(client, channel=DM, user=HR_STAFFER).allowed == {"hr"}
    assert (len(fake.calls("usergroups.users.list")), len(fake.calls("users.info"))) == (1, 1)
    clock.now += 181  # 301 s after the lookups
    assert resolver.cache_age() is None  # expired: no longer in use
    assert resolver.resolve(client, channel=DM, user=HR_STAFFER).allowed == frozenset()
    assert len(fake.calls("usergroups.users.list")) == 2
    assert resolver.cache_age() == 0


def test_a_guest_role_change_shows_after_the_ttl(resolver, client, fake, clock):
    assert resolver.resolve(client, channel=HR_CHANNEL, user=HR_LEAD).allowed == {"hr"}
    fake.add_user(HR_LEAD, "demoted", is_restricted=True)
    assert resolver.resolve(client, channel=HR_CHANNEL, user=HR_LEAD).allowed == {"hr"}
    clock.now += 300
    assert resolver.resolve(client, channel=HR_CHANNEL, user=HR_LEAD).allowed == frozenset()
    assert len(fake.calls("users.info")) == 2


def test_the_fake_answers_as_slack_does(fake, client):
    info = client.users_info(user=GUEST)["user"]
    assert (info["is_restricted"], info["is_ultra_restricted"]) == (True, False)
    assert client.usergroups_users_list(usergroup=HR_GROUP)["users"] == [HR_STAFFER]
    with pytest.raises(Exception, match="no_such_subteam"):
        client.usergroups_users_list(usergroup="S0GONE")


def test_answers_resolving_at_once_share_the_cache(resolver, client, fake):
    from concurrent.futures import ThreadPoolExecutor

    asks = [(DM, HR_STAFFER), (DM, PERSON), (HR_CHANNEL, GUEST), (HR_CHANNEL, HR_LEAD)] * 6
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda a: resolver.resolve(client, channel=a[0], user=a[1]).allowed, asks))
    assert got == [{"hr"}, frozenset(), frozenset(), {"hr"}] * 6
    # DMs racing before the first answer is cached may each ask; once cached, nobody asks again.
    asked = len(fake.calls("usergroups.users.list"))
    assert 1 <= asked <= 12
    resolver.resolve(client, channel=DM, user=HR_STAFFER)
    assert len(fake.calls("usergroups.users.list")) == asked
    assert resolver.cache_age() is not None
