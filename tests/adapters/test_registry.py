"""The adapter registry: versions, the atomic `current` pointer, promote/rollback, gate, pickle refusal."""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import time

import pytest

from adapters.config import ModelConfig
from adapters.gate import GateConfig, decide
from adapters.generate import AdapterRef, Generator, UnsafeAdapterError
from adapters.registry import AdapterRegistry, FilePointer, RegistryError


@pytest.fixture(scope="module")
def real_adapter(tiny_phi3, tmp_path_factory):
    """A real peft LoRA folder (safetensors) saved from the tiny Phi-3."""
    from peft import LoraConfig, get_peft_model

    from adapters.targets import lora_target_modules

    model = get_peft_model(
        copy.deepcopy(tiny_phi3[0]), LoraConfig(r=4, target_modules=lora_target_modules(tiny_phi3[0]))
    )
    path = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(path, safe_serialization=True)
    (path / "scratch.txt").write_text("not copied")  # only the adapter files enter the registry
    return path


def meta(accuracy=0.5, perplexity=20.0):
    return {
        "base_model": "tiny-phi3",
        "base_fingerprint": "tiny@sha256:0",
        "dataset_hash": "abc",
        "metrics": {"adapter": {"accuracy": accuracy, "perplexity": perplexity}},
        "settings": {"epochs": 1},
    }


def test_versions_are_numbered_and_hold_only_safe_files(tmp_path, real_adapter):
    reg = AdapterRegistry(tmp_path / "adapters")
    assert reg.list() == [] and reg.current() is None
    assert reg.register("acme-vault", real_adapter, meta()).name == "acme-vault-v1"
    first = reg.register("acme", real_adapter, meta())  # acme-vault-v1 is another family
    second = reg.register("acme", real_adapter, meta(0.7))
    other = reg.register("beta", real_adapter, meta())
    assert [i.name for i in reg.list()] == ["acme-v1", "acme-v2", "acme-vault-v1", "beta-v1"]
    assert (first.version, second.version, other.family) == (1, 2, "beta")
    stored_files = {p.name for p in second.path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "meta.json"} <= stored_files
    assert stored_files <= {"adapter_config.json", "adapter_model.safetensors", "meta.json", "README.md"}
    stored = json.loads((second.path / "meta.json").read_text())
    assert stored["metrics"]["adapter"]["accuracy"] == 0.7 and stored["created"] == second.created
    assert second.dataset_hash == "abc" and second.base_fingerprint == "tiny@sha256:0"
    assert second.ref() == AdapterRef("acme-v2", second.path)
    with pytest.raises(
        RegistryError, match="no adapter version 'acme-v9'.*known: acme-v1, acme-v2, acme-vault-v1, beta-v1"
    ):
        reg.get("acme-v9")
    with pytest.raises(RegistryError):
        reg.get("../acme-v1")


def test_a_crashed_registration_leaves_no_version(tmp_path, real_adapter):
    reg = AdapterRegistry(tmp_path)
    reg.register("acme", real_adapter, meta())
    # What a crash mid-copy leaves behind: a hidden temp dir, never an acme-v2.
    leftover = tmp_path / ".acme.tmp-crashed"
    leftover.mkdir()
    shutil.copy(real_adapter / "adapter_config.json", leftover)
    assert [i.name for i in reg.list()] == ["acme-v1"]
    fresh = tmp_path / ".acme.tmp-inflight"  # could be another process's register() right now
    fresh.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(leftover, (two_hours_ago, two_hours_ago))
    assert reg.register("acme", real_adapter, meta()).name == "acme-v2"
    # The next registration sweeps the old leftover but leaves a recent temp dir alone.
    assert not leftover.exists() and fresh.is_dir()


def test_promote_and_rollback(tmp_path, real_adapter):
    reg = AdapterRegistry(tmp_path)
    v1, v2, v3 = (reg.register("acme", real_adapter, meta()) for _ in range(3))
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    reg.promote(v1.name)
    reg.promote(v3.name)
    assert reg.current().name == "acme-v3"
    pointer = json.loads((tmp_path / "current").read_text())
    assert pointer == {"current": "acme-v3", "history": ["acme-v1", "acme-v3"]}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".current")]  # temp pointer replaced
    assert reg.rollback().name == "acme-v1"
    assert reg.current().name == "acme-v1"
    assert reg.rollback() is None and reg.current() is None  # back to the base model
    reg.promote(v2.name)
    assert reg.current().name == "acme-v2"
    with pytest.raises(RegistryError, match="acme-v7"):
        reg.promote("acme-v7")
    assert reg.current().name == "acme-v2"


def test_the_pointer_is_kept_where_the_registry_is_told(tmp_path, real_adapter):
    # The bot hands in a database-backed PointerStore (bot/db.py DbPointer, tested against PostgreSQL in
    # tests/bot/test_store_postgres.py); here, a file outside the versions folder.
    elsewhere = FilePointer(tmp_path / "shared" / "pointer.json")
    reg = AdapterRegistry(tmp_path / "adapters", pointer=elsewhere)
    v1 = reg.register("acme", real_adapter, meta())
    reg.promote(v1.name)
    assert json.loads(elsewhere.path.read_text()) == {"current": "acme-v1", "history": ["acme-v1"]}
    assert not (tmp_path / "adapters" / "current").exists()
    assert AdapterRegistry(tmp_path / "adapters", pointer=elsewhere).current().name == "acme-v1"
    elsewhere.path.write_text("{not json")
    with pytest.raises(RegistryError, match="pointer.json is unreadable"):
        reg.current()


def test_gate_refuses_an_adapter_that_makes_answers_with_retrieval_worse():
    reference = {"accuracy": 0.5, "perplexity": 20.0}
    better_terms = {"accuracy": 0.9, "perplexity": 20.0}
    rag = {
        "reference": {"accuracy": 0.8, "correct": 8, "total": 10},
        "adapter": {"accuracy": 0.6, "correct": 6, "total": 10},
    }
    dropped = decide(better_terms, reference, "the base model", rag=rag)
    assert not dropped.promote
    assert dropped.reasons[-1] == (
        "RAG answer accuracy 60.0% (6/10) vs the base model 80.0% (8/10): "
        "the adapter makes answers with retrieval worse"
    )
    held = decide(better_terms, reference, "the base model", rag={**rag, "adapter": rag["reference"]})
    assert held.promote and held.reasons[-1].endswith(": no drop")
    tolerant = decide(better_terms, reference, "the base", GateConfig(max_rag_accuracy_drop=0.25), rag=rag)
    assert tolerant.promote
    with pytest.raises(ValueError, match="max_rag_accuracy_drop must be a number in \\[0, 1\\), got 2"):
        GateConfig(max_rag_accuracy_drop=2)


def test_gate_refuses_a_worse_adapter_and_says_why(tmp_path, real_adapter):
    reg = AdapterRegistry(tmp_path)
    current = reg.register("acme", real_adapter, meta(0.8, 20.0))
    reg.promote(current.name)
    reference = current.metrics["adapter"]
    worse = decide({"accuracy": 0.6, "perplexity": 19.0}, reference, f"current adapter {current.name}")
    assert not worse.promote
    assert "terminology accuracy 60.0% does not beat current adapter acme-v1 (80.0%)" in worse.reasons[0]
    damaged = decide({"accuracy": 0.9, "perplexity": 21.5}, reference, "current", GateConfig(0.05))
    assert not damaged.promote and "worsens by more than 5%" in damaged.reasons[1]
    better = decide({"accuracy": 0.9, "perplexity": 20.5}, reference, "current", GateConfig(0.05))
    assert better.promote and "within the 5% margin" in better.reasons[1]
    equal = decide({"accuracy": 0.8, "perplexity": 20.0}, reference, "current")
    assert not equal.promote  # "beats" means strictly better
    # The bot's default asks for 5 points more: the 0.0% -> 1.2% a short CPU retrain gave is noise.
    barely = decide({"accuracy": 0.012, "perplexity": 20.0}, {"accuracy": 0.0, "perplexity": 20.0}, "base",
                    GateConfig(min_accuracy_gain=0.05))  # fmt: skip
    assert not barely.promote and "does not beat base (0.0%) by more than 5.0%" in barely.reasons[0]
    candidate = reg.register("acme", real_adapter, {**meta(0.6, 19.0), "gate": worse.to_dict()})
    assert reg.get(candidate.name).gate["promote"] is False
    assert reg.current().name == "acme-v1"
    with pytest.raises(ValueError, match="max_perplexity_increase must be a number in \\[0, 1\\), got -0.1"):
        GateConfig(max_perplexity_increase=-0.1)


class _Payload:
    """Unpickling this writes a marker file: proof that a pickle was opened."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_adapters_are_refused_and_never_opened(tmp_path, real_adapter, tiny_phi3):
    marker, control = tmp_path / "pwned", tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()  # the payload works: opening it would have left the marker

    reg = AdapterRegistry(tmp_path / "adapters")
    good = reg.register("acme", real_adapter, meta())
    evil = tmp_path / "adapters" / "acme-v2"
    evil.mkdir()
    shutil.copy(good.path / "meta.json", evil)
    shutil.copy(good.path / "adapter_config.json", evil)
    (evil / "adapter_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UnsafeAdapterError, match="only safetensors"):
        reg.get("acme-v2")
    with pytest.raises(UnsafeAdapterError):
        reg.promote("acme-v2")
    assert [i.name for i in reg.list()] == ["acme-v1"]  # listed versions are loadable ones
    with pytest.raises(UnsafeAdapterError):
        reg.register("acme", evil, meta())
    # The inference side refuses it too, before any generation starts.
    model, tokenizer = tiny_phi3
    generator = Generator(ModelConfig(device="cpu"), model=copy.deepcopy(model), tokenizer=tokenizer)
    with pytest.raises(UnsafeAdapterError):
        generator.generate([{"role": "user", "content": "hi"}], adapter=AdapterRef("acme-v2", evil))
    # A .pt file next to valid safetensors is refused too: we do not guess which one peft would read.
    (good.path / "adapter_model.pt").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UnsafeAdapterError, match="adapter_model.pt"):
        reg.get("acme-v1")
    assert not marker.exists()
