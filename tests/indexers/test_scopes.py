"""Document scopes, enforced before ranking: real embedder, real Chroma (embedded and server), real BM25."""

import json
import shutil

import pytest

from indexers import IndexConfig, Indexer, Retriever, retrieve
from indexers.scopes import SCOPE_KEY, scopes_of

from ..conftest import ACME
from .test_store_modes import chroma_server  # noqa: F401 - the fixture, reused

HR = "hr/compensation.md"
# Six sections, so six chunks that all match the question better than any public chunk: with five
# candidates per retriever, a filter applied after ranking would leave nothing public to answer with.
TOPICS = ["Salary bands", "Bonus payouts", "Pay reviews", "Equity grants", "Overtime pay", "Relocation"]
HR_TEXT = "# Compensation\n\n" + "".join(
    f"## {t}\n\n{t} are paid from the quokkafund: compensation for staff, salary and bonus money, "
    f"set by the compensation committee in section {i}.\n\n"
    for i, t in enumerate(TOPICS)
)
PUBLIC_PICKS = [
    "handbook/onboarding.md",
    "engineering/oncall-runbook.md",
    "it/helpdesk-faq.html",
    "support/support-escalation.txt",
    "policies/security-policy.md",
]
HR_RULES = {"hr": ("hr/**",)}
QUESTION = "How is compensation paid from the quokkafund: salary and bonus money?"


def write_docs(dest):
    for rel in PUBLIC_PICKS:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ACME / "docs" / rel, dest / rel)
    (dest / HR).parent.mkdir(parents=True, exist_ok=True)
    (dest / HR).write_text(HR_TEXT, encoding="utf-8")
    return dest


def config(home, docs, **kw):
    kw = {"top_k": 5, "candidates": 5, **kw}
    return IndexConfig(data_dir=home, docs_dir=docs, show_progress=False, **kw)


# --- globs and config ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "glob, path, matches",
    [
        ("hr/**", "hr/pay.md", True),
        ("hr/**", "hr/a/b/pay.md", True),
        ("hr/**", "hr", False),  # under the folder, not a file named like it
        ("hr/**", "hrx/pay.md", False),
        ("hr", "hr/a/pay.md", True),  # a folder's name covers what is under it
        ("hr/", "hr/pay.md", True),
        ("hr", "hr.md", False),
        ("**/*.pdf", "a.pdf", True),  # ** is any number of segments, none included
        ("**/*.pdf", "x/y/a.pdf", True),
        ("**/*.pdf", "x/a.pdf.txt", False),
        ("a/**/b.md", "a/b.md", True),
        ("a/**/b.md", "a/x/y/b.md", True),
        ("a/**/b.md", "ab.md", False),
        ("*.md", "x.md", True),
        ("*.md", "d/x.md", False),  # * stays within a segment
        ("d/*.md", "d/x.md", True),
        ("d/?.md", "d/x.md", True),
        ("d/?.md", "d/xy.md", False),
        ("d/?", "d/x/y", True),
        ("d/[ab].md", "d/b.md", True),
        ("d/[ab].md", "d/c.md", False),
        ("d/[!ab].md", "d/c.md", True),
        ("d/[!ab].md", "d/a.md", False),
        ("benefits.html", "benefits.html", True),
        ("benefits.html", "x/benefits.html", False),
        ("Benefits.html", "benefits.html", False),  # case matters, as on the disk
        ("a+b (1).md", "a+b (1).md", True),  # regex characters are literal
        ("**", "any/thing.md", True),
    ],
)
def test_glob_semantics(glob, path, matches):
    assert scopes_of(path, {"s": (glob,)}) == (("s",) if matches else ())


def test_scopes_of_is_sorted_and_public_is_empty():
    rules = {"zeta": ("hr/**",), "alpha": ("**/*.md",), "none": ("finance/**",)}
    assert scopes_of("hr/pay.md", rules) == ("alpha", "zeta")
    assert scopes_of("it/faq.html", rules) == ()


@pytest.mark.parametrize(
    "scopes, message",
    [
        ({"h r": ["hr/**"]}, "scopes: scope name 'h r' must be 1-64 letters"),
        ({"x" * 65: ["hr/**"]}, "must be 1-64 letters, digits"),
        ({"hr,it": ["hr/**"]}, "scope name 'hr,it'"),
        ({"hr": "hr/**"}, "scopes.hr.docs must be a list of globs"),
        ({"hr": [""]}, "scopes.hr.docs: '' must be a non-empty string"),
        ({"hr": [3]}, "scopes.hr.docs: 3 must be a non-empty string"),
        ({"hr": ["/etc/hr/**"]}, "scopes.hr.docs: '/etc/hr/\\*\\*' must be relative to the docs folder"),
        ({"hr": ["hr/../../x"]}, "scopes.hr.docs: 'hr/../../x' must stay inside the docs folder"),
        (["hr/**"], "scopes must be a table of scope name -> document globs"),
    ],
)
def test_bad_scopes_name_the_setting(tmp_path, scopes, message):
    with pytest.raises(ValueError, match=message):
        IndexConfig(data_dir=tmp_path, docs_dir=tmp_path, scopes=scopes)


def test_scopes_lists_become_tuples(tmp_path):
    cfg = IndexConfig(data_dir=tmp_path, docs_dir=tmp_path, scopes={"hr": ["hr/**", "benefits.html"]})
    assert cfg.scopes == {"hr": ("hr/**", "benefits.html")}
    assert IndexConfig(data_dir=tmp_path, docs_dir=tmp_path).scopes == {}


# --- retrieval -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scoped_index(tmp_path_factory, embed_model):
    tmp = tmp_path_factory.mktemp("scoped")
    docs = write_docs(tmp / "docs")
    report = Indexer(config(tmp / "home", docs, scopes=HR_RULES), embed_model).build()
    return tmp / "home", docs, report


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)], ids=["hybrid", "dense", "bm25"])
@pytest.mark.parametrize("overfetch", [retrieve.OVERFETCH, 0], ids=["unfiltered-in-excess", "where"])
def test_scoped_doc_only_where_allowed_and_never_crowds_out(
    scoped_index, embed_model, weights, overfetch, monkeypatch
):
    """Both ways the dense side keeps to the allowed chunks: asking Chroma for the nearest rows in excess
    and keeping the allowed, or (OVERFETCH 0, as for a small allowed share) Chroma's where filter."""
    monkeypatch.setattr(retrieve, "OVERFETCH", overfetch)
    home, docs, report = scoped_index
    dense_weight, bm25_weight = weights
    cfg = config(home, docs, scopes=HR_RULES, dense_weight=dense_weight, bm25_weight=bm25_weight)
    retriever = Retriever(cfg, embed_model)
    for allowed in (None, frozenset({"hr"}), frozenset({"hr", "other"})):
        hits = retriever.retrieve(QUESTION, allowed=allowed)
        assert hits[0].file == HR and hits[0].scopes == ("hr",)
        assert sum(h.file == HR for h in hits) >= 3
    for allowed in (frozenset(), frozenset({"other"})):
        hits = retriever.retrieve(QUESTION, allowed=allowed)
        assert len(hits) == 5  # five candidates a side, six hr chunks best: all five are public ones
        assert all(h.file != HR and h.scopes == () for h in hits)
        assert not any("quokkafund" in h.text for h in hits)
    # BM25 alone would rank the hr chunks first on a word only they hold
    rare = retriever.retrieve("quokkafund", allowed=frozenset())
    assert len(rare) == 5 and HR not in {h.file for h in rare}
    assert retriever.retrieve("quokkafund", allowed=None)[0].file == HR


def test_report_and_manifest_record_scopes(scoped_index):
    home, docs, report = scoped_index
    manifest = json.loads((home / "index" / report.generation / "manifest.json").read_text())
    assert manifest["docs"][HR]["scopes"] == ["hr"]
    assert manifest["docs"]["it/helpdesk-faq.html"]["scopes"] == []
    assert report.scoped == {"hr": len(manifest["docs"][HR]["chunks"])} and report.scoped["hr"] >= 6
    assert report.warnings == [] and report.as_dict()["chunks_rescoped"] == 0


def test_everything_scoped_and_nothing_allowed_is_no_hit(tmp_path, embed_model):
    docs = tmp_path / "docs"
    (docs / "hr").mkdir(parents=True)
    (docs / HR).write_text(HR_TEXT, encoding="utf-8")
    cfg = config(tmp_path / "home", docs, scopes={"hr": ("hr",)})
    Indexer(cfg, embed_model).build()
    retriever = Retriever(cfg, embed_model)
    assert list(retriever.retrieve(QUESTION, allowed=frozenset())) == []
    assert len(retriever.retrieve(QUESTION, allowed=frozenset({"hr"}))) == 5


# --- changing scopes -----------------------------------------------------------------------------
def rows(indexer, ids):
    got = indexer.store.collection(indexer.store.current()).get(ids=list(ids), include=["metadatas"])
    return dict(zip(got["ids"], got["metadatas"], strict=True))


def check_rescoping(home, docs, embed_model, **kw):
    """Public, then scoped, then public again: no chunk embedded after the first build, and each rule
    holds as soon as its build is done."""
    public_cfg = config(home, docs, **kw)
    indexer = Indexer(public_cfg, embed_model)
    first = indexer.build()
    old = Retriever(public_cfg, embed_model)
    assert old.retrieve(QUESTION, allowed=frozenset())[0].file == HR  # public for now
    hr_chunks = indexer.store.manifest(first.generation)["docs"][HR]["chunks"]

    scoped = Indexer(config(home, docs, scopes={**HR_RULES, "fin": ("finance/**",)}, **kw), embed_model)
    second = scoped.build()
    assert second.generation != first.generation
    assert second.chunks_embedded == 0 and second.rescoped == len(hr_chunks)
    assert second.as_dict()["chunks_rescoped"] == len(hr_chunks)
    assert second.warnings == ['scope "fin": docs glob "finance/**" matches no file']
    assert second.scoped == {"hr": len(hr_chunks), "fin": 0}
    # The rows changed in place: the scope, and nothing else of what LlamaIndex stored
    for meta in rows(scoped, hr_chunks).values():
        assert meta[SCOPE_KEY] == "hr" and meta["file"] == HR and "_node_content" in meta
    new = Retriever(scoped.cfg, embed_model)
    assert HR not in {h.file for h in new.retrieve(QUESTION, allowed=frozenset())}
    assert new.retrieve(QUESTION, allowed=frozenset({"hr"}))[0].file == HR
    # A reader still on the first generation: its manifest says public, the rows now say hr. It keeps
    # working, on the safe side of both.
    assert old.generation == first.generation
    assert HR not in {h.file for h in old.retrieve(QUESTION, allowed=frozenset())}
    assert old.retrieve(QUESTION)[0].file == HR  # the admin's view
    again = scoped.build()
    assert again.generation == second.generation and again.rescoped == 0  # unchanged: same generation

    third = Indexer(public_cfg, embed_model).build()
    assert third.chunks_embedded == 0 and third.rescoped == len(hr_chunks)
    assert Retriever(public_cfg, embed_model).retrieve(QUESTION, allowed=frozenset())[0].file == HR
    return indexer


def test_changing_scopes_rescopes_in_place_without_embedding(tmp_path, embed_model):
    check_rescoping(tmp_path / "home", write_docs(tmp_path / "docs"), embed_model)


def test_an_edited_scoped_file_keeps_its_stored_chunks_scope_right(tmp_path, embed_model):
    """An edited file whose scope changes too: its unchanged chunks are not embedded again, but their
    rows get the new scope."""
    docs = write_docs(tmp_path / "docs")
    Indexer(config(tmp_path / "home", docs), embed_model).build()
    (docs / HR).write_text(HR_TEXT + "## Pensions\n\nPensions are not paid from the quokkafund.\n")
    indexer = Indexer(config(tmp_path / "home", docs, scopes=HR_RULES), embed_model)
    report = indexer.build()
    chunks = indexer.store.manifest(report.generation)["docs"][HR]["chunks"]
    assert report.changed == [HR] and report.chunks_embedded == 1
    assert report.rescoped == len(chunks) - 1
    assert {m[SCOPE_KEY] for m in rows(indexer, chunks).values()} == {"hr"}
    hits = Retriever(indexer.cfg, embed_model).retrieve(QUESTION, allowed=frozenset())
    assert len(hits) == 5 and HR not in {h.file for h in hits}


def test_an_index_from_before_scopes_is_rescoped_without_embedding(tmp_path, embed_model):
    docs = write_docs(tmp_path / "docs")
    indexer = Indexer(config(tmp_path / "home", docs), embed_model)
    first = indexer.build()
    # What an index built before scopes looks like: no scopes in the manifest, no scope key in the rows
    path = indexer.store.dir(first.generation) / "manifest.json"
    manifest = json.loads(path.read_text())
    for doc in manifest["docs"].values():
        del doc["scopes"]
    path.write_text(json.dumps(manifest))
    ids = sorted(indexer.store.chunk_ids(first.generation))
    indexer.store.collection(first.generation).update(ids=ids, metadatas=[{SCOPE_KEY: None}] * len(ids))
    assert not any(SCOPE_KEY in m for m in rows(indexer, ids).values())
    old = Retriever(indexer.cfg, embed_model)
    assert old.retrieve(QUESTION, allowed=frozenset())[0].file == HR  # all public, as it was

    report = Indexer(config(tmp_path / "home", docs, scopes=HR_RULES), embed_model).build()
    hr_chunks = manifest["docs"][HR]["chunks"]
    assert report.generation != first.generation
    assert report.chunks_embedded == 0 and report.rescoped == len(hr_chunks)
    assert {m[SCOPE_KEY] for i, m in rows(indexer, ids).items() if i not in hr_chunks} == {""}
    assert HR not in {
        h.file for h in Retriever(indexer.cfg, embed_model).retrieve(QUESTION, allowed=frozenset())
    }


def test_scopes_against_a_chroma_server(tmp_path, embed_model, chroma_server, monkeypatch):  # noqa: F811
    monkeypatch.setattr(retrieve, "OVERFETCH", retrieve.OVERFETCH)  # put back after the test
    home, docs = tmp_path / "home", write_docs(tmp_path / "docs")
    check_rescoping(home, docs, embed_model, chroma_url=chroma_server)
    assert not (home / "index" / "chroma").exists()  # the vectors live on the server
    scoped = config(home, docs, scopes=HR_RULES, chroma_url=chroma_server)
    Indexer(scoped, embed_model).build()
    for weights, overfetch in (((1.0, 0.0), 1000), ((1.0, 0.0), 0), ((0.0, 1.0), 0)):  # each way, filtered
        retrieve.OVERFETCH = overfetch
        cfg = config(
            home,
            docs,
            scopes=HR_RULES,
            chroma_url=chroma_server,
            dense_weight=weights[0],
            bm25_weight=weights[1],
        )
        retriever = Retriever(cfg, embed_model)
        hits = retriever.retrieve(QUESTION, allowed=frozenset({"other"}))
        assert len(hits) == 5 and HR not in {h.file for h in hits}
        assert retriever.retrieve(QUESTION, allowed=frozenset({"hr"}))[0].file == HR
