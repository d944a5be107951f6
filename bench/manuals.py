"""Real manuals from Debian packages, for held-out answer evaluation (issue 11).

Each manual is a fixed subset of one package's HTML, fetched once with `apt-get download` and unpacked
with `dpkg-deb -x` into a cache outside the repo (`$EXPERTBOT_BENCH_CACHE`, default
`~/.cache/expertbot-bench`). Its QA file (bench/qa/NAME.jsonl) was written from the pages' text, with
every `must_contain` checked against the page, never from the bot's answers.

One manual is for tuning (`role="tune"`): its failures may be read. The others are held out: the bench
prints only their figures, never which questions failed, so that nobody tunes on them by accident.
The PostgreSQL manual is deliberately absent: it is kept for an outside check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .common import REPO, say

QA_DIR = REPO / "bench" / "qa"


@dataclass(frozen=True)
class Manual:
    name: str
    package: str
    root: str  # the HTML folder inside the package
    pick: Callable[[str], bool]  # relative path -> indexed?
    role: str  # "tune" or "heldout"
    kind: str  # what sort of manual it is

    @property
    def qa(self) -> Path:
        return QA_DIR / f"{self.name}.jsonl"


_APACHE_SKIP = {"index.html", "directives.html", "quickreference.html", "directive-dict.html",
                "module-dict.html", "overrides.html"}  # fmt: skip
_GIT_PAGES = {
    *(f"git-{c}.html" for c in (
        "add am apply archive bisect blame branch checkout cherry-pick clean clone commit describe diff "
        "fetch format-patch gc grep init log merge mv notes pull push range-diff rebase reflog remote reset "
        "restore revert rm shortlog show sparse-checkout stash status submodule switch tag worktree "
        "maintenance send-email"
    ).split()),
    *(f"git{p}.html" for p in ("glossary", "ignore", "cli", "revisions", "everyday")),
}  # fmt: skip


def _apache(rel: str) -> bool:
    folder, _, name = rel.rpartition("/")
    return rel == "glossary.html" or (folder in ("mod", "programs") and name not in _APACHE_SKIP)


MANUALS = (
    Manual("apache", "apache2-doc", "usr/share/doc/apache2-doc/manual/en", _apache, "tune",
           "reference: a server's modules, directives with default tables, program options, a glossary"),
    Manual("git", "git-doc", "usr/share/doc/git-doc", lambda rel: rel in _GIT_PAGES, "heldout",
           "CLI manual set: 49 command pages with option lists, the glossary"),
    Manual("handbook", "debian-handbook", "usr/share/doc/debian-handbook/html/en-US",
           lambda rel: "/" not in rel and rel != "index.html", "heldout",
           "prose handbook: The Debian Administrator's Handbook, every chapter and section page"),
)  # fmt: skip


def cache_dir() -> Path:
    return Path(os.environ.get("EXPERTBOT_BENCH_CACHE") or Path.home() / ".cache" / "expertbot-bench")


def _run(cmd: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{' '.join(cmd)}: {e}"
    if done.returncode:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"{' '.join(cmd)} exited {done.returncode}: {last[0]}"
    return None


def fetch(manual: Manual) -> Path | None:
    """The package's HTML folder in the cache, downloading it once; None (reason printed) on failure."""
    base = cache_dir() / manual.package
    html = base / manual.root
    if html.is_dir():
        return html
    base.mkdir(parents=True, exist_ok=True)
    say(f"  fetching {manual.package} with apt-get download (once) into {base}")
    error = _run(["apt-get", "download", manual.package], base)
    if error and _run(["apt-get", "update", "-qq"], base) is None:  # a stale package list is the usual cause
        error = _run(["apt-get", "download", manual.package], base)
    debs = sorted(base.glob(f"{manual.package}_*.deb"))
    if not error and debs:
        error = _run(["dpkg-deb", "-x", str(debs[-1]), str(base)], base)
    for deb in debs:
        deb.unlink()
    if error or not html.is_dir():
        say(f"  SKIP {manual.name}: {error or f'no {manual.root} in {manual.package}'}")
        return None
    return html


def docs(manual: Manual) -> Path | None:
    """The manual's subset as a plain docs folder in the cache, made once (mtimes kept, so an index built
    on it stays reusable)."""
    html = fetch(manual)
    if html is None:
        return None
    dest = cache_dir() / "docs" / manual.name
    pages = [p for p in sorted(html.rglob("*.html")) if manual.pick(p.relative_to(html).as_posix())]
    wanted = {p.relative_to(html).as_posix() for p in pages}
    have = {p.relative_to(dest).as_posix() for p in dest.rglob("*.html")} if dest.is_dir() else set()
    if have != wanted:
        shutil.rmtree(dest, ignore_errors=True)
        for page in pages:
            target = dest / page.relative_to(html)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(page, target)
    return dest
