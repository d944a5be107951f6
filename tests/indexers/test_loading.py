"""Every format loads into titled sections; bad files are skipped with a reason. No models needed."""

from pathlib import Path

import pytest

from indexers.loading import SkipFile, list_files, load_file
from indexers.scan import scan_docs

from ..conftest import ACME

DOCS = ACME / "docs"


def load(rel: str):
    return load_file(DOCS / rel, rel)


def test_html_boilerplate_is_stripped_and_structure_kept():
    doc = load("it/helpdesk-faq.html")
    text = "\n".join(t for _, t in doc.sections)
    headings = [h for h, _ in doc.sections]
    assert doc.url == "https://intranet.acme.example/it/helpdesk-faq"
    assert "How do I contact the IT Helpdesk?" in headings
    raw = (DOCS / "it/helpdesk-faq.html").read_text()
    # The page has a cookie banner, navigation and CSS; none of it may reach the index.
    assert "cookie" in raw.lower() and "<nav" in raw and "<style" in raw
    assert "cookie" not in text.lower()
    assert "position: fixed" not in text
    assert "Patchbay" in text  # the real content survives


def test_docx_heading_styles_become_sections():
    doc = load("policies/data-retention-policy.docx")
    assert doc.title == "Data Retention Policy"
    assert "Retention periods by data class" in [h for h, _ in doc.sections]


def test_pdf_sections_carry_headings_and_pages():
    doc = load("handbook/benefits-summary.pdf")
    assert doc.title == "Benefits Summary 2024"
    assert "Pension (page 1)" in [h for h, _ in doc.sections]


def test_markdown_and_txt_titles_and_sections():
    md = load("handbook/onboarding.md")
    assert md.title and all(h for h, _ in md.sections)
    txt = load("support/support-escalation.txt")
    assert txt.title == "Customer Support Escalation Guide"
    assert "1. SUPPORT TIERS" in [h for h, _ in txt.sections]


def test_rst_headings(tmp_path: Path):
    (tmp_path / "guide.rst").write_text("=====\nGuide\n=====\n\nIntro.\n\nInstall\n-------\n\nRun it.\n")
    doc = load_file(tmp_path / "guide.rst", "guide.rst")
    assert doc.title == "Guide"
    assert [h for h, _ in doc.sections] == ["Guide", "Install"]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("corrupt.pdf", "^could not read the PDF: Stream has ended unexpectedly$"),
        ("empty.md", "empty file"),
        ("notes.txt", "binary content"),
    ],
)
def test_bad_files_are_skipped_with_a_reason(name, reason):
    with pytest.raises(SkipFile, match=reason):
        load_file(ACME / "bad-docs" / name, name)


def test_unsupported_and_hidden_files(tmp_path: Path):
    (tmp_path / "data.xlsx").write_bytes(b"PK\x03\x04")
    (tmp_path / ".hidden.md").write_text("# secret")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.md").write_text("# x")
    assert list_files(tmp_path) == []
    assert scan_docs(tmp_path).skipped == [
        (
            "data.xlsx",
            "unsupported file type '.xlsx' (supported: .md, .markdown, .txt, .rst, .html, .htm, .pdf, .docx)",
        )
    ]  # left out before it is read; hidden files without a word
    with pytest.raises(SkipFile, match=r"unsupported file type '\.xlsx' \(supported: \.md"):
        load_file(tmp_path / "data.xlsx", "data.xlsx")


SPHINX_PAGE = """<html><head><title>bisect — Array bisection algorithm</title></head><body>
<div class="sphinxsidebar">Table of contents</div>
<div role="main"><section><h1>bisect — Array bisection<a class="headerlink" href="#b">¶</a></h1>
<p>This module keeps a list in <em>sorted</em> order
without sorting it <a href="#x"><code class="xref">after</code></a> each insertion. It is fast.</p>
<div class="toctree-wrapper"><ul><li><a href="#a">bisect_left()</a></li></ul></div>
<div class="highlight"><pre><span class="c1"># a comment, not a heading</span>
<span class="n">x</span>  = 1
<span class="k">def</span> <span class="nf">f</span>():
	<span class="k">if</span> x:
        <span class="k">return</span> 1
</pre></div>
<table><tr><th><p>Code</p></th><th><p>Type</p></th></tr>
<tr><td><p>'b'</p></td><td><p>signed char</p></td></tr></table>
<ul><li><p>Kbd: <kbd>Control</kbd>-<kbd>Z</kbd> exits.</p></li></ul>
<dl class="py function"><dt class="sig" id="bisect.bisect_left">\
<span class="sig-name">bisect_left</span>(<em>a</em>, <em>lo</em>=<span>0</span>)\
<a class="headerlink" href="#bisect.bisect_left">¶</a></dt>
<dd><p>Locate the insertion point.</p></dd></dl>
</section></div></body></html>"""


def test_html_inline_markup_joins_and_api_entries_become_sections(tmp_path: Path):
    (tmp_path / "bisect.html").write_text(SPHINX_PAGE)
    doc = load_file(tmp_path / "bisect.html", "bisect.html")
    sections = dict(doc.sections)
    assert list(sections) == ["bisect — Array bisection", "bisect.bisect_left(a, lo=0)"]
    intro = sections["bisect — Array bisection"].split("\n\n")
    # Inline tags (<em>, <a>, <code>) no longer break a sentence over several lines.
    assert intro[0] == (
        "This module keeps a list in sorted order without sorting it after each insertion. It is fast."
    )
    # Code keeps its lines and their indentation; a comment stays text, not a heading.
    assert " # a comment, not a heading\n x  = 1\n def f():\n     if x:\n         return 1" in intro
    # A table row is one line, each cell named by its column (issue 11: a row read alone says what it is).
    assert "Code | Type" in intro and "Code: 'b' | Type: signed char" in intro
    assert "- Kbd: Control-Z exits." in intro
    assert not any("Table of contents" in p or "bisect_left()" in p for p in intro)  # sidebar, toctree
    # The heading is the qualified signature (anchor + defaults); the body keeps the signature as shown.
    assert sections["bisect.bisect_left(a, lo=0)"] == "bisect_left(a, lo=0)\n\nLocate the insertion point."


def test_paragraphs_inside_a_list_item_or_cell_stay_apart():
    from indexers.html import html_to_markdown

    content, _, _ = html_to_markdown(
        "<html><body><ul><li><p>First point.</p><p>Second point.</p></li></ul>"
        "<table><tr><td><p>Cell one.</p><p>Cell two.</p></td></tr></table></body></html>"
    )
    assert "First point. Second point." in content and "Cell one. Cell two." in content
