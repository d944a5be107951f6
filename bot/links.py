"""Citation links: where a reader can open a source, down to its PDF page or Markdown heading.

EXPERTBOT_DOCS_URL is the base URL where the docs folder is published (a git web view, an intranet share,
a wiki export): `handbook/onboarding.md` § "Quillmate pairing" becomes
`<base>/handbook/onboarding.md#quillmate-pairing`, a PDF section "Perks (page 2)" gets `#page=2`, and an
HTML section the id of its heading or definition-list term.
A file's own URL wins over the base: an HTML page's `<link rel="canonical">` (the indexer keeps it in
Source.url), or `url:` / `canonical_url:` in a Markdown file's front matter. With neither, a source is a
name only: never a file:// link into the server's disk.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, urlparse

from indexers.html import TERM_SEPARATOR  # "term — heading": a definition-list entry's section

MARKDOWN_SUFFIXES = (".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
FRONT_MATTER_KEYS = ("canonical_url", "url")

_PAGE = re.compile(r"\(page (\d+)\)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")  # as indexers.loading reads Markdown headings
_FENCE = ("```", "~~~")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def github_slug(heading: str) -> str:
    """The anchor GitHub (and GitLab, and most Markdown sites) gives a heading: its rendered text in lower
    case, without punctuation, spaces as hyphens ("Q&A: who to ask?" -> "qa-who-to-ask")."""
    text = _LINK.sub(r"\1", heading).replace("`", "").replace("**", "").replace("__", "")
    text = re.sub(r"(?<!\w)[*_]|[*_](?!\w)", "", text)  # *emphasis* and _emphasis_, not snake_case
    kept = (c for c in text.lower() if c in " -" or unicodedata.category(c)[0] in "LMN" or c == "_")
    return "".join(kept).replace(" ", "-")


def markdown_anchors(text: str) -> dict[str, str]:
    """Heading text -> its anchor, numbered as GitHub numbers repeats ("setup", "setup-1", ...)."""
    anchors: dict[str, str] = {}
    seen: dict[str, int] = {}
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith(_FENCE):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2).strip())
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.setdefault(match.group(2).strip(), slug if n == 0 else f"{slug}-{n}")
    return anchors


def html_anchors(text: str) -> dict[str, str]:
    """Heading or definition-list term text -> its id (or a named anchor inside it), as the indexer
    reads that text (indexers.html: whitespace collapsed, no pilcrow)."""
    from bs4 import BeautifulSoup

    anchors: dict[str, str] = {}
    for tag in BeautifulSoup(text, "html.parser").find_all(re.compile(r"^(h[1-6]|dt)$")):
        named = tag if tag.get("id") else tag.find(attrs={"id": True}) or tag.find("a", attrs={"name": True})
        anchor = named and (named.get("id") or named.get("name"))
        heading = re.sub(r"\s+", " ", tag.get_text(" ")).replace("\u00b6", "").strip()
        if anchor and heading:
            anchors.setdefault(heading, anchor)
    return anchors


def front_matter_url(text: str) -> str | None:
    """`canonical_url:` or `url:` from a YAML front matter block at the top of a Markdown file."""
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    import yaml

    try:
        meta = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return None
    if not isinstance(meta, dict):
        return None
    found = (meta.get(key) for key in FRONT_MATTER_KEYS)
    return next((u for u in found if isinstance(u, str) and _is_web_url(u)), None)


def _is_web_url(url: str) -> bool:
    parsed = urlparse(url.strip())
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


class DocLinks:
    """Source -> URL (or None). Markdown and HTML files are read once per change (their headings' anchors,
    a Markdown file's front matter)."""

    def __init__(self, base_url: str | None, docs_dir: Path | str):
        if base_url and not _is_web_url(base_url):
            raise ValueError(f"docs_url must be an http:// or https:// URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/") if base_url else None
        self.docs_dir = Path(docs_dir)
        self._cache: dict[str, tuple[float, dict[str, str], str | None]] = {}
        self._lock = threading.Lock()

    def url(self, source) -> str | None:
        if getattr(source, "url", None):  # e.g. an HTML page's canonical link
            return source.url
        file, section = source.file, getattr(source, "section", "") or ""
        anchors, own = self._read(file)
        anchor = self._anchor(file, section, anchors)
        if own:
            return own if "#" in own or not anchor else f"{own}#{anchor}"
        if not self.base_url:
            return None
        return f"{self.base_url}/{quote(file)}" + (f"#{anchor}" if anchor else "")

    def link(self, sources) -> list:
        """Copies of the sources with their url filled in (dataclasses, as bot.answer.Source)."""
        return [replace(s, url=self.url(s)) for s in sources]

    def _anchor(self, file: str, section: str, anchors: dict[str, str]) -> str | None:
        if file.lower().endswith(".pdf"):
            page = _PAGE.search(section)
            return f"page={page.group(1)}" if page else None
        # A definition-list entry is "term — heading": an HTML term may have an anchor of its own, else
        # the heading has one.
        term, _, heading = section.partition(TERM_SEPARATOR)
        own = anchors.get(term.strip()) if file.lower().endswith(HTML_SUFFIXES) else None
        return anchors.get(section) or own or anchors.get(heading.strip())

    def _read(self, file: str) -> tuple[dict[str, str], str | None]:
        html = file.lower().endswith(HTML_SUFFIXES)
        if not html and not file.lower().endswith(MARKDOWN_SUFFIXES):
            return {}, None
        path = self.docs_dir / file
        try:
            mtime = path.stat().st_mtime
            with self._lock:
                cached = self._cache.get(file)
            if cached and cached[0] == mtime:
                return cached[1], cached[2]
            text = path.read_text(encoding="utf-8-sig", errors="replace")
        except OSError:  # removed since it was indexed: the name is still worth a base URL link
            return {}, None
        found = (
            (mtime, html_anchors(text), None)
            if html
            else (mtime, markdown_anchors(text), front_matter_url(text))
        )
        with self._lock:
            self._cache[file] = found
        return found[1], found[2]


def doc_links(settings) -> DocLinks:
    return DocLinks(settings.docs_url, settings.docs_dir)
