"""Who may reach the bot, and which admins may act: both fail closed.

- `InstallationGuard`, a global Bolt middleware, refuses requests from any workspace or Slack app other
  than the one the bot is installed as. The workspace comes from Bolt's own auth.test at start-up
  (`context.authorize_result`). auth.test names no app for a bot token, so the app is the one the first
  signed request names: only Slack can sign with this app's signing secret (or reach its app-level token
  in Socket Mode), so that first request is ours; any later request naming another app is refused.
- `UserRoles` asks Slack (users.info, cached briefly) whether a listed admin is a full member. Guests,
  deactivated users and bots never run admin commands, and a lookup that fails refuses too.
Decisions are audited in the store and logged with ids only, never message text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from slack_bolt import App, BoltResponse
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

if TYPE_CHECKING:
    from bot.slack.context import BotContext
    from bot.store import Store

log = logging.getLogger(__name__)

ROLE_TTL_S = 60.0  # a guest demoted (or a member turned guest) loses admin rights within a minute
ROLE_TIMEOUT_S = 2.0  # a slash command must be acked within 3 s: a slow users.info refuses instead
MEMBER, GUEST, INACTIVE, UNKNOWN = "member", "guest", "inactive", "unknown"

FOREIGN = (
    "Sorry, this bot only serves the workspace and Slack app it is installed in, and this request came "
    "from another one, so nothing was run."
)
EMPTY_ADMINS = (
    "EXPERTBOT_ADMINS is empty, so nobody can run /reindex or /retrain-adapter. Set it to the admins' "
    "Slack user IDs, comma-separated (e.g. EXPERTBOT_ADMINS=U012AB3CD,U045EF6GH in the environment, or "
    "admins = [\"U012AB3CD\"] in expertbot.toml); a member's ID is under their profile's ⋮ menu, "
    "'Copy member ID'. Guests are never admins."
)


def install_guard(app: App, bot: BotContext) -> None:
    """Refuse other workspaces and apps before anything else runs, and give the admin check its
    users.info lookups (through a copy of the app's WebClient)."""
    if not bot.admins:
        log.warning("%s", EMPTY_ADMINS)
    bot.roles = UserRoles(app.client)
    app.use(InstallationGuard(bot.store))


class InstallationGuard(Middleware):
    def __init__(self, store: Store):
        self.store = store
        self._app_id: str | None = None
        self._lock = threading.Lock()

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]):
        why = self._foreign(req)
        if why is None:
            return next()
        body, context = req.body, req.context
        what = _what(body)
        self.store.audit(context.user_id or "unknown", what, f"refused: {why}")
        log.info("refused %s from %s (team %s, app %s)", what, why, context.team_id, body.get("api_app_id"))
        if body.get("command"):  # a slash command's response body is shown to its user only
            return BoltResponse(status=200, body={"response_type": "ephemeral", "text": FOREIGN})
        return BoltResponse(status=200, body="")  # acked, so Slack does not retry it

    def _foreign(self, req: BoltRequest) -> str | None:
        """None for a request from the installed workspace and app; else what is wrong with it."""
        context, installed = req.context, req.context.authorize_result
        if installed is None or not installed.team_id or context.team_id != installed.team_id:
            return "another workspace"
        if installed.enterprise_id and context.enterprise_id not in (None, installed.enterprise_id):
            return "another organization"
        app_id = req.body.get("api_app_id")
        if not app_id:
            return "an unknown app"
        with self._lock:
            if self._app_id is None:
                self._app_id = app_id
                log.info("serving Slack app %s", app_id)
            return None if app_id == self._app_id else "another app"


def _what(body: dict) -> str:
    """What was asked, for the audit log: the command, event type or interaction type (never text)."""
    if body.get("command"):
        return str(body["command"])
    if body.get("type") == "event_callback":
        return f"event {(body.get('event') or {}).get('type')}"
    return str(body.get("type") or "request")


def impatient(client: WebClient, timeout: float = ROLE_TIMEOUT_S) -> WebClient:
    """The same client with a short timeout and no retries: for lookups whose failure has a safe answer
    (refuse, or public documents only), where waiting out Slack's bad moment would only delay it."""
    if not client.retry_handlers and client.timeout <= timeout:
        return client
    return WebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=timeout,
        ssl=client.ssl,
        proxy=client.proxy,
        headers=dict(client.headers),
        logger=client.logger,
        retry_handlers=[],
    )


class UserRoles:
    """A listed admin's role from users.info, remembered for ROLE_TTL_S. Failed lookups are not kept, so
    trying again asks Slack again."""

    def __init__(self, client: WebClient, ttl: float = ROLE_TTL_S, timeout: float = ROLE_TIMEOUT_S):
        # Its own client: a short timeout and no retries, so a Slack fault refuses within the ack window
        # (the answering client retries for a while, which is right for posting, not for this).
        self.client = impatient(client, timeout)
        self.ttl = ttl
        self._known: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def role(self, user_id: str) -> str:
        """MEMBER, GUEST (single- or multi-channel guest), INACTIVE (deactivated, or a bot) or UNKNOWN."""
        now = time.monotonic()
        with self._lock:
            at, role = self._known.get(user_id, (0.0, UNKNOWN))
        if role != UNKNOWN and now - at < self.ttl:
            return role
        role = self._look_up(user_id)
        if role != UNKNOWN:
            with self._lock:
                self._known[user_id] = (now, role)
        return role

    def _look_up(self, user_id: str) -> str:
        try:
            user = self.client.users_info(user=user_id)["user"]
        except SlackApiError as e:
            log.warning("users.info failed for an admin check (%s); refusing", _reason(e))
            return UNKNOWN
        except Exception as e:  # noqa: BLE001 - unreachable, timed out, garbled: all refuse
            log.warning("users.info failed for an admin check (%s); refusing", type(e).__name__)
            return UNKNOWN
        if not isinstance(user, dict):
            return UNKNOWN
        if user.get("is_restricted") or user.get("is_ultra_restricted"):
            return GUEST
        if user.get("deleted") or user.get("is_bot"):
            return INACTIVE
        return MEMBER


def _reason(error: SlackApiError) -> str:
    """Slack's error code, or the HTTP status when the body was not Slack's JSON (e.g. a proxy's 502)."""
    data = getattr(error.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return code or f"HTTP {getattr(error.response, 'status_code', '?')}"
