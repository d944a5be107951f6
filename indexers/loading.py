"""Turn files of many formats into one shape: a title, an optional URL, and (heading, text) sections.

Chunking then works the same for every format. A file that cannot be read is never fatal: it comes back
as a skip with a reason the user can act on.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from .html import TERM_SEPARATOR
from .scan import SkipFile, binary_reason, read_bounded, scan_docs, too_large_reason, unsupported_reason

# Bump when parsing changes, so that an incremental build re-reads every document.
LOADER_VERSION = 8  # 8: definition-list entries head sections, table cells named by their header


@dataclass
class LoadedDoc:
    rel_path: str
    title: str
    url: str | None = None
    sections: list[tuple[str, str]] = field(default_factory=list)  # (heading, text)


def list_files(docs_dir: Path) -> list[Path]:
    """The files of docs_dir to index, in a stable order (scan.py: what is left out, and why)."""
    return scan_docs(docs_dir).files


def load_file(
    path: Path, rel_path: str, max_bytes: int | None = None, identity: tuple[int, int] | None = None
) -> LoadedDoc:
    """The file as a document, or SkipFile with the reason. max_bytes and identity: see read_bounded."""
    reason = unsupported_reason(path)
    if reason:
        raise SkipFile(reason)
    data = read_bounded(path, max_bytes, identity)
    if not data.strip():
        raise SkipFile("empty file")
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        doc = _load_pdf(data, rel_path)
    elif suffix == ".docx":
        doc = _load_docx(data, rel_path, max_bytes)
    else:
        text = _decode_text(data)
        if suffix in (".html", ".htm"):
            doc = _load_html(text, rel_path)
        elif suffix == ".rst":
            doc = _from_markdown(_definition_entries(_rst_to_markdown(text), indented=True), rel_path)
        elif suffix == ".txt":
            doc = _from_markdown(_txt_to_markdown(text), rel_path, title=_first_line_title(text))
        else:
            doc = _from_markdown(_definition_entries(text, indented=False), rel_path)
    doc.sections = [(h, t.strip()) for h, t in doc.sections if t.strip()]
    if not doc.sections:
        raise SkipFile("no text found")
    return doc


def _decode_text(data: bytes) -> str:
    reason = binary_reason(data)
    if reason:
        raise SkipFile(reason)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # old Windows docs are the usual non-UTF-8 case


def _default_title(rel_path: str) -> str:
    return Path(rel_path).stem.replace("_", " ").replace("-", " ").strip().capitalize()


# --- Markdown (the common form every text format is converted to) ---------------------------------

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _from_markdown(text: str, rel_path: str, title: str | None = None, url: str | None = None) -> LoadedDoc:
    sections: list[tuple[str, str]] = []
    heading, lines, in_fence = "", [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _MD_HEADING.match(line)
        if match:
            sections.append((heading, "\n".join(lines)))
            heading, lines = match.group(2).strip(), []
            if title is None and len(match.group(1)) == 1:
                title = heading
        else:
            lines.append(line)
    sections.append((heading, "\n".join(lines)))
    title = title or next((h for h, _ in sections if h), None) or _default_title(rel_path)
    return LoadedDoc(rel_path, title, url, [(h or title, t) for h, t in sections])


_TERM_LINE = re.compile(r"^\S.{0,78}$")
_MD_DEFINITION = re.compile(r"^:\s+(\S.*)$")  # PHP Markdown Extra / pandoc: "Term" then ": definition"


def _definition_entries(text: str, indented: bool) -> str:
    """Definition lists head sections of their own, as in HTML (indexers/html.py): each piece of an
    entry's definition then keeps its term ("cache_size" for "The default is 64MB."). Markdown's form is a
    term line followed by ": definition"; reStructuredText's (indented=True) a term line followed by an
    indented block (not after "::", which starts a literal block), which also covers its option lists
    ("-a, --all" over an indented description). After the list, the heading it sat under resumes."""
    lines, out = text.splitlines(), []
    heading, in_entry, in_fence = "", False, False
    for i, line in enumerate(lines):
        before = lines[i - 1] if i else ""
        after = lines[i + 1] if i + 1 < len(lines) else ""
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence:
            out.append(line)
            continue
        if match := _MD_HEADING.match(line):
            heading, in_entry = match.group(2), False
            out.append(line)
            continue
        starts = (
            _TERM_LINE.match(line) and not before.strip() and not line.startswith(("#", "- ", "* ", "> "))
        )
        if indented:
            starts = (
                starts
                and after.startswith((" ", "\t"))
                and after.strip()
                and not before.rstrip().endswith("::")
            )
            starts = starts and not out[-2:-1] == ["::"] and not line.rstrip().endswith("::")
        else:
            starts = starts and bool(_MD_DEFINITION.match(after))
        if starts:
            term = line.strip().strip("*`")
            out += ["", f"###### {term}{TERM_SEPARATOR}{heading}" if heading else f"###### {term}", ""]
            in_entry = True
            continue
        if in_entry and line.strip() and not line.startswith((" ", "\t", ":")) and not before.strip():
            out += [f"###### {heading}", ""] if heading else []  # the entries are over: back to the heading
            in_entry = False
        definition = _MD_DEFINITION.match(line) if not indented else None
        out.append(definition.group(1) if definition else (line.strip() if in_entry else line))
    return "\n".join(out)


_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


def _rst_to_markdown(text: str) -> str:
    lines, out, levels = text.splitlines(), [], []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and _RST_UNDERLINE.match(nxt) and len(nxt.strip()) >= len(line.strip()):
            char = nxt.strip()[0]
            if char not in levels:  # rst heading levels follow the order the underline styles first appear
                levels.append(char)
            out.append("#" * min(levels.index(char) + 1, 6) + " " + line.strip())
            i += 2
            continue
        if _RST_UNDERLINE.match(line) and _RST_UNDERLINE.match(lines[i + 2] if i + 2 < len(lines) else ""):
            i += 1  # overlined title: skip the overline, the title and underline follow
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _first_line_title(text: str) -> str | None:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = first.strip("=-~#* ")
    if not first or len(first) > 100:
        return None
    return first.title() if first.isupper() else first


def _txt_to_markdown(text: str) -> str:
    """Plain text: treat underlined lines and short ALL-CAPS lines as headings."""
    text = _rst_to_markdown(text)
    out = []
    for line in text.splitlines():
        s = line.strip()
        if 3 <= len(s) <= 80 and s.isupper() and sum(c.isalpha() for c in s) >= 3 and not s.startswith("#"):
            out.append("## " + s.title())
        else:
            out.append(line)
    return "\n".join(out)


# --- HTML (indexers/html.py) ----------------------------------------------------------------------


def _load_html(text: str, rel_path: str) -> LoadedDoc:
    from .html import html_to_markdown

    content, title, url = html_to_markdown(text)
    return _from_markdown(content, rel_path, title=title, url=url)


# --- PDF and DOCX ---------------------------------------------------------------------------------


def _read_pdf(data: bytes) -> tuple[list[tuple[str, str]], str | None]:
    """(page label, page text) for every page, and the document's title. pypdf directly, as LlamaIndex's
    PDFReader does (page text and labels alike): that reader retries under tenacity, which parses a
    damaged file three times and then hides pypdf's own words inside a RetryError."""
    import pypdf

    try:
        pdf = pypdf.PdfReader(io.BytesIO(data))
        if pdf.is_encrypted and not pdf.decrypt(""):  # many "protected" PDFs open with the empty password
            raise SkipFile("the PDF is password-protected; index a copy saved without a password")
        labels = pdf.page_labels  # computed on each access: once, not once a page
        pages = [(labels[i], page.extract_text()) for i, page in enumerate(pdf.pages)]
        meta = pdf.metadata
    except SkipFile:
        raise
    except Exception as e:  # pypdf raises many types for damaged files; all mean the same to the user
        raise SkipFile(f"could not read the PDF: {str(e)[:160] or type(e).__name__}") from None
    return pages, (meta.title if meta and meta.title else None)


def _load_pdf(data: bytes, rel_path: str) -> LoadedDoc:
    pages, title = _read_pdf(data)
    title = title or _default_title(rel_path)
    sections: list[tuple[str, str]] = []
    heading = title
    for label, page_text in pages:
        for part_heading, text in _pdf_sections(page_text, heading):
            heading = part_heading  # a section that runs over a page break keeps its heading
            sections.append((f"{heading} (page {label})", text))
    return LoadedDoc(rel_path, title, None, sections)


def _pdf_sections(text: str, heading: str) -> list[tuple[str, str]]:
    """PDF text has no heading markup. A short line that starts with a capital and ends without
    punctuation is, in practice, a heading: wrapped body lines are long or end in a full stop."""
    sections, lines = [], []
    for line in text.splitlines():
        s = line.strip()
        if (
            0 < len(s) <= 60
            and len(s.split()) <= 8
            and s[0].isupper()
            and s[-1] not in ".,;:!?)"
            and not s.startswith(("-", "•", "*"))
        ):
            if lines:
                sections.append((heading, "\n".join(lines)))
            heading, lines = s, []
        else:
            lines.append(line)
    sections.append((heading, "\n".join(lines)))
    return [(h, t) for h, t in sections if t.strip()]


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DC = "{http://purl.org/dc/elements/1.1/}"


def _load_docx(data: bytes, rel_path: str, max_bytes: int | None = None) -> LoadedDoc:
    """Read paragraphs with their styles, so Word's Heading styles become sections (docx2txt drops them)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            unpacked = z.getinfo("word/document.xml").file_size  # a small zip can unpack to gigabytes
            if max_bytes is not None and unpacked > max_bytes:
                raise SkipFile(
                    too_large_reason(unpacked, max_bytes, "its text (word/document.xml) unpacks to ")
                )
            root = ElementTree.fromstring(z.read("word/document.xml"))
            core = (
                ElementTree.fromstring(z.read("docProps/core.xml"))
                if "docProps/core.xml" in z.namelist()
                else None
            )
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as e:
        raise SkipFile(f"could not read the DOCX: {str(e)[:160] or type(e).__name__}") from None
    lines = []
    body = root.find(f"{_W}body")
    for block in body if body is not None else []:
        if block.tag == f"{_W}tbl":
            lines += ["", *_docx_table_rows(block), ""]
            continue
        for p in [block] if block.tag == f"{_W}p" else block.iter(f"{_W}p"):
            lines += [_docx_paragraph(p), ""]  # a Word paragraph is a paragraph, not a wrapped line
    title_el = core.find(f"{_DC}title") if core is not None else None
    title = title_el.text if title_el is not None and title_el.text else None
    return _from_markdown("\n".join(lines), rel_path, title=title)


def _docx_paragraph(p) -> str:
    text = "".join(t.text or "" for t in p.iter(f"{_W}t"))
    style = p.find(f"{_W}pPr/{_W}pStyle")
    style = (style.get(f"{_W}val") or "") if style is not None else ""
    level = re.match(r"(?i)heading\s*(\d)", style)
    if style.lower() == "title":
        return f"# {text}"
    if level and text.strip():
        return "#" * min(int(level.group(1)) + 1, 6) + " " + text  # "Title" is the only H1
    return text


def _docx_table_rows(table) -> list[str]:
    """One line per row, as for HTML tables: with a first row of names, each later cell is led by its
    column's name ("Limit: 10 MB"), so a row read alone still says what its values are."""
    rows = [
        [" ".join(_docx_paragraph(p) for p in cell.iter(f"{_W}p")).strip() for cell in tr.findall(f"{_W}tc")]
        for tr in table.findall(f"{_W}tr")
    ]
    rows = [r for r in rows if any(r)]
    if len(rows) > 1 and len(rows[0]) > 1 and all(rows[0]):
        names = rows[0]
        return [" | ".join(names)] + [
            "\n" + " | ".join(f"{n}: {c}" if c else "" for n, c in zip(names, r, strict=False)).strip(" |")
            for r in rows[1:]
        ]
    return ["\n" + " | ".join(c for c in r if c) for r in rows]
