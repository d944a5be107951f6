"""Which files of the docs folder to index, why the others are left out, and the guards on reading one.

Nothing outside the folder is ever read. The walk never enters a link, which also rules out loops; a link
to a file of the folder leaves it to be indexed once, under its own name; and a file reachable under two
names (a hard link) is indexed under the first. Files that cannot be indexed whatever their content (an
unsupported type, too large) are left out here too, before a byte of them is read.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .config import SUPPORTED_SUFFIXES

MB = 1 << 20


class SkipFile(Exception):
    """A file we cannot index; the message is the reason shown in the index report."""


@dataclass
class DocsScan:
    files: list[Path] = field(default_factory=list)  # docs_dir / relative path, in a stable order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason), same order
    # Of skipped, those that could not be read (a folder ends in "/"): a fault, perhaps passing, so what was
    # indexed from them before is kept. The rest is left out by rule, and their previous version goes.
    unreadable: set[str] = field(default_factory=set)
    identity: dict[str, tuple[int, int]] = field(default_factory=dict)  # file -> (device, inode) seen


def unsupported_reason(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in SUPPORTED_SUFFIXES:
        return None
    return f"unsupported file type '{suffix or path.name}' (supported: {', '.join(SUPPORTED_SUFFIXES)})"


def too_large_reason(size: int, max_bytes: int, what: str = "") -> str:
    shown = f"{size / MB:.1f} MB" if size >= MB else f"{size / 1024:.0f} KB"
    limit = (
        f"{max_bytes / MB:.1f}".removesuffix(".0") + " MB"
        if max_bytes >= MB
        else f"{max_bytes / 1024:.0f} KB"
    )
    return f"too large: {what}{shown}, over the {limit} limit (max_file_mb)"


def scan_docs(docs_dir: Path, max_bytes: int | None = None) -> DocsScan:
    """Every file below docs_dir to index, and every one left out with its reason, in path order (the
    order sorted(rglob()) gave). Hidden files and folders (".git", ".DS_Store") are left out without a
    word. Raises OSError only when docs_dir itself cannot be listed."""
    docs_dir = Path(docs_dir)
    scan = DocsScan()
    walk = _Walk(docs_dir)
    walk.run()
    order = sorted([*walk.files, *walk.links, *walk.reasons], key=lambda r: Path(r.rstrip("/")).parts)
    claimed: dict[tuple[int, int], str] = {}  # (device, inode) -> the first name of a file
    verdict: dict[str, str | None] = dict(walk.reasons)  # None: indexed
    for rel in (r for r in order if r in walk.files):
        st = walk.files[rel]
        first = claimed.setdefault(_identity(st), rel)
        if first != rel:
            verdict[rel] = f"the same file as {first} (a hard link to it), indexed under that name"
        else:
            verdict[rel] = unsupported_reason(Path(rel))
            if verdict[rel] is None and max_bytes is not None and st.st_size > max_bytes:
                verdict[rel] = too_large_reason(st.st_size, max_bytes)
    for rel in walk.links:  # once every file is judged: a link's reason says what became of its file
        verdict[rel] = _link_reason(walk, rel, claimed, verdict, os.path.realpath(docs_dir))
    for rel in order:
        if verdict[rel] is None:
            scan.files.append(docs_dir / rel)
            scan.identity[rel] = _identity(walk.files[rel])
        else:
            scan.skipped.append((rel, verdict[rel]))
    scan.unreadable = walk.unreadable
    return scan


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


class _Walk:
    """Lists the tree through directory descriptors, never through a link: each folder is opened with
    O_NOFOLLOW and checked to be the very folder its parent listed, so that a folder swapped for a link
    during the scan is reported, not followed. Entries are stat-ed relative to their folder's descriptor."""

    def __init__(self, docs_dir: Path):
        self.docs_dir = docs_dir
        self.files: dict[str, os.stat_result] = {}  # regular files, by relative path (lstat)
        # What each link leads to, or why it leads nowhere.
        self.links: dict[str, os.stat_result | OSError] = {}
        self.dirs: dict[str, tuple[int, int]] = {}  # every folder listed, "" the docs folder itself
        self.reasons: dict[str, str] = {}  # left out during the walk
        self.unreadable: set[str] = set()

    def run(self) -> None:
        stack: list[tuple[str, tuple[int, int] | None]] = [("", None)]
        while stack:
            rel, expected = stack.pop()
            try:
                fd = self._open(rel, expected)
            except OSError as e:
                if not rel:
                    raise
                self._unreadable(rel + "/", f"unreadable folder: {e.strerror or e}")
                continue
            try:
                self.dirs[rel] = _identity(os.fstat(fd))
                with os.scandir(fd) as it:
                    entries = sorted(it, key=lambda e: e.name)
                for entry in entries:
                    if not entry.name.startswith("."):
                        self._entry(entry, f"{rel}/{entry.name}" if rel else entry.name, fd, stack)
            except OSError as e:
                if not rel:
                    raise
                self._unreadable(rel + "/", f"unreadable folder: {e.strerror or e}")
            finally:
                os.close(fd)

    def _open(self, rel: str, expected: tuple[int, int] | None) -> int:
        if not rel:
            return os.open(self.docs_dir, os.O_RDONLY | os.O_DIRECTORY)  # the folder itself may be a link
        fd = os.open(self.docs_dir / rel, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        if _identity(os.fstat(fd)) != expected:
            os.close(fd)
            raise OSError(errno.ESTALE, "it changed while being scanned; index again")
        return fd

    def _entry(self, entry: os.DirEntry, rel: str, dir_fd: int, stack: list) -> None:
        try:
            if entry.is_symlink():
                try:
                    self.links[rel] = os.stat(entry.name, dir_fd=dir_fd)  # follows the whole chain
                except OSError as e:
                    self.links[rel] = e
            elif entry.is_dir(follow_symlinks=False):
                stack.append((rel, _identity(entry.stat(follow_symlinks=False))))
            elif entry.is_file(follow_symlinks=False):
                self.files[rel] = entry.stat(follow_symlinks=False)
            else:
                self.reasons[rel] = "not a regular file (a pipe, socket or device); only files are indexed"
        except OSError as e:
            self._unreadable(rel, f"unreadable: {e.strerror or e}")

    def _unreadable(self, rel: str, reason: str) -> None:
        self.reasons[rel] = reason
        self.unreadable.add(rel)


def _link_reason(walk: _Walk, rel: str, claimed: dict, verdict: dict, root: str) -> str:
    """A link is never indexed under its own name: one to a file in the folder leaves it to that file's own
    name (so it is indexed once), and everything else a link can lead to is out of bounds. Whether a target
    is inside is decided by the identity of what the walk listed, not by its path; the path only picks the
    words. The reason never names a target outside the folder: reports are shown in Slack."""
    got = walk.links[rel]
    if isinstance(got, OSError):
        if got.errno == errno.ELOOP:
            return "symlink loop: following the link leads back to it, never to a file"
        if got.errno == errno.ENOENT:
            return "broken link: what it points to does not exist"
        walk.unreadable.add(rel)  # a fault reading the target (permissions), perhaps passing
        return f"unreadable link: {got.strerror or got}"
    ident = _identity(got)
    if stat.S_ISDIR(got.st_mode):
        ancestors = {p for p in walk.dirs if p == "" or rel.startswith(p + "/")}
        if any(walk.dirs[p] == ident for p in ancestors):
            return (
                "symlink loop: the link leads to a folder that contains it; links to folders are not followed"
            )
        inside = next((p for p, i in walk.dirs.items() if i == ident), None)
        if inside is not None:
            return f"link to the folder {inside}; links to folders are not followed (its files are indexed)"
        if _hidden_inside(walk, rel, root):
            return "link to a hidden folder; hidden files and folders are not indexed"
        return "link to a folder outside the docs folder; only what is inside it is indexed"
    if ident in claimed:
        name = claimed[ident]
        if verdict[name] is None:
            return f"link to {name}, which is indexed under that name"
        return f"link to {name}, which is left out: {verdict[name]}"
    if not stat.S_ISREG(got.st_mode):
        return "link to something that is not a regular file; only files are indexed"
    if _hidden_inside(walk, rel, root):
        return "link to a hidden file; hidden files and folders are not indexed"
    return "link to a file outside the docs folder; only what is inside it is indexed"


def _hidden_inside(walk: _Walk, rel: str, root: str) -> bool:
    """Whether a link the walk did not find its target for leads inside the folder (so, to something hidden).
    Only the wording depends on it: either way the target is not read."""
    return os.path.realpath(walk.docs_dir / rel).startswith(root.rstrip(os.sep) + os.sep)


# --- Reading: bounded, and only what is text -------------------------------------------------------


def read_bounded(path: Path, max_bytes: int | None, identity: tuple[int, int] | None = None) -> bytes:
    """The file's bytes, never more than max_bytes of them: the size is checked before reading (the scan
    checked it too, but a file can grow meanwhile), and a pipe is refused instead of blocking forever.
    Given the identity the scan saw, the file opened must be that very file: a file swapped since the
    scan for a link, or reached through a folder swapped for one, is refused instead of read."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (os.O_NOFOLLOW if identity else 0)
    try:
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if identity and _identity(st) != identity:
                raise SkipFile("it changed while being indexed (replaced by another file); index again")
            if not stat.S_ISREG(st.st_mode):
                raise SkipFile("not a regular file (a pipe, socket or device); only files are indexed")
            if max_bytes is not None and st.st_size > max_bytes:
                raise SkipFile(too_large_reason(st.st_size, max_bytes))
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except OSError as e:
        if e.errno == errno.ELOOP and identity:  # O_NOFOLLOW met a link where the scan saw a file
            raise SkipFile("it changed while being indexed (replaced by a link); index again") from None
        raise SkipFile(f"unreadable: {e.strerror or e}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise SkipFile(too_large_reason(len(data), max_bytes))
    return data


# Bytes that text never holds: C0 controls other than tab, newline, vertical tab, form feed and carriage
# return, and DEL. Escape (0x1b) counts too: coloured logs have a little of it, well under the shares below.
_CONTROL = bytes([*range(0, 9), *range(14, 32), 0x7F])
_SAMPLE = 8192


def binary_reason(data: bytes) -> str | None:
    """Why data, from a text-format file, is not text. A NUL byte never occurs in text. Binary without one
    (compressed, images, executables) is about 11% control bytes; text, UTF-8 or Windows-1252, has next
    to none. Valid UTF-8 gets a wider margin, since binary data almost never is valid UTF-8."""
    sample = data[:_SAMPLE]
    if b"\x00" in sample:
        return "binary content in a text file"
    share = (len(sample) - len(sample.translate(None, _CONTROL))) / max(len(sample), 1)
    try:
        sample.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError as e:  # a character cut by the end of the sample is still UTF-8
        utf8 = len(sample) == _SAMPLE and e.reason == "unexpected end of data"
    if share > (0.10 if utf8 else 0.03):
        return (
            f"binary content in a text file ({share:.0%} of its first {len(sample) // 1024 or 1} KB are "
            "control bytes, which text does not have)"
        )
    return None
