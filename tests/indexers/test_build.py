"""Indexing with the real embedder and real Chroma: incremental, build-then-swap, and bad input."""

import shutil

import pytest

from indexers import IndexBuildError, IndexConfig, Indexer, Retriever

from ..conftest import ACME


def make(tmp_path, docs, embed_model, **kw):
    cfg = IndexConfig(data_dir=tmp_path / "home", docs_dir=docs, show_progress=False, **kw)
    return Indexer(cfg, embed_model), Retriever(cfg, embed_model)


def chunk_count(indexer) -> int:
    """Chunks of the current generation, after checking that its collection holds nothing else than the
    rows of the generations kept (current and previous): the collection is shared between them."""
    store = indexer.store
    kept = [store.current(), *store.history()[: store.cfg.keep_generations - 1]]
    listed = set().union(
        *(store.chunk_ids(g) for g in kept if store.collection_of(g) == store.collection_of(kept[0]))
    )
    assert sorted(store.collection(kept[0]).get(include=[])["ids"]) == sorted(listed)
    return len(store.chunk_ids(kept[0]))


def test_build_retrieve_and_cite(tmp_path, docs_copy, embed_model):
    indexer, retriever = make(tmp_path, docs_copy, embed_model)
    report = indexer.build()
    assert len(report.added) == 6 and not report.skipped
    assert report.chunks_total == report.chunks_embedded == chunk_count(indexer) > 6
    hits = retriever.retrieve("Which VPN do we use?", top_k=3)
    assert len(hits) == 3
    assert hits[0].file == "it/helpdesk-faq.html"
    assert hits[0].section == "Which VPN do we use?"
    assert hits[0].url == "https://intranet.acme.example/it/helpdesk-faq"
    assert hits[0].text.startswith("Which VPN do we use?")
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert 0 < hits[0].similarity <= 1


def test_incremental_embeds_only_what_changed(tmp_path, docs_copy, embed_model):
    indexer, retriever = make(tmp_path, docs_copy, embed_model)
    first = indexer.build()
    again = indexer.build()
    assert again.chunks_embedded == 0 and len(again.unchanged) == 6
    assert again.generation == first.generation  # nothing changed: no new generation either

    changed = docs_copy / "engineering/oncall-runbook.md"
    changed.write_text(changed.read_text() + "\n## Pager etiquette\n\nAcknowledge within 7 minutes.\n")
    (docs_copy / "support/support-escalation.txt").unlink()
    report = indexer.build()
    before, after = (
        indexer.store.manifest(first.generation)["docs"],
        indexer.store.manifest(report.generation)["docs"],
    )
    runbook = "engineering/oncall-runbook.md"
    assert report.changed == [runbook]
    assert report.removed == ["support/support-escalation.txt"]
    # Only the runbook's new chunks are embedded: its unchanged sections keep their stored rows.
    new = set(after[runbook]["chunks"]) - set(before[runbook]["chunks"])
    assert 0 < report.chunks_embedded == len(new) < len(after[runbook]["chunks"])
    assert (
        report.chunks_total
        == chunk_count(indexer)
        == first.chunks_total
        - len(before["support/support-escalation.txt"]["chunks"])
        + len(after[runbook]["chunks"])
        - len(before[runbook]["chunks"])
    )
    hits = retriever.retrieve("How quickly must I acknowledge a page?", top_k=20)
    assert "support/support-escalation.txt" not in {h.file for h in hits}
    assert any("7 minutes" in h.text for h in hits)


def test_crash_halfway_leaves_previous_generation_serving(tmp_path, docs_copy, embed_model):
    indexer, retriever = make(tmp_path, docs_copy, embed_model, embed_group=1)
    indexer.build()
    before = indexer.store.current()
    hits_before = [(h.id, h.file) for h in retriever.retrieve("Which VPN do we use?")]
    for path in docs_copy.rglob("*.md"):
        path.write_text(path.read_text() + "\nMore text.\n")

    def crash(done, total):
        # Both .md files are re-embedded; onboarding.md is the third file, so by now the new
        # generation holds freshly embedded chunks.
        if 3 <= done < total:
            raise KeyboardInterrupt("simulated crash halfway")

    with pytest.raises(KeyboardInterrupt):
        indexer.build(progress=crash)
    assert indexer.store.current() == before
    # A reader opened before the crash (which counted fewer rows) and a new one both see `before` only.
    for reader in (retriever, Retriever(indexer.cfg, embed_model)):
        assert [(h.id, h.file) for h in reader.retrieve("Which VPN do we use?")] == hits_before
    orphans = [p.name for p in indexer.store.root.glob("g*") if p.name != before]
    listed = indexer.store.chunk_ids(before)
    stored = set(indexer.store.collection(before).get(include=[])["ids"])
    half_built = stored - listed  # rows the crashed build stored, which readers of `before` never see
    assert orphans and half_built and listed <= stored
    report = indexer.build()
    assert not set(orphans) & {p.name for p in indexer.store.root.glob("g*")}  # gone with the next build...
    new = indexer.store.chunk_ids(report.generation) - listed
    assert half_built <= new and report.chunks_embedded == len(new - half_built)  # ...which reused its rows
    assert report.chunks_total == chunk_count(indexer)


def test_bad_files_are_reported_and_good_versions_kept(tmp_path, docs_copy, embed_model):
    for bad in (ACME / "bad-docs").iterdir():
        shutil.copy(bad, docs_copy / bad.name)
    indexer, _ = make(tmp_path, docs_copy, embed_model)
    report = indexer.build()
    reasons = dict(report.skipped)
    assert set(reasons) == {"corrupt.pdf", "empty.md", "notes.txt"}
    assert reasons["corrupt.pdf"].startswith("could not read the PDF: ")  # pypdf's words, not a RetryError
    assert reasons["empty.md"] == "empty file"
    assert reasons["notes.txt"] == "binary content in a text file"

    good = docs_copy / "handbook/onboarding.md"
    chunks_before = chunk_count(indexer)
    good.write_bytes(b"\x00\x01 broken by a bad sync")
    report = indexer.build()
    assert (
        reasons_for(report, "handbook/onboarding.md")
        == "binary content in a text file; kept the previously indexed version"
    )
    assert chunk_count(indexer) == chunks_before  # nothing already indexed is lost


def reasons_for(report, file):
    return dict(report.skipped)[file]


def test_missing_or_empty_docs_folder_is_a_clear_error_and_keeps_the_index(tmp_path, docs_copy, embed_model):
    indexer, retriever = make(tmp_path, docs_copy, embed_model)
    indexer.build()
    current = indexer.store.current()
    for path in docs_copy.rglob("*"):
        if path.is_file():
            path.unlink()
    with pytest.raises(IndexBuildError, match="is empty; add .md"):
        indexer.build()
    shutil.rmtree(docs_copy)
    with pytest.raises(IndexBuildError, match="does not exist; set EXPERTBOT_DOCS_DIR"):
        indexer.build()
    assert indexer.store.current() == current and retriever.retrieve("VPN")


def test_every_hit_carries_its_own_text_and_cosine_dense_or_bm25_only(tmp_path, docs_copy, embed_model):
    """Chroma is asked for ids and distances only; the winners' texts (and, for hits only BM25 found, their
    vectors) are fetched afterwards. Few candidates per side, so some hits are BM25's alone."""
    indexer, retriever = make(tmp_path, docs_copy, embed_model, candidates=4)
    indexer.build()
    hits = retriever.retrieve("acknowledge page escalation on-call", top_k=8)
    stored = indexer.store.collection(indexer.store.current()).get(
        ids=[h.id for h in hits], include=["documents", "embeddings"]
    )
    by_id = dict(zip(stored["ids"], zip(stored["documents"], stored["embeddings"], strict=True), strict=True))
    dense = retriever._gen.collection.query(
        query_embeddings=[hits.query_vector], n_results=4, include=["distances"]
    )["ids"][0]
    assert len(hits) > 4 and any(h.id not in dense for h in hits)  # BM25-only hits are among them
    for hit in hits:
        text, vector = by_id[hit.id]
        assert text.endswith(hit.text[-40:])
        cosine = sum(a * b for a, b in zip(hits.query_vector, vector, strict=True))
        assert hit.similarity == pytest.approx(cosine, abs=1e-4)
