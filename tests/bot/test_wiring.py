"""The composition root: parts are built once, even when a warm-up thread and a question race for them."""

from __future__ import annotations

import gc
import logging
import threading

from bot.config import load_settings
from bot.wiring import Services


def test_warm_up_loads_the_models_and_races_build_nothing_twice(fresh_home, embed_model, caplog):
    # An empty home: no index yet, so the warm-up gets as far as the models, then says why it stopped.
    services = Services(load_settings(home=fresh_home, docs_dir=fresh_home / "docs"))
    services.__dict__["embed_model"] = embed_model
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
