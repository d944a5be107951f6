"""The `expertbot` command makes OpenMP sleep instead of spin while it waits, unless the user says otherwise.

libgomp reads OMP_WAIT_POLICY once, when torch loads it, so only a fresh process can show the effect:
OMP_DISPLAY_ENV=VERBOSE makes libgomp print what it read (GOMP_SPINCOUNT 0 means PASSIVE took effect).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


def spin_count(tmp_path, **env_overrides) -> str:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "a.md").write_text("# Refills\n\nRefill cartridges ship on Tuesdays.\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(OMP_DISPLAY_ENV="VERBOSE", EXPERTBOT_HOME=str(tmp_path / "home"), **env_overrides)
    cli = [sys.executable, "-c", "from bot.cli import main; main()", "index", "--docs", str(docs)]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return re.search(r"GOMP_SPINCOUNT = '(\d+)'", done.stderr).group(1)


@pytest.mark.slow  # two fresh processes that load torch and the embedder: ~10-20 s
def test_the_cli_defaults_to_passive_waiting_and_an_explicit_policy_wins(tmp_path):
    assert spin_count(tmp_path) == "0"  # PASSIVE: no spinning
    assert spin_count(tmp_path, OMP_WAIT_POLICY="ACTIVE") == "30000000000"
