"""The answering rules that keep a small model honest, and follow-ups on the real acme index."""

from bot.answer import IDK, QUOTE_PREFIX, AnswerStream, Source, ground, is_idk, ungrounded

FACTS = [
    "You may work from another country for up to 20 working days per calendar year under our "
    "Work From Anywhere (WFA) scheme.",
    "Requests go to your Quire Lead at least 10 working days before you travel.",
]


def test_an_answer_built_from_the_facts_keeps_its_words_and_gets_a_quote():
    answer = ground("You can work abroad for up to 20 working days a year under WFA.", FACTS)
    assert answer == f"You can work abroad for up to 20 working days a year under WFA.\n\n> {FACTS[0]}"


def test_an_invented_number_or_name_is_replaced_by_the_facts():
    assert ungrounded("You can work abroad for 15 days, says Marta Quill.", FACTS) == ["15", "Marta", "Quill"]
    answer = ground("You can work abroad for 15 days.", FACTS)
    assert answer == QUOTE_PREFIX + " ".join(FACTS)
    assert "15" not in answer.replace("10 working", "")


def test_sentence_start_capitals_are_not_names():
    assert ungrounded("Requests go to your Quire Lead early.", FACTS) == []


def test_i_dont_know_answers_cite_nothing():
    for text in ("I don't know.", "I do not know the answer.", "  i dont know"):
        assert is_idk(text)
        stream = AnswerStream([Source("a.md", "A", 0.9)], None, iter([text]), facts=FACTS)
        answer = stream.result()
        assert answer.refused and answer.sources == [] and answer.text == text.strip()
    assert not is_idk("I know: 20 working days.")
    empty = AnswerStream([Source("a.md", "A", 0.9)], None, iter([]), facts=FACTS).result()
    assert empty.text == IDK and empty.sources == []


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
    from types import SimpleNamespace

    from bot.answer import question_names, unmatched_names

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
    was handed (here a VPN question's, for a question about pages), not a second retrieval's."""
    answerer = acme_services.answerer
    answerer.retriever.reopen()
    vpn = answerer.retriever.retrieve("Which VPN client do we use?", top_k=answerer.top_k + 2)
    best = vpn[: answerer.top_k]
    assert best.query_vector == vpn.query_vector and best.query == vpn.query  # a slice keeps its query
    question = "How quickly must I acknowledge a page?"
    own = answerer.stream(question)
    handed = answerer.stream(question, hits=vpn)
    assert own.sources and own.sources[0].file != "it/helpdesk-faq.html"
    assert [(s.file, s.section) for s in handed.sources] == list(
        dict.fromkeys((h.file, h.section) for h in best)
    )
    own.result(), handed.result()  # finish both generations
