"""Who may see which documents: the `[scopes]` settings and, per question, the scopes it may draw on.

A document that matches no scope's `docs` globs is public. A scoped one may be used in its scopes'
channels, and in DMs with their users and user-group members. Everything here fails closed: a Slack
lookup that fails grants nothing. The indexers enforce the result (`Access.allowed`) in retrieval.

`AccessResolver.resolve` with `client=None` (no Slack, e.g. the CLI) cannot ask Slack anything: it
treats the user as a full member (not a guest) and every user group as empty, so only a scope's
`channels` and `users` lists grant there.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

SCOPE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]+$")
USER_ID = re.compile(r"^[UW][A-Z0-9]+$")
GROUP_ID = re.compile(r"^S[A-Z0-9]+$")
SLACK_IDS = {  # field -> (pattern, what its ids look like)
    "channels": (CHANNEL_ID, "channel ids look like C0123ABCD or G0123ABCD"),
    "users": (USER_ID, "user ids look like U0123ABCD or W0123ABCD"),
    "usergroups": (GROUP_ID, "user group ids look like S0123ABCD"),
}


def _bad(values: Iterable[str], pattern: re.Pattern) -> str:
    return ", ".join(repr(v) for v in values if not pattern.match(v))


class ScopeRule(BaseModel):
    """One `[scopes.NAME]` table: which documents it covers and who may see them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    docs: list[str] = Field(min_length=1, description="globs relative to the docs folder")
    channels: list[str] = Field(default_factory=list, description="channels where these docs may be used")
    users: list[str] = Field(default_factory=list, description="people who may get them in a DM")
    usergroups: list[str] = Field(default_factory=list, description="user groups whose members may")
    guests: bool = Field(False, description="guests (restricted users) get them too")

    @field_validator("docs")
    @classmethod
    def _check_docs(cls, value: list[str]) -> list[str]:
        bad = [
            g for g in value if not g.strip() or g.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", g)
        ]
        if bad:
            raise ValueError(
                'docs globs are relative to the docs folder, like "hr/**" or "benefits.html" '
                f"(no leading /, no ..); not {', '.join(repr(g) for g in bad)}"
            )
        return value

    @field_validator("channels", "users", "usergroups")
    @classmethod
    def _check_ids(cls, value: list[str], info: ValidationInfo) -> list[str]:
        pattern, looks = SLACK_IDS[info.field_name]
        if bad := _bad(value, pattern):
            raise ValueError(f"{looks}; not {bad}")
        return value


Scopes = dict[str, ScopeRule]


def check_scope_names(scopes: Scopes) -> Scopes:
    """The scopes, if every name is usable as chunk metadata; else a ValueError naming the bad ones."""
    bad = _bad(scopes, SCOPE_NAME)
    if bad:
        raise ValueError(f"scope names are 1-64 letters, digits, _ or -, like [scopes.hr]; not {bad}")
    return scopes


def doc_globs(scopes: Scopes) -> dict[str, tuple[str, ...]]:
    """Each scope's docs globs: what indexers.IndexConfig.scopes takes."""
    return {name: tuple(rule.docs) for name, rule in scopes.items()}


def needs_usergroups(scopes: Scopes) -> bool:
    """Whether any scope names user groups (the app then needs the usergroups:read scope)."""
    return any(rule.usergroups for rule in scopes.values())


def index_report_lines(report: dict) -> list[str]:
    """What an index report says about [scopes]: chunks per scope, chunks that changed scope, warnings."""
    scoped = report.get("scoped") or {}
    lines = []
    if scoped or report.get("chunks_rescoped"):
        shown = ", ".join(f"{name} {count}" for name, count in sorted(scoped.items())) or "none"
        moved = report.get("chunks_rescoped", 0)
        lines.append(f"scoped chunks: {shown}; {moved} changed scope (not re-embedded)")
    return lines + [f"warning: {w}" for w in report.get("warnings") or []]


@dataclass(frozen=True)
class Access:
    """Which scoped documents one question may draw on, and why (ids only, never message text).

    allowed: None, every document (no scopes configured, or the admin view); frozenset(), public
    documents only; otherwise public documents and those of these scopes."""

    allowed: frozenset[str] | None
    why: str


PUBLIC = frozenset()
ACCESS_TTL_S = 300.0  # how long a user's guest status and a group's members are trusted


class AccessResolver:
    """Resolves a question's Access from where it was asked and who asked.

    Slack's answers (users.info, usergroups.users.list) are cached for `ttl_s`; failed lookups are not,
    so the next question asks again. Lookups go through a client without retries and with a short
    timeout (bot.slack.guard.impatient): a Slack fault costs a question its scoped documents, not seconds.
    Safe to share between the answering threads."""

    # fmt: off
    def __init__(self, scopes: Scopes, *, team_id: str | None, ttl_s: float = ACCESS_TTL_S,
                 clock: Callable[[], float] = time.monotonic):
        # fmt: on
        self.scopes: Scopes = dict(scopes)  # a copy: a reload builds a new resolver, answers keep theirs
        self.team_id = team_id  # None: the installed workspace is unknown, so `team` is not compared
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._members: dict[str, tuple[float, frozenset[str]]] = {}  # group -> (fetched at, user ids)
        self._guests: dict[str, tuple[float, bool]] = {}  # user -> (fetched at, is a guest)
        # Called with a group's id each time its members are fetched: the bot records when, for `doctor`,
        # which runs in another process and cannot see this cache.
        self.on_fetch: Callable[[str], None] | None = None

    # fmt: off
    def resolve(self, client: WebClient | None, *, channel: str | None, user: str | None,
                team: str | None = None, shared: bool = False) -> Access:
        # fmt: on
        """The Access for a question asked in `channel` (None or D…: a DM) by `user` from `team`.
        `shared`: the channel is shared with another workspace (Slack's is_ext_shared)."""
        if not self.scopes:
            return Access(None, "no scopes configured: every document")
        if channel is None and user is None:
            return Access(None, "admin view: every document")
        if shared:
            return Access(PUBLIC, "shared channel: public documents only")
        if team and self.team_id and team != self.team_id:
            return Access(PUBLIC, "another workspace: public documents only")
        if channel is None or channel.startswith("D"):
            if user is None:
                return Access(PUBLIC, "DM from an unknown user: public documents only")
            where, grants = f"DM from {user}", self._dm_grants(client, user)
            if grants is None:
                return Access(PUBLIC, "usergroups.users.list failed: public documents only")
        elif CHANNEL_ID.match(channel):
            where, grants = f"channel {channel}", self._channel_grants(channel)
        else:
            return Access(PUBLIC, f"{channel}: not a channel or DM id, public documents only")
        if not grants:
            return Access(PUBLIC, f"{where}: no scope")
        return self._check_guest(client, user, where, grants)

    def cache_age(self) -> float | None:
        """Seconds since the oldest group membership still cached was fetched; None when none is."""
        now = self._clock()
        with self._lock:
            ages = [now - at for at, _ in self._members.values() if now - at < self.ttl_s]
        return max(ages) if ages else None

    # -- grants ----------------------------------------------------------------------------------------
    def _channel_grants(self, channel: str) -> dict[str, str]:
        return {name: "channel" for name, rule in sorted(self.scopes.items()) if channel in rule.channels}

    def _dm_grants(self, client: WebClient | None, user: str) -> dict[str, str] | None:
        """scope -> how it was granted ("user", "user group S…"), for a DM from `user`; None when a user
        group's members could not be looked up: then nothing is granted at all (fail closed, as the
        issue asks), not even what a `users` list grants."""
        grants: dict[str, str] = {}
        for name, rule in sorted(self.scopes.items()):
            if user in rule.users:  # listed by name: its groups need no lookup
                grants[name] = "user"
                continue
            for group in rule.usergroups:
                members = self._group_members(client, group)
                if members is None:
                    return None
                if user in members:
                    grants[name] = f"user group {group}"
                    break
        return grants

    def _check_guest(self, client: WebClient | None, user: str | None, where: str,
                     grants: dict[str, str]) -> Access:  # fmt: skip
        """Grants kept for a full member; for a guest only scopes with guests = true; none if unknown."""
        if client is None:
            guest = False  # no Slack to ask (see the module docstring)
        elif user is None:
            return Access(PUBLIC, f"{where}: no user to check, public documents only")
        else:
            guest = self._is_guest(client, user)
            if guest is None:
                return Access(PUBLIC, "users.info failed: public documents only")
        if guest:
            grants = {name: how for name, how in grants.items() if self.scopes[name].guests}
            if not grants:
                return Access(PUBLIC, "guest: public documents only")
            where = f"{where} (a guest)"
        shown = ", ".join(f"{name} ({how})" if how != "channel" else name for name, how in grants.items())
        return Access(frozenset(grants), f"{where}: {shown}")

    # -- Slack lookups, cached -------------------------------------------------------------------------
    def _group_members(self, client: WebClient | None, group: str) -> frozenset[str] | None:
        """The group's members; None when Slack could not say (an unknown group has none)."""
        if client is None:
            return frozenset()  # no Slack to ask (see the module docstring)
        cached = self._cached(self._members, group)
        if cached is not None:
            return cached
        try:
            users = impatient(client).usergroups_users_list(usergroup=group)["users"]
        except SlackApiError as e:
            if _reason(e) == "no_such_subteam":  # a group deleted since: it has no members, say so
                log.warning("usergroups.users.list: a user group in [scopes] does not exist")
                return frozenset()
            log.warning("usergroups.users.list failed (%s); public documents only", _reason(e))
            return None
        except Exception as e:  # noqa: BLE001 - any failure grants nothing
            log.warning("usergroups.users.list failed (%s); public documents only", _reason(e))
            return None
        if not isinstance(users, list):
            log.warning("usergroups.users.list failed (no users list); public documents only")
            return None
        members = frozenset(str(u) for u in users)
        self._store(self._members, group, members)
        if self.on_fetch is not None:
            self.on_fetch(group)
        return members

    def _is_guest(self, client: WebClient, user: str) -> bool | None:
        """Whether users.info shows a guest; None when it could not say."""
        cached = self._cached(self._guests, user)
        if cached is not None:
            return cached
        try:
            info = impatient(client).users_info(user=user)["user"]
        except Exception as e:  # noqa: BLE001 - any failure grants nothing
            log.warning("users.info failed (%s); public documents only", _reason(e))
            return None
        if not isinstance(info, dict):
            log.warning("users.info failed (no user in the answer); public documents only")
            return None
        guest = bool(info.get("is_restricted") or info.get("is_ultra_restricted"))
        self._store(self._guests, user, guest)
        return guest

    def _cached(self, cache: dict, key: str):
        now = self._clock()
        with self._lock:
            hit = cache.get(key)
            if hit is None:
                return None
            if now - hit[0] >= self.ttl_s:
                del cache[key]
                return None
            return hit[1]

    def _store(self, cache: dict, key: str, value) -> None:
        now = self._clock()
        with self._lock:
            cache[key] = (now, value)


def impatient(client: WebClient) -> WebClient:
    # Imported here: bot.slack's package imports the listeners, which import this module.
    from .slack.guard import impatient as quick

    return quick(client)


def _reason(error: Exception) -> str:
    """Slack's error code, the HTTP status when the body was not Slack's JSON, or the exception's type."""
    if isinstance(error, SlackApiError):
        data = getattr(error.response, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        return str(code or f"HTTP {getattr(error.response, 'status_code', '?')}")
    return type(error).__name__
