"""Read the company glossary: JSONL, CSV or a Markdown definition list.

Every error names the file and, where there is one, the line, because the glossary is edited by
people who are not going to read a traceback.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".md": "markdown", ".markdown": "markdown"}
SUPPORTED = "JSONL (.jsonl), CSV (.csv) or a Markdown definition list (.md: `- **Term**: definition`)"


class GlossaryError(ValueError):
    """A glossary file that cannot be used; the message names the file (and line)."""


@dataclass(frozen=True)
class GlossaryEntry:
    term: str
    definition: str
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # Optional override of the evaluation key phrase (see adapters/evaluate.py: key_phrase).
    key_phrase: str | None = None
    source: str = ""  # "file:line", for error messages further down


def find_glossary(docs_dir: Path) -> Path:
    """The glossary.* file in a docs folder: the shallowest one, then by format (jsonl, csv, md)."""
    docs_dir = Path(docs_dir)
    if not docs_dir.is_dir():
        raise FileNotFoundError(f"docs folder {docs_dir} does not exist; pass the glossary file explicitly")
    order = list(SUFFIXES)
    found = [
        p
        for p in docs_dir.rglob("*")
        if p.is_file() and p.stem.lower() == "glossary" and p.suffix.lower() in SUFFIXES
    ]
    if not found:
        raise FileNotFoundError(
            f"no glossary.jsonl, glossary.csv or glossary.md found under {docs_dir}; "
            f"write one ({SUPPORTED}) or pass the file explicitly"
        )
    found.sort(key=lambda p: (len(p.relative_to(docs_dir).parts), order.index(p.suffix.lower()), str(p)))
    return found[0]


def load_glossary(path: Path) -> list[GlossaryEntry]:
    path = Path(path)
    if not path.is_file():
        raise GlossaryError(f"glossary file {path} does not exist")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise GlossaryError(
            f"glossary file {path} has an unsupported format {path.suffix!r}; use {SUPPORTED}"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets like to write a BOM
    except UnicodeDecodeError as e:
        raise GlossaryError(f"glossary file {path} is not UTF-8 text: {e}") from None
    parse = {"jsonl": _parse_jsonl, "csv": _parse_csv, "markdown": _parse_markdown}[kind]
    entries = parse(text, path)
    if not entries:
        raise GlossaryError(f"glossary file {path} has no entries; expected {SUPPORTED}")
    seen: dict[str, GlossaryEntry] = {}
    for e in entries:
        key = e.term.casefold()
        if key in seen:
            raise GlossaryError(f"{e.source}: term {e.term!r} is defined twice (first at {seen[key].source})")
        seen[key] = e
    return entries


def _split_aliases(value, where: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = re.split(r"[;|]", value)
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise GlossaryError(
            f"{where}: aliases must be a list of strings or a ';'-separated string, got {value!r}"
        )
    return tuple(a.strip() for a in value if a.strip())


def _entry(row: dict, where: str) -> GlossaryEntry:
    term, definition = row.get("term"), row.get("definition")
    for name, value in (("term", term), ("definition", definition)):
        if not isinstance(value, str) or not value.strip():
            raise GlossaryError(f"{where}: {name!r} must be a non-empty string, got {value!r}")
    key = row.get("key_phrase") or None
    if key is not None and (not isinstance(key, str) or key.strip().casefold() not in definition.casefold()):
        raise GlossaryError(f"{where}: key_phrase {key!r} must be a part of the definition")
    return GlossaryEntry(
        term=" ".join(term.split()),
        definition=" ".join(definition.split()),
        aliases=_split_aliases(row.get("aliases"), where),
        key_phrase=key.strip() if key else None,
        source=where,
    )


def _parse_jsonl(text: str, path: Path) -> list[GlossaryEntry]:
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise GlossaryError(f"{where}: not valid JSON ({e.msg}); each line must be one object") from None
        if not isinstance(row, dict):
            raise GlossaryError(f"{where}: expected a JSON object with 'term' and 'definition', got {row!r}")
        entries.append(_entry(row, where))
    return entries


def _parse_csv(text: str, path: Path) -> list[GlossaryEntry]:
    reader = csv.DictReader(text.splitlines())
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    missing = [c for c in ("term", "definition") if c not in columns]
    if missing:
        raise GlossaryError(
            f"{path}:1: CSV header must have columns term, definition (and optional aliases, key_phrase); "
            f"missing {', '.join(missing)}, found {', '.join(reader.fieldnames or []) or 'nothing'}"
        )
    entries = []
    for raw in reader:
        where = f"{path}:{reader.line_num}"
        if None in raw:
            raise GlossaryError(f"{where}: more fields than columns (quote definitions that contain commas)")
        row = {k: (raw.get(v) or "").strip() for k, v in columns.items()}
        if not any(row.values()):
            continue
        entries.append(_entry(row, where))
    return entries


# "- **Term**: definition", "* **Term:** definition", "- **SLO** (service level objective): definition"
_MD_ITEM = re.compile(
    r"^\s*[-*+]\s+\*\*(?P<term>[^*]+?)\*\*\s*(?:\((?P<aliases>[^)]*)\))?\s*:?\s*(?P<rest>.*)$"
)


def _parse_markdown(text: str, path: Path) -> list[GlossaryEntry]:
    rows: list[tuple[int, dict]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _MD_ITEM.match(line)
        if m:
            term = m["term"].strip().rstrip(":").strip()
            rows.append((lineno, {"term": term, "definition": m["rest"].strip(), "aliases": m["aliases"]}))
        elif (
            rows
            and line.startswith((" ", "\t"))
            and line.strip()
            and not line.lstrip().startswith(("-", "*"))
        ):
            # An indented line continues the previous item's definition (wrapped Markdown).
            rows[-1][1]["definition"] = (rows[-1][1]["definition"] + " " + line.strip()).strip()
        elif line.lstrip().startswith(("- ", "* ")) and "**" in line:
            raise GlossaryError(
                f"{path}:{lineno}: list item is not `- **Term**: definition`: {line.strip()!r}"
            )
    entries = []
    for lineno, row in rows:
        aliases = row.pop("aliases")
        row["aliases"] = [a for a in re.split(r"[,;]", aliases or "") if a.strip()]
        entries.append(_entry(row, f"{path}:{lineno}"))
    return entries
