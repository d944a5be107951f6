"""Fact selection: which sentences of the retrieved chunks a small model gets, with the real embedder."""

from types import SimpleNamespace

from indexers.facts import api_name, best_facts, sentences


def test_dunder_names_survive_and_bold_markup_goes():
    got = sentences(
        "Run **this** and __all of it__ now. Python caches them in `__pycache__` and __main__.py."
    )
    assert got == ["Run this and all of it now.", "Python caches them in __pycache__ and __main__.py."]


def test_a_sentence_that_introduces_a_list_carries_its_items():
    text = (
        "There are several ways to enable debug mode:\n\n"
        "- Setting the PYTHONASYNCIODEBUG environment variable to 1.\n\n"
        "- Passing debug=True to run().\n\n"
        "A new paragraph.\n\n- An item of no list intro."
    )
    got = sentences(text)
    assert got[0] == (
        "There are several ways to enable debug mode: Setting the PYTHONASYNCIODEBUG environment variable "
        "to 1. Passing debug=True to run()."
    )
    assert "Passing debug=True to run()." in got  # items still stand alone too
    assert "A new paragraph." in got and "An item of no list intro." in got


def test_a_list_under_a_later_heading_is_not_carried_by_an_earlier_intro():
    got = sentences("To install it, run:\n\n## Uninstalling\n\n- Remove the folder.")
    assert got[0] == "To install it, run:" and "Remove the folder." in got


def test_api_headings_are_told_apart_from_prose_headings():
    assert api_name("base64.urlsafe_b64encode") == "base64.urlsafe_b64encode"
    assert api_name("allow_abbrev") == "allow_abbrev"
    assert api_name("bisect.bisect_right, bisect.bisect") == "bisect.bisect_right, bisect.bisect"
    assert api_name("bz2.open(filename, compresslevel=9)") == "bz2.open(filename, compresslevel=9)"
    assert api_name("argparse.ArgumentParser(" + "x=None, " * 20 + ")") == "argparse.ArgumentParser"
    for heading in ("How do I contact the IT Helpdesk?", "12.2. Creating Virtual Environments", "usage"):
        assert api_name(heading) is None


def _hit(section: str, text: str):
    return SimpleNamespace(section=section, text=f"{section}\n{text}")


def test_facts_from_an_api_entry_name_it(embed_model):
    hits = [
        _hit("base64.urlsafe_b64encode", "Encode bytes using the URL- and filesystem-safe alphabet."),
        _hit("Introduction", "This module encodes binary data. It has many functions."),
    ]
    facts = best_facts("Which function encodes with the URL-safe alphabet?", hits, embed_model, n=2)
    assert facts[0].text == (
        "base64.urlsafe_b64encode: Encode bytes using the URL- and filesystem-safe alphabet."
    )
    assert facts[0].hit == 0 and facts[1].text in (  # a prose section's sentences are led by its heading
        "Introduction: This module encodes binary data.",
        "Introduction: It has many functions.",
    )


def test_facts_reuse_the_retrievers_query_vector(acme_services, embed_model):
    """The retriever hands its query vector on; facts then embed only the sentences, never the question."""
    question = "Which port does Gutter terminate TLS on?"
    acme_services.retriever.reopen()
    hits = acme_services.retriever.retrieve(question, top_k=4)
    assert hits.query == question
    assert hits.query_vector == embed_model.get_query_embedding(question)
    calls = []

    class Counting:  # the real embedder, counting question embeddings
        def get_query_embedding(self, text):
            calls.append(text)
            return embed_model.get_query_embedding(text)

        def get_text_embedding_batch(self, texts):
            return embed_model.get_text_embedding_batch(texts)

    reused = best_facts(question, hits, Counting(), n=3)
    assert calls == []
    fresh = best_facts(question, list(hits), Counting(), n=3)  # a plain list has no vector: embedded once
    assert calls == [question]
    assert [f.text for f in reused] == [f.text for f in fresh]
    other = best_facts("Who runs Gutter?", hits, Counting(), n=3)  # another question: not the hits' vector
    assert calls == [question, "Who runs Gutter?"] and other
