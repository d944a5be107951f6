"""What every listener needs, handed to it through Bolt's context as `context["expertbot"]`."""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs import JobRunner
from bot.slack.answering import AnswerFlow
from bot.store import Store

CONTEXT_KEY = "expertbot"


@dataclass
class BotContext:
    services: object  # bot.wiring.Services: answerer, indexer, registry, reopen_retriever(), retrain()
    store: Store
    jobs: JobRunner
    answers: AnswerFlow
    admins: frozenset[str]
    update_interval: float = 1.0

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.admins
