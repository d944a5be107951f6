"""The answering rules that keep a small model honest, and follow-ups on the real acme index."""

from types import SimpleNamespace

import pytest

from bot.answer import AnswerStream, Source
from bot.grounding import IDK, QUOTE_PREFIX, ground, is_idk, ungrounded
from indexers.facts import Fact

FACTS = [
    "You may work from another country for up to 20 working days per calendar year under our "
    "Work From Anywhere (WFA) scheme.",
    "Requests go to your Quire Lead at least 10 working days before you travel.",
]


def test_an_answer_built_from_the_facts_keeps_its_words_and_gets_a_quote():
    text, used = ground("You can work abroad for up to 20 working days a year under WFA.", FACTS)
    assert text == f"You can work abroad for up to 20 working days a year under WFA.\n\n> {FACTS[0]}"
    assert used == [0]  # only the fact it stands on is cited


def test_an_invented_number_or_name_is_replaced_by_the_best_fact():
    assert ungrounded("You can work abroad for 15 days, says Marta Quill.", FACTS) == ["15", "Marta", "Quill"]
    text, used = ground("You can work abroad for 15 days.", FACTS)
    assert text == QUOTE_PREFIX + FACTS[0] and used == [0]


def test_invented_options_and_identifiers_are_caught():
    facts = ["-n: Show what would be copied.", "The setting gc.auto starts a repack at 6700 loose objects."]
    assert ungrounded("Use -r to copy directories.", facts) == ["-r"]
    assert ungrounded("Set gc.autoPackLimit to 50.", facts) == ["gc.autoPackLimit", "50"]
    assert ungrounded("Use -n with gc.auto at 6700.", facts) == []
    assert ungrounded("Use base64 or API v2.", ["base64 and API v2"]) == []  # digits inside words: no numbers


def test_a_draft_that_restates_the_question_gives_way_to_the_evidence():
    question = "Which option of htcacheclean deletes empty directories?"
    facts = ["-t: Delete empty directories.", "-n: Be nice."]
    text, used = ground("The htcacheclean option deletes empty directories.", facts, question)
    assert text == QUOTE_PREFIX + facts[0] and used == [0]


def test_a_draft_that_does_not_offer_what_was_asked_gives_way_to_the_evidence():
    facts = ["-k: Enable the HTTP KeepAlive feature.", "KeepAlive: Persistent connections last 5 seconds."]
    option = ground(
        "The KeepAlive feature allows persistent connections.", facts, "Which ab option enables it?"
    )
    assert option == (QUOTE_PREFIX + facts[0], [0])  # an option was asked for: the draft names none
    number = ground("Persistent connections are kept alive.", facts, "How long do connections last?")
    assert number == (QUOTE_PREFIX + facts[0], [0])  # a number was asked for: the draft has none
    kept, used = ground("Connections last 5 seconds.", facts, "How long do connections last?")
    assert kept.startswith("Connections last 5 seconds.") and used == [1]


def test_a_draft_drawing_on_two_facts_cites_both():
    facts = [
        "Cadence: A Ferry departs every second Wednesday at 11:00 UTC.",
        "The next one is on 15 December.",
    ]
    text, used = ground("The Ferry departs on 15 December at 11:00 UTC.", facts, "When is the next Ferry?")
    assert text.endswith(f"> {facts[0]}") and used == [0, 1]


def test_sentence_start_capitals_are_not_names():
    assert ungrounded("Requests go to your Quire Lead early.", FACTS) == []


def _facts(*texts):
    return [Fact(t, i, 0.9, "") for i, t in enumerate(texts)]


def test_i_dont_know_answers_cite_nothing():
    for text in ("I don't know.", "I do not know the answer.", "  i dont know"):
        assert is_idk(text)
        stream = AnswerStream([Source("a.md", "A", 0.9)], None, iter([text]), facts=_facts(*FACTS))
        answer = stream.result()
        assert answer.refused and answer.sources == [] and answer.text == text.strip()
    assert not is_idk("I know: 20 working days.")
    empty = AnswerStream([Source("a.md", "A", 0.9)], None, iter([]), facts=_facts(*FACTS)).result()
    assert empty.text == IDK and empty.sources == []


def test_only_the_sources_an_answer_stands_on_are_cited():
    hits = [
        SimpleNamespace(file="wfa.md", section="Work From Anywhere", similarity=0.8, url=None, text=FACTS[0]),
        SimpleNamespace(file="travel.md", section="Requests", similarity=0.7, url=None, text=FACTS[1]),
    ]
    facts = _facts(*FACTS)
    stream = AnswerStream([], None, iter(["Up to 20 working days a year."]), facts=facts, hits=hits)
    answer = stream.result()
    assert [s.file for s in answer.sources] == ["wfa.md"] and answer.evidence == [FACTS[0]]


def test_a_follow_up_uses_the_thread(acme_services):
    answerer = acme_services.answerer
    history = [
        {"role": "user", "content": "Which VPN client do we use?"},
        {"role": "assistant", "content": "We use Tunnelvane."},
    ]
    alone = answerer.stream("Where do I install it from?")
    followed = answerer.stream("Where do I install it from?", history=history)
    assert followed.sources[0].file == "it/helpdesk-faq.html"
    assert [s.file for s in alone.sources] != [s.file for s in followed.sources]
    followed.result(), alone.result()  # finish both generations


def test_names_in_a_question_must_be_in_what_was_retrieved():
    from bot.grounding import question_names, unmatched_names

    assert question_names("What does the --frozen-lockfile flag of yarn do?") == ["--frozen-lockfile"]
    assert question_names("How do I make an empty set? Does {} work?") == []  # "Does" starts a sentence
    assert question_names("Which ArgumentParser option uses CRC-32 and bz2.open on Windows?") == [
        "ArgumentParser",
        "CRC-32",
        "bz2.open",
        "Windows",
    ]
    hits = [SimpleNamespace(title="bz2", section="bz2.open", text="bz2.open(filename, compresslevel=9)")]
    assert unmatched_names("What is the default level of bz2.open?", hits) == []
    assert unmatched_names("What is the default maxsize of functools.lru_cache?", hits) == [
        "functools.lru_cache"
    ]
    assert unmatched_names("Which port does the Kubernetes API use?", hits) == ["Kubernetes", "API"]
    assert unmatched_names("Does bz2 work on Windows?", hits) == ["Windows"]


def test_an_off_corpus_name_is_refused_without_calling_the_model(acme_services):
    answerer = acme_services.answerer
    question = "Which port does Gutter terminate TLS on in Kubernetes?"
    answerer.retriever.reopen()
    hits = answerer.retriever.retrieve(question, top_k=answerer.top_k)
    assert max(h.similarity for h in hits) >= answerer.min_similarity  # close enough in meaning to answer
    stream = answerer.stream(question)
    assert stream.refused and stream.sources == []  # refused before the model was called
    assert stream.result().text == IDK


def test_hits_already_retrieved_are_answered_from_as_they_are(acme_services):
    """bot.evaluate retrieves once, scores the hits, and answers from them: the answer cites the hits it
    was handed (here a VPN question's, for a question about pages), not a second retrieval's. Enough of
    them (EVIDENCE_CHUNKS) are needed to be used as they are."""
    from bot.answer import EVIDENCE_CHUNKS

    answerer = acme_services.answerer
    answerer.retriever.reopen()
    vpn = answerer.retriever.retrieve("Which VPN client do we use?", top_k=EVIDENCE_CHUNKS + 2)
    best = vpn[:EVIDENCE_CHUNKS]
    assert best.query_vector == vpn.query_vector and best.query == vpn.query  # a slice keeps its query
    question = "How quickly must I acknowledge a page?"
    own = answerer.stream(question)
    handed = answerer.stream(question, hits=vpn)
    assert own.sources and own.sources[0].file != "it/helpdesk-faq.html"
    assert [(s.file, s.section) for s in handed.sources] == list(
        dict.fromkeys((h.file, h.section) for h in best)
    )
    cited = handed.result().sources  # only what the answer stands on, and only from the handed hits
    assert {(s.file, s.section) for s in cited} <= {(h.file, h.section) for h in best}
    own.result()  # finish the other generation too


def test_a_question_over_the_cap_is_refused_before_retrieval_or_the_model():
    import time

    from bot.answer import Answerer, too_long

    # No retriever and no model at all: touching either would raise, so the refusal needs neither.
    answerer = Answerer(retriever=None, generator=None, max_question_chars=4000)
    started = time.perf_counter()
    answer = answerer.answer("How long is the pairing? " * 39_999 + "How long is the pairing?!")  # 1 MB
    assert time.perf_counter() - started < 1
    assert answer.refused and answer.sources == [] and answer.adapter is None
    assert "1,000,000 characters" in answer.text and "up to 4,000" in answer.text
    assert too_long("x" * 4000, 4000) is None and too_long("x" * 4001, 4000)


def test_the_cli_refuses_a_question_over_max_question_chars(acme_services):
    from click.testing import CliRunner

    from bot.cli import main

    assert acme_services.answerer.max_question_chars == acme_services.settings.max_question_chars == 4000
    result = CliRunner().invoke(main, ["ask", "why" * 2000], obj={"services": acme_services})
    assert result.exit_code == 0, result.output
    assert "6,000 characters" in result.output and "Sources" not in result.output


def test_question_names_takes_linear_time_on_a_megabyte():
    import time

    from bot.grounding import question_names

    # Capitalised words used to rescan the whole question before each of them: quadratic, hours for 1 MB.
    for text in ("Ab " * 333_333, "a. " * 333_333, "What is gc.auto? " * 60_000, "x" * 1_000_000):
        started = time.perf_counter()
        question_names(text)
        assert time.perf_counter() - started < 15, text[:20]  # quadratic took 10 s for 40 KB
    assert question_names("Is it on? Windows. And Linux, too") == ["Linux"]  # the same rules as before


@pytest.fixture(scope="module")
def small_context(acme_services):
    """The acme answerer's engine with a 1,024-token context: small enough for a thread to overflow it."""
    from dataclasses import replace

    from adapters.llamacpp import LlamaCppGenerator

    big = acme_services.generator
    return LlamaCppGenerator(replace(big.cfg, context_tokens=1024), big.model_file)


def _small_answerer(acme_services, generator):
    from bot.answer import Answerer

    s = acme_services.settings
    return Answerer(
        acme_services.retriever,
        generator,
        min_similarity=s.min_similarity,
        top_k=s.top_k,
        max_new_tokens=16,
        select_facts=acme_services.select_facts,
        max_question_chars=s.max_question_chars,
    )


def test_a_long_thread_and_question_are_cut_to_the_context_and_still_answered(acme_services, small_context):
    from bot.answer import EVIDENCE_CHUNKS, _trim_history

    answerer = _small_answerer(acme_services, small_context)
    question = "How long does the Quillmate pairing last for a new starter?"
    answerer.retriever.reopen()
    hits = answerer.retriever.retrieve(question, top_k=EVIDENCE_CHUNKS)  # the question's own evidence
    long_question = question + " i am new here and want to be sure how this works before i start," * 34
    assert len(long_question) < 4000  # under the cap: this one must be answered
    history = []
    for i in range(3):
        history.append(
            {"role": "user", "content": f"question {i}: " + "who do i ask about my first days? " * 6}
        )
        history.append(
            {"role": "assistant", "content": f"answer {i}: " + "ask your lead, then read the handbook. " * 5}
        )
    limit = small_context.context_tokens - 16

    stream = answerer.stream(long_question, history=history, hits=hits)
    sent = stream.messages
    assert small_context.count_tokens(sent) <= limit  # what the model read fits, its answer beside it
    everything = [sent[0], *_trim_history(history), sent[-1]]
    assert small_context.count_tokens(everything) > limit  # the whole thread with it would not
    kept = sent[1:-1]
    assert 0 < len(kept) < len(history) and kept == history[-len(kept) :]  # the oldest turns went first
    assert kept[0]["role"] == "user" and len(stream.facts) == 3  # the evidence was all kept
    answer = stream.result()
    assert not stream.refused and answer.text.strip() and answer.sources


def test_a_question_too_long_for_the_context_is_refused_without_the_model(acme_services, small_context):
    from bot.answer import EVIDENCE_CHUNKS

    answerer = _small_answerer(acme_services, small_context)
    answerer.retriever.reopen()
    hits = answerer.retriever.retrieve("How long does the Quillmate pairing last?", top_k=EVIDENCE_CHUNKS)
    digits = "".join(str(i % 10) for i in range(3900))  # under the cap, but one token per digit
    stream = answerer.stream(f"Which of these is the pairing length: {digits}?", hits=hits)
    assert stream.refused and stream.messages == []  # no prompt was sent
    answer = stream.result()
    assert "too long for my language model" in answer.text and "1,008 fit" in answer.text
    assert answer.sources == []
