"""Indexing reads nothing outside the docs folder, and nothing too large, binary or broken, with a reason
for each file left out. Real files on disk: links, loops, a sparse 21 MB file, a corrupt PDF."""

import random
import time
import zipfile

import pytest

from indexers import IndexConfig, Indexer, Retriever
from indexers.loading import SkipFile, load_file
from indexers.scan import scan_docs

from ..conftest import ACME

MB = 1 << 20
SECRET = "Zanzibar-7731 is the vault code"  # text only the outside files hold


@pytest.fixture
def tree(tmp_path):
    """docs/ beside outside/, with every kind of link the walk must not follow out of docs/."""
    outside, docs = tmp_path / "outside", tmp_path / "docs"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.md").write_text(f"# Secret\n\n{SECRET}.\n")
    (outside / "dir" / "inner.md").write_text(f"# Inner\n\n{SECRET}, again.\n")
    (docs / "guide").mkdir(parents=True)
    (docs / "guide" / "vpn.md").write_text("# VPN\n\nWe use Patchbay to reach the office network.\n")
    (docs / "leave.md").write_text("# Leave\n\nEveryone gets 27 days of paid leave a year.\n")
    links = {
        "secret.md": outside / "secret.md",  # a file outside
        "shared": outside / "dir",  # a folder outside
        "self.md": "self.md",  # a loop of one
        "ping.md": "pong.md",  # a loop of two
        "pong.md": "ping.md",
        "vpn-alias.md": "guide/vpn.md",  # a file inside: indexed once, under its own name
        "guide/up": "..",  # a folder that contains the link
    }
    for name, target in links.items():
        (docs / name).symlink_to(target)
    return docs


def noise(size: int) -> bytes:
    """Bytes as in compressed or encrypted data, but without a single NUL."""
    rng = random.Random(13)
    return bytes(rng.randrange(1, 256) for _ in range(size))


REASONS = {
    "secret.md": "link to a file outside the docs folder; only what is inside it is indexed",
    "shared": "link to a folder outside the docs folder; only what is inside it is indexed",
    "self.md": "symlink loop: following the link leads back to it, never to a file",
    "ping.md": "symlink loop: following the link leads back to it, never to a file",
    "pong.md": "symlink loop: following the link leads back to it, never to a file",
    "vpn-alias.md": "link to guide/vpn.md, which is indexed under that name",
    "guide/up": (
        "symlink loop: the link leads to a folder that contains it; links to folders are not followed"
    ),
}


def test_scan_keeps_to_the_docs_folder_and_says_why(tree):
    scan = scan_docs(tree, max_bytes=20 * MB)
    assert [p.relative_to(tree).as_posix() for p in scan.files] == ["guide/vpn.md", "leave.md"]
    assert dict(scan.skipped) == REASONS
    assert not scan.unreadable  # all of these are left out by rule, not by a fault
    assert all(str(tree.parent) not in reason for _, reason in scan.skipped)  # never names a target


def test_a_file_swapped_for_a_link_after_the_scan_is_not_read(tree):
    scan = scan_docs(tree)
    leave = tree / "leave.md"
    leave.unlink()
    leave.symlink_to(tree.parent / "outside" / "secret.md")
    with pytest.raises(SkipFile, match=r"it changed while being indexed \(replaced by a link\)"):
        load_file(leave, "leave.md", identity=scan.identity["leave.md"])


def test_size_limit_is_checked_before_reading(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "small.md").write_text("# Small\n\nFits.\n")
    with open(docs / "huge.txt", "wb") as f:  # sparse: 21 MB on paper, nothing on disk, made at once
        f.truncate(21 * MB)
    started = time.perf_counter()
    scan = scan_docs(docs, max_bytes=IndexConfig(tmp_path, docs, max_file_mb=20).max_file_bytes)
    assert time.perf_counter() - started < 1
    assert dict(scan.skipped) == {"huge.txt": "too large: 21.0 MB, over the 20 MB limit (max_file_mb)"}
    # load_file holds the same line for a file that grew after the scan: it reads at most the limit.
    with pytest.raises(SkipFile, match=r"^too large: 21\.0 MB, over the 20 MB limit \(max_file_mb\)$"):
        load_file(docs / "huge.txt", "huge.txt", max_bytes=20 * MB)


@pytest.mark.parametrize("bad", [0, -1, "20", True, float("nan"), 20_000])
def test_max_file_mb_is_validated_by_name(tmp_path, bad):
    with pytest.raises(ValueError, match=r"^max_file_mb must be a number of megabytes above 0"):
        IndexConfig(tmp_path, tmp_path, max_file_mb=bad)


def test_binary_without_a_nul_byte_is_skipped_but_legacy_text_is_not(tmp_path):
    binary = noise(16384)
    assert b"\x00" not in binary
    (tmp_path / "export.txt").write_bytes(binary)
    with pytest.raises(
        SkipFile, match=r"^binary content in a text file \(1\d% of its first 8 KB are control"
    ):
        load_file(tmp_path / "export.txt", "export.txt")
    # Windows-1252 text and a coloured log are text: few or no control bytes.
    (tmp_path / "cafe.txt").write_bytes("Café menu — crème brûlée\n".encode("cp1252") * 200)
    (tmp_path / "run.md").write_bytes(b"# Run\n\n\x1b[31mERROR\x1b[0m the job failed at step 12\n" * 200)
    assert load_file(tmp_path / "cafe.txt", "cafe.txt").title == "Café menu — crème brûlée"
    assert "ERROR" in load_file(tmp_path / "run.md", "run.md").sections[0][1]


def test_corrupt_pdf_reason_is_plain_words():
    with pytest.raises(SkipFile) as e:
        load_file(ACME / "bad-docs" / "corrupt.pdf", "corrupt.pdf")
    assert str(e.value) == "could not read the PDF: Stream has ended unexpectedly"


def test_a_docx_that_unpacks_past_the_limit_is_skipped(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.docx", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", "<w:document>" + " " * (3 * MB) + "</w:document>")
    assert (tmp_path / "bomb.docx").stat().st_size < 10_000  # small on disk: the scan lets it through
    with pytest.raises(SkipFile) as e:
        load_file(tmp_path / "bomb.docx", "bomb.docx", max_bytes=MB)
    assert (
        str(e.value)
        == "too large: its text (word/document.xml) unpacks to 3.0 MB, over the 1 MB limit (max_file_mb)"
    )


def make(home, docs, embed_model, **kw):
    cfg = IndexConfig(data_dir=home, docs_dir=docs, show_progress=False, **kw)
    return Indexer(cfg, embed_model), Retriever(cfg, embed_model)


def test_build_reports_every_file_left_out_and_keeps_the_rest(tmp_path, tree, embed_model):
    (tree / "export.txt").write_bytes(noise(9000))
    (tree / "broken.pdf").write_bytes((ACME / "bad-docs" / "corrupt.pdf").read_bytes())
    with open(tree / "huge.md", "wb") as f:
        f.truncate(21 * MB)
    indexer, retriever = make(tmp_path / "home", tree, embed_model, max_file_mb=20)
    report = indexer.build()
    assert report.added == ["guide/vpn.md", "leave.md"]
    reasons = dict(report.skipped)
    assert {f: reasons[f] for f in REASONS} == REASONS
    assert reasons["huge.md"] == "too large: 21.0 MB, over the 20 MB limit (max_file_mb)"
    assert reasons["export.txt"].startswith("binary content in a text file (")
    assert reasons["broken.pdf"] == "could not read the PDF: Stream has ended unexpectedly"
    assert len(reasons) == len(REASONS) + 3
    texts = [h.text for h in retriever.retrieve("What is the vault code?", top_k=10)]
    assert texts and not any("Zanzibar" in t for t in texts)  # nothing from outside reached the index
    files = {h.file for h in retriever.retrieve("Which VPN do we use?", top_k=10)}
    assert files == {"guide/vpn.md", "leave.md"}  # the inside link did not add vpn.md a second time

    # Nothing else changed, but a new loop appeared: the report says so (no stale "nothing changed").
    (tree / "again.md").symlink_to("again.md")
    report = indexer.build()
    assert dict(report.skipped)["again.md"].startswith("symlink loop")
    assert report.chunks_embedded == 0 and sorted(report.unchanged) == ["guide/vpn.md", "leave.md"]


def test_a_file_grown_past_the_limit_leaves_the_index_and_the_others_stay(tmp_path, embed_model):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEveryone gets 27 days of paid leave a year.\n")
    (docs / "notes.md").write_text("# Notes\n\nThe canteen opens at 8.\n")
    indexer, retriever = make(tmp_path / "home", docs, embed_model, max_file_mb=0.002)  # 2 KB: quick
    assert indexer.build().added == ["leave.md", "notes.md"]
    with open(docs / "notes.md", "ab") as f:
        f.write(b"More notes. " * 250)  # 3 KB
    report = indexer.build()
    assert dict(report.skipped) == {
        "notes.md": (
            "too large: 3 KB, over the 2 KB limit (max_file_mb); removed its previously indexed version"
        )
    }
    assert report.removed == ["notes.md"] and report.unchanged == ["leave.md"]
    assert {h.file for h in retriever.retrieve("When does the canteen open?", top_k=5)} == {"leave.md"}
    # Raising the limit brings it back, although no file changed since.
    indexer.cfg.max_file_mb = 1
    assert indexer.build().added == ["notes.md"]


def test_a_folder_that_cannot_be_listed_keeps_what_was_indexed_from_it(tmp_path, embed_model, monkeypatch):
    """Root reads any folder, so the refusal is injected where the walk opens one (os.open)."""
    import indexers.scan as scan_module

    docs = tmp_path / "docs"
    (docs / "it").mkdir(parents=True)
    (docs / "it" / "vpn.md").write_text("# VPN\n\nWe use Patchbay to reach the office network.\n")
    (docs / "leave.md").write_text("# Leave\n\nEveryone gets 27 days of paid leave a year.\n")
    indexer, retriever = make(tmp_path / "home", docs, embed_model)
    indexer.build()
    real_open = scan_module._Walk._open

    def refuse_it(walk, rel, expected):
        if rel == "it":
            raise PermissionError(13, "Permission denied")
        return real_open(walk, rel, expected)

    monkeypatch.setattr(scan_module._Walk, "_open", refuse_it)
    (docs / "leave.md").write_text("# Leave\n\nEveryone gets 30 days of paid leave a year.\n")
    report = indexer.build()
    assert dict(report.skipped) == {
        "it/": "unreadable folder: Permission denied; kept what was indexed from it before (1 file)"
    }
    assert report.changed == ["leave.md"] and not report.removed
    hits = retriever.retrieve("Which VPN do we use?", top_k=5)
    assert hits[0].file == "it/vpn.md"  # still found, by vectors and by BM25
