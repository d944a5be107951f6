"""The composition root: the one place where settings become objects and objects are wired together.

Everything is built on first use, so `expertbot index` never loads the LLM and `doctor` loads nothing.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import threading
from pathlib import Path

from .config import Settings

log = logging.getLogger(__name__)


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


def _built_once(method):
    """Like functools.cached_property, but the first build holds the Services lock, so a warm-up thread
    and the first question never load the same model twice (cached_property stopped locking in 3.12).
    The value lives in the instance __dict__ under the same name, where tests may also put one."""
    name = method.__name__

    @functools.wraps(method)
    def get(self):
        if name not in self.__dict__:
            with self._build_lock:  # re-entrant: building the answerer builds the retriever, ...
                if name not in self.__dict__:
                    self.__dict__[name] = method(self)
        return self.__dict__[name]

    return property(get)


class Services:
    def __init__(self, settings: Settings, reload=None):
        """reload: () -> Settings, read again from where `settings` came from (the CLI passes
        load_settings): a running bot's /reindex then applies a changed [scopes] without a restart."""
        offline_environment()
        quiet_libraries()
        self.settings = settings
        self._reload = reload
        self._build_lock = threading.RLock()
        settings.home.mkdir(parents=True, exist_ok=True)

    def warm_up(self) -> None:
        """Load what the first question needs (embedder, index, LLM, the current adapter's LoRA), so
        that its asker does not wait for it. A failure only logs: the question itself will report it."""
        from indexers import StoreError

        try:
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
            finally:
                settle_heap()
            log.info("models loaded: ready for questions")
        except Exception as err:  # noqa: BLE001 - warming up is best effort by design
            from adapters.server import LLMServerError

            # A server's error names its URL and what went wrong (never a key): worth saying at start-up.
            why = str(err) if isinstance(err, LLMServerError) else type(err).__name__
            log.warning("warm-up did not finish (%s); the first question loads what it needs", why)

    @_built_once
    def embed_model(self):
        from indexers import load_embed_model

        s = self.settings  # the embedder runs where the LLM does: a GPU where there is one
        model = load_embed_model(
            s.embed_model, device=s.device, backend=s.embed_backend, cache_dir=s.home / "models" / "embed"
        )
        settle_heap()  # `expertbot index` and /reindex build on it: see settle_heap
        return model

    @_built_once
    def index_config(self):
        return self.settings.index_config()

    @_built_once
    def store(self):
        from indexers import GenerationStore
        from indexers.store import open_chroma

        # One store, and one Chroma client in it, for the indexer (a /reindex job) and the retriever (the
        # warm-up, a question). GenerationStore would open Chroma on first use, unlocked: two threads
        # doing so at once for one path broke both (AttributeError 'RustBindingsAPI', KeyError on the
        # path). Opened here, under the build lock, it is opened once.
        cfg = self.index_config
        return GenerationStore(cfg, client=open_chroma(cfg))

    @_built_once
    def indexer(self):
        from indexers import Indexer

        return Indexer(self.index_config, self.embed_model, self.store)

    @_built_once
    def retriever(self):
        from indexers import Retriever

        return Retriever(self.index_config, self.embed_model, self.store)

    def reopen_retriever(self) -> bool:
        moved = self.retriever.reopen()
        if moved:  # a new generation's BM25 corpus and id set are long-lived too
            settle_heap()
        return moved

    @_built_once
    def generator(self):
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

    @_built_once
    def registry(self):
        from adapters.registry import AdapterRegistry

        gguf = self._base_gguf()
        if gguf is None:  # a safetensors base: vLLM, TGI and transformers read the peft folder itself
            return AdapterRegistry(self.settings.home / "adapters")
        from adapters.gguf_lora import exporter_for

        # Each new version also gets the GGUF LoRA file llama.cpp (and llama-server --lora) loads.
        return AdapterRegistry(self.settings.home / "adapters", export=exporter_for(gguf))

    @_built_once
    def answerer(self):
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

    @_built_once
    def access(self):
        """Who may read which [scopes] here. The installed workspace's id is set once auth.test has said it
        (bot.slack.app); until then no other workspace can be told apart, and none has asked yet."""
        from .scopes import AccessResolver

        return AccessResolver(self.settings.scopes, team_id=None)

    @_built_once
    def corrections(self):
        """Experts' corrections, in the bot's database; questions embedded as the retriever embeds them."""
        from .corrections import Corrections

        return Corrections(self.settings.home, self.embed_model.get_query_embedding)

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
        old = self.__dict__.pop("access", None)
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

    def retrain(
        self,
        progress=None,
        *,
        glossary: Path | None = None,
        epochs: int | None = None,
        max_steps: int | None = None,
        qlora: bool | None = None,
        should_stop=None,
    ):
        """Train, evaluate, register and (if it passes the gate) promote a new adapter version.
        should_stop() -> True cancels it (adapters.train.TrainingCancelled) before anything is registered."""
        from adapters.dataset import CorrectionItem
        from adapters.gate import GateConfig
        from adapters.pipeline import retrain

        from .answer import NO_RETRIEVAL_SYSTEM_PROMPT
        from .evaluate import rag_scorer

        s = self.settings
        overrides = {
            k: v for k, v in (("epochs", epochs), ("max_steps", max_steps), ("qlora", qlora)) if v is not None
        }
        return retrain(
            s.base_model_config(),
            # Train with the prompt `ask --no-retrieval` sends: the adapter is tuned for how it is asked.
            s.train_config(**{"system_prompt": NO_RETRIEVAL_SYSTEM_PROMPT, **s.retrain, **overrides}),
            self.registry,
            glossary=glossary or s.glossary or self._find_glossary(),
            docs_dir=s.docs_dir,
            contexts=self._contexts(),
            gate=GateConfig(
                max_perplexity_increase=s.gate_max_perplexity_increase,
                # A short CPU retrain went from 0.0% to 1.2% and was promoted when any gain was enough
                # (BENCHMARKS.md, "A default retrain on an idle machine"): noise is not a better adapter.
                min_accuracy_gain=s.gate_min_accuracy_gain,
            ),
            progress=progress,
            rag_eval=rag_scorer(self),  # the gate refuses an adapter that makes answers with retrieval worse
            should_stop=should_stop,
            # Scoped ones are marked: the pipeline leaves them out, since an adapter answers everywhere.
            corrections=[
                CorrectionItem(c.id, c.question, c.answer, scoped=bool(c.scopes))
                for c in self.corrections.approved()
            ],
        )

    def _find_glossary(self) -> Path | None:
        """glossary.* in the docs folder (the library's search), else right beside it: examples/acme keeps
        its glossary next to docs/, out of the index."""
        from adapters.glossary import SUFFIXES, find_glossary

        try:
            return find_glossary(self.settings.docs_dir)
        except FileNotFoundError:
            beside = (self.settings.docs_dir.parent / f"glossary{suffix}" for suffix in SUFFIXES)
            return next((p for p in beside if p.is_file()), None)

    def _contexts(self):
        """Chunks that mention a term, for context-grounded training examples; none without an index."""
        from indexers import NoIndexError

        try:
            self.retriever.reopen()
        except NoIndexError:
            return None
        # An adapter answers in every channel: it learns from public documents only, never a scoped one.
        return lambda term: [h.text for h in self.retriever.retrieve(term, top_k=2, allowed=frozenset())]

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
