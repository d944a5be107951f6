"""Answers through a real OpenAI-compatible server: llama-cpp-python's, started on 127.0.0.1 with the
bundled model and a GGUF LoRA adapter served by name. Errors name the URL and what went wrong."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from adapters.generate import AdapterRef
from adapters.gguf_lora import BaseShape, gguf_lora_for
from adapters.llamacpp_model import gguf_metadata
from adapters.server import LLMServerError, ServerConfig, ServerGenerator
from bench.llm_server import BASE_NAME, free_port, llama_cpp_server, random_smollm2_adapter, served_model_file

KEY = "test-key-4471"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
LONG_ANSWER = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> AdapterRef:
    folder = random_smollm2_adapter(tmp_path_factory.mktemp("adapters") / "terms-v1")
    return AdapterRef("terms-v1", folder)


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_cache, adapter):
    model = served_model_file(model_cache / "llamacpp")
    lora = gguf_lora_for(adapter.path, BaseShape.from_metadata(gguf_metadata(model)), model_cache / "lora")
    with llama_cpp_server(tmp_path_factory.mktemp("server"), model, {adapter.name: lora}, api_key=KEY) as url:
        yield url


@pytest.fixture(scope="module")
def gen(server):
    return ServerGenerator(ServerConfig(server, api_key=KEY, max_new_tokens=16))


def test_answers_stream_over_sse_from_the_server(gen):
    pieces = list(gen.stream(LONG_ANSWER, max_new_tokens=12))
    assert len(pieces) > 3
    assert "".join(pieces) == gen.generate(LONG_ANSWER, max_new_tokens=12)
    assert "Paris" in gen.generate(QUESTION, max_new_tokens=24)
    assert gen.describe().startswith("llama-cpp-python server at http://127.0.0.1:")
    assert f"serving {BASE_NAME}, terms-v1" in gen.describe()


def test_the_adapter_is_requested_by_name(gen, adapter):
    base = gen.generate(LONG_ANSWER, max_new_tokens=16)
    assert gen.generate(LONG_ANSWER, max_new_tokens=16, adapter=adapter) != base
    assert gen.generate(LONG_ANSWER, max_new_tokens=16) == base


def test_a_server_that_cannot_load_adapters_says_so_and_refuses_unknown_ones(gen, adapter, server):
    warnings = gen.startup_warnings(AdapterRef("nope-v1", adapter.path))
    assert "cannot load adapters at run time" in warnings[0] and server in warnings[0]
    assert "'nope-v1' is not served there" in warnings[1]
    assert gen.startup_warnings(adapter)[1:] == []  # served: nothing more to say
    with pytest.raises(
        LLMServerError, match=r"does not serve adapter 'nope-v1' \(it serves: smollm2, terms-v1\)"
    ):
        gen.generate(QUESTION, adapter=AdapterRef("nope-v1", adapter.path))


def test_a_wrong_api_key_is_named_with_the_url(server):
    wrong = ServerGenerator(ServerConfig(server, api_key="wrong"))
    with pytest.raises(LLMServerError, match=rf"server at {server} refused the request \(HTTP 401.*API key"):
        wrong.generate(QUESTION)


def test_nothing_listening_is_connection_refused():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LLMServerError, match=rf"cannot reach the LLM server at {url}: connection refused"):
        ServerGenerator(ServerConfig(url)).generate(QUESTION)


def test_a_server_that_never_answers_times_out():
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(LLMServerError, match=rf"server at {url} did not answer within 0.5 s"):
            ServerGenerator(ServerConfig(url, timeout_s=0.5)).generate(QUESTION)


def test_two_answers_are_in_flight_at_once(gen):
    """No lock on our side: a second answer's request goes out while the first is still streaming (this
    server then queues it; vLLM and llama-server --parallel batch them)."""
    solo = gen.generate(QUESTION, max_new_tokens=8)
    first = gen.stream(LONG_ANSWER, max_new_tokens=8)
    head = next(first)  # the first answer is open
    second: list[str] = []
    other = threading.Thread(target=lambda: second.append(gen.generate(QUESTION, max_new_tokens=8)))
    other.start()
    rest = "".join(first)
    other.join(timeout=120)
    assert second == [solo] and head + rest == gen.generate(LONG_ANSWER, max_new_tokens=8)


def test_the_bot_answers_through_the_server_when_llm_url_is_set(server, tmp_path, embed_model, caplog):
    from bot.config import load_settings
    from bot.wiring import build_services

    services = build_services(
        load_settings(home=tmp_path / "home", llm_url=server, llm_api_key=KEY, adapter="none"),
        embed_model=embed_model,
    )
    assert isinstance(services.generator, ServerGenerator)
    answer = services.answerer.answer("What is the capital of France?", retrieval=False)
    assert answer.text and answer.adapter is None
    with caplog.at_level(logging.INFO, logger="bot.wiring"):
        services.warm_up()
    assert "cannot load adapters at run time" in caplog.text
    assert f"answers come from llama-cpp-python server at {server}" in caplog.text
