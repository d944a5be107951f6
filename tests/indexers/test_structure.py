"""Structure-aware evidence: each piece of a definition-list entry, option list, glossary entry or table
row keeps the term it describes, in every format, so that "The default is 64MB" inside the entry for
cache_size is found, and shown, as the answer to a question about cache_size (issue 11's failure
classes, one small fixture each; the real loader, chunker and embedder)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from indexers.facts import best_facts
from indexers.loading import load_file

QUESTION = "What is the default cache_size?"
DISTRACTOR = "The default is 8 workers."  # a default too, but of another setting


def _top_fact(path: Path, embed_model, question: str = QUESTION):
    doc = load_file(path, path.name)
    hits = [SimpleNamespace(section=h, title=doc.title, text=f"{h}\n{t}") for h, t in doc.sections]
    return best_facts(question, hits, embed_model, n=3)[0]


HTML_DL = """<html><head><title>Server settings</title></head><body><h1>Server settings</h1>
<p>Every setting of the server, in alphabetical order.</p>
<dl>
<dt>cache_size (integer)</dt>
<dd><p>The amount of memory the server keeps for recently read pages.</p>
<p>Larger values help read-heavy loads. The default is 64MB.</p></dd>
<dt>workers (integer)</dt><dd><p>How many requests run at once. The default is 8 workers.</p></dd>
</dl><p>Settings are read at start-up.</p></body></html>"""


def test_html_definition_list_entry_keeps_its_term(tmp_path, embed_model):
    (tmp_path / "settings.html").write_text(HTML_DL)
    doc = load_file(tmp_path / "settings.html", "settings.html")
    headings = [h for h, _ in doc.sections]
    assert "cache_size (integer) — Server settings" in headings
    assert headings[-1] == "Server settings"  # after the list, the page's own heading resumes
    fact = _top_fact(tmp_path / "settings.html", embed_model)
    assert "64MB" in fact.text and fact.text.startswith("cache_size")


def test_html_option_list_names_the_flag(tmp_path, embed_model):
    (tmp_path / "tool.html").write_text(
        "<html><body><h1>tool - copy files</h1><h2>OPTIONS</h2><dl>"
        "<dt>-n</dt><dd><p>Show what would be copied. Nothing is written.</p></dd>"
        "<dt>-r</dt><dt>--recursive</dt><dd><p>Copy directories and everything below them.</p></dd>"
        "</dl></body></html>"
    )
    fact = _top_fact(tmp_path / "tool.html", embed_model, "Which option of tool copies whole directories?")
    assert fact.text.startswith("-r, --recursive: Copy directories")


def test_glossary_entry_is_the_definition_not_the_introduction(tmp_path, embed_model):
    (tmp_path / "glossary.html").write_text(
        "<html><body><h1>Glossary</h1><p>This glossary defines the terms used in this manual.</p><dl>"
        "<dt>Origin server</dt><dd>The server that holds the original copy of a resource.</dd>"
        "<dt>Reverse proxy</dt><dd>A proxy server that appears to the client as if it is an origin "
        "server.</dd></dl></body></html>"
    )
    fact = _top_fact(tmp_path / "glossary.html", embed_model, "What is a reverse proxy?")
    assert (
        fact.text == "Reverse proxy: A proxy server that appears to the client as if it is an origin server."
    )


def test_table_row_cells_are_named_by_their_column(tmp_path, embed_model):
    (tmp_path / "limits.html").write_text(
        "<html><body><h1>Queues</h1><table><tr><th>Queue</th><th>Max message size</th><th>Retention</th>"
        "</tr><tr><td>orders</td><td>256 KB</td><td>7 days</td></tr><tr><td>audit</td><td>1 MB</td>"
        "<td>365 days</td></tr></table></body></html>"
    )
    doc = load_file(tmp_path / "limits.html", "limits.html")
    assert "Queue: audit | Max message size: 1 MB | Retention: 365 days" in doc.sections[0][1]
    fact = _top_fact(
        tmp_path / "limits.html", embed_model, "What is the largest message the audit queue takes?"
    )
    assert "1 MB" in fact.text


@pytest.mark.parametrize(
    "name, text",
    [
        (
            "settings.md",
            "# Server settings\n\ncache_size\n: The memory kept for recently read pages.\n"
            f": Larger values help read-heavy loads. The default is 64MB.\n\nworkers\n: {DISTRACTOR}\n",
        ),
        (
            "inline.md",
            "# Server settings\n\n- **cache_size**: The memory kept for recently read pages. Larger values "
            f"help read-heavy loads. The default is 64MB.\n- **workers**: {DISTRACTOR}\n",
        ),
        (
            "settings.rst",
            "Server settings\n===============\n\ncache_size\n    The memory kept for recently read pages.\n"
            f"    Larger values help read-heavy loads. The default is 64MB.\n\nworkers\n    {DISTRACTOR}\n",
        ),
    ],
)
def test_markdown_and_rst_entries_keep_their_term(tmp_path, embed_model, name, text):
    (tmp_path / name).write_text(text)
    fact = _top_fact(tmp_path / name, embed_model)
    assert "64MB" in fact.text and "cache_size" in fact.text


def _docx(path: Path, body: str) -> Path:
    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("word/document.xml", f"<w:document {w}><w:body>{body}</w:body></w:document>")
    return path


def _p(text: str) -> str:
    return f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>"


def _row(*cells: str) -> str:
    return "<w:tr>" + "".join(f"<w:tc>{_p(c)}</w:tc>" for c in cells) + "</w:tr>"


def test_docx_term_paragraphs_and_tables(tmp_path, embed_model):
    body = (
        _p("Server settings")
        + _p("cache_size: The memory kept for recently read pages. The default is 64MB.")
        + _p(f"workers: {DISTRACTOR}")
        + f"<w:tbl>{_row('Plan', 'Max upload')}{_row('Basic', '10 MB')}{_row('Pro', '2 GB')}</w:tbl>"
    )
    path = _docx(tmp_path / "settings.docx", body)
    fact = _top_fact(path, embed_model)
    assert fact.text == "cache_size: The default is 64MB."
    assert "Plan: Pro | Max upload: 2 GB" in load_file(path, path.name).sections[0][1]


def _pdf(path: Path, lines: list[str]) -> Path:
    """A one-page PDF whose text is these lines (Helvetica), built by hand: no PDF writer is installed."""
    ops = "".join(f"BT /F1 11 Tf 72 {740 - 16 * i} Td ({line}) Tj ET\n" for i, line in enumerate(lines))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        "/Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(ops)} >>\nstream\n{ops}endstream",
    ]
    out, offsets = "%PDF-1.4\n", []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{obj}\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n" + "".join(
        f"{o:010d} 00000 n \n" for o in offsets
    )
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    path.write_bytes(out.encode("latin-1"))
    return path


def test_pdf_term_lines_keep_their_term(tmp_path, embed_model):
    path = _pdf(
        tmp_path / "settings.pdf",
        [
            "Server settings",
            "cache_size: The memory kept for recently read pages. The default is 64MB.",
            "",
            f"workers: {DISTRACTOR}",
        ],
    )
    fact = _top_fact(path, embed_model)
    assert "64MB" in fact.text and "cache_size" in fact.text
