"""Fixtures for the Slack tests: real Services (real index, real model), a fake Slack Web API, real Bolt.

The answering tests need a real Answerer, so `slack_services` wires one from Settings like the bot does,
over its own writable copy of a few acme docs (the reindex test adds a file to it). Answers are kept
short (max_new_tokens) because the CPU model makes ~27 tokens a second.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from pathlib import Path

import pytest

from bot.playground.fakeapi import FakeSlackAPI
from bot.playground.simulate import SlackSimulator
from bot.slack.app import build_app, start_up
from bot.store import Store

from .slack_fake import ADMIN, SIGNING_SECRET, TOKEN, client_for

ROOT = Path(__file__).resolve().parents[2]
ACME_DOCS = ROOT / "examples" / "acme" / "docs"
DOCS = ["handbook/onboarding.md", "support/support-escalation.txt", "engineering/oncall-runbook.md"]


@pytest.fixture(scope="session")
def slack_docs(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("slack-docs") / "docs"
    for rel in DOCS:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ACME_DOCS / rel, dest / rel)
    return dest


@pytest.fixture(scope="session")
def slack_services(tmp_path_factory, model_cache, embed_model, slack_docs):
    """Services over an index of `slack_docs`, built once; ADMIN is the one admin."""
    from bot.config import load_settings
    from bot.wiring import build_services

    home = tmp_path_factory.mktemp("slack-home")
    (home / "models").symlink_to(model_cache, target_is_directory=True)  # the session's converted LLM
    settings = load_settings(home=home, docs_dir=slack_docs, max_new_tokens=12, admins=[ADMIN])
    services = build_services(settings, embed_model=embed_model)  # reuse the session's embedder
    services.indexer.build()
    return services


def indexed_services(tmp_path_factory, model_cache, embed_model, docs: Path, name: str, **settings):
    """Services of their own (home, a copy of `docs`, the index built) sharing the session's models:
    for tests that write state (corrections, scopes) the shared slack_services must not see."""
    from bot.config import load_settings
    from bot.wiring import build_services

    root = tmp_path_factory.mktemp(name)
    home = root / "home"
    shutil.copytree(docs, root / "docs")
    home.mkdir()
    (home / "models").symlink_to(model_cache, target_is_directory=True)
    services = build_services(
        load_settings(home=home, docs_dir=root / "docs", **settings), embed_model=embed_model
    )
    services.indexer.build()
    return services


@pytest.fixture
def fake_slack():
    with FakeSlackAPI(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def sim(fake_slack) -> SlackSimulator:
    return SlackSimulator(SIGNING_SECRET, fake=fake_slack)


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "bot.sqlite3"


@pytest.fixture
def make_app(slack_services, fake_slack, store_path):
    """Build the real Bolt app against the fake Slack and start it up as `serve` does; call again to
    simulate a restart (same database)."""

    def make(services=None, **overrides):
        kwargs = {
            "client": client_for(fake_slack),
            "signing_secret": SIGNING_SECRET,
            "store": Store(store_path),
        }
        app = build_app(services or slack_services, **{**kwargs, "update_interval": 0, **overrides})
        start_up(app)
        return app

    # Stores are left open: a job or answer still finishing in the background may write to them.
    return make


@pytest.fixture
def playground(slack_services, store_path):
    """The playground (its page, fake Slack and Bolt app) served on a free port: (Playground, base URL)."""
    with served_playground(slack_services, Store(store_path)) as served:
        yield served


@contextlib.contextmanager
def served_playground(services, store: Store):
    """A playground over `services` (every piece streamed), its page served on a free port."""
    from bot.playground.app import Playground
    from bot.playground.server import make_server

    pg = Playground(services, store=store, update_interval=0)
    server = make_server(pg, port=0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield pg, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        pg.close()
