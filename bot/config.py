"""The one settings object: environment (EXPERTBOT_*, SLACK_*) over an optional expertbot.toml over defaults.

It is the only place that reads the environment. It builds the libraries' own config dataclasses, and a
bad value stops start-up with a message naming the setting and what it accepts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from adapters.config import BUNDLED_BASE_MODEL, ModelConfig
from indexers.config import BUNDLED_EMBED_MODEL, IndexConfig

from .scopes import ScopeRule, check_scope_names, doc_globs

CONFIG_FILE_ENV = "EXPERTBOT_CONFIG"  # path of the TOML file; default ./expertbot.toml if present


class ConfigError(ValueError):
    """A setting with a bad value. The message names the setting and what it accepts."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXPERTBOT_", extra="forbid", populate_by_name=True)

    home: Path = Field(Path("var"), description="data directory: index, adapters, jobs database, model cache")
    docs_dir: Path = Field(Path("examples/acme/docs"), description="folder of documents to index")
    embed_model: str = Field(BUNDLED_EMBED_MODEL, description="sentence-transformers name or path")
    embed_backend: str = Field(
        "auto",
        pattern="^(auto|fp32|bf16|llamacpp)$",
        description="auto (llamacpp if it runs the model, else bf16 if the CPU has it), fp32, bf16, llamacpp",
    )
    base_model: str = Field(BUNDLED_BASE_MODEL, description="HF id or local path of the base LLM")
    adapter: str = Field("current", description="adapter: 'current' (registry), 'none', a name or a path")
    chroma_url: str | None = Field(None, description="Chroma server URL; unset: embedded under home")
    database_url: SecretStr | None = Field(
        None, description="state store: postgresql://user:password@host:port/db; unset: SQLite under home"
    )
    top_k: int = Field(4, ge=1, le=50, description="chunks retrieved per question")
    min_similarity: float = Field(0.38, ge=-1.0, le=1.0, description="below this cosine: 'I don't know'")
    chunk_size: int = Field(180, ge=96, le=1024, description="chunk size in embedder tokens")
    chunk_overlap: int = Field(30, ge=0, description="overlap between chunks, in tokens")
    max_new_tokens: int = Field(96, ge=1, le=4096, description="answer length limit in tokens")
    device: str = Field(
        "auto", pattern="^(auto|cpu|cuda)$", description="auto, cpu or cuda: for the LLM and the embedder"
    )
    load_in_4bit: bool = Field(False, description="load the base model in 4-bit NF4 (bitsandbytes)")
    llm_weights: str = Field(
        "auto",
        pattern="^(auto|source|q4_0|q8_0|bf16|f16)$",
        description="GGUF tensor type llama.cpp answers from (a copy made once); auto: f16 if bundled",
    )
    llm_threads: int | None = Field(
        None, ge=1, le=256, description="llama.cpp decode threads; unset: 1 under 1B parameters, else all"
    )
    llm_draft_tokens: int = Field(
        0, ge=0, le=32, description="llama.cpp prompt-lookup draft tokens per step (greedy); 0: off"
    )
    llm_url: str | None = Field(None, description="OpenAI-compatible server to answer with; unset: here")
    llm_api_key: SecretStr | None = Field(None, description="bearer token for EXPERTBOT_LLM_URL")
    llm_model: str | None = Field(None, description="the base model's name on that server; unset: its first")
    llm_timeout: float = Field(60.0, gt=0, le=3600, description="seconds to connect, and between two pieces")
    glossary: Path | None = Field(None, description="glossary for retraining; default: glossary.* in docs")
    retrain: dict = Field(
        {},
        description="training overrides, e.g. {max_steps = 40, learning_rate = 5e-4} (adapters TrainConfig)",
    )
    gate_max_perplexity_increase: float = Field(
        0.05, ge=0, lt=1, description="how much worse general perplexity a new adapter may be (0.05 = 5%)"
    )
    gate_min_accuracy_gain: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="how far terminology accuracy must beat the reference's to promote (0.05 = 5 points)",
    )
    admins: Annotated[list[str], NoDecode] = Field(
        [], description="Slack user IDs allowed to run admin commands"
    )
    experts: Annotated[list[str], NoDecode] = Field(
        [],
        description="Slack user IDs (U…/W…) or user groups (S…) whose corrections are approved at once; "
        "admins count as experts",
    )
    max_concurrent_answers: int = Field(1, ge=1, le=16, description="answers in progress at once")
    answer_queue_size: int = Field(8, ge=0, le=1000, description="answers waiting beyond that; then 'busy'")
    max_question_chars: int = Field(
        4000, ge=100, le=100_000, description="longer questions are refused politely, with no model call"
    )
    user_rate: int = Field(
        10, ge=0, le=1000, description="questions a minute one person may ask; 0: no limit"
    )
    answer_timeout: float = Field(
        120.0, gt=0, le=3600, description="seconds one answer may take; then the asker is told so"
    )
    max_file_mb: float = Field(20.0, gt=0, le=10_000, description="larger files are skipped when indexing")
    eval_qa: Path | None = Field(
        None, description="QA file (JSONL) scored after /reindex and /retrain-adapter; unset or empty: off"
    )
    eval_generate: bool = Field(
        True, description="that eval also generates answers (minutes); false: retrieval figures only"
    )
    docs_url: str | None = Field(
        None, description="base URL where the docs folder is published; sources link to <base>/<path>"
    )
    scopes: dict[str, ScopeRule] = Field(
        {},
        description="[scopes.<name>] tables: docs globs, channels, users, usergroups, guests (bot/scopes.py)",
    )
    feedback_days: int = Field(
        90, ge=1, le=3650, description="days an answer's question, text and votes are kept for feedback"
    )

    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "slack_bot_token")
    )
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "slack_signing_secret")
    )
    slack_app_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "slack_app_token")
    )
    slack_api_url: str | None = Field(None, validation_alias=AliasChoices("SLACK_API_URL", "slack_api_url"))

    @field_validator("admins", "experts", mode="before")
    @classmethod
    def _split_admins(cls, value):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("admins")
    @classmethod
    def _check_admins(cls, value: list[str]):
        bad = [v for v in value if not (v[:1] in "UW" and v[1:].isalnum())]
        if bad:
            raise ValueError(f"Slack user IDs look like U012AB3CD; not {', '.join(bad)}")
        return value

    @field_validator("experts")
    @classmethod
    def _check_experts(cls, value: list[str]):
        bad = [v for v in value if not re.fullmatch(r"[UWS][A-Z0-9]+", v)]
        if bad:
            raise ValueError(
                f"experts are Slack user IDs (U012AB3CD) or user group IDs (S012AB3CD); not {', '.join(bad)}"
            )
        return value

    @field_validator("scopes")
    @classmethod
    def _check_scopes(cls, value: dict):
        check_scope_names(value)
        return value

    @field_validator("eval_qa", mode="before")
    @classmethod
    def _empty_eval_qa_is_off(cls, value):
        return None if value is None or str(value).strip() == "" else value

    @field_validator("eval_qa")
    @classmethod
    def _check_eval_qa(cls, value):
        if value is not None:
            from .evaluate import load_qa

            load_qa(value)  # a QAFileError (ValueError) names the file and line; checked at start-up
        return value

    @field_validator("chroma_url", "slack_api_url", "llm_url", "docs_url")
    @classmethod
    def _check_url(cls, value):
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value or None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        named = os.environ.get(CONFIG_FILE_ENV)
        if named and not Path(named).is_file():
            raise ValueError(
                f"{CONFIG_FILE_ENV} names {named}, which is not a file (set it empty for no file)"
            )
        toml = Path(named if named is not None else "expertbot.toml")  # empty: no config file at all
        if named != "" and toml.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    # --- the libraries' configs ------------------------------------------------------------------
    def index_config(self, **overrides) -> IndexConfig:
        return IndexConfig(
            data_dir=self.home,
            docs_dir=self.docs_dir,
            embed_model=self.embed_model,
            embed_backend=self.embed_backend,
            chroma_url=self.chroma_url,
            chunk_size=self.chunk_size,
            chunk_overlap=self.chunk_overlap,
            top_k=self.top_k,
            max_file_mb=self.max_file_mb,
            scopes=doc_globs(self.scopes),
            **overrides,
        )

    def train_config(self, **overrides):
        from adapters.train import TrainConfig

        try:
            return TrainConfig(**{**self.retrain, **overrides})
        except TypeError as e:  # an unknown key
            raise ValueError(
                f"retrain has an unknown field ({e}); see adapters/train.py TrainConfig"
            ) from None

    def base_model_config(self) -> ModelConfig:
        return ModelConfig(
            base_model=self.base_model,
            cache_dir=self.home / "models",
            device=self.device,
            load_in_4bit=self.load_in_4bit,
            gguf_weights=self.llm_weights,
            decode_threads=self.llm_threads,
            draft_tokens=self.llm_draft_tokens,
            max_new_tokens=self.max_new_tokens,
        )

    def server_config(self):
        from adapters.server import ServerConfig

        key = self.llm_api_key.get_secret_value() if self.llm_api_key else None
        return ServerConfig(
            self.llm_url, key, self.llm_model, timeout_s=self.llm_timeout, max_new_tokens=self.max_new_tokens
        )


def env_name(field: str) -> str:
    if field.isupper():  # pydantic reports an aliased field (SLACK_API_URL) by its alias
        return field
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"EXPERTBOT_{field.upper()}"


def _setting_name(loc: tuple) -> str | None:
    """A table of expertbot.toml is named as written there: scopes.hr.channels, not EXPERTBOT_SCOPES."""
    if loc and loc[0] == "scopes":
        return ".".join(str(part) for part in loc[:3] if not isinstance(part, int)) + " (expertbot.toml)"
    return None


def load_settings(**overrides) -> Settings:
    """Settings from the environment and expertbot.toml, with clean errors instead of pydantic dumps."""
    try:
        settings = Settings(**overrides)
        # Build the library configs now, so their own checks also stop start-up with a clear message.
        settings.index_config()
        settings.base_model_config()
        settings.train_config()
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            got = err.get("input")
            secret = any(word in field.lower() for word in ("secret", "token", "key"))
            shown = "" if secret else f" (got {got!r})"
            lines.append(f"{_setting_name(err['loc']) or env_name(field)}: {err['msg']}{shown}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None
    except ValueError as e:  # a library config's own check: name the setting behind its field
        message = str(e)
        field = next((f for f in Settings.model_fields if message.startswith(f + " ")), None)
        raise ConfigError(
            f"invalid settings:\n  {env_name(field) + ': ' if field else ''}{message}"
        ) from None
    return settings
