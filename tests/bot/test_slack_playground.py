"""The no-tokens playground: a local page driving the same Bolt app, showing what the bot would post."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.playground.app import Playground
from bot.playground.people import CHANNEL, DM
from bot.playground.server import make_server
from bot.store import Store

from .conftest import served_playground


def call(url, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def answered(pg, channel):
    where = lambda p: p.get("channel") == channel and p.get("blocks")  # noqa: E731
    return pg.fake.wait_for("chat.update", where, timeout=120)[-1]


def test_the_playground_answers_mentions_and_dms_and_runs_commands(playground):
    pg, url = playground
    status, page = call(url + "/")
    assert status == 200 and "expertbot playground" in page

    assert (
        call(url + "/send", {"kind": "mention", "text": "How long does the Quillmate pairing last?"})[0]
        == 200
    )
    final = answered(pg, CHANNEL)
    assert any("handbook/onboarding.md" in json.dumps(b) for b in final.params["blocks"])
    assert call(url + "/send", {"kind": "dm", "text": "What are the support tiers?"})[0] == 200
    answered(pg, DM)

    assert call(url + "/send", {"kind": "/reindex", "text": "help"})[0] == 200
    assert (
        call(url + "/send", {"kind": "/retrain-adapter", "text": "status"})[0] == 200
    )  # the page's user is admin
    state = json.loads(call(url + "/state")[1])
    notes = [n["text"] for n in state["notes"]]
    assert notes[0].startswith("*/reindex*") and "Adapter in use" in notes[1]
    bot_posts = [m for m in state["messages"] if m["user"] == state["bot"]]
    assert {m["channel"] for m in bot_posts} == {CHANNEL, DM} and all(m.get("thread_ts") for m in bot_posts)
    status, body = call(url + "/send", {"kind": "/deploy", "text": ""})
    assert status == 400 and "/reindex and /retrain-adapter" in json.loads(body)["error"]
    assert call(url + "/send", {"kind": "/reindex", "text": "help", "where": "dm"})[0] == 200  # in the DM
    assert json.loads(call(url + "/state")[1])["notes"][-1]["channel"] == DM


# -- asking in another channel and as another person ([scopes]) ----------------------------------------
HR_DOC = "hr/parental-leave.md"
HR_TEXT = """# Parental leave

Every Acme Quillworks employee gets 26 weeks of fully paid parental leave, called the Nestwell leave.
File the Nestwell form with the HR lead four weeks before the leave starts.
"""
HR_QUESTION = "How many weeks does the Nestwell leave last?"
HR = {"docs": ["hr/**"], "channels": ["C0HRTEAM"], "users": ["U0HRLEAD"], "usergroups": ["S0HRSTAFF"]}
MEMBER, MEMBER_DM = "U0HRSTAFF", "D0HRSTAFF"  # the playground's made-up member of S0HRSTAFF


def scoped_settings(home: Path, docs: Path, **overrides):
    from bot.config import load_settings

    return load_settings(home=home, docs_dir=docs, max_new_tokens=12, scopes={"hr": HR}, **overrides)


@pytest.fixture(scope="session")
def scoped_services(tmp_path_factory, slack_services, slack_docs, model_cache):
    """Services over the Slack tests' docs plus an HR document that only the `hr` scope may read. It shares
    the session's embedder and model; its index is its own."""
    from bot.wiring import build_services

    docs = tmp_path_factory.mktemp("scoped-docs") / "docs"
    shutil.copytree(slack_docs, docs)
    (docs / HR_DOC).parent.mkdir(parents=True)
    (docs / HR_DOC).write_text(HR_TEXT)
    home = tmp_path_factory.mktemp("scoped-home")
    (home / "models").symlink_to(model_cache, target_is_directory=True)
    services = build_services(
        scoped_settings(home, docs),
        embed_model=slack_services.embed_model,
        generator=slack_services.generator,  # one model in memory, not two
    )
    services.indexer.build()
    return services


@pytest.fixture
def scoped_playground(scoped_services, store_path):
    """The playground over scoped_services, served on a free port: (Playground, base URL)."""
    with served_playground(scoped_services, Store(store_path)) as served:
        yield served


def test_with_scopes_the_playground_offers_their_channels_and_people(tmp_path, slack_docs):
    from bot.wiring import build_services

    # Nothing here loads a model or an index: the pickers come from the settings alone.
    pg = Playground(
        build_services(scoped_settings(tmp_path / "home", slack_docs)), store=Store(tmp_path / "s.db")
    )
    server = make_server(pg, port=0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        state = json.loads(call(url + "/state")[1])
        assert [(c["id"], c["label"]) for c in state["channels"]] == [
            ("CGENERAL", "#general"),
            ("C0HRTEAM", "#C0HRTEAM (scope hr)"),
        ]
        assert [(p["id"], p["label"], p["dm"]) for p in state["people"]] == [
            ("UPLAYGROUND", "you", DM),
            ("U0HRLEAD", "U0HRLEAD (scope hr)", "D0HRLEAD"),
            (MEMBER, "member of S0HRSTAFF (scope hr)", MEMBER_DM),
            ("UGUEST", "a guest", "DGUEST"),
        ]
        assert (state["channel"], state["dm"], state["user"]) == (CHANNEL, DM, "UPLAYGROUND")  # as before
        # The fake workspace knows them as Slack would: the guest restricted, the member in the group.
        assert pg.fake.users["UGUEST"]["is_restricted"] and not pg.fake.users["U0HRLEAD"]["is_restricted"]
        assert pg.fake.usergroups == {"S0HRSTAFF": [MEMBER]}

        status, body = call(url + "/send", {"kind": "mention", "text": "hi", "channel": "C0NOPE"})
        assert status == 400 and "unknown channel 'C0NOPE'" in (err := json.loads(body)["error"])
        assert "CGENERAL, C0HRTEAM" in err
        status, body = call(url + "/send", {"kind": "dm", "text": "hi", "user": "U0NOBODY"})
        assert status == 400 and "unknown user 'U0NOBODY'" in (err := json.loads(body)["error"])
        assert "UPLAYGROUND, U0HRLEAD, U0HRSTAFF, UGUEST" in err
        assert not pg.fake.calls("chat.postMessage")  # nothing was sent for either
    finally:
        server.shutdown()
        server.server_close()
        pg.close()


def test_without_scopes_the_playground_has_only_general_and_you(playground):
    pg, url = playground
    state = json.loads(call(url + "/state")[1])
    assert state["channels"] == [{"id": CHANNEL, "label": "#general"}]
    assert [(p["id"], p["dm"]) for p in state["people"]] == [("UPLAYGROUND", DM)]
    status, body = call(url + "/send", {"kind": "mention", "text": "hi", "channel": "C0HRTEAM"})
    assert status == 400 and "the playground has CGENERAL" in json.loads(body)["error"]


def cited(final) -> bool:
    return HR_DOC in json.dumps(final.params["blocks"])


def test_asking_as_another_person_in_another_channel_reaches_slack_as_them(scoped_playground):
    pg, url = scoped_playground
    ask = {"kind": "mention", "text": HR_QUESTION, "channel": "C0HRTEAM", "user": "U0HRLEAD"}
    assert call(url + "/send", ask)[0] == 200
    final = answered(pg, "C0HRTEAM")
    question = next(
        m for m in pg.fake.snapshot()[0] if m["channel"] == "C0HRTEAM" and m["user"] != pg.fake.bot_user_id
    )
    assert question["user"] == "U0HRLEAD" and HR_QUESTION in question["text"]
    (placeholder,) = pg.fake.calls("chat.postMessage", lambda p: p.get("channel") == "C0HRTEAM")
    assert placeholder.params["thread_ts"] == question["ts"]  # the answer is in the asker's thread
    assert cited(final)  # the hr scope's channel may use the HR document

    # The group member's DM is their own D… channel; their membership was asked of Slack.
    ask = {"kind": "dm", "text": HR_QUESTION, "user": MEMBER}
    assert call(url + "/send", ask)[0] == 200
    assert cited(answered(pg, MEMBER_DM))
    assert pg.fake.calls("usergroups.users.list", lambda p: p.get("usergroup") == "S0HRSTAFF")

    # A non-admin runs a command: the real refusal, noted for that person in the channel they chose.
    assert (
        call(url + "/send", {"kind": "/reindex", "text": "", "channel": "C0HRTEAM", "user": "U0HRLEAD"})[0]
        == 200
    )
    note = json.loads(call(url + "/state")[1])["notes"][-1]
    assert (note["channel"], note["user"]) == ("C0HRTEAM", "U0HRLEAD")
    assert "only the bot's admins can run" in note["text"]


def test_the_scope_rule_holds_for_everyone_else(scoped_playground):
    pg, url = scoped_playground
    for ask, channel in (
        ({"kind": "mention", "text": HR_QUESTION}, CHANNEL),  # you, an admin, in #general
        ({"kind": "mention", "text": HR_QUESTION, "channel": "C0HRTEAM", "user": "UGUEST"}, "C0HRTEAM"),
        ({"kind": "dm", "text": HR_QUESTION, "user": "UGUEST"}, "DGUEST"),
    ):
        assert call(url + "/send", ask)[0] == 200
        assert not cited(answered(pg, channel)), ask
    assert pg.fake.calls("users.info", lambda p: p.get("user") == "UGUEST")  # the guest was checked
