"""The CLI end to end on the real bundled models and real Chroma: index, ask, doctor, and clean errors."""

import json

from click.testing import CliRunner

from bot.cli import main

QUESTIONS = [  # (question, phrase the answer must contain, file it must cite): md, html, pdf
    (
        "What is the minimum password length in our security policy?",
        "16 characters",
        "policies/security-policy.md",
    ),
    ("What is the policy number of our travel insurance?", "KA-55812", "policies/travel-policy.html"),
    (
        "Up to what percentage of salary does the company match pension contributions?",
        "6%",
        "handbook/benefits-summary.pdf",
    ),
]


def run(args, obj=None, env=None):
    result = CliRunner().invoke(main, args, obj=obj, env=env, catch_exceptions=False)
    return result


def test_ask_answers_acme_questions_with_citations(acme_services):
    for question, phrase, source in QUESTIONS:
        result = run(["ask", question, "--json"], obj={"services": acme_services})
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        assert set(answer) == {"answer", "sources", "adapter"}
        assert phrase.lower() in answer["answer"].lower(), (question, answer["answer"])
        assert answer["sources"][0]["file"] == source
        assert set(answer["sources"][0]) == {"file", "section", "score"}
        assert answer["adapter"] is None


def test_off_corpus_question_is_refused_without_the_model(acme_services):
    stream = acme_services.answerer.stream("What is the capital of Australia?")
    assert stream.refused  # decided before generation: no model call was made
    result = run(["ask", "What is the capital of Australia?", "--json"], obj={"services": acme_services})
    assert json.loads(result.stdout) == {"answer": "I don't know.", "sources": [], "adapter": None}


def test_ask_plain_output_lists_sources(acme_services):
    result = run(["ask", "Which VPN client do we use to reach Drydock?"], obj={"services": acme_services})
    assert (
        "Sources:\n  [1] it/helpdesk-faq.html (Which VPN do we use?) https://intranet.acme.example/"
        in result.output
    )


def test_no_retrieval_asks_the_model_alone(acme_services):
    result = run(
        ["ask", "Say hello.", "--json", "--no-retrieval", "--adapter", "none"],
        obj={"services": acme_services},
    )
    answer = json.loads(result.stdout)
    assert answer["sources"] == [] and answer["answer"].strip()


def test_index_reports_counts_and_a_second_run_embeds_nothing(fresh_home, docs_copy):
    env = {"EXPERTBOT_HOME": str(fresh_home), "EXPERTBOT_DOCS_DIR": str(docs_copy)}
    (docs_copy / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    first = run(["index"], env=env)
    assert first.exit_code == 0, first.output
    assert "  added          6" in first.output
    assert "    broken.pdf: could not read the PDF: Stream has ended unexpectedly" in first.output
    second = run(["index", "--json"], env=env)
    report = json.loads(second.stdout)
    assert report["chunks_embedded"] == 0 and len(report["unchanged"]) == 6
    third = run(["index"], env=env)
    assert "0 embedded (nothing changed)" in third.output


def test_index_prints_why_each_file_was_left_out(tmp_path, fresh_home, embed_model, monkeypatch):
    from bot.config import load_settings
    from bot.wiring import build_services

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEveryone gets 27 days of paid leave a year.\n")
    (tmp_path / "secret.md").write_text("# Secret\n\nNot for the bot.\n")
    (docs / "secret.md").symlink_to(tmp_path / "secret.md")
    (docs / "loop.md").symlink_to("loop.md")
    with open(docs / "big.txt", "wb") as f:
        f.truncate(2 << 20)  # 2 MB, sparse
    monkeypatch.setenv("EXPERTBOT_MAX_FILE_MB", "1")  # the setting reaches the indexer by its env name
    svc = build_services(load_settings(home=fresh_home, docs_dir=docs), embed_model=embed_model)
    result = run(["index"], obj={"services": svc})
    assert result.exit_code == 0, result.output
    assert "  added          1\n" in result.output and "  skipped        3\n" in result.output
    assert "    big.txt: too large: 2.0 MB, over the 1 MB limit (max_file_mb)\n" in result.output
    assert (
        "    loop.md: symlink loop: following the link leads back to it, never to a file\n" in result.output
    )
    assert (
        "    secret.md: link to a file outside the docs folder; only what is inside it is indexed\n"
        in result.output
    )


def test_user_errors_are_clean_messages(tmp_path):
    bad = run(["ask", "hi"], env={"EXPERTBOT_TOP_K": "zero", "EXPERTBOT_HOME": str(tmp_path)})
    assert bad.exit_code == 1
    assert "EXPERTBOT_TOP_K: Input should be a valid integer" in bad.output and "Traceback" not in bad.output
    no_index = run(["ask", "hi"], env={"EXPERTBOT_HOME": str(tmp_path)})
    assert no_index.exit_code == 1 and "run `expertbot index` first" in no_index.output
    from bot.config import load_settings
    from bot.wiring import Services

    svc = Services(load_settings(home=tmp_path))
    assert "run `expertbot index` first" in run(["ask", "hi"], obj={"services": svc}).output
    assert not {"embed_model", "generator", "answerer"} & set(svc._parts)  # said before loading a model
    no_docs = run(["index", "--docs", str(tmp_path / "nope")], env={"EXPERTBOT_HOME": str(tmp_path)})
    assert no_docs.exit_code == 1 and "does not exist" in no_docs.output


def test_doctor(acme_settings, acme_services):
    result = run(["doctor"], obj={"settings": acme_settings})
    assert result.exit_code == 0, result.output
    assert "ok  index: generation" in result.output and "FAIL" not in result.output
