"""Settings: environment over expertbot.toml over defaults, and clean messages that name the setting."""

import pytest

from bot.config import ConfigError, load_settings


def test_toml_file_and_environment_precedence(tmp_path, monkeypatch):
    toml = tmp_path / "expertbot.toml"
    toml.write_text('top_k = 7\nadmins = "U1ABC, W2DEF"\nhome = "/srv/expertbot"\n')
    monkeypatch.setenv("EXPERTBOT_CONFIG", str(toml))
    monkeypatch.setenv("EXPERTBOT_TOP_K", "3")
    settings = load_settings()
    assert settings.top_k == 3  # the environment wins
    assert settings.admins == ["U1ABC", "W2DEF"]
    assert str(settings.home) == "/srv/expertbot"
    assert settings.index_config().top_k == 3 and settings.base_model_config().cache_dir.parts[-1] == "models"


def test_bad_values_name_the_setting_and_hide_secrets(monkeypatch):
    monkeypatch.setenv("EXPERTBOT_DEVICE", "tpu")
    monkeypatch.setenv("EXPERTBOT_ADMINS", "U1ABC,bob")
    monkeypatch.setenv("SLACK_API_URL", "ftp://slack")
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert "EXPERTBOT_DEVICE: String should match pattern '^(auto|cpu|cuda)$' (got 'tpu')" in text
    assert "EXPERTBOT_ADMINS: Value error, Slack user IDs look like U012AB3CD; not bob" in text
    assert "SLACK_API_URL: Value error, must be an http:// or https:// URL" in text


def test_library_checks_are_reported_under_the_setting_name(monkeypatch):
    monkeypatch.setenv("EXPERTBOT_CHUNK_OVERLAP", "500")
    with pytest.raises(ConfigError, match="EXPERTBOT_CHUNK_OVERLAP: chunk_overlap must be between 0 and"):
        load_settings()


def test_a_named_config_file_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPERTBOT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="EXPERTBOT_CONFIG names .*missing.toml, which is not a file"):
        load_settings()


def test_llm_server_settings_are_checked_and_the_key_is_never_echoed(monkeypatch):
    for name, value in (("EXPERTBOT_LLM_URL", "gpu-box:8000"), ("EXPERTBOT_LLM_WEIGHTS", "int4")):
        monkeypatch.setenv(name, value)
    expected = r"(?s)EXPERTBOT_LLM_WEIGHTS: String should.*EXPERTBOT_LLM_URL: .*URL \(got 'gpu-box:8000'\)"
    with pytest.raises(ConfigError, match=expected):
        load_settings()
    monkeypatch.delenv("EXPERTBOT_LLM_WEIGHTS")
    monkeypatch.setenv("EXPERTBOT_LLM_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("EXPERTBOT_LLM_API_KEY", "sk-4471")
    server = load_settings().server_config()
    assert (server.api, server.api_key, server.model) == ("http://gpu-box:8000/v1", "sk-4471", None)
    assert "sk-4471" not in repr(load_settings()) + repr(server)


def test_scopes_come_from_the_toml_file_and_reach_the_index_config(tmp_path, monkeypatch):
    toml = tmp_path / "expertbot.toml"
    toml.write_text(
        '[scopes.hr]\ndocs = ["hr/**", "benefits.html"]\nchannels = ["C0HRTEAM"]\nusers = ["U0HRLEAD"]\n'
        'usergroups = ["S0HRSTAFF"]\n\n[scopes.security]\ndocs = ["security/*"]\nguests = true\n'
    )
    monkeypatch.setenv("EXPERTBOT_CONFIG", str(toml))
    settings = load_settings()
    assert settings.scopes["hr"].usergroups == ["S0HRSTAFF"] and settings.scopes["security"].guests
    assert settings.index_config().scopes == {"hr": ("hr/**", "benefits.html"), "security": ("security/*",)}


@pytest.mark.parametrize(
    "table, named, says",
    [
        ('[scopes.hr]\ndocs = ["hr/**"]\nchanels = ["C0HR"]\n', "scopes.hr.chanels", "Extra inputs"),
        ('[scopes.hr]\ndocs = ["hr/**"]\nchannels = ["#hr"]\n', "scopes.hr.channels", "C0123ABCD"),
        ('[scopes.hr]\ndocs = ["hr/**"]\nusers = ["alice"]\n', "scopes.hr.users", "U0123ABCD or W0123ABCD"),
        ('[scopes.hr]\nchannels = ["C0HR"]\n', "scopes.hr.docs", "Field required"),
        ('[scopes."h r"]\ndocs = ["x"]\n', "scopes", "scope names are 1-64 letters"),
    ],
)
def test_a_bad_scope_stops_start_up_naming_the_setting(tmp_path, monkeypatch, table, named, says):
    toml = tmp_path / "expertbot.toml"
    toml.write_text(table)
    monkeypatch.setenv("EXPERTBOT_CONFIG", str(toml))
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert f"{named} (expertbot.toml): " in str(raised.value) and says in str(raised.value)
