"""`expertbot doctor`: what a new user needs to know before the first question."""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from pathlib import Path

from .config import Settings
from .db import doctor_check
from .scopes import ACCESS_TTL_S

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "sentence-transformers",
    "llama-index-core",
    "chromadb",
    "slack-bolt",
)


def run_checks(settings: Settings) -> list[tuple[bool, str, str]]:
    from .wiring import offline_environment

    offline_environment()
    return [
        _data_dir(settings.home),
        doctor_check(settings),
        _embed(settings),
        _base_model(settings),
        _index(settings),
        _admins(settings),
        _scopes(settings),
        _deliveries(settings),
        _versions(),
    ]


def _data_dir(home: Path):
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home):
            pass
    except OSError as e:
        return False, "data directory", f"{home} is not writable: {e.strerror or e}"
    return True, "data directory", f"{home.resolve()} is writable"


def _embed(settings: Settings):
    from indexers.embedding import resolve_embed_model

    try:
        path = resolve_embed_model(settings.embed_model)
    except ValueError as e:
        return False, "embedding model", str(e)
    if Path(path).exists():
        return True, "embedding model", f"{settings.embed_model} at {path}"
    return False, "embedding model", f"{path} is not a local folder; offline, only local models load"


def _base_model(settings: Settings):
    from adapters.base import bundled_gguf

    name = settings.base_model
    if name.startswith("bundled:"):
        try:
            folder, file = bundled_gguf()
        except Exception as e:  # the package may be missing or broken
            return False, "base model", f"{name}: {e}"
        return True, "base model", f"{name}: {folder / file}"
    if Path(name).exists():
        return True, "base model", f"{name} (local folder)"
    cache = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    slug = "models--" + name.replace("/", "--")
    if (cache / slug).exists():
        return True, "base model", f"{name} in the Hugging Face cache"
    return (
        False,
        "base model",
        (
            f"{name} is neither a local folder nor in the Hugging Face cache; "
            "download it on a connected machine "
            "and set EXPERTBOT_BASE_MODEL to its folder"
        ),
    )


def _index(settings: Settings):
    from indexers import GenerationStore, StoreError

    try:
        store = GenerationStore(settings.index_config())
        current = store.current()
        if current is None:
            return False, "index", "no index yet: run `expertbot index`"
        manifest = store.manifest(current) or {}
        store.collection(current, manifest=manifest)  # its own or a shared one; reaches a Chroma server too
    except StoreError as e:
        return False, "index", str(e)
    return (
        True,
        "index",
        f"generation {current}: {len(manifest.get('docs', {}))} docs, {manifest.get('chunks')} chunks",
    )


def _admins(settings: Settings):
    # An empty list is not a failure (answering works), but nobody can reindex or retrain: say how to fix.
    from .slack.guard import EMPTY_ADMINS

    if not settings.admins:
        return True, "admins", f"warning: {EMPTY_ADMINS}"
    return True, "admins", f"{len(settings.admins)} listed ({', '.join(settings.admins)}); guests never count"


def _scopes(settings: Settings):
    from .db import DatabaseError, exists, state_target
    from .scopes import needs_usergroups
    from .store import Store

    if not settings.scopes:
        return True, "scopes", "none: every document may be used in every channel and DM"
    shown = "; ".join(
        f"{name}: {len(r.docs)} glob{'s' * (len(r.docs) != 1)}, {len(r.channels)} channels, "
        f"{len(r.users)} users, {len(r.usergroups)} user groups{', guests too' if r.guests else ''}"
        for name, r in sorted(settings.scopes.items())
    )
    if not needs_usergroups(settings.scopes):
        return True, "scopes", shown
    path, fetched = state_target(settings), {}
    if exists(path):
        try:
            store = Store(path, keep_days=settings.feedback_days)
        except DatabaseError:  # the state database line says why
            return True, "scopes", shown
        try:
            fetched = store.usergroup_fetches()
        finally:
            store.close()
    groups = sorted({g for r in settings.scopes.values() for g in r.usergroups})
    ages = [f"{g} {_age(fetched[g])}" if g in fetched else f"{g} not fetched yet" for g in groups]
    return (
        True,
        "scopes",
        (
            f"{shown}. User groups (members cached {int(ACCESS_TTL_S)} s; needs usergroups:read, see "
            f"`expertbot manifest`): {', '.join(ages)}"
        ),
    )


def _age(iso: str) -> str:
    from datetime import UTC, datetime

    at = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - at).total_seconds())
    return f"fetched {seconds} s ago" if seconds < 120 else f"fetched {seconds // 60} min ago"


def _deliveries(settings: Settings):
    # Replies Slack never got (it was down or refused them, after retries): a warning, since the bot runs.
    from .db import exists, shown, state_target
    from .slack.delivery import REPORT_DAYS
    from .store import Store

    name, path = "slack deliveries", state_target(settings)
    if not exists(path):
        return True, name, "none recorded (the bot has not run here yet)"
    try:
        store = Store(path, keep_days=settings.feedback_days)
        try:
            count = store.count_failed_deliveries(REPORT_DAYS)
            latest = store.failed_deliveries(REPORT_DAYS, limit=3)
        finally:
            store.close()
    except Exception as e:  # e.g. a damaged database
        return False, name, f"cannot read {shown(path)}: {e}"
    if not count:
        return True, name, f"none failed in the last {REPORT_DAYS} days"
    shown = "; ".join(
        f"{f['at'][:19]}Z in {f['channel']} (event {f['event_id']}): {f['reason']}" for f in latest
    )
    replies = "1 reply" if count == 1 else f"{count} replies"
    why = f"{replies} could not be delivered in the last {REPORT_DAYS} days"
    return True, name, f"warning: {why} (Slack unreachable or refusing them); latest: {shown}"


def _versions():
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            return False, "versions", f"{name} is not installed; run `make setup`"
    return True, "versions", ", ".join(found)
