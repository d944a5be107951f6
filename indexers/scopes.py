"""Document scopes: which documents a question may draw on, enforced where the chunks are stored.

A scope names globs of documents (relative to the docs folder). A document that matches none is public.
Each chunk carries its document's scope names in one Chroma metadata string (`scope`: the sorted names
joined by commas, "" for public), so that a dense query can filter on it with `$in` over the few
distinct strings a generation holds; BM25 gets a weight mask built from the same strings. The scope is
set after a chunk's id is computed: changing scopes changes rows' metadata in place, never their ids,
so nothing is re-embedded.

The manifest of a generation records each document's scopes: a reader trusts its own generation's
manifest, and the rows' metadata only where both agree (a rebuild may update the shared rows first).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

SCOPE_KEY = "scope"
SEPARATOR = ","  # never in a scope name (SCOPE_NAME)
PUBLIC = ""
SCOPE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

Rules = Mapping[str, tuple[str, ...]]


# --- configuration ---------------------------------------------------------------------------------
def validate_scopes(value) -> dict[str, tuple[str, ...]]:
    """`scopes` normalised to {name: (glob, ...)}; a ValueError names the setting that is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError(f"scopes must be a table of scope name -> document globs, got {value!r}")
    out: dict[str, tuple[str, ...]] = {}
    for name, globs in value.items():
        if not isinstance(name, str) or not SCOPE_NAME.fullmatch(name):
            raise ValueError(f"scopes: scope name {name!r} must be 1-64 letters, digits, '_' or '-'")
        if isinstance(globs, str) or not isinstance(globs, list | tuple):
            raise ValueError(f"scopes.{name}.docs must be a list of globs, got {globs!r}")
        for glob in globs:
            why = _bad_glob(glob)
            if why:
                raise ValueError(f"scopes.{name}.docs: {glob!r} {why}")
        out[name] = tuple(globs)
    return out


def _bad_glob(glob) -> str:
    if not isinstance(glob, str) or not glob.strip():
        return 'must be a non-empty string (a glob relative to the docs folder, e.g. "hr/**")'
    if glob.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", glob):
        return "must be relative to the docs folder, not an absolute path"
    if ".." in re.split(r"[\\/]", glob):
        return "must stay inside the docs folder: '..' is not supported"
    return ""


# --- matching ------------------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def compile_glob(glob: str) -> re.Pattern:
    """`**` any number of path segments (none included), `*` and `?` within one segment, `[...]` a
    class; a glob that names a folder (`hr`, `hr/`) covers everything under it."""
    segments = [s for s in glob.replace("\\", "/").split("/") if s not in ("", ".")]
    under = False  # a trailing ** : something under the folder, not the folder's name itself
    while segments and segments[-1] == "**":
        segments.pop()
        under = True
    if not segments:
        return re.compile(r".+", re.S)
    body = ""
    for i, segment in enumerate(segments):
        if segment == "**":
            body += r"(?:[^/]+/)*"
        else:
            body += _segment(segment) + ("/" if i < len(segments) - 1 else "")
    return re.compile(body + (r"/.+" if under else r"(?:/.*)?"), re.S)


def _segment(segment: str) -> str:
    out, i = [], 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            out.append(r"[^/]*")
        elif c == "?":
            out.append(r"[^/]")
        elif c == "[":
            j = i + 2 if segment[i + 1 : i + 2] in ("!", "^") else i + 1
            j = segment.find("]", j + 1)  # a ']' first in the class is one of its characters
            if j < 0:
                out.append(re.escape(c))
            else:
                inner = segment[i + 1 : j]
                negate = inner[:1] in ("!", "^")
                inner = inner[1:] if negate else inner
                out.append("[" + ("^/" if negate else "") + inner.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def scopes_of(rel_path: str, rules: Rules) -> tuple[str, ...]:
    """The sorted names of the scopes whose globs match a document's posix path; () is public."""
    return tuple(
        sorted(
            name for name, globs in rules.items() if any(compile_glob(g).fullmatch(rel_path) for g in globs)
        )
    )


def unmatched_globs(rules: Rules, rel_paths: Iterable[str]) -> list[str]:
    paths = list(rel_paths)
    return [
        f'scope "{name}": docs glob "{glob}" matches no file'
        for name, globs in rules.items()
        for glob in globs
        if not any(compile_glob(glob).fullmatch(p) for p in paths)
    ]


def scope_string(scopes: Iterable[str]) -> str:
    return SEPARATOR.join(sorted(scopes))


def parse_scope(value: str | None) -> tuple[str, ...]:
    return tuple(value.split(SEPARATOR)) if value else ()


def allows(value: str | None, allowed: frozenset[str] | None) -> bool:
    """Whether a chunk of this scope string may be used by someone allowed these scopes (None: all)."""
    return allowed is None or not value or any(name in allowed for name in value.split(SEPARATOR))


# --- building ------------------------------------------------------------------------------------
def tag(nodes: list, scope: str) -> list:
    """Give chunks their scope string, kept out of what is embedded and what the model reads."""
    for node in nodes:
        node.metadata[SCOPE_KEY] = scope
        for keys in (node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys):
            if SCOPE_KEY not in keys:
                keys.append(SCOPE_KEY)
    return nodes


def held(node, row_metadata: dict | None) -> None:
    """Record on a node what its stored row says its scope is (nothing: a row from before scopes)."""
    value = (row_metadata or {}).get(SCOPE_KEY)
    if value is None:
        node.metadata.pop(SCOPE_KEY, None)
    else:
        node.metadata[SCOPE_KEY] = value


def stored_nodes(collection, prior: dict[str, dict], step: int) -> dict[str, list]:
    """Files' chunks as stored (text and citation, no vectors), each holding its row's scope: BM25 is
    rebuilt over every chunk, and rows whose scope changed are updated. Returns each file's nodes, in
    chunk order."""
    from llama_index.core.vector_stores.utils import metadata_dict_to_node

    ids = [chunk for doc in prior.values() for chunk in doc["chunks"]]
    node_of = {}
    for i in range(0, len(ids), step):
        got = collection.get(ids=ids[i : i + step], include=["documents", "metadatas"])
        for id_, meta, text in zip(got["ids"], got["metadatas"], got["documents"], strict=True):
            node_of[id_] = node = metadata_dict_to_node(meta, text=text)
            held(node, meta)  # the row's own metadata, not the copy of it in _node_content
    return {rel: [node_of[c] for c in doc["chunks"] if c in node_of] for rel, doc in prior.items()}


def drop_stored(collection, pending: list) -> list:
    """The chunks not stored yet. Those stored already (an edited file's unchanged chunks, or a crashed
    build's) are not embedded again, but remember the scope their row holds, to be updated if it
    differs."""
    got = collection.get(ids=[n.node_id for n in pending], include=["metadatas"])
    stored = dict(zip(got["ids"], got["metadatas"], strict=True))
    for node in pending:
        if node.node_id in stored:
            held(node, stored[node.node_id])
    return [n for n in pending if n.node_id not in stored]


def rescope(collection, docs: dict, nodes_of: dict, rules: Rules, step: int) -> tuple[int, dict[str, int]]:
    """Record each document's scopes in `docs` (the manifest's), tag its nodes, and update in place the
    rows whose stored scope differs. Chroma merges metadata on update: only the scope key changes.
    Returns the number of chunks whose scopes changed and the number of chunks per scope."""
    rescoped, scoped, updates = 0, {name: 0 for name in rules}, []
    for rel in docs:
        scopes = scopes_of(rel, rules)
        docs[rel] = {**docs[rel], "scopes": list(scopes)}
        for name in scopes:
            scoped[name] += len(docs[rel]["chunks"])
        want, nodes = scope_string(scopes), nodes_of.get(rel, [])
        for node in nodes:
            had = node.metadata.get(SCOPE_KEY)
            if had != want:
                updates.append((node.node_id, want))
                rescoped += parse_scope(had) != scopes  # a row from before scopes, still public: no change
        tag(nodes, want)
    for i in range(0, len(updates), step):
        batch = updates[i : i + step]
        collection.update(ids=[id_ for id_, _ in batch], metadatas=[{SCOPE_KEY: s} for _, s in batch])
    return rescoped, scoped


def scopes_current(docs: dict, rules: Rules) -> bool:
    """Whether every document's recorded scopes are what the rules give now (an index from before
    scopes records none: its rows need their scope)."""
    return all(doc.get("scopes") == list(scopes_of(rel, rules)) for rel, doc in docs.items())


def scoped_counts(docs: dict, rules: Rules) -> dict[str, int]:
    counts = {name: 0 for name in rules}
    for doc in docs.values():
        for name in doc.get("scopes", ()):
            if name in counts:
                counts[name] += len(doc["chunks"])
    return counts


# --- retrieving ----------------------------------------------------------------------------------
class ScopeView:
    """A generation's scopes as its own manifest records them: what its readers enforce."""

    def __init__(self, manifest: dict | None, count: int):
        self.scope_of: dict[str, str] = {}  # chunk id -> scope string; scoped chunks only
        for doc in (manifest or {}).get("docs", {}).values():
            value = scope_string(doc.get("scopes") or ())
            if value:
                self.scope_of.update(dict.fromkeys(doc["chunks"], value))
        self.chunks: dict[str, int] = {}  # scope string -> chunks
        for value in self.scope_of.values():
            self.chunks[value] = self.chunks.get(value, 0) + 1
        if count > len(self.scope_of):
            self.chunks[PUBLIC] = count - len(self.scope_of)
        self._codes = None  # each BM25 document's scope string, as an index into `strings`
        self.strings = list(self.chunks)

    def scope(self, chunk_id: str) -> str:
        return self.scope_of.get(chunk_id, PUBLIC)

    def allowed_chunks(self, allowed: frozenset[str] | None) -> int:
        return sum(n for value, n in self.chunks.items() if allows(value, allowed))

    def keeper(self, allowed: frozenset[str] | None):
        """A test of chunk ids: whether this generation lets `allowed` use them."""
        scope_of = self.scope_of
        return lambda chunk_id: allows(scope_of.get(chunk_id, PUBLIC), allowed)

    def where(self, allowed: frozenset[str] | None) -> dict | None:
        """Chroma's filter for these allowed scopes; None when the generation holds nothing else."""
        ok = [value for value in self.strings if allows(value, allowed)]
        return None if len(ok) == len(self.strings) else {SCOPE_KEY: {"$in": ok}}

    def mask(self, allowed: frozenset[str], corpus):
        """BM25's weight mask: 1 for the allowed documents of its corpus, 0 for the others."""
        import numpy as np

        if self._codes is None:  # once per generation; a race computes the same array twice
            index = {value: i for i, value in enumerate(self.strings)}
            public = index.get(PUBLIC, -1)
            self._codes = np.fromiter(
                (index.get(self.scope_of.get(d["node_id"], PUBLIC), public) for d in corpus),
                dtype=np.int32,
                count=len(corpus),
            )
        table = np.array([allows(value, allowed) for value in self.strings] + [False], dtype=np.float32)
        return table[self._codes]
