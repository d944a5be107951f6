"""A local stand-in for Slack's Web API: a real HTTP server on 127.0.0.1 that records every call.

The playground points the bot's WebClient at it to show what the bot would post; the tests use it to
see what the bot did. It keeps just enough state to be believable: messages (updated in place by
chat.update), threads for conversations.replies, users for users.info (guests included), user groups
for usergroups.users.list, uploaded files, the modals views.open opened and the DMs conversations.open
opens (D + the user's id).
For Socket Mode, apps.connections.open takes the app-level token (xapp-) and returns `socket_url`.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

Where = Any  # Callable[[dict], bool] | None: a filter on a call's parameters
APP_LEVEL_METHODS = {"apps.connections.open"}  # Slack takes only the app-level token (xapp-) for these


@dataclass
class Call:
    method: str
    params: dict
    at: float  # time.monotonic() when it arrived
    authorized: bool
    response: dict = field(default_factory=dict)


@dataclass
class Hold:
    """Calls matching (method, where) wait in the server until release(): lets a test pause the bot."""

    method: str
    where: Where
    held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class FakeSlackAPI:
    # fmt: off
    def __init__(self, *, token: str = "xoxb-fake", bot_user_id: str = "UEXPERTBOT",
                 bot_id: str = "BEXPERTBOT", team_id: str = "TFAKE", host: str = "127.0.0.1", port: int = 0,
                 app_token: str = "xapp-fake"):
        # fmt: on
        self.token, self.bot_user_id, self.bot_id, self.team_id = token, bot_user_id, bot_id, team_id
        self.app_token = app_token
        # What apps.connections.open hands out: a ws:// URL, or a callable making a fresh one per call
        # (e.g. a Socket Mode fake's new_url). None: Socket Mode is off for this app.
        self.socket_url: str | Callable[[], str] | None = None
        self._calls: list[Call] = []
        self._holds: list[Hold] = []
        self._cond = threading.Condition()
        self._ts = itertools.count(1)
        self._file_ids = itertools.count(1)
        self.messages: dict[str, dict] = {}  # "channel/ts" -> message
        self.ephemeral: list[dict] = []
        self.files: dict[str, dict] = {}
        self.users: dict[str, dict] = {}
        self.add_user(bot_user_id, "expertbot", is_bot=True)
        self.usergroups: dict[str, list[str]] = {}  # "S…" -> its members' user ids
        self.views: dict[str, dict] = {}  # "V…" -> a modal views.open opened
        self._view_ids = itertools.count(1)
        self._triggers: set[str] = set()  # trigger ids already exchanged: Slack takes each once
        self._server = _QuietServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/"

    def start(self) -> FakeSlackAPI:
        serve = lambda: self._server.serve_forever(poll_interval=0.05)  # noqa: E731  (quick to stop)
        self._thread = threading.Thread(target=serve, name="fake-slack-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for hold in self._holds:
            hold.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what tests and the playground use -------------------------------------------------------------
    def calls(self, method: str | None = None, where: Where = None) -> list[Call]:
        with self._cond:
            return [c for c in self._calls if _matches(c, method, where)]

    def wait_for(self, method: str, where: Where = None, count: int = 1, timeout: float = 60) -> list[Call]:
        """Wait until `count` calls of `method` matching `where` were recorded; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [c for c in self._calls if _matches(c, method, where)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [c.method for c in self._calls]
                    raise TimeoutError(
                        f"expected {count} {method} call(s), got {len(found)}; calls so far: {seen}"
                    )
                self._cond.wait(left)

    def hold(self, method: str, where: Where = None) -> Hold:
        hold = Hold(method, where)
        self._holds.append(hold)
        return hold

    # fmt: off
    def add_user(self, user_id: str, name: str = "someone", *, is_bot: bool = False,
                 is_restricted: bool = False, is_ultra_restricted: bool = False) -> None:
        # fmt: on
        """A person (or bot user) users.info knows. Guests as Slack shows them: `is_restricted` for a
        multi-channel guest, also `is_ultra_restricted` for a single-channel one."""
        self.users[user_id] = {
            "id": user_id,
            "name": name,
            "is_bot": is_bot,
            "is_restricted": is_restricted,
            "is_ultra_restricted": is_ultra_restricted,
        }

    def add_usergroup(self, group_id: str, users: list[str]) -> None:
        """A Slack user group (S…) and its members, for usergroups.users.list; again to change them."""
        with self._cond:
            self.usergroups[group_id] = list(users)

    def add_message(self, channel: str, text: str, *, user: str, thread_ts: str | None = None,
                    bot_id: str | None = None) -> str:  # fmt: skip
        """Put a message in the fake workspace as if a person (or another bot) had written it."""
        return self._add(
            channel, text, user=user, thread_ts=thread_ts, **({"bot_id": bot_id} if bot_id else {})
        )["ts"]

    def _add(self, channel: str, text: str, *, user: str, thread_ts: str | None = None, **extra) -> dict:
        msg = {
            "type": "message",
            "channel": channel,
            "ts": self.new_ts(),
            "text": text,
            "user": user,
            **extra,
        }
        if thread_ts:
            msg["thread_ts"] = thread_ts
        with self._cond:
            self.messages[f"{channel}/{msg['ts']}"] = msg
        return msg

    def thread(self, channel: str, ts: str) -> list[dict]:
        with self._cond:
            msgs = [
                m
                for m in self.messages.values()
                if m["channel"] == channel and ts in (m["ts"], m.get("thread_ts"))
            ]
        return sorted(msgs, key=lambda m: float(m["ts"]))

    def snapshot(self) -> tuple[list[dict], list[dict]]:
        """Copies of (messages in time order, ephemeral messages)."""
        with self._cond:
            messages = sorted((dict(m) for m in self.messages.values()), key=lambda m: float(m["ts"]))
            return messages, [dict(m) for m in self.ephemeral]

    def new_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    # -- the Web API -----------------------------------------------------------------------------------
    def auth_error(self, method: str, token: str | None) -> str | None:
        """Slack's error for calling `method` with `token`, or None when the token is the right one."""
        app_level = method in APP_LEVEL_METHODS
        wanted, other = (self.app_token, self.token) if app_level else (self.token, self.app_token)
        if token == wanted:
            return None
        if not token:
            return "not_authed"
        return "not_allowed_token_type" if token == other else "invalid_auth"

    def handle(self, method: str, params: dict, authorized: bool, error: str = "invalid_auth") -> dict:
        call = Call(method, params, time.monotonic(), authorized)
        for hold in list(self._holds):
            if _matches(call, hold.method, hold.where) and not hold.released.is_set():
                hold.held.set()
                hold.released.wait()
        api = getattr(self, "api_" + method.replace(".", "_"), None)
        if not authorized:
            call.response = {"ok": False, "error": error}
        else:
            call.response = api(params) if api else {"ok": False, "error": "unknown_method"}
        # Recorded once answered, so whoever waits for a call also sees what it returned (e.g. the ts).
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()
        return call.response

    def api_auth_test(self, p: dict) -> dict:
        return {"ok": True, "url": "https://fake.slack.local/", "team": "Fake", "user": "expertbot",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id}  # fmt: skip

    def api_apps_connections_open(self, p: dict) -> dict:
        url = self.socket_url() if callable(self.socket_url) else self.socket_url
        # The fake's own error name: this app has no Socket Mode server to hand out.
        return {"ok": True, "url": url} if url else {"ok": False, "error": "socket_mode_not_enabled"}

    def api_chat_postMessage(self, p: dict) -> dict:
        if not p.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        msg = self._add(p["channel"], p.get("text", ""), user=self.bot_user_id, thread_ts=p.get("thread_ts"),
                        bot_id=self.bot_id, blocks=_json(p.get("blocks")) or [])  # fmt: skip
        return {"ok": True, "channel": p["channel"], "ts": msg["ts"], "message": msg}

    def api_chat_update(self, p: dict) -> dict:
        key = f"{p.get('channel')}/{p.get('ts')}"
        with self._cond:
            msg = self.messages.get(key)
            if msg is None:
                return {"ok": False, "error": "message_not_found"}
            msg.update(text=p.get("text", msg["text"]), blocks=_json(p.get("blocks")) or [], edited=True)
        return {"ok": True, "channel": msg["channel"], "ts": msg["ts"], "text": msg["text"], "message": msg}

    def api_chat_delete(self, p: dict) -> dict:
        key = f"{p.get('channel')}/{p.get('ts')}"
        with self._cond:
            if self.messages.pop(key, None) is None:
                return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": p.get("channel"), "ts": p.get("ts")}

    def api_chat_postEphemeral(self, p: dict) -> dict:
        msg = {"channel": p.get("channel"), "user": p.get("user"), "text": p.get("text", ""),
               "blocks": _json(p.get("blocks")) or [], "ts": self.new_ts()}  # fmt: skip
        if p.get("thread_ts"):  # shown in that thread, as Slack does
            msg["thread_ts"] = p["thread_ts"]
        with self._cond:
            self.ephemeral.append(msg)
        return {"ok": True, "message_ts": msg["ts"]}

    def api_reactions_add(self, p: dict) -> dict:
        return {"ok": True}

    def api_conversations_replies(self, p: dict) -> dict:
        msgs = self.thread(p.get("channel", ""), p.get("ts", ""))
        if not msgs:
            return {"ok": False, "error": "thread_not_found"}
        return {"ok": True, "messages": msgs, "has_more": False}

    def api_views_open(self, p: dict) -> dict:
        view, trigger = _json(p.get("view")), p.get("trigger_id")
        if not trigger:
            return {"ok": False, "error": "invalid_trigger_id"}
        if not isinstance(view, dict) or view.get("type") != "modal" or not view.get("blocks"):
            return {"ok": False, "error": "invalid_arguments"}
        with self._cond:
            if trigger in self._triggers:
                return {"ok": False, "error": "exchanged_trigger_id"}
            self._triggers.add(trigger)
            opened = {**view, "id": f"V{next(self._view_ids):08d}", "team_id": self.team_id,
                      "state": {"values": {}}, "hash": self.new_ts()}  # fmt: skip
            self.views[opened["id"]] = opened
        return {"ok": True, "view": opened}

    def api_conversations_open(self, p: dict) -> dict:
        users = [u for u in (p.get("users") or "").split(",") if u]
        if len(users) != 1:  # a group DM is not what the bot opens
            return {"ok": False, "error": "users_list_not_supplied" if not users else "not_supported"}
        if users[0] not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + users[0].lstrip("UW"), "is_im": True, "user": users[0]}}

    def api_users_info(self, p: dict) -> dict:
        user = self.users.get(p.get("user", ""))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def api_usergroups_users_list(self, p: dict) -> dict:
        with self._cond:
            members = self.usergroups.get(p.get("usergroup", ""))
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(members)}

    def api_files_getUploadURLExternal(self, p: dict) -> dict:
        file_id = f"F{next(self._file_ids):08d}"
        with self._cond:
            self.files[file_id] = {"id": file_id, "filename": p.get("filename"), "data": None}
        return {"ok": True, "file_id": file_id, "upload_url": self.url.replace("/api/", f"/upload/{file_id}")}

    def upload(self, file_id: str, data: bytes) -> bool:
        with self._cond:
            if file_id not in self.files:
                return False
            self.files[file_id]["data"] = data
            self._calls.append(
                Call("upload", {"file_id": file_id, "length": len(data)}, time.monotonic(), True)
            )
            self._cond.notify_all()
        return True

    def api_files_completeUploadExternal(self, p: dict) -> dict:
        done = []
        for f in _json(p.get("files")) or []:
            stored = self.files.get(f.get("id"))
            if stored is None or stored["data"] is None:
                return {"ok": False, "error": "file_not_found"}
            stored.update(
                title=f.get("title"), channel=p.get("channel_id"), initial_comment=p.get("initial_comment")
            )
            done.append({"id": stored["id"], "name": stored["filename"], "title": stored["title"]})
        if p.get("channel_id"):  # the upload shows up in the channel like any message
            self._add(p["channel_id"], p.get("initial_comment") or "", user=self.bot_user_id, files=done,
                      thread_ts=p.get("thread_ts"), bot_id=self.bot_id)  # fmt: skip
        return {"ok": True, "files": done}


def _matches(call: Call, method: str | None, where: Where) -> bool:
    return (method is None or call.method == method) and (where is None or bool(where(call.params)))


def _json(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that went away before its reply (a bot process stopped mid-call) is not an error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(api: FakeSlackAPI):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # request lines would carry channel ids and tokens in queries
            pass

        def _reply(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _dispatch(self, body: bytes) -> None:
            url = urlparse(self.path)
            if url.path.startswith("/upload/"):
                ok = api.upload(url.path.rsplit("/", 1)[-1], body)
                self._reply(200 if ok else 404, {"ok": ok})
                return
            if not url.path.startswith("/api/"):
                self._reply(404, {"ok": False, "error": "unknown_path"})
                return
            params = dict(parse_qsl(url.query))
            ctype = self.headers.get("Content-Type", "")
            if body and "json" in ctype:
                params.update(json.loads(body))
            elif body:
                params.update(parse_qsl(body.decode()))
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.pop("token", None)
            method = url.path[len("/api/") :]
            error = api.auth_error(method, token)
            self._reply(200, api.handle(method, params, error is None, error or "invalid_auth"))

        def do_GET(self) -> None:
            self._dispatch(b"")

        def do_POST(self) -> None:
            self._dispatch(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    return Handler
