"""HTML to the Markdown the loader splits into sections: boilerplate out, structure kept.

Blocks become paragraphs and inline markup joins its text, so a sentence with a link in it stays one
sentence; code keeps its lines; a table row is one line; an API entry (a Sphinx <dt>) heads a section.
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
    r"related|skip|toc|toctree-wrapper|headerlink|social|share|subscribe|advert|ads)([\s_-]|$)",
    re.I,
)


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
        if tag.decomposed or tag.attrs is None:
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
    for dl in body.find_all("dl"):
        _dt_headings(dl)
    for level in range(1, 7):
        for h in body.find_all(f"h{level}"):
            h.replace_with(f"{_PARA}{'#' * level} {h.get_text(' ', strip=True)}{_PARA}")
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
    content = re.sub(r" \|[ \t]*$", "", content, flags=re.M).replace(_CODE, " ").replace(_SPACE, " ")
    return content, title, url


def _dt_headings(dl) -> None:
    """A run of <dt> terms with an id (how Sphinx marks a function, class or option) heads a section of
    its own, headed by the full signature (defaults included), with every signature as its first line."""
    dts = [dt for dt in dl.find_all("dt", recursive=False) if dt.get("id")]
    while dts:
        run = [dts.pop(0)]
        while dts and run[-1].find_next_sibling(True) is dts[0]:
            run.append(dts.pop(0))
        signatures = [re.sub(r"\s+", " ", dt.get_text("")).strip() for dt in run]
        heading = ", ".join([_qualified(run[0]["id"], signatures[0])] + [dt["id"] for dt in run[1:]])
        for dt in run[1:]:
            dt.decompose()
        run[0].replace_with(f"{_PARA}###### {heading}{_PARA}{'; '.join(signatures)}{_PARA}")


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
