"""Chunk ids are content hashes: what an incremental reindex may reuse is decided by them alone."""

from indexers.chunking import chunk_document, make_splitter
from indexers.loading import LoadedDoc

SECTIONS = [
    ("Install", "Run the installer. " * 40),
    ("Configure", "Set the port in settings. " * 40),
    ("Troubleshoot", "Read the log first. " * 40),
]


def chunks(sections, title="Guide", url=None):
    splitter = make_splitter(96, 16, str.split)  # a real SentenceSplitter, counting words
    return chunk_document(LoadedDoc("guide.md", title, url, sections), splitter)


def test_a_section_added_at_the_top_changes_no_later_chunk_id():
    before = chunks(SECTIONS)
    after = chunks([("News", "A new release is out."), *SECTIONS])
    assert len(before) > len(SECTIONS)  # long sections were split: several chunks each
    assert [n.node_id for n in after[1:]] == [n.node_id for n in before]


def test_same_text_twice_in_a_file_gets_two_ids_and_citations_are_part_of_the_id():
    twice = chunks([("FAQ", "Restart it."), ("FAQ", "Restart it.")])
    assert len(twice) == 2 and twice[0].node_id != twice[1].node_id
    first = [n.node_id for n in chunks(SECTIONS)]
    assert first == [n.node_id for n in chunks(SECTIONS)]  # stable across runs
    # A stored row carries its title and link: a renamed page must not reuse rows citing the old name.
    assert not set(first) & {n.node_id for n in chunks(SECTIONS, title="Handbook")}
    assert not set(first) & {n.node_id for n in chunks(SECTIONS, url="https://intranet.example/guide")}
