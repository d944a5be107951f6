"""Who the playground's page can ask as, and where: #general and you, and what [scopes] names."""

from __future__ import annotations

from dataclasses import dataclass

USER = "UPLAYGROUND"  # the person typing in the page; an admin here, so both commands can be tried
CHANNEL, DM = "CGENERAL", "DPLAYGROUND"
GUEST = "UGUEST"  # a multi-channel guest (is_restricted): only public documents, whatever the channel


def dm_of(user_id: str) -> str:
    """A person's DM with the bot, as Slack names one (D…): UPLAYGROUND -> DPLAYGROUND."""
    return "D" + user_id[1:]


@dataclass(frozen=True)
class Person:
    id: str
    label: str  # what the person picker shows
    name: str  # how their messages are signed
    dm: str
    guest: bool = False
    groups: tuple[str, ...] = ()  # user groups (S…) this made-up person is a member of


def places(scopes: dict) -> tuple[list[dict], list[Person]]:
    """The channels and people the page can ask as: #general and you, then what [scopes] names (each
    scope's channels and users, a made-up member of each user group, a guest). Without scopes only the
    first two: nothing else would answer differently."""
    channels = [{"id": CHANNEL, "label": "#general"}]
    people = [Person(USER, "you", "you", DM)]
    taken = {CHANNEL, USER, GUEST}
    for channel, names in _by_scope(scopes, "channels").items():
        if channel not in taken:
            channels.append({"id": channel, "label": f"#{channel} ({_scopes(names)})"})
    for user, names in _by_scope(scopes, "users").items():
        if user not in taken:
            people.append(Person(user, f"{user} ({_scopes(names)})", user, dm_of(user)))
            taken.add(user)
    for group, names in _by_scope(scopes, "usergroups").items():
        member = next(u for u in ("U" + group[1:], f"U{group[1:]}M", f"U{group[1:]}MM") if u not in taken)
        taken.add(member)
        label = f"member of {group} ({_scopes(names)})"
        people.append(Person(member, label, f"member of {group}", dm_of(member), groups=(group,)))
    if scopes:
        people.append(Person(GUEST, "a guest", "a guest", dm_of(GUEST), guest=True))
    return channels, people


def _by_scope(scopes: dict, key: str) -> dict[str, list[str]]:
    """Each id named under `key` (channels, users, usergroups) -> the scopes naming it, in order."""
    named: dict[str, list[str]] = {}
    for name, rule in sorted(scopes.items()):
        for value in getattr(rule, key):
            named.setdefault(value, []).append(name)
    return named


def _scopes(names: list[str]) -> str:
    return ("scope " if len(names) == 1 else "scopes ") + ", ".join(names)
