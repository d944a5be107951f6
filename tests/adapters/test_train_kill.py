"""A retrain killed with SIGKILL mid-training leaves the promoted adapter serving (issue 13 item 8).

The retrain runs as the bot runs it, as a job of bot.jobs.JobRunner over the bot's SQLite store, in a
subprocess on a tiny random Phi-3; the test kills it while it trains and then looks at what is on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from adapters.config import ModelConfig
from adapters.registry import AdapterRegistry
from adapters.train import TrainConfig

REPO = Path(__file__).resolve().parents[2]
TERMS = [
    {"term": "Zorblax", "definition": "The purple checklist that approves late invoices every Friday."},
    {"term": "Quillnet", "definition": "Our private chat server for the night shift, hosted in Lisbon."},
]

_RETRAIN_JOB = """
import sys
from pathlib import Path
from adapters.config import ModelConfig
from adapters.pipeline import retrain
from adapters.registry import AdapterRegistry
from adapters.train import TrainConfig
from bot.jobs import JobRunner
from bot.store import Store
base, glossary, registry, db, ready = sys.argv[1:6]
def work(job):
    def progress(p):
        job.progress(done=p.step, total=p.total_steps, stage=p.stage)
        if p.stage == "train" and p.step >= 4:  # checkpoint-3 is on disk: say so, and go on training
            Path(ready).write_text(job.id)
    cfg = TrainConfig(name="tiny", max_steps=2000, eval_steps=3, batch_size=4, self_distill_general=False)
    model_cfg = ModelConfig(base_model=base, device="cpu", cache_dir=Path(registry).parent / "models")
    retrain(model_cfg, cfg, AdapterRegistry(Path(registry)), glossary=Path(glossary), progress=progress,
            should_stop=job.cancelled.is_set)
    return {}
runner = JobRunner(Store(Path(db)))
job = runner.start("retrain", work, requested_by="UADMIN", channel="CJOBS")
runner.wait(job.id)
print("the retrain finished: it should have been killed", file=sys.stderr)
"""


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


def test_a_retrain_killed_mid_training_leaves_the_promoted_adapter_serving(tiny_phi3_dir, tmp_path):
    from adapters.pipeline import retrain
    from bot.jobs import JobRunner
    from bot.store import Store

    glossary = tmp_path / "g.jsonl"
    glossary.write_text("".join(json.dumps(t) + "\n" for t in TERMS))
    registry = AdapterRegistry(tmp_path / "adapters")
    model_cfg = ModelConfig(base_model=str(tiny_phi3_dir), device="cpu", cache_dir=tmp_path / "models")
    first = TrainConfig(
        name="tiny", max_steps=2, batch_size=4, eval_max_new_tokens=8, self_distill_general=False
    )
    # A random model never passes the gate on its own: promote the first version by hand.
    promoted = registry.promote(retrain(model_cfg, first, registry, glossary=glossary, promote=False).version)
    before, pointer = _digests(promoted.path), (registry.root / "current").read_bytes()

    db, ready = tmp_path / "bot.sqlite3", tmp_path / "ready"
    args = [
        sys.executable,
        "-c",
        _RETRAIN_JOB,
        str(tiny_phi3_dir),
        str(glossary),
        str(registry.root),
        str(db),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [*args, str(ready)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300  # a guard against a hang, not a timing assertion
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), (
            proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "no progress"
        )
        proc.send_signal(signal.SIGKILL)  # while it trains (and, every 3 steps, writes a checkpoint)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    after = AdapterRegistry(registry.root)
    assert after.current().name == promoted.name == "tiny-v1"
    assert (registry.root / "current").read_bytes() == pointer  # the pointer was never rewritten
    assert _digests(after.current().path) == before  # its weights, config and meta, byte for byte
    assert [i.name for i in after.list()] == ["tiny-v1"]  # no second version, whole or half
    assert json.loads((registry.root / "current").read_text())["current"] == "tiny-v1"
    assert (registry.root / ".work" / "tiny" / "checkpoints").is_dir()  # kept: a rerun resumes from them

    job_id = ready.read_text()
    store = Store(db)
    assert store.job(job_id).state == "running"  # what the kill left behind
    recovered = JobRunner(store).recover_interrupted()  # what the bot does at start-up
    assert [(j.id, j.state) for j in recovered] == [(job_id, "interrupted")]
    assert store.add_job("retrain-next", "retrain", requested_by="UADMIN", channel="CJOBS").state == "running"
