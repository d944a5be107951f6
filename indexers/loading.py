"""Turn files of many formats into one shape: a title, an optional URL, and (heading, text) sections.

Chunking then works the same for every format. A file that cannot be read is never fatal: it comes back
as a skip with a reason the user can act on.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from .config import SUPPORTED_SUFFIXES
from .html import TERM_SEPARATOR

# Bump when parsing changes, so that an incremental build re-reads every document.
LOADER_VERSION = 8  # 8: definition-list entries head sections, table cells named by their header


@dataclass
class LoadedDoc:
    rel_path: str
    title: str
    url: str | None = None
    sections: list[tuple[str, str]] = field(default_factory=list)  # (heading, text)


class SkipFile(Exception):
    """A file we cannot index; the message is the reason shown in the index report."""


def list_files(docs_dir: Path) -> list[Path]:
    """Every regular file below docs_dir in a stable order, hidden files and folders excluded."""
    files = []
    for path in sorted(docs_dir.rglob("*")):
        rel = path.relative_to(docs_dir)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        files.append(path)
    return files


def load_file(path: Path, rel_path: str) -> LoadedDoc:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SkipFile(
            f"unsupported file type '{suffix or path.name}' (supported: {', '.join(SUPPORTED_SUFFIXES)})"
        )
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SkipFile(f"unreadable: {e.strerror or e}") from None
    if not data.strip():
        raise SkipFile("empty file")
    if suffix == ".pdf":
        doc = _load_pdf(path, rel_path)
    elif suffix == ".docx":
        doc = _load_docx(data, rel_path)
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
    # A NUL byte never occurs in real text files; it marks a binary file with a text extension.
    if b"\x00" in data[:8192]:
        raise SkipFile("binary content in a text file")
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


def _load_pdf(path: Path, rel_path: str) -> LoadedDoc:
    from llama_index.readers.file import PDFReader

    try:
        pages = PDFReader(return_full_document=False).load_data(path)
        import pypdf  # only for the document title, which PDFReader does not expose

        meta = pypdf.PdfReader(str(path)).metadata
    except Exception as e:  # pypdf raises many types for damaged files; all mean the same to the user
        raise SkipFile(f"could not parse PDF: {type(e).__name__}: {str(e)[:120]}") from None
    title = (meta.title if meta and meta.title else None) or _default_title(rel_path)
    sections: list[tuple[str, str]] = []
    heading = title
    for i, page in enumerate(pages):
        label = page.metadata.get("page_label", i + 1)
        for part_heading, text in _pdf_sections(page.text, heading):
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


def _load_docx(data: bytes, rel_path: str) -> LoadedDoc:
    """Read paragraphs with their styles, so Word's Heading styles become sections (docx2txt drops them)."""
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            root = ElementTree.fromstring(z.read("word/document.xml"))
            core = (
                ElementTree.fromstring(z.read("docProps/core.xml"))
                if "docProps/core.xml" in z.namelist()
                else None
            )
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as e:
        raise SkipFile(f"could not parse DOCX: {type(e).__name__}: {str(e)[:120]}") from None
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
