"""What every listener needs, handed to it through Bolt's context as `context["expertbot"]`."""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs import JobRunner
from bot.slack.answering import AnswerFlow
from bot.slack.guard import GUEST, INACTIVE, MEMBER, UserRoles
from bot.store import Store
from bot.wiring import Services

CONTEXT_KEY = "expertbot"

# What the admin check decides: ADMIN runs the command; each other answer is a reason to refuse.
ADMIN, NOT_LISTED, UNCONFIRMED = "admin", "not listed", "role unconfirmed"


@dataclass
class BotContext:
    services: Services
    store: Store
    jobs: JobRunner
    answers: AnswerFlow
    admins: frozenset[str]
    update_interval: float = 1.0
    roles: UserRoles | None = None  # set by bot.slack.guard.install_guard; without it no one is admin

    def admin_check(self, user_id: str) -> str:
        """ADMIN only for a user listed in EXPERTBOT_ADMINS whom Slack confirms as a full, active member;
        else NOT_LISTED, GUEST, INACTIVE or UNCONFIRMED (users.info failed). Fails closed."""
        if user_id not in self.admins:
            return NOT_LISTED
        role = self.roles.role(user_id) if self.roles is not None else None
        if role == MEMBER:
            return ADMIN
        return role if role in (GUEST, INACTIVE) else UNCONFIRMED

    def is_admin(self, user_id: str) -> bool:
        return self.admin_check(user_id) == ADMIN
