"""The documents we benchmark on: the acme sample company and a real manual we did not write.

The manual is Debian's python3.11-doc (the CPython 3.11 HTML documentation). It is fetched with
apt-get and unpacked with dpkg into bench/_data/ the first time it is needed; without apt (or without
a network) the benchmarks that need it print why and skip it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .common import ACME_DOCS, DATA, say

MANUAL_PACKAGE = "python3.11-doc"
MANUAL_HTML = DATA / MANUAL_PACKAGE / "usr" / "share" / "doc" / "python3.11" / "html"
# The whole manual is ~530 pages, ~15k of our chunks: ~2.5 minutes of embedding on a quiet machine but
# 10-30 on this shared one, plus the baseline. The subset is the tutorial (17 pages) and the first 40
# pages of the library reference in file-name order (2to3, __future__, ..., a fixed list): ~1.7k chunks.
LIBRARY_PAGES = 40
QUICK_PAGES = 3  # --quick: the first tutorial pages only, enough to exercise the HTML path
TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".rst", ".html", ".htm")


def _run(cmd: list[str], cwd: Path) -> str | None:
    """None on success, else a one-line reason."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{' '.join(cmd)}: {e}"
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"{' '.join(cmd)} exited {done.returncode}: {last[0]}"
    return None


def fetch_manual() -> Path | None:
    """The manual's HTML folder, downloading it once; None (with a printed reason) when that fails."""
    if (MANUAL_HTML / "tutorial").is_dir():
        return MANUAL_HTML
    DATA.mkdir(parents=True, exist_ok=True)
    say(f"  fetching {MANUAL_PACKAGE} with apt-get download (once) into {DATA}")
    error = _run(["apt-get", "download", MANUAL_PACKAGE], DATA)
    if error and _run(["apt-get", "update", "-qq"], DATA) is None:  # a stale package list is the usual cause
        error = _run(["apt-get", "download", MANUAL_PACKAGE], DATA)
    debs = sorted(DATA.glob(f"{MANUAL_PACKAGE}_*.deb"))
    if error or not debs:
        say(f"  SKIP the manual: could not download {MANUAL_PACKAGE} ({error or 'no .deb appeared'}).")
        say(f"  To run it, put the package's files under {DATA / MANUAL_PACKAGE} (dpkg -x PKG.deb DIR).")
        return None
    error = _run(["dpkg", "-x", str(debs[-1]), str(DATA / MANUAL_PACKAGE)], DATA)
    for deb in debs:
        deb.unlink()  # the unpacked tree is all we read
    if error or not (MANUAL_HTML / "tutorial").is_dir():
        say(f"  SKIP the manual: unpacking failed ({error or 'no tutorial/ in the package'}).")
        return None
    return MANUAL_HTML


def manual_pages(html: Path, quick: bool) -> list[Path]:
    tutorial = sorted((html / "tutorial").glob("*.html"))
    if quick:
        return tutorial[:QUICK_PAGES]
    return tutorial + sorted((html / "library").glob("*.html"))[:LIBRARY_PAGES]


def manual_docs(dest: Path) -> Path | None:
    """The 57-page subset as a plain docs folder (tutorial/ and library/ copies), made once and reused.

    Reproducible: the same package version gives the same pages and bytes. None when the manual
    cannot be fetched (the reason is printed).
    """
    html = fetch_manual()
    if html is None:
        return None
    pages = manual_pages(html, quick=False)
    wanted = {p.relative_to(html).as_posix() for p in pages}
    have = {p.relative_to(dest).as_posix() for p in dest.rglob("*.html")} if dest.is_dir() else set()
    if have != wanted:  # copy_tree keeps the mtimes, so an index built on this folder stays reusable
        copy_tree(pages, html, dest)
    return dest


def copy_tree(files: list[Path], root: Path, dest: Path) -> Path:
    """A private copy: the incremental benchmark edits files, and the sources must stay as they are."""
    if dest.exists():
        shutil.rmtree(dest)
    for path in files:
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


@dataclass
class Corpus:
    label: str
    docs: Path  # a fresh private copy
    # The tutorial pipeline reads HTML as raw text, so at our chunk size it embeds ~5x more chunks of
    # markup than we embed of text: on the manual that baseline would take 10+ minutes here and say
    # little. It runs on acme (mostly Markdown, text, PDF and DOCX), where the work is comparable.
    like_for_like: bool


def corpora(workdir: Path, quick: bool) -> list[Corpus]:
    acme_files = sorted(p for p in ACME_DOCS.rglob("*") if p.is_file())
    found = [Corpus("acme", copy_tree(acme_files, ACME_DOCS, workdir / "docs-acme"), True)]
    html = fetch_manual()
    if html is not None:
        pages = manual_pages(html, quick)
        label = f"python3.11-doc ({len(pages)} pages)"
        found.append(Corpus(label, copy_tree(pages, html, workdir / "docs-manual"), False))
    return found


def touch_one_percent(docs: Path, marker: str) -> list[str]:
    """Edit 1% of the files (at least one) so their text changes; returns their relative paths.

    A paragraph goes into the middle of each picked file, as an editor would add one: in an HTML page,
    after its middle `</p>`, inside the article (text appended after `</html>` is not content, so the
    loader rightly drops it and nothing would be re-embedded). Only text formats are edited: appending to
    a PDF or DOCX would make it unreadable instead of changed. Picks are spread over the sorted list.
    """
    files = sorted(p for p in docs.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    total = sum(1 for p in docs.rglob("*") if p.is_file())
    count = max(1, round(total / 100))
    picks = [files[i * len(files) // count] for i in range(count)]
    sentence = f"{marker}: this paragraph was added to measure an incremental reindex."
    for path in picks:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".html", ".htm") and "</p>" in text:
            ends = [m.end() for m in re.finditer("</p>", text)]
            cut = ends[len(ends) // 2]
            text = f"{text[:cut]}\n<p>{sentence}</p>{text[cut:]}"
        else:
            lines = text.split("\n\n")
            middle = len(lines) // 2
            text = "\n\n".join([*lines[:middle], sentence, *lines[middle:]])
        path.write_text(text, encoding="utf-8")
    return [p.relative_to(docs).as_posix() for p in picks]
