"""Answering with the default settings never imports torch (issue 12: `expertbot serve` within 600 MiB).

torch, transformers and sentence-transformers were ~600 MiB of the serving process. The default embedder
runs in llama.cpp (indexers/gguf_embed.py) and so does the bundled LLM, so a process that indexes, warms up
and answers a question through the real Bolt app must end without any of them in sys.modules. It runs in a
fresh process: this test process has torch loaded already (other tests' fixtures).
"""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT

HEAVY = ("torch", "transformers", "sentence_transformers", "peft", "bitsandbytes")

SCRIPT = r"""
import json, sys
from bot.config import load_settings
from bot.playground.app import Playground
from bot.playground.people import DM
from bot.playground.server import SAMPLE_QUESTION
from bot.wiring import build_services, prepare_process

prepare_process()  # what the CLI does first
services = build_services(load_settings(home=sys.argv[1], docs_dir=sys.argv[2], max_new_tokens=8))
services.indexer.build()  # what `expertbot index` does
playground = Playground(services, update_interval=0)
playground.warm_up()  # what `expertbot serve` does before it names its URL
playground.send("dm", SAMPLE_QUESTION)
final = playground.fake.wait_for(
    "chat.update", lambda p: p.get("channel") == DM and p.get("blocks"), timeout=240
)[-1]
playground.close()
print(json.dumps({
    "modules": sorted({m.split(".")[0] for m in sys.modules}),
    "blocks": final.params["blocks"],
    "embed_backend": services.embed_model.backend,
    "generator": services.generator.describe(),
}))
"""


# Not marked slow although it takes ~13 s (a fresh process indexes six files, loads both models, answers):
# it is the guard of the serving process's memory goal.
def test_indexing_warming_up_and_answering_import_no_torch(fresh_home, docs_copy):
    env_script = [sys.executable, "-c", SCRIPT, str(fresh_home), str(docs_copy)]
    done = subprocess.run(env_script, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    loaded = [name for name in HEAVY if name in got["modules"]]
    assert loaded == [], f"answering imported {loaded}; the embedder ran as {got['embed_backend']}"
    assert got["embed_backend"].startswith("llamacpp-")
    assert "llama.cpp" in got["generator"]
    # And it really answered, from the index: Slack got the onboarding page as a source.
    assert "handbook/onboarding.md" in json.dumps(got["blocks"])
