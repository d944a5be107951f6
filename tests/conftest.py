"""Fixtures shared by every test package.

Like simonw/llm's tests, each run is isolated from the developer's own setup: no EXPERTBOT_*/SLACK_*
variables and no expertbot.toml leak in, and every data directory is a temporary one.
Expensive things (the embedder, one indexed copy of examples/acme, the converted LLM) are built once.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ACME = ROOT / "examples" / "acme"


def pytest_configure(config):
    for name in list(os.environ):
        if name.startswith(("EXPERTBOT_", "SLACK_")):
            del os.environ[name]
    os.environ["EXPERTBOT_CONFIG"] = ""  # no expertbot.toml, not even one in the working directory
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    os.environ["ANONYMIZED_TELEMETRY"] = "False"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from bot.wiring import prepare_process

    prepare_process()  # what `expertbot` does at start: the rest of the offline settings, quiet libraries


@pytest.fixture(scope="session")
def embed_model():
    from indexers import load_embed_model

    return load_embed_model()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One converted copy of the bundled LLM for the whole run; homes link to it."""
    return tmp_path_factory.mktemp("models")


def make_home(tmp: Path, model_cache: Path) -> Path:
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(model_cache, target_is_directory=True)
    return home


@pytest.fixture
def fresh_home(tmp_path, model_cache) -> Path:
    """An empty data directory that shares the session's converted LLM."""
    return make_home(tmp_path, model_cache)


@pytest.fixture(scope="session")
def acme_settings(tmp_path_factory, model_cache):
    from bot.config import load_settings

    home = make_home(tmp_path_factory.mktemp("acme"), model_cache)
    return load_settings(home=home, docs_dir=ACME / "docs", max_new_tokens=48)


@pytest.fixture(scope="session")
def acme_services(acme_settings, embed_model):
    """Services over an index of examples/acme, built once. Tests must not modify it."""
    from bot.wiring import build_services

    services = build_services(acme_settings, embed_model=embed_model)  # reuse the loaded embedder
    services.indexer.build()
    return services


@pytest.fixture
def docs_copy(tmp_path) -> Path:
    """A writable copy of a few acme docs (one per format), small enough to index in seconds."""
    picks = [
        "handbook/onboarding.md",
        "engineering/oncall-runbook.md",
        "it/helpdesk-faq.html",
        "handbook/benefits-summary.pdf",
        "policies/data-retention-policy.docx",
        "support/support-escalation.txt",
    ]
    dest = tmp_path / "docs"
    for rel in picks:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ACME / "docs" / rel, dest / rel)
    return dest
