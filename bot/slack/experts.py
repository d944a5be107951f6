"""Who may approve corrections (issue 16): the users and S… user groups in EXPERTBOT_EXPERTS, and the
admins. Asked of Slack each time, failing closed: a listed user must be a full member (users.info, cached
briefly by UserRoles, as for admins), a group's members come from usergroups.users.list, and a lookup
that fails makes no one an expert through it.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.guard import MEMBER, impatient

log = logging.getLogger(__name__)

MAX_REVIEWERS = 20  # DMs per pending correction: a large expert group still gets a bounded burst


def is_expert(bot, client: WebClient, user: str) -> bool:
    """Listed in EXPERTBOT_EXPERTS or EXPERTBOT_ADMINS, or in a listed user group, and a full member."""
    users, groups = _experts(bot)
    listed = user in users or any(user in (_members(client, g) or ()) for g in groups)
    return listed and bot.roles is not None and bot.roles.role(user) == MEMBER


def reviewers(bot, client: WebClient) -> list[str]:
    """The experts to DM: listed users, then the listed groups' members; full members only, at most
    MAX_REVIEWERS."""
    users, groups = _experts(bot)
    found = list(users) + [m for g in groups for m in sorted(_members(client, g) or ())]
    people: list[str] = []
    for user in dict.fromkeys(found):  # stops at MAX_REVIEWERS: a big group is not looked up in full
        if len(people) == MAX_REVIEWERS or bot.roles is None:
            break
        if bot.roles.role(user) == MEMBER:
            people.append(user)
    return people


def _experts(bot) -> tuple[list[str], list[str]]:
    listed = list(getattr(bot.services.settings, "experts", None) or ())
    users = [e for e in listed if not e.startswith("S")] + sorted(bot.admins)
    return list(dict.fromkeys(users)), [e for e in listed if e.startswith("S")]


def _members(client: WebClient, group: str) -> frozenset[str] | None:
    """A user group's members; None when Slack could not say (no one is an expert through it then)."""
    try:
        users = impatient(client).usergroups_users_list(usergroup=group)["users"]
    except Exception as e:  # noqa: BLE001 - fail closed
        log.warning("usergroups.users.list failed for expert group %s (%s)", group, _reason(e))
        return None
    return frozenset(str(u) for u in users) if isinstance(users, list) else None


def _reason(e: Exception) -> str:
    if isinstance(e, SlackApiError):
        return str(e.response.get("error") or e.response.status_code)
    return type(e).__name__
