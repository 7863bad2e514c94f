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


# ------------------------------------------------------------------------------------------ the DMC protocol
@pytest.mark.parametrize("task, repeat", [
    ("acrobot-swingup", 2), ("cartpole-swingup_sparse", 2), ("cheetah-run", 4), ("finger-turn_easy", 2),
    ("finger-turn_hard", 2), ("hopper-hop", 2), ("quadruped-run", 2), ("quadruped-walk", 2), ("reacher-easy", 4),
    ("reacher-hard", 2), ("walker-run", 2),
])
def test_each_dmc_medium_task_gets_nikishin_et_als_action_repeat(task, repeat):
    config = build(f"dmc:{task}")
    assert config.dmc.action_repeat == config.action_repeat == repeat
    # The default budget is the paper's 2M environment steps, whatever the repeat.
    assert (config.steps, config.env_steps) == (2_000_000 // repeat, 2_000_000)


def test_an_explicit_action_repeat_wins_and_sets_the_conversion():
    config = build("dmc:cheetah-run", overrides=parse_overrides(["dmc.action_repeat=8", "env_steps=8000"]))
    assert (config.dmc.action_repeat, config.steps, config.env_steps) == (8, 1000, 8000)
    with pytest.raises(ValueError, match="'dmc.action_repeat' = 0 must be > 0"):
        build("dmc:cheetah-run", overrides={"dmc": {"action_repeat": "0"}})


@pytest.mark.parametrize("env, overrides, steps, env_steps", [
    ("atari:Pong", {}, 100_000, 400_000),  # Atari-100k: 100k agent steps = 400k frames (frame skip 4)
    ("minatar:breakout", {}, 100_000, 100_000),  # MinAtar: one frame per agent step
    ("atari:Pong", {"env_steps": "400000"}, 100_000, 400_000),
    ("dmc:cheetah-run", {"steps": "1000"}, 1000, 4000),
    ("dmc:cheetah-run", {"env_steps": "1001"}, 251, 1004),  # rounded up to whole agent steps
    ("dmc:walker-run", {"env_steps": "1001"}, 501, 1002),
])
def test_budget_is_recorded_in_agent_and_environment_steps(env, overrides, steps, env_steps):
    config = build(env, overrides=overrides)
    assert (config.steps, config.env_steps) == (steps, env_steps)


def test_steps_and_env_steps_that_disagree_are_refused():
    with pytest.raises(ValueError, match="'steps' = 10 and 'env_steps' = 10 disagree.*x action repeat \\(4\\) = 40"):
        build("dmc:cheetah-run", overrides={"steps": "10", "env_steps": "10"})
    assert build("dmc:cheetah-run", overrides={"steps": "10", "env_steps": "40"}).steps == 10


@pytest.mark.parametrize("env, episodes, placement", [
    ("dmc:cheetah-run", 10, "all"),  # §4.1 / Table 10; App. A.4 replaces all ReLUs
    ("atari:Pong", 100, "head"),
    ("minatar:breakout", 100, "head"),
])
def test_eval_episodes_and_crelu_placement_per_domain(env, episodes, placement):
    config = build(env, "plastic")
    assert (config.eval_episodes, config.crelu.placement) == (episodes, placement)
    explicit = build(env, "plastic", overrides={"eval_episodes": "7", "crelu": {"placement": "head"}})
    assert (explicit.eval_episodes, explicit.crelu.placement) == (7, "head")


@pytest.mark.parametrize("env, augmentation", [("atari:Pong", True), ("minatar:breakout", False)])
def test_drq_augmentation_is_on_for_atari_and_off_for_minatar_boards(env, augmentation):
    assert build(env).rainbow.augmentation is augmentation
    assert build(env, overrides={"rainbow": {"augmentation": str(not augmentation)}}).rainbow.augmentation is (
        not augmentation)


def test_sac_warm_up_is_the_base_codes_1000_agent_steps():
    assert build("dmc:cheetah-run").sac.learning_starts == 1000


def test_a_config_json_from_before_env_steps_still_loads(tmp_path):
    # Written by an earlier version: `steps` only, no `env_steps`, no `dmc` section (then cartpole ran at repeat 8).
    old = config_module.to_dict(build("dmc:cartpole-swingup_sparse", "plastic"))
    del old["env_steps"], old["dmc"]
    old.update(steps=5000, eval_episodes=100)
    old["crelu"]["placement"] = "head"
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = config_module.resolve(config_module.load(tmp_path / "config.json"))
    assert (config.steps, config.env_steps, config.dmc.action_repeat) == (5000, 40_000, 8)
    assert (config.eval_episodes, config.crelu.placement) == (100, "head")  # what it was trained and evaluated with


def one_line_train_error(capsys, argv) -> str:
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plastic train: error: "), err
    return err


@pytest.mark.parametrize("budget, message", [
    (["--steps", "100", "--env-steps", "400"], "give either --steps (agent steps) or --env-steps"),
    (["--env-steps", "0"], "--env-steps must be positive, got 0"),
    (["--env-steps", "-4"], "--env-steps must be positive, got -4"),
])
def test_bad_budget_flags_are_one_line_errors(capsys, tmp_path, budget, message):
    assert message in one_line_train_error(capsys, ["--env", "dmc:cheetah-run", *budget, "--out", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_env_steps_on_the_cli_and_refused_with_resume(capsys, tmp_path):
    assert main(["train", "--env", "dmc:reacher-easy", "--env-steps", "10000", "--list-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["steps"], printed["env_steps"], printed["dmc"]["action_repeat"]) == (2500, 10_000, 4)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    config_module.save(build("dmc:reacher-easy"), run_dir / "config.json")
    (run_dir / "checkpoints" / "step_000000001.pt").write_bytes(b"")
    err = one_line_train_error(capsys, ["--resume", str(run_dir), "--env-steps", "100"])
    assert "cannot be combined with it" in err and "--env-steps" in err


def test_the_domain_table_gives_each_domains_protocol_values():
    from plastic.envs.domains import DOMAINS, split_env_id

    assert split_env_id("dmc:cheetah-run") == ("dmc", "cheetah-run")
    for env, replay_ratio, rho, interval, repeat, episodes in (
        ("atari:Pong", 2, 0.1, 40_000, 4, 100), ("minatar:breakout", 2, 0.1, 40_000, 1, 100),
        ("dmc:cheetah-run", 1, 0.01, 100_000, 4, 10), ("dmc:quadruped-run", 1, 0.1, 100_000, 2, 10),
    ):
        config = build(env)
        assert (config.replay_ratio, config.sam.rho, config.reset.interval, config.action_repeat,
                config.eval_episodes) == (replay_ratio, rho, interval, repeat, episodes), env
    assert [DOMAINS[d].human_normalized for d in ("atari", "minatar", "dmc")] == [True, False, False]
    assert build("atari:Pong").rainbow.augmentation is True and build("minatar:breakout").rainbow.augmentation is False
    with pytest.raises(ValueError, match="'atari': expected DOMAIN:NAME"):
        split_env_id("atari")


def test_a_sam_field_of_the_other_agent_is_rejected_naming_it():
    with pytest.raises(ValueError, match=r"'sam.critic_rho' = 0.05 applies to sac runs \(dmc\) only"):
        build("minatar:breakout", methods=["sam"], overrides={"sam": {"critic_rho": "0.05"}})
    with pytest.raises(ValueError, match=r"'sam.scope' = 'head' applies to rainbow runs \(atari, minatar\) only"):
        build("dmc:cheetah-run", methods=["sam"], overrides={"sam": {"scope": "head"}})
    assert build("dmc:cheetah-run", preset="plastic-official").sam.scope == "backbone"  # the preset's, not the user's
    assert build("minatar:breakout", methods=["ln+sam"]).methods == ["ln", "sam"]


# ------------------------------------------------------------------------------------------ fields state themselves
def test_every_config_field_has_a_docstring_where_it_is_declared():
    from plastic.config_machinery import field_docs, leaves

    undocumented = [key for key, spec, _, owner in leaves(config_module.TrainConfig())
                    if not field_docs(owner).get(spec.name)]
    assert undocumented == []


@pytest.mark.parametrize("items, message", [
    (["device=tpu"], "config key 'device' = 'tpu'; allowed: auto, cpu, cuda"),
    (["reset.optimizer=some"], "config key 'reset.optimizer' = 'some'; allowed: reset, all, none"),
    (["rainbow.n_step=0"], "config key 'rainbow.n_step' = 0 must be > 0"),
    (["hare_tortoise.interval=-5"], "config key 'hare_tortoise.interval' = -5 must be > 0"),
    (["threads=-1"], "config key 'threads' = -1 must be >= 0"),
    (["seed=-3"], "config key 'seed' = -3 must be >= 0"),
    (["rainbow.gamma=1.01"], "config key 'rainbow.gamma' = 1.01 must be in [0, 1]"),
    (["sac.target_tau=-0.5"], "config key 'sac.target_tau' = -0.5 must be in [0, 1]"),
])
def test_a_value_outside_the_fields_declared_range_is_refused_naming_it(items, message):
    with pytest.raises(ValueError) as error:
        build("atari:Pong", overrides=parse_overrides(items))
    assert str(error.value) == message


def test_the_constraints_read_from_the_fields_metadata():
    from dataclasses import fields

    declared = {spec.name: spec.metadata for spec in fields(config_module.RainbowConfig)}
    assert declared["gamma"]["range"] == "[0, 1]" and declared["batch_size"]["range"] == "> 0"
    assert {spec.name: spec.metadata.get("agent") for spec in fields(config_module.SAMConfig)} == {
        "enabled": None, "rho": None, "scope": "rainbow", "noise": "rainbow", "adaptive": None,
        "critic_rho": "sac", "actor_rho": "sac", "temperature_rho": "sac"}


def test_runtime_options_come_last_in_config_json_and_old_key_orders_load(tmp_path):
    config = build("minatar:breakout", overrides=parse_overrides(["threads=3", "wandb=true"]))
    keys = list(config_module.to_dict(config))
    assert keys[-11:] == ["device", "threads", "compile", "compile_mode", "flush_denormal", "checkpoint_every",
                          "keep_checkpoints", "keep_replay", "log_every", "wandb", "wandb_project"]
    data = config_module.to_dict(config)
    first = ["env", "preset", "seed", "steps", "env_steps", "replay_ratio", "device", "threads", "compile"]
    old_order = {key: data[key] for key in first} | {key: value for key, value in data.items() if key not in first}
    (tmp_path / "config.json").write_text(json.dumps(old_order))
    assert config_module.load(tmp_path / "config.json") == config


def test_describe_config_prints_each_key_with_its_value_and_doc(capsys):
    assert main(["train", "--env", "dmc:quadruped-walk", "--preset", "plastic", "--describe-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    keys = [line.split(" = ", 1)[0] for line in lines]
    flat_keys = list(config_module.flat(config_module.to_dict(build("dmc:quadruped-walk", "plastic"))))
    assert keys == flat_keys
    assert "sam.rho = 0.1  # Perturbation radius. None = the domain's: 0.1 on Atari/MinAtar" in "\n".join(lines)
    assert all("  # " in line for line in lines)
