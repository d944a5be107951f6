"""How many questions one person may ask: EXPERTBOT_USER_RATE a minute, over any sliding minute."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0


class UserRate:
    """At most `per_minute` questions from one person in any WINDOW_S seconds; 0: no limit.

    Only admitted questions count, so someone refused keeps no one else waiting and is not refused for
    longer by asking again. Safe to call from Bolt's listener threads."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic):
        if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 0:
            raise ValueError(
                f"user_rate must be a whole number of questions a minute (0: off), got {per_minute!r}"
            )
        self.per_minute, self._clock = per_minute, clock
        self._asked: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, user: str | None) -> int:
        """0 when user may ask now (and this question counts), else the whole seconds until they may."""
        if not self.per_minute or not user:
            return 0
        with self._lock:
            now = self._clock()
            if len(self._asked) > 10_000:  # forget people who have not asked for a minute
                self._asked = {u: t for u, t in self._asked.items() if t and t[-1] > now - WINDOW_S}
            asked = self._asked.setdefault(user, deque())
            while asked and asked[0] <= now - WINDOW_S:
                asked.popleft()
            if len(asked) >= self.per_minute:
                return max(1, math.ceil(asked[0] + WINDOW_S - now))
            asked.append(now)
            return 0
