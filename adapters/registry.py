"""Versioned adapters on disk: <root>/<name>-v<N>/, an atomic `current` pointer, promote and rollback.

Layout of one version: adapter_model.safetensors, adapter_config.json, meta.json (base model id and
fingerprint, dataset hash, metrics, settings, created time, gate verdict), optionally loss.png, and for a
GGUF base model adapter_model.gguf, the same LoRA for llama.cpp (written by the `export` callable).
A version is assembled in a hidden temp dir and renamed into place, and the pointer is replaced with
os.replace, so a crash leaves either the old state or the new one, never half of either.

The pointer ({"current": name or None, "history": [names promoted, oldest first]}) is kept by a
PointerStore: by default the file <root>/current; the bot hands in one backed by its state database
(EXPERTBOT_DATABASE_URL) so that every host sees the same promotion. The versions stay on disk either way.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from adapters.generate import SAFE_ADAPTER_FILE, AdapterRef, UnsafeAdapterError, check_safe_adapter

log = logging.getLogger(__name__)

POINTER = "current"
META = "meta.json"
ADAPTER_CONFIG = "adapter_config.json"
# Copied into a version; anything else in a training folder (checkpoints, optimizer state) is not.
_COPIED = (SAFE_ADAPTER_FILE, ADAPTER_CONFIG, "loss.png", "README.md", "adapter_model.gguf")
_VERSION = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]*)-v(?P<n>[1-9][0-9]*)$")


class RegistryError(ValueError):
    """A registry operation that cannot be done (unknown version, nothing to roll back to, ...)."""


@dataclass
class AdapterInfo:
    name: str  # "acme-v3"
    path: Path
    created: str
    metrics: dict
    base_model: str
    base_fingerprint: str = ""
    dataset_hash: str = ""
    settings: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)  # {"promote": bool, "reasons": [...]}
    family: str = ""
    version: int = 0

    def ref(self) -> AdapterRef:
        return AdapterRef(self.name, self.path)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "created": self.created,
            "metrics": self.metrics,
            "base_model": self.base_model,
            "base_fingerprint": self.base_fingerprint,
            "dataset_hash": self.dataset_hash,
            "settings": self.settings,
            "gate": self.gate,
            "family": self.family,
            "version": self.version,
        }


def _write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PointerStore(Protocol):
    """Where the `current` pointer is kept. get: the pointer, or None when nothing was ever promoted."""

    def get(self) -> dict | None: ...

    def set(self, data: dict) -> None: ...


class FilePointer:
    """The pointer as a JSON file, replaced atomically."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def get(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RegistryError(
                f"adapter pointer {self.path} is unreadable ({err}); fix or delete it"
            ) from None

    def set(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(self.path, data)


class AdapterRegistry:
    """Adapter versions under `root` (<home>/adapters). Reads are cheap: no torch, no model.

    export(folder): writes what an inference engine needs beside the peft files of a new version
    (adapters.gguf_lora.exporter_for: the GGUF LoRA file), before the version appears.
    pointer: where `current` is kept; default the file <root>/current."""

    def __init__(
        self,
        root: Path,
        export: Callable[[Path], object] | None = None,
        pointer: PointerStore | None = None,
    ):
        self.root = Path(root)
        self.export = export
        self.pointer = pointer if pointer is not None else FilePointer(self.root / POINTER)

    # -- reading -------------------------------------------------------------------------------
    def _pointer(self) -> dict:
        data = self.pointer.get() or {}
        if not isinstance(data, dict):
            raise RegistryError(f"adapter pointer holds {type(data).__name__}, not an object; promote again")
        return {"current": data.get("current"), "history": list(data.get("history", []))}

    def get(self, name: str) -> AdapterInfo:
        """A version by name ("acme-v3"); refuses folders whose weights are not safetensors."""
        m = _VERSION.match(name or "")
        path = self.root / name if m else None
        if path is None or not (path / META).is_file():
            known = ", ".join(i.name for i in self.list()) or "none"
            raise RegistryError(f"no adapter version {name!r} in {self.root}; known: {known}")
        check_safe_adapter(path)  # looks at file names only: a pickle is never opened
        try:
            meta = json.loads((path / META).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RegistryError(f"{path / META} is unreadable ({err})") from None
        return AdapterInfo(
            name=name,
            path=path,
            created=meta.get("created", ""),
            metrics=meta.get("metrics", {}),
            base_model=meta.get("base_model", ""),
            base_fingerprint=meta.get("base_fingerprint", ""),
            dataset_hash=meta.get("dataset_hash", ""),
            settings=meta.get("settings", {}),
            gate=meta.get("gate", {}),
            family=m["name"],
            version=int(m["n"]),
        )

    def list(self) -> list[AdapterInfo]:
        """All loadable versions, oldest first (by family, then version number)."""
        if not self.root.is_dir():
            return []
        out = []
        for path in self.root.iterdir():
            m = _VERSION.match(path.name)
            if not m or not path.is_dir() or not (path / META).is_file():
                continue  # temp dirs (hidden), stray files
            try:
                out.append(self.get(path.name))
            except (UnsafeAdapterError, RegistryError, FileNotFoundError) as err:
                log.warning("skipping adapter %s: %s", path.name, err)
        return sorted(out, key=lambda i: (i.family, i.version))

    def current(self) -> AdapterInfo | None:
        name = self._pointer()["current"]
        return self.get(name) if name else None

    def next_name(self, family: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", family or ""):
            raise RegistryError(f"adapter name must be lowercase letters, digits, '-' or '_', got {family!r}")
        taken = [
            int(m["n"])
            for p in self.root.glob(f"{family}-v*")
            if (m := _VERSION.match(p.name)) and m["name"] == family
        ]
        return f"{family}-v{max(taken, default=0) + 1}"

    # -- writing -------------------------------------------------------------------------------
    def register(self, family: str, adapter_dir: Path, meta: dict) -> AdapterInfo:
        """Copy a trained adapter (safetensors only) into a new <family>-v<N>, atomically."""
        adapter_dir = Path(adapter_dir)
        check_safe_adapter(adapter_dir)
        if not (adapter_dir / ADAPTER_CONFIG).is_file():
            raise RegistryError(f"adapter folder {adapter_dir} has no {ADAPTER_CONFIG}")
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_dirs()
        tmp = Path(tempfile.mkdtemp(prefix=f".{family}.tmp-", dir=self.root))
        try:
            for name in _COPIED:
                if (adapter_dir / name).is_file():
                    shutil.copy2(adapter_dir / name, tmp / name)
            meta = {"created": datetime.now(UTC).isoformat(timespec="seconds"), **meta}
            (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
            self._export(tmp, family)
            while True:
                name = self.next_name(family)
                try:
                    # rename(2) of a directory fails if the target exists and is not empty: another
                    # process took this number first, so take the next one.
                    os.rename(tmp, self.root / name)
                    break
                except OSError:
                    if not (self.root / name).exists():
                        raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("registered adapter %s", name)
        return self.get(name)

    def _export(self, folder: Path, family: str) -> None:
        if self.export is None:
            return
        try:
            self.export(folder)
        except (ValueError, OSError) as err:
            # The peft files are still good for transformers and vLLM; llama.cpp converts on first use and
            # says then what is wrong.
            log.warning("adapter %s registered without its GGUF LoRA file: %s", family, err)

    def _remove_stale_temp_dirs(self, older_than_s: float = 3600) -> None:
        # A register() killed mid-copy (SIGKILL, power loss) leaves its hidden temp dir behind. One that
        # is an hour old cannot belong to a live register (a copy takes seconds), so it is safe to delete.
        cutoff = time.time() - older_than_s
        for stale in self.root.glob(".*.tmp-*"):
            try:
                if stale.is_dir() and stale.stat().st_mtime < cutoff:
                    shutil.rmtree(stale, ignore_errors=True)
                    log.info("removed an interrupted registration's temp dir %s", stale.name)
            except OSError:
                pass  # removed by someone else meanwhile

    def set_gate(self, name: str, gate: dict) -> AdapterInfo:
        """Record the gate verdict (and its reasons) in a version's meta.json."""
        info = self.get(name)
        meta = json.loads((info.path / META).read_text())
        meta["gate"] = gate
        _write_json_atomic(info.path / META, meta)
        return self.get(name)

    def promote(self, name: str) -> AdapterInfo:
        """Make `name` current (an admin may promote a version the gate refused)."""
        info = self.get(name)
        pointer = self._pointer()
        history = [h for h in pointer["history"] if h != name] + [name]
        self.pointer.set({"current": name, "history": history})
        log.info("promoted adapter %s", name)
        return info

    def rollback(self) -> AdapterInfo | None:
        """Go back to the version promoted before the current one; None means the base model."""
        pointer = self._pointer()
        if not pointer["current"]:
            raise RegistryError("nothing to roll back: no adapter is current (the base model is in use)")
        history = [h for h in pointer["history"] if h != pointer["current"]]
        # Skip versions deleted (or made unloadable) since they were promoted.
        while history:
            try:
                info = self.get(history[-1])
                break
            except (RegistryError, UnsafeAdapterError, FileNotFoundError) as err:
                log.warning("rollback skips %s: %s", history[-1], err)
                history.pop()
        else:
            info = None
        self.pointer.set({"current": info.name if info else None, "history": history})
        log.info("rolled back to %s", info.name if info else "the base model")
        return info
