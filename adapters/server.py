"""Answers from any OpenAI-compatible chat-completions server, streamed over SSE: vLLM, llama.cpp's
llama-server, llama-cpp-python's server, TGI.

An adapter is asked for by name. Servers differ in how they serve adapters, so the first call looks at
what the server is (GET /v1/models: vLLM's entries are owned_by "vllm", llama-server's "llamacpp",
llama-cpp-python's "me"):
- vLLM (`--enable-lora`): an adapter is a model name; one it does not serve yet is loaded through
  POST /v1/load_lora_adapter, which exists when VLLM_ALLOW_RUNTIME_LORA_UPDATING=True.
- llama-server (`--lora FILE`): adapters are loaded at start-up and picked per request by id, in the
  request's "lora" field; an adapter's name is its file's folder (or stem), as the registry lays them out.
- llama-cpp-python (a --config_file with one model entry per adapter, `lora_path` set) and TGI
  (LORA_ADAPTERS): the adapter's name is a model name, fixed at start-up.
No lock: each answer is its own HTTP request, so answers stream at once (the Slack side bounds how many).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from adapters.engine import check_max_new_tokens, check_messages
from adapters.generate import AdapterRef

log = logging.getLogger(__name__)

KINDS = {"vllm": "vLLM", "llamacpp": "llama-server", "me": "llama-cpp-python server"}


class LLMServerError(RuntimeError):
    """The LLM server could not be reached or refused the request; the message names the URL and why."""


@dataclass(frozen=True)
class ServerConfig:
    url: str  # http(s)://host:port, with or without /v1
    api_key: str | None = field(default=None, repr=False)  # never in a log line
    model: str | None = None  # the base model's name on the server; None: the first one it lists
    timeout_s: float = 60.0  # to connect, and between two pieces of an answer
    max_new_tokens: int = 256
    temperature: float = 0.0

    def __post_init__(self):
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"the LLM server URL must start with http:// or https://, got {self.url!r}")

    @property
    def api(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/v1") else base + "/v1"


@dataclass
class ServerInfo:
    kind: str  # "vLLM", "llama-server", "llama-cpp-python server" or "OpenAI-compatible server"
    models: list[str]  # what /v1/models lists (for llama-server: its one model)
    runtime_lora: bool  # can load an adapter it does not serve yet
    lora_ids: dict[str, int] = field(default_factory=dict)  # llama-server: adapter name -> id


class ServerGenerator:
    def __init__(self, cfg: ServerConfig):
        import httpx

        self.cfg = cfg
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(cfg.timeout_s))
        self._info: ServerInfo | None = None
        self._info_lock = threading.Lock()

    # -- talking to the server ----------------------------------------------------------------------

    def _request(self, method: str, path: str, **kw):
        import httpx

        # "/v1/models" is under the API root; llama-server's "/lora-adapters" beside it.
        api = self.cfg.api
        url = api + path.removeprefix("/v1") if path.startswith("/v1/") else api.removesuffix("/v1") + path
        try:
            return self._client.request(method, url, **kw)
        except httpx.HTTPError as err:
            raise self._transport_error(err) from None

    def _transport_error(self, err) -> LLMServerError:
        import httpx

        url = self.cfg.url
        if isinstance(err, httpx.TimeoutException):
            return LLMServerError(
                f"the LLM server at {url} did not answer within {self.cfg.timeout_s:g} s (timeout)"
            )
        if isinstance(err, httpx.ConnectError):
            why = "connection refused" if "refused" in str(err).lower() else str(err)
            return LLMServerError(
                f"cannot reach the LLM server at {url}: {why} (is it running? check the URL)"
            )
        return LLMServerError(f"the connection to the LLM server at {url} failed: {err}")

    def _http_error(self, response, model: str | None = None) -> LLMServerError:
        url, code = self.cfg.url, response.status_code
        try:
            body = response.json()
            error = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
            message = error.get("message", error) if isinstance(error, dict) else error
        except ValueError:
            message = response.text[:300]
        if code in (401, 403):
            return LLMServerError(
                f"the LLM server at {url} refused the request (HTTP {code}: {message}): "
                "the API key (EXPERTBOT_LLM_API_KEY) is missing or wrong"
            )
        if code == 404 and model is not None:
            served = ", ".join(self._info.models) if self._info else "unknown"
            return LLMServerError(
                f"the LLM server at {url} does not serve model {model!r} "
                f"(HTTP 404: {message}; it serves: {served})"
            )
        return LLMServerError(f"the LLM server at {url} answered HTTP {code}: {message}")

    def info(self, refresh: bool = False) -> ServerInfo:
        """What the server is and serves (asked once, again on refresh)."""
        with self._info_lock:
            if self._info is None or refresh:
                self._info = self._probe()
            return self._info

    def _probe(self) -> ServerInfo:
        response = self._request("GET", "/v1/models")
        if response.status_code != 200:
            raise self._http_error(response)
        entries = response.json().get("data", [])
        models = [e["id"] for e in entries]
        kind = KINDS.get(entries[0].get("owned_by") if entries else None, "OpenAI-compatible server")
        if kind == "vLLM":
            # 404 when VLLM_ALLOW_RUNTIME_LORA_UPDATING is off: the route does not exist then.
            runtime = self._request("POST", "/v1/load_lora_adapter", json={}).status_code != 404
            return ServerInfo(kind, models, runtime)
        if kind == "llama-server":
            adapters = self._request("GET", "/lora-adapters")
            ids = {}
            if adapters.status_code == 200:
                for a in adapters.json():
                    path = Path(a.get("path", ""))
                    ids[path.parent.name] = ids[path.stem] = a["id"]
            return ServerInfo(kind, models, False, ids)
        return ServerInfo(kind, models, False)

    def describe(self) -> str:
        info = self.info()
        loading = "loads adapters at run time" if info.runtime_lora else "cannot load adapters at run time"
        return f"{info.kind} at {self.cfg.url}, serving {', '.join(info.models) or 'nothing'}; it {loading}"

    def startup_warnings(self, adapter: AdapterRef | None) -> list[str]:
        """What an admin must know at start-up: a server that cannot load adapters, one missing now."""
        info = self.info()
        if info.runtime_lora:
            return []
        served = set(info.models) | set(info.lora_ids)
        how = {"vLLM": "restart vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True",
               "llama-server": "restart llama-server with --lora <adapter folder>/adapter_model.gguf"}.get(
            info.kind, "restart it with the adapter among its models")  # fmt: skip
        lines = [
            f"the LLM server at {self.cfg.url} ({info.kind}) cannot load adapters at run time: a promoted "
            f"adapter is answered only if the server already serves it by name ({how})"
        ]
        if adapter is not None and adapter.name not in served:
            lines.append(f"the current adapter {adapter.name!r} is not served there; its answers will fail")
        return lines

    def _route(self, adapter: AdapterRef | None) -> tuple[str, dict]:
        """(model name, extra request fields) that select adapter (None: the base model)."""
        info = self.info()
        base = self.cfg.model or (info.models[0] if info.models else "default")
        if info.kind == "llama-server":  # one model; adapters by id, all others at scale 0
            if adapter is not None and adapter.name not in info.lora_ids:
                info = self.info(refresh=True)
            want = None if adapter is None else info.lora_ids.get(adapter.name)
            if adapter is not None and want is None:
                raise self._not_served(adapter, info)
            ids = sorted(set(info.lora_ids.values()))
            return base, {"lora": [{"id": i, "scale": 1.0 if i == want else 0.0} for i in ids]}
        if adapter is None:
            return base, {}
        if adapter.name not in info.models:
            info = self.info(refresh=True)  # it may have been restarted with the adapter since
        if adapter.name not in info.models:
            if not info.runtime_lora:
                raise self._not_served(adapter, info)
            self._load(adapter)
        return adapter.name, {}

    def _not_served(self, adapter: AdapterRef, info: ServerInfo) -> LLMServerError:
        served = ", ".join(info.models + sorted(info.lora_ids)) or "nothing"
        return LLMServerError(
            f"the LLM server at {self.cfg.url} ({info.kind}) does not serve adapter {adapter.name!r} "
            f"(it serves: {served}) and cannot load adapters at run time; restart it with the adapter, "
            "or answer with EXPERTBOT_ADAPTER=none"
        )

    def _load(self, adapter: AdapterRef) -> None:
        # vLLM reads lora_path on its own machine: the registry folder must be shared with it.
        body = {"lora_name": adapter.name, "lora_path": str(Path(adapter.path).resolve())}
        response = self._request("POST", "/v1/load_lora_adapter", json=body)
        if response.status_code != 200:
            raise self._http_error(response)
        log.info("the LLM server at %s loaded adapter %s", self.cfg.url, adapter.name)
        self.info(refresh=True)

    # -- generation ---------------------------------------------------------------------------------

    def stream(
        self, messages: list[dict], *, max_new_tokens: int | None = None, adapter: AdapterRef | None = None
    ) -> Iterator[str]:
        """Text pieces of the answer as the server sends them. Closing the iterator closes the connection,
        which stops the server's generation."""
        limit = check_max_new_tokens(self.cfg.max_new_tokens if max_new_tokens is None else max_new_tokens)
        check_messages(messages)
        return self._stream(messages, limit, adapter)

    def _stream(self, messages: list[dict], limit: int, adapter: AdapterRef | None) -> Iterator[str]:
        import httpx

        model, extra = self._route(adapter)
        body = {"model": model, "messages": messages, "max_tokens": limit, "stream": True,
                "temperature": self.cfg.temperature, **extra}  # fmt: skip
        try:
            with self._client.stream("POST", self.cfg.api + "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._http_error(response, model)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # SSE comments (": ping") and blank separators
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise LLMServerError(
                            f"the LLM server at {self.cfg.url} failed mid-answer: {chunk['error']}"
                        )
                    for choice in chunk.get("choices", []):
                        if piece := (choice.get("delta") or {}).get("content"):
                            yield piece
        except httpx.HTTPError as err:
            raise self._transport_error(err) from None

    def generate(self, messages: list[dict], **kw) -> str:
        return "".join(self.stream(messages, **kw))
