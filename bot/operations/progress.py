"""What every operation reports while it runs, and how it is asked to stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One step of an operation: enough for a CLI line, a Slack message or a job's stored progress.

    stage: index | qa_eval | eval | dataset | load | plan | train | evaluate | register | done.
    eta_s is this stage's remaining time; eta_total_s the whole operation's, where it can tell."""

    stage: str
    done: int | None = None
    total: int | None = None
    loss: float | None = None
    message: str | None = None
    eta_s: float | None = None
    eta_total_s: float | None = None

    def fields(self) -> dict:
        """As a job's progress fields (bot.jobs): the whole operation's ETA where there is one."""
        eta = self.eta_total_s if self.eta_total_s is not None else self.eta_s
        shown = {"stage": self.stage, "done": self.done, "total": self.total, "loss": self.loss}
        shown.update(message=self.message, eta_s=eta)
        return {k: v for k, v in shown.items() if v is not None}


ProgressFn = Callable[[Progress], None]
ShouldStop = Callable[[], bool]


def ignore(_progress: Progress) -> None:
    """The progress callback of a caller that shows none."""


def never() -> bool:
    """The should_stop of a caller that never cancels (a command line stops with Ctrl-C)."""
    return False


class OperationCancelled(Exception):  # noqa: N818 - a request to stop, not a fault
    """should_stop said stop between two steps; nothing was switched."""


class RateETA:
    """The time left from the rate so far: elapsed / done * (total - done)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> float | None:
        if not done or done > total:
            return None
        return (time.monotonic() - self.started) / done * (total - done)
