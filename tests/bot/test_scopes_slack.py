"""Document scopes end to end: signed Slack events into the real Bolt app, a real index (Chroma, BM25)
and the real model, Slack faked on the wire. What is checked is what Slack received and the prompts the
model was given, not only the reply.

The scoped document states a made-up fact no other document has; the question names a made-up term only
that document holds. Where the document is not allowed, it must never be cited and its fact must never
reach the model (and with the term matched by no allowed chunk, the bot says it does not know).
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from adapters.llamacpp import LlamaCppGenerator
from bot.cli import main
from bot.config import load_settings
from bot.slack import build_app
from bot.slack.format import unescape
from bot.store import Store
from bot.wiring import Services, build_services

from .slack_fake import SIGNING_SECRET, TOKEN, ask, client_for, sources_text
from .slack_faults import FaultySlackAPI

HR_CHANNEL, GENERAL = "C0HRTEAM", "CGENERAL"
HR_LEAD, STAFFER, PERSON, GUEST = "U0HRLEAD", "U0STAFFER", "U0PERSON", "U0GUEST"
HR_GROUP = "S0HRSTAFF"
SCOPED, FACT = "hr/bonus.md", "9 percent of base salary"
QUESTION = "How large is the Quillfeather bonus pool?"
HR = {"docs": ["hr/**"], "channels": [HR_CHANNEL], "users": [HR_LEAD], "usergroups": [HR_GROUP]}


class Recording(LlamaCppGenerator):
    """The real engine, keeping every prompt it renders: what the model was given."""

    def __init__(self, *args):
        super().__init__(*args)
        self.prompts: list[str] = []

    def render(self, messages: list[dict]) -> str:
        prompt = super().render(messages)
        self.prompts.append(prompt)
        return prompt


def _services(home, docs, scopes, **parts) -> Services:
    return build_services(load_settings(home=home, docs_dir=docs, max_new_tokens=12, scopes=scopes), **parts)


@pytest.fixture(scope="module")
def scoped(tmp_path_factory, model_cache, embed_model, slack_docs):
    """Services over the Slack tests' docs plus hr/bonus.md, in scope hr; its generator records prompts."""
    root = tmp_path_factory.mktemp("scoped")
    docs, home = root / "docs", root / "home"
    shutil.copytree(slack_docs, docs)
    (docs / "hr").mkdir()
    (docs / SCOPED).write_text(
        "# The Quillfeather bonus pool\n\nThe Quillfeather bonus pool is "
        f"{FACT}, paid out every March to every quill who has passed probation.\n"
    )
    home.mkdir()
    (home / "models").symlink_to(model_cache, target_is_directory=True)
    plain = _services(home, docs, {"hr": HR})  # nothing built: it says where the base model's GGUF is
    recording = Recording(plain.settings.base_model_config(), plain._base_gguf())
    services = _services(home, docs, {"hr": HR}, embed_model=embed_model, generator=recording)
    report = services.indexer.build()
    assert report.scoped == {"hr": 1}  # one chunk, in one scope
    return services


@pytest.fixture
def fake():
    with FaultySlackAPI(token=TOKEN) as api:
        for user in (HR_LEAD, STAFFER, PERSON):
            api.add_user(user, user.lower())
        api.add_user(GUEST, "guest", is_restricted=True)
        api.add_usergroup(HR_GROUP, [STAFFER])
        yield api


@pytest.fixture
def app(scoped, fake, tmp_path):
    return build_app(
        scoped,
        client=client_for(fake),
        signing_secret=SIGNING_SECRET,
        store=Store(tmp_path / "bot.sqlite3"),
        update_interval=0,
    )


@pytest.fixture
def sim(fake):
    from bot.playground.simulate import SlackSimulator

    return SlackSimulator(SIGNING_SECRET, fake=fake)


def asked(app, sim, fake, scoped, **where) -> tuple[str | None, list[str]]:
    """(the Sources line Slack got, the prompts the model got) for QUESTION asked as `where` says."""
    scoped.generator.prompts.clear()
    _, _, final = ask(app, sim, fake, QUESTION, **where)
    return sources_text(final) or "", list(scoped.generator.prompts)


def withheld(sources: str, prompts: list[str]) -> bool:
    return SCOPED not in sources and not any(FACT in p for p in prompts)


def test_in_another_channel_the_scoped_doc_is_neither_cited_nor_given_to_the_model(app, sim, fake, scoped):
    sources, prompts = asked(app, sim, fake, scoped, channel=GENERAL, user=PERSON)
    assert withheld(sources, prompts)
    # The same question where it is allowed: cited, and its fact was in what the model read.
    sources, prompts = asked(app, sim, fake, scoped, channel=HR_CHANNEL, user=PERSON)
    assert SCOPED in sources and any(FACT in p for p in prompts)


@pytest.mark.parametrize("user, allowed", [(HR_LEAD, True), (STAFFER, True), (PERSON, False)])
def test_in_a_dm_the_listed_user_and_the_group_member_get_it_and_no_one_else(
    app, sim, fake, scoped, user, allowed
):
    sources, prompts = asked(app, sim, fake, scoped, channel="D" + user[1:], user=user, dm=True)
    assert (SCOPED in sources) is allowed
    assert withheld(sources, prompts) is not allowed


def test_a_guest_in_the_scoped_channel_does_not_get_it(app, sim, fake, scoped):
    assert withheld(*asked(app, sim, fake, scoped, channel=HR_CHANNEL, user=GUEST))


def test_when_users_info_fails_the_scoped_doc_is_withheld(app, sim, fake, scoped):
    newcomer = "U0NEWCOMER"  # asks for the first time: no guest status cached for them yet
    fake.add_user(newcomer, "newcomer")
    fake.fail("users.info", 10, status=500)  # every users.info of this question fails, retried or not
    assert withheld(*asked(app, sim, fake, scoped, channel=HR_CHANNEL, user=newcomer))


def test_a_thread_follow_up_by_a_guest_does_not_get_the_earlier_scoped_answer_as_history(
    app, sim, fake, scoped
):
    first, placeholder, final = ask(app, sim, fake, QUESTION, channel=HR_CHANNEL, user=PERSON)
    assert SCOPED in sources_text(final)
    (answer,) = [  # as the model would read it back: Slack's escaping undone
        unescape(m["text"])
        for m in fake.thread(HR_CHANNEL, first["ts"])
        if m["ts"] == placeholder.response["ts"]
    ]
    follow_up = "And how long does the Quillmate pairing last?"  # public: the model is asked
    scoped.generator.prompts.clear()
    ask(app, sim, fake, follow_up, channel=HR_CHANNEL, user=GUEST, thread_ts=first["ts"])
    assert scoped.generator.prompts and not any(answer in p for p in scoped.generator.prompts)
    # The same follow-up by a member has the bot's earlier answer in its history.
    scoped.generator.prompts.clear()
    ask(app, sim, fake, follow_up, channel=HR_CHANNEL, user=STAFFER, thread_ts=first["ts"])
    assert any(answer in p for p in scoped.generator.prompts)


def test_the_cli_asks_as_someone_and_says_when_it_is_the_admin_view(scoped, fake):
    runner, obj = CliRunner(), {"services": scoped}
    admin = runner.invoke(main, ["ask", "--json", QUESTION], obj=obj)
    assert admin.exit_code == 0, admin.output
    shown = json.loads(admin.stdout)
    assert shown["access"] == "admin view: every document" and SCOPED in {s["file"] for s in shown["sources"]}
    other = runner.invoke(main, ["ask", "--json", "--channel", GENERAL, "--user", PERSON, QUESTION], obj=obj)
    assert other.exit_code == 0, other.output
    assert SCOPED not in {s["file"] for s in json.loads(other.stdout)["sources"]}
    bad = runner.invoke(main, ["ask", "--channel", "#hr", QUESTION], obj=obj)
    assert bad.exit_code == 2 and "channel ids look like C0123ABCD" in bad.output


def test_changing_the_scopes_reindexes_without_embedding_and_the_new_rule_holds(scoped, embed_model):
    home, docs = scoped.settings.home, scoped.settings.docs_dir
    moved = {"hr": {**HR, "channels": ["C0PEOPLE"]}}
    report = _services(home, docs, moved, embed_model=embed_model).indexer.build()
    assert (report.chunks_embedded, report.rescoped) == (0, 0)  # who may see it changed, not its scope
    opened = _services(home, docs, {"finance": {"docs": ["hr/**", "payroll/**"]}}, embed_model=embed_model)
    shown = CliRunner().invoke(main, ["index"], obj={"services": opened})  # what `expertbot index` says
    assert shown.exit_code == 0, shown.output
    assert "0 embedded" in shown.output and "scoped chunks: finance 1; 1 changed scope" in shown.output
    assert 'warning: scope "finance": docs glob "payroll/**" matches no file' in shown.output
    assert SCOPED not in {h.file for h in opened.retriever.retrieve(QUESTION, allowed=frozenset({"hr"}))}
    assert SCOPED in {h.file for h in opened.retriever.retrieve(QUESTION, allowed=frozenset({"finance"}))}
    # The index is the module's: put its rule back for whatever runs after this test.
    assert _services(home, docs, {"hr": HR}, embed_model=embed_model).indexer.build().rescoped == 1


def test_doctor_shows_how_old_the_user_group_memberships_are(scoped, fake, sim):
    scoped.apply_scopes()  # a fresh resolver, as in a bot just started: no memberships cached yet
    doctor = ["doctor"]
    before = CliRunner().invoke(main, doctor, obj={"settings": scoped.settings})
    assert f"{HR_GROUP} not fetched yet" in before.output and "usergroups:read" in before.output
    store = Store.in_home(scoped.settings.home)
    app = build_app(scoped, client=client_for(fake), signing_secret=SIGNING_SECRET, store=store)
    ask(app, sim, fake, QUESTION, channel="D" + STAFFER[1:], user=STAFFER, dm=True)
    after = CliRunner().invoke(main, doctor, obj={"settings": scoped.settings})
    assert f"{HR_GROUP} fetched 0 s ago" in after.output or f"{HR_GROUP} fetched 1 s ago" in after.output
    assert "hr: 1 glob, 1 channels, 1 users, 1 user groups" in after.output


@pytest.mark.parametrize("how", ["a Slack Connect channel", "someone of another workspace"])
def test_a_shared_channel_or_another_workspace_gets_public_documents_only(app, sim, fake, scoped, how):
    from slack_bolt.request import BoltRequest

    from .slack_fake import final_update, placeholder_for

    event = sim.mention_event(QUESTION, user=PERSON, channel=HR_CHANNEL)
    if how == "someone of another workspace":
        event["user_team"] = "T0OTHER"
    body = json.loads(sim.event_body(event))
    body["is_ext_shared_channel"] = how == "a Slack Connect channel"
    raw = json.dumps(body)
    scoped.generator.prompts.clear()
    assert (
        app.dispatch(BoltRequest(body=raw, headers=sim.headers(raw, content_type="application/json"))).status
        == 200
    )
    final = final_update(fake, HR_CHANNEL, placeholder_for(fake, event).response["ts"])
    assert withheld(sources_text(final) or "", scoped.generator.prompts)


def test_a_reindex_in_slack_applies_an_edited_scopes_table_without_a_restart(
    scoped, embed_model, fake, sim, tmp_path
):
    from .slack_fake import ADMIN, ack_text

    home, docs = scoped.settings.home, scoped.settings.docs_dir
    table = {"hr": HR}  # what expertbot.toml says; edited below while the bot runs

    def read():
        return load_settings(home=home, docs_dir=docs, max_new_tokens=12, scopes=table, admins=[ADMIN])

    services = build_services(read(), reload=read, embed_model=embed_model)
    app = build_app(services, client=client_for(fake), signing_secret=SIGNING_SECRET,
                    store=Store(tmp_path / "bot.sqlite3"), update_interval=0)  # fmt: skip
    _, _, final = ask(app, sim, fake, QUESTION, channel=HR_CHANNEL, user=PERSON)
    assert SCOPED in sources_text(final)
    table = {"hr": {**HR, "channels": ["C0PEOPLE"]}}
    started = app.dispatch(sim.command("/reindex", "", user=ADMIN, channel="C0ADMIN"))
    assert "reindex" in ack_text(started).lower()
    done = fake.wait_for(
        "chat.update", lambda p: p.get("channel") == "C0ADMIN" and p.get("text", "")[:1] in "✅❌"
    )
    assert done[-1].params["text"].startswith("✅"), done[-1].params["text"]
    _, _, final = ask(app, sim, fake, QUESTION, channel=HR_CHANNEL, user=PERSON)
    assert SCOPED not in (sources_text(final) or "")
    _, _, final = ask(app, sim, fake, QUESTION, channel="C0PEOPLE", user=PERSON)
    assert SCOPED in sources_text(final)
