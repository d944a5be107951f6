"""The Slack app manifest for the settings in use: manifest.yml, plus the scopes only some settings need.

manifest.yml asks for what every install needs and nothing more. A scope that only a setting calls for
(usergroups:read, when [scopes] grants documents to user groups or experts are a user group) is added
here, so that an install that never names a user group never asks a workspace admin for it.
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[1] / "manifest.yml"
ANCHOR = "      - users:read"  # the optional scopes follow this line of manifest.yml
USERGROUPS_READ = (
    "      - usergroups:read  # usergroups.users.list: the members of the user groups [scopes] names\n"
)


def app_manifest(scopes: dict, experts: list[str] = ()) -> str:
    """manifest.yml's text, with usergroups:read when a scope, or EXPERTBOT_EXPERTS, names user groups."""
    from .scopes import needs_usergroups

    text = MANIFEST.read_text(encoding="utf-8")
    if not needs_usergroups(scopes) and not any(e.startswith("S") for e in experts):
        return text
    head, found, tail = text.partition(ANCHOR)
    if not found:
        raise RuntimeError(f"{MANIFEST} has no '{ANCHOR.strip()}' line to add usergroups:read after")
    line_end = tail.index("\n") + 1
    return head + found + tail[:line_end] + USERGROUPS_READ + tail[line_end:]
