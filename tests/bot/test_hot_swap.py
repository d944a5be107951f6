"""A running bot follows the adapter registry: promote and rollback reach the next answer, no restart."""

import json

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.config import load_settings
from bot.wiring import Services

META = {"base_model": "bundled", "dataset_hash": "test", "metrics": {}, "settings": {}}


@pytest.fixture(scope="module")
def services(tmp_path_factory, model_cache):
    home = tmp_path_factory.mktemp("swap")
    (home / "models").symlink_to(model_cache, target_is_directory=True)
    return Services(load_settings(home=home, max_new_tokens=4))


def make_adapter(services, folder, seed: int):
    """A real LoRA adapter for the bundled model, saved as safetensors. Random (non-zero) LoRA weights,
    so answers really change with it."""
    import torch
    from peft import LoraConfig, get_peft_model

    from adapters.base import load_base_model
    from adapters.targets import lora_target_modules

    torch.manual_seed(seed)
    model, _ = load_base_model(services.settings.base_model_config())
    lora = LoraConfig(r=4, target_modules=lora_target_modules(model), init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(folder, safe_serialization=True)
    return folder


def ask_json(services, *args):
    result = CliRunner().invoke(
        main,
        ["ask", "Say hi.", "--no-retrieval", "--json", *args],
        obj={"services": services},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def cli(services, *args):
    result = CliRunner().invoke(main, list(args), obj={"services": services}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_promotion_and_rollback_reach_the_running_answerer(services, tmp_path):
    registry = services.registry
    first = registry.register("terms", make_adapter(services, tmp_path / "a", seed=1), META)
    second = registry.register("terms", make_adapter(services, tmp_path / "b", seed=2), META)
    answerer = services.answerer  # built once, like the running bot's
    base = answerer.answer("Say hi.", retrieval=False)
    assert base.adapter is None  # nothing promoted yet: the base model answers

    registry.promote(first.name)
    on_first = answerer.answer("Say hi.", retrieval=False)
    assert on_first.adapter == "terms-v1"

    # terms-v2 has no passing gate verdict: promoting it needs --force, and the refusal says why.
    refused = CliRunner().invoke(main, ["adapters", "promote", second.name], obj={"services": services})
    assert refused.exit_code == 1 and "failed its promotion gate" in refused.output
    assert "--force" in refused.output and "Traceback" not in refused.output
    assert registry.current().name == "terms-v1"
    forced = cli(services, "adapters", "promote", second.name, "--force", "--json")
    assert forced == '{"current": "terms-v2"}\n'
    assert ask_json(services)["adapter"] == "terms-v2"
    assert ask_json(services, "--adapter", "none")["adapter"] is None

    listed = json.loads(cli(services, "adapters", "list", "--json"))
    assert listed["current"] == "terms-v2" and [a["name"] for a in listed["adapters"]] == [
        "terms-v1",
        "terms-v2",
    ]
    assert cli(services, "adapters", "rollback") == "current adapter: terms-v1\n"
    registry.set_gate(second.name, {"promote": True, "reasons": ["passed"]})  # a passed gate needs no --force
    assert cli(services, "adapters", "promote", second.name, "--json") == '{"current": "terms-v2"}\n'
    assert cli(services, "adapters", "rollback") == "current adapter: terms-v1\n"
    assert answerer.answer("Say hi.", retrieval=False).adapter == "terms-v1"
    # The adapter the answerer switched to really changes the model (llama.cpp, no reload of the base), and
    # clearing it gives the base back.
    generator = services.generator
    base = generator.logits("Say hi.")
    assert not (generator.logits("Say hi.", adapter=first.ref()) == base).all()
    assert (generator.logits("Say hi.") == base).all()
    assert (first.path / "adapter_model.gguf").is_file()  # registered with its GGUF LoRA file


def test_an_unknown_adapter_is_a_clean_error(services):
    result = CliRunner().invoke(
        main, ["ask", "hi", "--no-retrieval", "--adapter", "nope-v9"], obj={"services": services}
    )
    assert result.exit_code == 1
    assert (
        "adapter 'nope-v9' is neither a registry version" in result.output
        and "Traceback" not in result.output
    )
