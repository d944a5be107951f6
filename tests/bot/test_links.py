"""Citation links (EXPERTBOT_DOCS_URL): every source opens at <base>/<path>, at its PDF page or heading;
a file's own URL wins; with no base URL sources stay names. Over real files and the real indexer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bot.answer import Source
from bot.cli import main
from bot.config import ConfigError, load_settings
from bot.links import DocLinks, github_slug
from bot.slack.format import sources_block

BASE = "https://git.acme.example/docs/blob/main/docs"
GUIDE = """---
title: Guide
---
# Release guide

## Setup
Install it.

## Q&A: who signs off?
The release captain.

Setup
: a definition-list entry under the heading above

## Setup
Again, later.

```
## not a heading
```
"""
WIKI = "---\nurl: https://wiki.acme.example/Expenses\n---\n# Expenses\n\n## Receipts\nKeep them.\n"


@pytest.fixture
def docs(tmp_path):
    (tmp_path / "eng").mkdir()
    (tmp_path / "eng" / "release guide.md").write_text(GUIDE)
    (tmp_path / "expenses.md").write_text(WIKI)
    return tmp_path


def test_sources_link_to_the_base_url_at_their_page_or_heading(docs):
    links = DocLinks(BASE + "/", docs)
    url = lambda file, section: links.url(Source(file, section, 0.9))  # noqa: E731
    guide = f"{BASE}/eng/release%20guide.md"
    assert url("eng/release guide.md", "Setup") == f"{guide}#setup"
    assert url("eng/release guide.md", "Q&A: who signs off?") == f"{guide}#qa-who-signs-off"
    assert url("eng/release guide.md", "Setup — Q&A: who signs off?") == f"{guide}#qa-who-signs-off"
    assert url("eng/release guide.md", "not a heading") == guide  # inside a code fence
    assert (
        url("handbook/benefits-summary.pdf", "Pension (page 2)")
        == f"{BASE}/handbook/benefits-summary.pdf#page=2"
    )
    assert url("it/notes.docx", "Laptops") == f"{BASE}/it/notes.docx"  # no anchors in a Word file
    assert url("gone.md", "Intro") == f"{BASE}/gone.md"  # removed since: still a link to where it was
    # A file's own URL wins: front matter (with the heading's anchor), an HTML page's canonical link.
    assert url("expenses.md", "Receipts") == "https://wiki.acme.example/Expenses#receipts"
    canonical = Source("it/faq.html", "VPN", 0.9, url="https://intranet.acme.example/faq")
    assert links.url(canonical) == "https://intranet.acme.example/faq"


def test_html_sources_link_to_their_heading_or_terms_anchor(docs):
    """Through the real loader: the section names it gives a page resolve to that page's own ids."""
    from indexers.loading import load_file

    (docs / "httpd.html").write_text(
        '<html><body><h1 id="top">httpd - the server</h1><h2 id="options">Options <a class="permalink" '
        'href="#options">\u00b6</a></h2><dl><dt><a name="opt-k" id="opt-k">-k</a></dt><dd>Keep alive.</dd>'
        "<dt>-n</dt><dd>No anchor of its own.</dd></dl><p>More.</p></body></html>"
    )
    links = DocLinks(BASE, docs)
    sections = [h for h, _ in load_file(docs / "httpd.html", "httpd.html").sections]
    urls = {h: links.url(Source("httpd.html", h, 0.9)) for h in sections}
    page = f"{BASE}/httpd.html"
    assert urls["-k — httpd - the server"] == f"{page}#opt-k"  # the term's own anchor
    assert urls["-n — httpd - the server"] == f"{page}#top"  # else the page heading's
    assert urls["Options"] == f"{page}#options"


def test_with_no_base_url_sources_stay_names_unless_the_file_has_a_url(docs):
    links = DocLinks(None, docs)
    assert links.url(Source("eng/release guide.md", "Setup", 0.9)) is None
    assert links.url(Source("expenses.md", "Receipts", 0.9)) == "https://wiki.acme.example/Expenses#receipts"
    text = sources_block(links.link([Source("eng/release guide.md", "Setup", 0.9)]))["elements"][0]["text"]
    assert text == "*Sources:* eng/release guide.md § Setup" and "file:" not in text


def test_github_slugs_and_a_bad_base_url():
    assert github_slug("The `cache_size` option") == "the-cache_size-option"
    assert github_slug("**Before** your _first_ day!") == "before-your-first-day"
    assert github_slug("Days 1-10") == "days-1-10"
    with pytest.raises(ConfigError, match="EXPERTBOT_DOCS_URL: .*http:// or https://"):
        load_settings(docs_url="file:///srv/docs")


def test_ask_prints_links_into_the_published_docs(acme_services):
    settings = acme_services.settings.model_copy(update={"docs_url": BASE})
    from bot.wiring import build_services

    # The same index and models, with EXPERTBOT_DOCS_URL set.
    linked = build_services(settings, answerer=acme_services.answerer)
    result = CliRunner().invoke(
        main, ["ask", "What is the minimum password length in our security policy?"], obj={"services": linked}
    )
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "policies/security-policy.md" in line)
    assert f"{BASE}/policies/security-policy.md#" in line
    as_json = CliRunner().invoke(
        main, ["ask", "Which VPN client do we use?", "--json"], obj={"services": linked}
    )
    assert set(json.loads(as_json.stdout)["sources"][0]) == {"file", "section", "score"}  # its shape stays
