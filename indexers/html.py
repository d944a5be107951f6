"""HTML to the Markdown the loader splits into sections: boilerplate out, structure kept.

Blocks become paragraphs and inline markup joins its text, so a sentence with a link in it stays one
sentence; code keeps its lines; a table row is one line, its cells named by the header row; every entry
of a definition list (an option, a glossary term, a setting; a Sphinx API entry) heads a section of its
own, so each piece of its description keeps the term it describes (indexers.facts).
"""

from __future__ import annotations

import re

_BOILERPLATE_TAGS = [
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "iframe",
    "svg",
    "button",
    "template",
]
_BOILERPLATE_HINT = re.compile(
    r"(^|[\s_-])(nav|navbar|navigation|menu|breadcrumbs?|cookie|consent|banner|footer|sidebar|sphinxsidebar|"
    r"related|skip|toc|toctree-wrapper|headerlink|permalink|social|share|subscribe|advert|ads)([\s_-]|$)",
    re.I,
)


# A hint on these is about the page, not a part of it: Apache's manual has <body class="no-sidebar">.
_NEVER_BOILERPLATE = ("html", "body", "main", "article")

# Markers that survive whitespace collapsing: a paragraph break, a line break (<br>, code lines), the
# start of a code line, and a space inside one (indentation, as after a "..." prompt, is meaning).
_PARA, _LINE, _CODE, _SPACE = "\x01", "\x02", "\x03", "\x04"
_BLOCK_TAGS = [
    "p", "div", "section", "article", "main", "ul", "ol", "dl", "dd", "table", "thead", "tbody",
    "blockquote", "figure", "figcaption", "caption", "hr", "li", "tr",
]  # fmt: skip


def html_to_markdown(text: str) -> tuple[str, str | None, str | None]:
    """(Markdown text, title, canonical URL) of an HTML page."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    url = None
    canonical = soup.find("link", rel="canonical") or soup.find("meta", property="og:url")
    if canonical is not None:
        url = canonical.get("href") or canonical.get("content")
    for tag in soup.find_all(_BOILERPLATE_TAGS):
        tag.decompose()
    for tag in soup.find_all(True):
        if tag.decomposed or tag.attrs is None or tag.name in _NEVER_BOILERPLATE:
            continue
        hints = " ".join([tag.get("id") or "", " ".join(tag.get("class") or []), tag.get("role") or ""])
        if tag.get("role") in ("navigation", "banner", "contentinfo") or (
            hints.strip() and _BOILERPLATE_HINT.search(hints)
        ):
            tag.decompose()
    body = soup.find("main") or soup.find(attrs={"role": "main"}) or soup.find("article") or soup.body or soup
    for pre in body.find_all("pre"):  # a leading space keeps "# comment" lines from reading as headings
        lines = [line.rstrip().expandtabs(4) for line in pre.get_text().splitlines()]
        code = [_CODE + line.replace(" ", _SPACE) for line in lines if line]
        pre.replace_with(_PARA + _LINE.join(code) + _PARA)
    for table in body.find_all("table"):
        _name_cells(table)
    for dl in body.find_all("dl"):
        if dl.find_parent(["dd", "li", "td"]) is None:  # a list inside an entry stays part of that entry
            _dt_headings(dl)
    for level in range(1, 7):
        for h in body.find_all(f"h{level}"):
            h.replace_with(f"{_PARA}{'#' * level} {_heading_text(h)}{_PARA}")
    for br in body.find_all("br"):
        br.replace_with(_LINE)
    for cell in body.find_all(["td", "th"]):
        cell.insert_after(" | ")
    for item in body.find_all(["li", "td", "th"]):  # "- text" and "a | b", not lines of their own
        for p in item.find_all("p", recursive=False):
            p.insert_after(" ")  # two paragraphs in one cell must not become "First.Second"
            p.unwrap()
    for tag in body.find_all(_BLOCK_TAGS):
        tag.insert_before(_PARA + ("- " if tag.name == "li" else ""))
        tag.insert_after(_PARA)
    content = re.sub(r"\s+", " ", body.get_text(""))
    content = re.sub(rf"\s*{_PARA}[\s{_PARA}]*", "\n\n", content)
    content = re.sub(rf" ?(\| )?{_LINE}", "\n", content).replace(" |\n", "\n")
    content = re.sub(r"(?<=:) \| ", " ", content)  # "Default: | 8096" is a name and its value
    content = re.sub(r" \|[ \t]*$", "", content, flags=re.M).replace(_CODE, " ").replace(_SPACE, " ")
    return content, title, url


TERM_SEPARATOR = " — "  # "term — page topic" (indexers.facts reads the term back)
TOPIC_CHARS = 50


def _dt_headings(dl) -> None:
    """Each run of <dt> terms heads a section of its own: "-v, --verbose", "Reverse Proxy", a setting's
    name. A Sphinx API entry (a <dt> with an id) is headed by its qualified signature, defaults included,
    with every signature as the first line. After the list, the heading it sat under resumes, so the text
    that follows is not taken for the last term's."""
    dts = dl.find_all("dt", recursive=False)
    if not dts:
        return
    outer = dl.find_previous(re.compile(r"^h[1-6]$"))
    h1 = dl.find_previous("h1")
    page = _heading_text(h1)[:TOPIC_CHARS] if h1 is not None else ""
    while dts:
        run = [dts.pop(0)]
        while dts and run[-1].find_next_sibling(True) is dts[0]:
            run.append(dts.pop(0))
        terms = [re.sub(r"\s+", " ", dt.get_text("")).strip() for dt in run]
        if run[0].get("id"):
            heading = ", ".join(
                [_qualified(run[0]["id"], terms[0])]
                + [dt.get("id") or t for dt, t in zip(run[1:], terms[1:], strict=True)]
            )
            first = f"{_PARA}{'; '.join(terms)}"
        else:  # the page's topic after the term: "-t" alone does not say which program it is an option of
            heading, first = ", ".join(t for t in terms if t), ""
            heading = f"{heading}{TERM_SEPARATOR}{page}" if heading and page else heading
        for dt in run[1:]:
            dt.decompose()
        run[0].replace_with(f"{_PARA}###### {heading}{first}{_PARA}" if heading else _PARA)
    if outer is not None:
        dl.insert_after(f"{_PARA}###### {_heading_text(outer)}{_PARA}")


def _heading_text(tag) -> str:
    return re.sub(r"\s+", " ", tag.get_text(" ")).replace("\u00b6", "").strip()


def _name_cells(table) -> None:
    """In a table whose first row is all header cells, each cell of the later rows starts with its
    column's name ("Limit: 10 MB"), so a row read alone (one fact) still says what its values are."""
    rows = [tr for tr in table.find_all("tr") if tr.find_parent("table") is table]
    if len(rows) < 2:
        return
    head = rows[0].find_all(["td", "th"], recursive=False)
    if len(head) < 2 or any(cell.name != "th" for cell in head):
        return
    names = [re.sub(r"\s+", " ", cell.get_text(" ")).strip() for cell in head]
    for tr in rows[1:]:
        for name, cell in zip(names, tr.find_all(["td", "th"], recursive=False), strict=False):
            if name and cell.get_text(strip=True):
                cell.insert(0, f"{name}: ")


def _qualified(anchor: str, signature: str) -> str:
    """ "register(subclass)" with anchor abc.ABCMeta.register -> "abc.ABCMeta.register(subclass)";
    "class asyncio.Queue(maxsize=0)" -> "asyncio.Queue(maxsize=0)". Anchors drop leading underscores
    (_thread.exit has the anchor thread.exit), so the signature's own spelling wins where it has one."""
    words = signature.split("(", 1)[0].split()
    if not words:
        return anchor
    name = words[-1]
    rest = signature[signature.index(name) :]  # from the name on: drops "class ", "async " ...
    for tail in (name, name.lstrip("_")):
        if anchor.endswith(tail):
            return anchor[: len(anchor) - len(tail)] + rest  # the qualification the signature lacks
    return anchor
