"""The composition root: the one place where settings become objects and objects are wired together.

`build_services(settings, **overrides)` returns the Services; every part is built on first use, so
`expertbot index` never loads the LLM and `doctor` loads nothing. Overrides hand in a part ready-made
(a test's fake, or a part another Services already loaded); the Protocols in bot.parts say what each
must offer. Nothing here touches the process (environment, logging, the garbage collector) on its own:
entry points call prepare_process(), and whoever finishes a load calls settle_heap().
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .config import Settings
from .parts import Embedder, Generator, Registry, Retriever, Store

if TYPE_CHECKING:
    from indexers import IndexConfig, Indexer

    from .answer import Answerer
    from .corrections import Corrections
    from .scopes import AccessResolver

log = logging.getLogger(__name__)
T = TypeVar("T")


def offline_environment() -> None:
    """The bundled models are local files; make sure no library reaches for a model hub."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' per-load weight bars
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def quiet_libraries() -> None:
    """Known-harmless warnings that would scare a new user on every command."""
    # bitsandbytes looks for an optional CPU kernel package at import and warns when it is absent.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def prepare_process() -> None:
    """What an entry point (the CLI, `serve`) does once, before building Services: offline, and quiet."""
    offline_environment()
    quiet_libraries()


def settle_heap() -> None:
    """Take what is alive now (models, tokenizers, an opened index) out of the garbage collector's walks.

    Python's full collection visits every tracked object; with the models and an index loaded that is
    hundreds of thousands of them, and one such pause (0.5 s on this 2-core machine) landed inside an
    incremental reindex whenever it allocated enough. Called after a load, never per question: collect what is
    garbage, then freeze the rest. Frozen objects are still freed by reference counting; unfreezing
    first lets a dropped index's reference cycles be collected too."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class AdapterNotFoundError(ValueError):
    pass


class _Part(Generic[T]):
    """A part built on first use. The first build holds the Services lock, so a warm-up thread and the
    first question never load the same model twice (functools.cached_property stopped locking in 3.12).
    Built or handed in, the part lives in Services._parts; assigning one afterwards is refused."""

    def __init__(self, build: Callable[[Services], T]):
        self._build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Part[T]: ...

    @overload
    def __get__(self, obj: Services, owner: type | None = None) -> T: ...

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        parts = obj._parts
        if self.name not in parts:
            with obj._build_lock:  # re-entrant: building the answerer builds the retriever, ...
                if self.name not in parts:
                    parts[self.name] = self._build(obj)
        return parts[self.name]

    def __set__(self, obj, value) -> None:
        raise AttributeError(
            f"Services.{self.name} cannot be replaced once the Services exist; "
            f"pass it as build_services(settings, {self.name}=...)"
        )


def build_services(
    settings: Settings, *, reload: Callable[[], Settings] | None = None, **overrides: Any
) -> Services:
    """The bot's parts over `settings`, each built on first use unless handed in ready-made here.

    overrides: part name -> the part (see PARTS; Protocols in bot.parts), e.g. embed_model=an_embedder,
    generator=another_services.generator. reload: see Services. An unknown name raises TypeError."""
    return Services(settings, reload=reload, **overrides)


class Services:
    def __init__(self, settings: Settings, reload: Callable[[], Settings] | None = None, **overrides: Any):
        """reload: () -> Settings, read again from where `settings` came from (the CLI passes
        load_settings): a running bot's /reindex then applies a changed [scopes] without a restart.
        overrides: parts handed in ready-made (build_services)."""
        unknown = sorted(set(overrides) - set(PARTS))
        if unknown:
            raise TypeError(
                f"unknown part{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for "
                f"build_services(); the parts that can be handed in are {', '.join(PARTS)}"
            )
        self.settings = settings
        self._reload = reload
        self._build_lock = threading.RLock()
        self._parts: dict[str, Any] = dict(overrides)
        settings.home.mkdir(parents=True, exist_ok=True)

    def built(self) -> frozenset[str]:
        """The parts built (or handed in) so far; asking builds nothing (`doctor`, `ask` check this)."""
        return frozenset(self._parts)

    def warm_up(self) -> None:
        """Load what the first question needs (embedder, index, LLM, the current adapter's LoRA), so
        that its asker does not wait for it. A failure only logs: the question itself will report it."""
        try:
            self._warm_up()
        except Exception as err:  # noqa: BLE001 - warming up is best effort by design
            from adapters.server import LLMServerError

            # A server's error names its URL and what went wrong (never a key): worth saying at start-up.
            why = str(err) if isinstance(err, LLMServerError) else type(err).__name__
            log.warning("warm-up did not finish (%s); the first question loads what it needs", why)
        finally:
            settle_heap()  # what did load stays loaded, and a later /reindex builds on the embedder

    def _warm_up(self) -> None:
        from indexers import StoreError

        self.embed_model.get_query_embedding("warm-up")
        hello = [{"role": "user", "content": "Hello"}]
        adapter = self.resolve_adapter()
        for line in getattr(self.generator, "startup_warnings", lambda _: [])(adapter):
            log.warning("%s", line)  # e.g. a server that cannot load a promoted adapter
        self.generator.generate(hello, adapter=adapter, max_new_tokens=1)
        log.info("answers come from %s", self.generator.describe())
        try:
            self.answerer.retriever.reopen()  # last: with no index yet, the models are still warm
        except StoreError:
            log.info("models loaded; no index yet: run `expertbot index` or /reindex")
            return
        log.info("models loaded: ready for questions")

    def load_indexer(self) -> Indexer:
        """The indexer, its embedder loaded now and the heap settled after it (see settle_heap): what
        `expertbot index` and a reindex job start with. Loads no LLM."""
        indexer = self.indexer  # builds the embedder
        settle_heap()
        return indexer

    @_Part
    def embed_model(self) -> Embedder:
        from indexers import load_embed_model

        s = self.settings  # the embedder runs where the LLM does: a GPU where there is one
        return load_embed_model(
            s.embed_model, device=s.device, backend=s.embed_backend, cache_dir=s.home / "models" / "embed"
        )

    @_Part
    def index_config(self) -> IndexConfig:
        return self.settings.index_config()

    @_Part
    def store(self) -> Store:
        from indexers import GenerationStore
        from indexers.store import open_chroma

        # One store, and one Chroma client in it, for the indexer (a /reindex job) and the retriever (the
        # warm-up, a question). GenerationStore would open Chroma on first use, unlocked: two threads
        # doing so at once for one path broke both (AttributeError 'RustBindingsAPI', KeyError on the
        # path). Opened here, under the build lock, it is opened once.
        cfg = self.index_config
        return GenerationStore(cfg, client=open_chroma(cfg))

    @_Part
    def indexer(self) -> Indexer:
        from indexers import Indexer

        return Indexer(self.index_config, self.embed_model, self.store)

    @_Part
    def retriever(self) -> Retriever:
        from indexers import Retriever

        return Retriever(self.index_config, self.embed_model, self.store)

    def reopen_retriever(self) -> bool:
        moved = self.retriever.reopen()
        if moved:  # a new generation's BM25 corpus and id set are long-lived too
            settle_heap()
        return moved

    @_Part
    def generator(self) -> Generator:
        """Where answers come from: a server (EXPERTBOT_LLM_URL), else llama.cpp in-process for a GGUF base
        model (the bundled one included), else transformers (safetensors models such as Phi-3)."""
        s = self.settings
        if s.llm_url:
            from adapters.server import ServerGenerator

            return ServerGenerator(s.server_config())
        cfg = s.base_model_config()
        gguf = self._base_gguf()
        if gguf is not None:
            from adapters.llamacpp import LlamaCppGenerator

            return LlamaCppGenerator(cfg, gguf)
        from adapters.generate import Generator

        return Generator(cfg)

    def _base_gguf(self) -> Path | None:
        from adapters.base import gguf_source

        found = gguf_source(self.settings.base_model_config())
        return found[0] / found[1] if found else None

    @_Part
    def registry(self) -> Registry:
        from adapters.registry import AdapterRegistry

        from .db import adapter_pointer

        gguf = self._base_gguf()
        if gguf is None:  # a safetensors base: vLLM, TGI and transformers read the peft folder itself
            return AdapterRegistry(self.settings.home / "adapters", pointer=adapter_pointer(self.settings))
        from adapters.gguf_lora import exporter_for

        # Each new version also gets the GGUF LoRA file llama.cpp (and llama-server --lora) loads.
        pointer = adapter_pointer(self.settings)  # in the state database when EXPERTBOT_DATABASE_URL is set
        return AdapterRegistry(self.settings.home / "adapters", export=exporter_for(gguf), pointer=pointer)

    @_Part
    def answerer(self) -> Answerer:
        from .answer import Answerer

        s = self.settings
        return Answerer(
            self.retriever,
            self.generator,
            min_similarity=s.min_similarity,
            top_k=s.top_k,
            max_new_tokens=s.max_new_tokens,
            resolve_adapter=self.resolve_adapter,
            select_facts=self.select_facts,
            max_question_chars=s.max_question_chars,
            find_correction=self.find_correction,
        )

    def find_correction(self, question: str, vector, allowed):
        """The approved correction of this question, if any may be used under `allowed`."""
        query = vector or (lambda: self.embed_model.get_query_embedding(question))
        return self.corrections.match(query, allowed)

    @_Part
    def access(self) -> AccessResolver:
        """Who may read which [scopes] here. The installed workspace's id is set once auth.test has said it
        (bot.slack.app); until then no other workspace can be told apart, and none has asked yet."""
        from .scopes import AccessResolver

        return AccessResolver(self.settings.scopes, team_id=None)

    @_Part
    def corrections(self) -> Corrections:
        """Experts' corrections, in the bot's database; questions embedded as the retriever embeds them."""
        from .corrections import Corrections
        from .db import state_target

        return Corrections(state_target(self.settings), self.embed_model.get_query_embedding)

    def reload_scopes(self) -> bool:
        """Read [scopes] again (see __init__); True when they changed. The index build that follows uses
        them; questions do from `apply_scopes` on, once that build has switched the index. A bad config
        raises ConfigError and changes nothing."""
        if self._reload is None:
            return False
        fresh = self._reload().scopes
        if fresh == self.settings.scopes:
            return False
        from .scopes import doc_globs

        self.settings = self.settings.model_copy(update={"scopes": fresh})
        self.index_config.scopes = doc_globs(fresh)  # the indexer's; the retriever reads each generation's
        return True

    def apply_scopes(self) -> None:
        """Questions from now on are resolved under the current [scopes]; answers under way keep theirs."""
        old = self._parts.pop("access", None)
        if old is not None:
            self.access.on_fetch = old.on_fetch

    def access_for(self, channel: str | None, user: str | None):
        """The access of someone asking from the command line (`ask`/`eval --channel --user`): memberships
        and guest status come from Slack when a bot token is set, else no user group counts."""
        client = None
        token = self.settings.slack_bot_token
        if token and (channel or user) and self.settings.scopes:
            from .slack.app import web_client

            client = web_client(token.get_secret_value(), self.settings.slack_api_url)
        return self.access.resolve(client, channel=channel, user=user)

    def select_facts(self, question: str, hits, n: int):
        from indexers.facts import best_facts

        return best_facts(question, hits, self.embed_model, n)

    def resolve_adapter(self, spec: str | None = None):
        """'none' -> base model; 'current' -> the registry's current version (read on every call: hot swap);
        a version name -> that version; a folder -> that peft adapter."""
        from adapters.generate import AdapterRef

        spec = spec or self.settings.adapter
        if spec == "none":
            return None
        if spec == "current":
            if not (self.settings.home / "adapters").exists():
                return None
            from adapters.registry import RegistryError

            try:
                info = self.registry.current()
            except RegistryError as e:  # a broken pointer must not stop every answer
                log.warning("current adapter unusable, answering with the base model: %s", e)
                return None
            return AdapterRef(info.name, info.path) if info else None
        path = Path(spec)
        if path.is_dir():
            return AdapterRef(path.name, path)
        try:
            info = self.registry.get(spec)
        except (KeyError, FileNotFoundError, ValueError):
            raise AdapterNotFoundError(
                f"adapter {spec!r} is neither a registry version (see `expertbot adapters list`) "
                "nor a folder; "
                "use 'current', 'none', a version name or a path"
            ) from None
        return AdapterRef(info.name, info.path)


# The names build_services accepts as overrides: every part Services builds on first use.
PARTS = tuple(name for name, value in vars(Services).items() if isinstance(value, _Part))
