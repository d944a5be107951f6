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
