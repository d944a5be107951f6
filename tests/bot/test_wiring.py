"""The composition root: parts are built once, even when a warm-up thread and a question race for them."""

from __future__ import annotations

import gc
import logging
import os
import threading

import pytest

from bot.config import load_settings
from bot.slack.app import build_app, start_up
from bot.store import Store
from bot.wiring import build_services, prepare_process

from .slack_fake import ADMIN, SIGNING_SECRET, client_for


def test_warm_up_loads_the_models_and_races_build_nothing_twice(fresh_home, embed_model, caplog):
    # An empty home: no index yet, so the warm-up gets as far as the models, then says why it stopped.
    services = build_services(
        load_settings(home=fresh_home, docs_dir=fresh_home / "docs"), embed_model=embed_model
    )
    got, start = [], threading.Barrier(4)

    def first_question():
        start.wait()
        got.append(services.generator)

    askers = [threading.Thread(target=first_question) for _ in range(3)]
    for t in askers:
        t.start()
    start.wait()
    with caplog.at_level(logging.INFO, logger="bot.wiring"):
        services.warm_up()
    for t in askers:
        t.join()
    assert len({id(g) for g in got}) == 1 and got[0] is services.generator
    assert services.generator._engine is not None  # llama.cpp loaded by the warm-up, not the first question
    assert "answers come from llama.cpp in-process" in caplog.text
    assert "models loaded; no index yet" in caplog.text and "did not finish" not in caplog.text


def test_warm_up_over_an_index_reports_ready(acme_services, caplog):
    with caplog.at_level(logging.INFO, logger="bot.wiring"):
        acme_services.warm_up()
    assert "ready for questions" in caplog.text and "did not finish" not in caplog.text


def test_loaded_models_and_index_are_kept_out_of_garbage_collection(acme_services):
    """After the warm-up the models and the opened index are frozen (bot.wiring.settle_heap): a full
    collection, which once paused an incremental reindex for half a second, no longer walks them."""
    try:
        acme_services.warm_up()
        retriever = acme_services.answerer.retriever
        long_lived = [acme_services.generator, retriever, retriever._gen.bm25, acme_services.embed_model]
        assert gc.get_freeze_count() > 0
        walked = {id(o) for o in gc.get_objects()}  # what a collection visits: frozen objects are not in it
        assert not [o for o in long_lived if id(o) in walked]
    finally:
        gc.unfreeze()  # let the rest of the suite collect as usual


def test_parts_are_handed_in_by_name_and_an_unknown_name_says_which_exist(tmp_path, embed_model):
    settings = load_settings(home=tmp_path / "home", docs_dir=tmp_path / "docs")
    with pytest.raises(TypeError, match="'embedder'.*embed_model, index_config, store, indexer, retriever"):
        build_services(settings, embedder=embed_model)
    services = build_services(settings, embed_model=embed_model)
    assert services.embed_model is embed_model and services.built() == {"embed_model"}
    assert services.indexer.embed_model is embed_model  # what the parts built from it get
    with pytest.raises(AttributeError, match=r"build_services\(settings, generator=\.\.\.\)"):
        services.generator = object()
    assert "generator" not in services.built()  # refused, and nothing loaded by the attempt


def test_building_services_leaves_the_process_environment_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = dict(os.environ)
    build_services(load_settings(home=tmp_path / "home", docs_dir=tmp_path / "docs"))
    assert dict(os.environ) == before
    prepare_process()  # what the entry points do instead
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_building_the_app_posts_nothing_until_it_is_started(slack_services, fake_slack, store_path):
    crashed = Store(store_path)  # a job a previous run left running
    crashed.add_job("reindex-dead02", "reindex", requested_by=ADMIN, channel="CJOBS")
    crashed.close()
    app = build_app(slack_services, client=client_for(fake_slack), signing_secret=SIGNING_SECRET,
                    store=Store(store_path), update_interval=0)  # fmt: skip
    assert not fake_slack.calls("chat.postMessage")
    assert Store(store_path).job("reindex-dead02").state == "running"
    start_up(app)
    (report,) = fake_slack.calls("chat.postMessage")
    assert report.params["channel"] == "CJOBS" and "reindex-dead02" in report.params["text"]
    assert Store(store_path).job("reindex-dead02").state == "interrupted"
