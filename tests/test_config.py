"""Run configuration: presets resolve to the paper's switches, domain defaults, `--set` coercion and errors."""

import json

import pytest

from plastic import config as config_module
from plastic.cli import main
from plastic.config import build, parse_overrides
from plastic.presets import available_presets


@pytest.mark.parametrize("preset, methods", [
    ("base", []),
    ("ln", ["ln"]),
    ("sam", ["sam"]),
    ("crelu", ["crelu"]),
    ("reset", ["reset"]),
    ("shrink_perturb", ["shrink_perturb"]),
    ("redo", ["redo"]),
    ("plastic", ["ln", "sam", "crelu", "reset"]),
    ("plastic-dagger", ["ln", "reset", "shrink_perturb"]),
    ("plastic-official", ["ln", "sam", "crelu", "reset", "shrink_perturb"]),
])
def test_presets_switch_on_exactly_their_methods(preset, methods):
    assert build("atari:Pong", preset).methods == methods


def test_plastic_uses_the_papers_variant_of_each_method():
    config = build("atari:Pong", "plastic")
    # LN after each backbone conv: paper §4.1 and the public code (App. A.3's "every conv and FC" is ln.placement=all).
    assert (config.ln.placement, config.sam.scope, config.crelu.placement, config.crelu.width_mode) == (
        "backbone", "all", "head", "double_input")
    assert (config.rainbow.learning_rate, config.rainbow.adam_eps) == (1e-4, 1.5e-5)  # Table 5


def test_plastic_dagger_shrinks_and_perturbs_with_alpha_06():
    config = build("atari:Pong", "plastic-dagger")
    assert config.shrink_perturb.alpha == 0.6
    assert config.shrink_perturb.min_replay_ratio == 1


def test_plastic_official_reproduces_the_public_codes_values():
    config = build("atari:Pong", "plastic-official")
    assert config.rainbow.learning_rate == 1.414e-4
    assert config.rainbow.adam_eps == 1.5e-4
    assert config.ln.placement == "backbone"
    assert config.crelu.width_mode == "halve_output"
    assert config.sam.scope == "backbone"
    assert config.reset.optimizer == "all"
    assert (config.shrink_perturb.alpha, config.shrink_perturb.min_replay_ratio) == (0.6, 4)


@pytest.mark.parametrize("env, rho, interval, hidden", [
    ("atari:Pong", 0.1, 40_000, 512),
    ("minatar:breakout", 0.1, 40_000, 128),
    ("dmc:cheetah-run", 0.01, 100_000, 512),
    ("dmc:quadruped-run", 0.1, 100_000, 512),
])
def test_domain_defaults(env, rho, interval, hidden):
    config = build(env, "plastic")
    assert config.sam.rho == rho
    assert config.reset.interval == interval
    assert config.rainbow.hidden == hidden


def test_domain_defaults_do_not_override_explicit_values():
    config = build("atari:Pong", "plastic", overrides={"sam": {"rho": "0.05"}, "reset": {"interval": "1000"}})
    assert (config.sam.rho, config.reset.interval) == (0.05, 1000)


def test_dmc_learning_rate_is_the_papers_unless_the_preset_says_otherwise():
    assert build("dmc:cheetah-run", "base").sac.learning_rate == 3e-4
    assert build("dmc:cheetah-run", "plastic-official").sac.learning_rate == 1e-4


def test_methods_are_added_on_top_of_a_preset():
    config = build("atari:Pong", "ln", ["sam", "reset"])
    assert config.methods == ["ln", "sam", "reset"]
    assert config.method_label == "ln+sam+reset"


def test_set_values_are_coerced_to_the_field_types():
    overrides = parse_overrides(["sam.rho=0.05", "steps=1_000", "rainbow.double_q=false", "reset.interval=2e3",
                                 "ln.placement=backbone", "sam.critic_rho=none", "crelu.enabled=1"])
    config = build("atari:Pong", "base", overrides=overrides)
    assert config.sam.rho == 0.05 and isinstance(config.sam.rho, float)
    assert config.steps == 1000 and isinstance(config.steps, int)
    assert config.rainbow.double_q is False
    assert config.reset.interval == 2000 and isinstance(config.reset.interval, int)
    assert config.ln.placement == "backbone"
    assert config.sam.critic_rho is None
    assert config.crelu.enabled is True


@pytest.mark.parametrize("items, named", [
    (["steps=abc"], "'steps'"),
    (["steps=1.5"], "'steps'"),
    (["sam.rho=big"], "'sam.rho'"),
    (["rainbow.double_q=maybe"], "'rainbow.double_q'"),
    (["sam.rhoo=0.1"], "'sam.rhoo'"),
    (["nosuchsection.x=1"], "'nosuchsection'"),
    (["sam=0.1"], "'sam'"),
    (["ln.placement=everywhere"], "'ln.placement'"),
    (["replay_ratio=0"], "'replay_ratio'"),
    (["replay_ratio=-2"], "'replay_ratio'"),
    (["shrink_perturb.alpha=1.5"], "'shrink_perturb.alpha'"),
])
def test_bad_set_values_name_the_key(items, named):
    with pytest.raises(ValueError, match=named):
        build("atari:Pong", "base", overrides=parse_overrides(items))


def test_set_needs_key_equals_value():
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["steps"])


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        build("atari:Pong", "base", overrides=parse_overrides(["sam.rhoo=0.1"]))
    for valid in ("rho", "scope", "adaptive"):
        assert valid in str(error.value)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError) as error:
        build("atari:Pong", "plastik")
    message = str(error.value)
    assert "'plastik'" in message
    for name in available_presets():
        assert name in message
    assert {"base", "plastic", "plastic-dagger", "plastic-official"} <= set(available_presets())


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="'lnn'"):
        build("atari:Pong", "base", ["lnn"])


def test_bad_env_id_is_refused():
    with pytest.raises(ValueError, match="DOMAIN:NAME"):
        build("pong", "base")


def test_save_and_load_round_trip(tmp_path):
    config = build("minatar:breakout", "plastic-official", overrides=parse_overrides(["seed=3", "sam.rho=0.2"]))
    config_module.save(config, tmp_path / "config.json")
    loaded = config_module.load(tmp_path / "config.json")
    assert loaded == config
    assert json.loads((tmp_path / "config.json").read_text())["sam"]["rho"] == 0.2


def test_list_config_prints_the_resolved_config(capsys):
    assert main(["train", "--env", "dmc:quadruped-walk", "--preset", "plastic", "--list-config",
                 "--set", "steps=5000"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["sam"]["rho"], printed["reset"]["interval"], printed["steps"]) == (0.1, 100_000, 5000)


def test_unknown_preset_on_the_cli_is_a_one_line_error(capsys, tmp_path):
    assert main(["train", "--env", "minatar:breakout", "--preset", "plastik", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "plastik" in err and "plastic-dagger" in err
    assert list(tmp_path.iterdir()) == []
