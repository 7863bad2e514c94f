"""The toolkit's switches and probes wired into `plastic train` and `plastic synthetic` (docs/toolkit.md): config and
preset resolution, a tiny MinAtar run with each switch, probe names in metrics.jsonl, exact resume with the switches'
state, determinism, and a short synthetic run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from plastic.config import METHODS, build
from plastic.training.checkpoint import checkpoint_paths
from plastic.training.loop import Trainer

NEW = ("l2_init", "hare_tortoise", "nap", "regrama", "parseval", "c_chain")
TINY = {"steps": "60", "replay_ratio": "1", "threads": "1", "eval_episodes": "1", "eval_envs": "1", "log_every": "10",
        "rainbow": {"learning_starts": "30", "batch_size": "8", "buffer_size": "200", "hidden": "16"},
        "hare_tortoise": {"interval": "10"}, "regrama": {"interval": "10", "batch_size": "16"},
        "c_chain": {"warmup": "5"},
        "probe": {"every": "30", "batch_size": "16", "hessian_batch_size": "8", "hessian_iters": "2"}}


def metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in ("time_s", "charts/SPS", "charts/updates_per_s")}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train(run_dir: Path, methods: list[str], **extra) -> Trainer:
    overrides = json.loads(json.dumps(TINY))
    for key, value in extra.items():
        overrides.setdefault(key, {}).update(value) if isinstance(value, dict) else overrides.update({key: value})
    trainer = Trainer(build("minatar:breakout", "base", methods, overrides), run_dir, progress=False)
    trainer.run()
    return trainer


# --------------------------------------------------------------------------------------------- config and presets
def test_switches_are_methods_presets_and_compose():
    assert METHODS[-6:] == NEW
    config = build("minatar:breakout", methods=["ln", "l2_init", "nap+parseval"])
    assert config.methods == ["ln", "l2_init", "nap", "parseval"]
    assert config.method_label == "base+ln+l2_init+nap+parseval"
    for name in NEW:
        preset = build("minatar:breakout", preset=name)
        assert preset.methods == [name] and preset.method_label == name
    # Hare & Tortoise's interval defaults to the domain's reset interval (docs/toolkit.md).
    assert build("minatar:breakout", methods=["hare_tortoise"]).hare_tortoise.interval == 40_000
    assert build("dmc:cheetah-run", methods=["hare_tortoise"]).hare_tortoise.interval == 100_000


@pytest.mark.parametrize("overrides, fragment", [
    ({"c_chain": {"enabled": "true"}, "env": "dmc:cheetah-run"}, "'c_chain' is implemented for the rainbow agent"),
    ({"nap": {"scope": "biases"}}, "'nap.scope' = 'biases'"),
    ({"regrama": {"gradient_at": "weights"}}, "'regrama.gradient_at'"),
    ({"l2_init": {"coefficient": "-1"}}, "'l2_init.coefficient' = -1.0 must be >= 0"),
    ({"hare_tortoise": {"ema": "1.5"}}, "'hare_tortoise.ema' = 1.5 must be in [0, 1]"),
    ({"probe": {"hessian_trace_samples": "0"}}, "'probe.hessian_trace_samples' = 0 must be > 0"),
])
def test_bad_values_are_named(overrides, fragment):
    env = overrides.pop("env", "minatar:breakout")
    with pytest.raises(ValueError, match=None) as error:
        build(env, overrides=overrides)
    assert fragment in str(error.value)


def test_default_configuration_has_no_new_switch_and_only_the_cheap_probes():
    config = build("minatar:breakout")
    assert not any(getattr(config, name).enabled for name in NEW)
    probe = config.probe
    assert (probe.effective_rank, probe.stable_rank, probe.effective_learning_rate) == (True, True, True)
    assert (probe.churn, probe.grama, probe.hessian_trace) == (False, False, False)


# --------------------------------------------------------------------------------------------- tiny train runs
@pytest.mark.parametrize("method", NEW)
def test_a_tiny_train_run_with_each_switch(method, tmp_path):
    trainer = train(tmp_path / method, [method])
    agent, lines = trainer.agent, metrics(tmp_path / method)
    assert agent.updates == 31 and lines[-1]["eval/return_mean"] >= 0
    objects = agent.interventions.objects
    if method == "nap":  # every weight is at its initial norm after the last update
        nap = objects["nap"]
        for name, tensors in nap.groups.items():
            assert float(nap._norm(tensors)) == pytest.approx(float(nap.initial_norms[name]), rel=1e-5)
        assert agent.online.backbone[1].__class__.__name__ != "ReLU"  # LayerNorm before the ReLU (placement all)
    if method == "hare_tortoise":  # 31 EMA steps, hare reset at 10, 20, 30 updates
        assert objects["hare_tortoise"].updates == 31
    if method == "c_chain":
        assert objects["c_chain"].updates == 31
        assert any("plasticity/c_chain_coefficient" in line for line in lines)
    if method == "regrama":
        assert sum("plasticity/regrama_recycled_units" in line for line in lines) == 3  # updates 10, 20, 30
    if method == "l2_init":
        state = torch.load(checkpoint_paths(tmp_path / method)[-1], weights_only=False)
        assert set(state["agent"]["interventions"]) == {"l2_init"}


def test_probe_names_in_metrics_jsonl(tmp_path):
    train(tmp_path / "run", [], probe={"churn": "true", "grama": "true", "hessian_trace": "true",
                                       "hessian_trace_samples": "2"})
    probe_lines = [line for line in metrics(tmp_path / "run") if "probes/hessian_max_eigenvalue" in line]
    assert len(probe_lines) == 2  # steps 30 and 60
    for line in probe_lines:
        names = {key.split("/")[1] for key in line if key.startswith("probes/")}
        assert {"effective_rank", "stable_rank", "churn", "grama", "effective_learning_rate",
                "hessian_trace"} <= names
        assert "probes/churn/output" in line and "probes/effective_learning_rate/all" in line
        assert "probes/hessian_trace/all" in line and "probes/grama/all" in line
        assert line["probes/effective_rank/backbone.1"] >= 1.0
        assert line["probes/effective_learning_rate/all"] > 0  # one Adam update moved the weights


def test_same_seed_twice_is_identical_with_c_chain_and_nap(tmp_path):
    for name in ("a", "b"):
        train(tmp_path / name, ["c_chain", "nap"])
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")


def test_resume_is_exact_with_every_rainbow_switch(tmp_path):
    """A run resumed from its step-39 checkpoint ends as the uninterrupted run: the interventions' state (θ₀, the
    tortoise, NaP's norms, C-CHAIN's history and λ) and the probe hook's pending churn snapshot are checkpointed."""
    switches = ["l2_init", "hare_tortoise", "nap", "parseval", "c_chain", "regrama"]
    probe = {"churn": "true", "every": "20"}
    reference = tmp_path / "reference"
    train(reference, switches, checkpoint_every="13", keep_replay="true", keep_checkpoints="10", probe=probe)
    resumed = tmp_path / "resumed"
    shutil.copytree(reference, resumed)
    (resumed / "result.json").unlink()
    for path in checkpoint_paths(resumed):
        if not path.name.endswith("39.pt"):
            path.unlink()  # resume from step 39, with the churn snapshot of the probe at 40 pending
    assert [p.name for p in checkpoint_paths(resumed)] == ["step_000000039.pt"]
    state = torch.load(checkpoint_paths(resumed)[0], weights_only=False)
    assert "churn_before" in state["hooks"]["ProbeHook"]["before"]
    assert set(state["agent"]["interventions"]) == {"l2_init", "hare_tortoise", "nap", "c_chain"}
    config = build("minatar:breakout", "base", switches, {**TINY, "checkpoint_every": "13", "keep_replay": "true",
                                                           "keep_checkpoints": "10", "probe": {**TINY["probe"], **probe}})
    Trainer(config, resumed, progress=False).run(resume=True)
    assert metrics(resumed) == metrics(reference)


# --------------------------------------------------------------------------------------------- synthetic
def test_a_short_synthetic_run_with_the_switches_and_toolkit_probes():
    from plastic.synthetic.data import ImageDataset
    from plastic.synthetic.experiment import Method, RunConfig, run_seed

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 80)
    images = rng.normal(size=(80, 1, 8, 8)) + labels[:, None, None, None] * 0.3
    dataset = ImageDataset.from_arrays("tiny", images[:64], labels[:64], images[64:], labels[64:], 4)
    method = Method.parse("l2_init+parseval+nap+hare_tortoise+c_chain+regrama")
    assert method.name == "l2_init+hare_tortoise+nap+regrama+parseval+c_chain"
    config = RunConfig(scenario="label", method=method, phases=2, updates_per_phase=3, batch_size=8,
                       reset_interval=1, probe_every=1, probe_samples=16, hessian_iters=2, toolkit_probes=True)
    rows = run_seed(dataset, config, seed=1)
    assert rows == run_seed(dataset, config, seed=1)
    names = {key.split("/")[1] for key in rows[-1] if key.startswith("probes/")}
    assert {"effective_rank", "stable_rank", "churn", "grama", "effective_learning_rate", "hessian_trace"} <= names
    with pytest.raises(ValueError, match="unknown method 'l3_init'"):
        Method.parse("base+l3_init")
