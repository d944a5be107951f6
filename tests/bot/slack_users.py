"""The fake Slack Web API with the users the admin check must refuse, and users.info faults on demand.

FakeSlackAPI (bot/playground/fakeapi.py) knows only members and bots. This subclass adds guests, as
users.info shows them (`is_restricted` for a multi-channel guest, also `is_ultra_restricted` for a
single-channel one), and makes users.info fail the ways Slack can: `ok: false`, an HTTP 500 whose body
is not Slack's JSON, a dropped connection (nothing answers), or a hang (use `fake.hold("users.info")`).
Every other method is the fake's own.
"""

from __future__ import annotations

from bot.playground.fakeapi import FakeSlackAPI

FAULTS = ("not_ok", "http_500", "dropped")


class UsersFakeSlackAPI(FakeSlackAPI):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.users_info_fault: str | None = None  # one of FAULTS, or None for Slack's normal answer
        self._server.RequestHandlerClass = _faulty(self._server.RequestHandlerClass, self)

    def add_guest(self, user_id: str, name: str = "guest", *, single_channel: bool = False) -> None:
        self.add_user(user_id, name)
        self.users[user_id].update(is_restricted=True, is_ultra_restricted=single_channel)

    def make_guest(self, user_id: str) -> None:
        """An admin demoted to a guest in Slack's admin pages (the bot's list still names them)."""
        self.users[user_id].update(is_restricted=True, is_ultra_restricted=False)

    def api_users_info(self, p: dict) -> dict:
        if self.users_info_fault == "not_ok":
            return {"ok": False, "error": "fatal_error"}
        return super().api_users_info(p)


def _faulty(handler: type, api: UsersFakeSlackAPI) -> type:
    class Handler(handler):
        def _reply(self, status: int, payload: dict) -> None:
            fault = api.users_info_fault if self.path.startswith("/api/users.info") else None
            if fault == "dropped":  # the call was recorded; the connection closes with no response
                self.close_connection = True
                return
            if fault == "http_500":
                body = b"<html><body>500 Internal Server Error</body></html>"
                self.send_response(500)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super()._reply(status, payload)

    return Handler
