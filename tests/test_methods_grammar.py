"""One method grammar (`plastic.methods`) for `plastic train --method`, `plastic sweep --methods` and `plastic
synthetic --methods`: every older spelling means what it meant (same preset, switches, labels, trial ids), the new
ones parse, and a bad name is a one-line error (exit status 2) from each command before anything runs."""

import json

import pytest

from plastic.cli import build_parser, main
from plastic.config import build
from plastic.methods import MethodSpec, from_preset_and_switches, parse_method
from plastic.training.commands import default_run_name, method_spec

SWITCH_LIST = "ln, sam, crelu, reset, shrink_perturb, redo, l2_init, hare_tortoise, nap, regrama, parseval, c_chain"


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"plastic {argv[0]}: error: ") and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------------------ the grammar
def test_a_spec_is_a_preset_or_switch_then_switches_on_top():
    spec = parse_method("plastic-dagger+l2_init")
    assert spec == MethodSpec("plastic-dagger", ("l2_init",))
    assert spec.enabled == ("ln", "reset", "shrink_perturb", "l2_init")
    assert spec.label == "plastic-dagger+l2_init"
    assert parse_method(" base + sam + ln ") == MethodSpec("base", ("sam", "ln"))  # written order kept
    assert parse_method("base+sam+ln").label == "base+ln+sam"  # the label is in the paper's order
    assert parse_method("base+sam+sam").spelling == "base+sam"
    assert parse_method("sam") == MethodSpec("sam", ())  # a switch is its single-method preset
    assert parse_method("plastic+ln").label == "plastic"  # LN is already on in plastic
    # A switch with no preset of its own goes on top of base.
    assert parse_method("sam+ln", presets=["base"]) == MethodSpec("base", ("sam", "ln"))


@pytest.mark.parametrize("text, message", [
    ("plastc", "--method 'plastc': unknown method 'plastc'; allowed: a preset (base, plastic, plastic-dagger, "
               f"plastic-official, reset-dagger) or a switch ({SWITCH_LIST}), then +SWITCH..."),
    ("base+lnn", f"--method 'base+lnn': unknown method 'lnn'; after '+' only switches: {SWITCH_LIST}"),
    ("base+plastic", "--method 'base+plastic': 'plastic' is a preset, allowed only as the first term; after '+' only "
                     f"switches: {SWITCH_LIST}"),
    ("base++ln", "--method 'base++ln': empty method term"),
])
def test_a_bad_term_is_named_with_what_is_allowed(text, message):
    with pytest.raises(ValueError) as error:
        parse_method(text)
    assert str(error.value).startswith(message)


# ------------------------------------------------------------------------------------------------ plastic train
@pytest.mark.parametrize("preset, methods, label, enabled", [
    ("base", "", "base", []),
    ("plastic", "", "plastic", ["ln", "sam", "crelu", "reset"]),
    ("base", "ln,reset", "base+ln+reset", ["ln", "reset"]),
    ("base", "reset+ln", "base+ln+reset", ["ln", "reset"]),
    ("plastic", "hare_tortoise", "plastic+hare_tortoise", ["ln", "sam", "crelu", "reset", "hare_tortoise"]),
    ("plastic", "ln", "plastic", ["ln", "sam", "crelu", "reset"]),
    ("sam", "", "sam", ["sam"]),
])
def test_the_older_train_spelling_builds_what_it_did(preset, methods, label, enabled):
    spec = method_spec(None, preset, methods)
    config = build("minatar:breakout", spec.preset, list(spec.switches))
    assert (config.preset, config.methods, config.method_label, spec.label) == (preset, enabled, label, label)
    new = method_spec("+".join([preset, *methods.replace(",", "+").split("+")]).rstrip("+"), None, "")
    assert build("minatar:breakout", new.preset, list(new.switches)) == config


def list_config(capsys, *flags) -> dict:
    assert main(["train", "--env", "minatar:breakout", *flags, "--list-config"]) == 0
    return json.loads(capsys.readouterr().out)


def test_method_flag_and_the_older_flags_give_the_same_run(capsys):
    older = list_config(capsys, "--preset", "plastic-dagger", "--methods", "l2_init")
    assert list_config(capsys, "--method", "plastic-dagger+l2_init") == older
    assert list_config(capsys, "--method", "plastic-dagger+l2_init", "--preset", "plastic-dagger") == older
    assert list_config(capsys, "--method", "plastic-dagger+l2_init", "--methods", "l2_init") == older
    assert older["preset"] == "plastic-dagger" and older["l2_init"]["enabled"]
    assert older["shrink_perturb"]["alpha"] == 0.6
    config = build("minatar:breakout", "plastic-dagger", ["l2_init"], {"seed": 3})
    assert default_run_name(config) == "minatar-breakout_plastic-dagger+l2_init_rr2_s3"


@pytest.mark.parametrize("flags, message", [
    (["--method", "plastc+sam"], "--method 'plastc+sam': unknown method 'plastc'; allowed: a preset (base"),
    (["--method", "base+sma"], "--method 'base+sma': unknown method 'sma'; after '+' only switches: ln, sam"),
    (["--preset", "plastik"], "--preset 'plastik': unknown preset; allowed: base, c_chain"),
    (["--methods", "ln,plastic"], "--methods 'ln,plastic': 'plastic' is a preset, give it as --preset or --method"),
    (["--method", "sam", "--preset", "base"],
     "--method sam and --preset base disagree (--method sam is --preset sam --methods (none)); give only --method"),
    (["--method", "plastic", "--methods", "l2_init"],
     "--method plastic and --methods l2_init disagree (--method plastic is --preset plastic --methods (none))"),
])
def test_bad_train_methods_are_one_line_errors(tmp_path, capsys, flags, message):
    err = one_line_error(capsys, ["train", "--env", "minatar:breakout", "--out", str(tmp_path), *flags])
    assert message in err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ plastic sweep
def test_sweep_methods_keep_their_spellings_as_trial_ids():
    from plastic.sweep.grid import expand_grid, parse_methods
    from plastic.sweep.runner import SweepOptions, train_command

    methods = parse_methods(" base , plastic,plastic-dagger, base+sam+crelu,base,sam")
    assert methods == ["base", "plastic", "plastic-dagger", "base+sam+crelu", "sam"]
    trial = expand_grid(["atari:Pong"], ["base+sam+crelu"], [2], [0], steps=100)[0]
    assert (trial.id, trial.preset, trial.switches) == ("atari_Pong/base+sam+crelu/rr2/seed0", "base", ["sam", "crelu"])
    command = train_command(trial, "RUN", False, [], SweepOptions())
    assert command[command.index("--preset"):command.index("--replay-ratio")] == [
        "--preset", "base", "--methods", "sam,crelu"]
    with pytest.raises(ValueError, match=r"'base\+ln\+sam' and 'base\+sam\+ln' are the same method \(base\+ln\+sam\)"):
        parse_methods("base+ln+sam,base+sam+ln")


GRID = ["sweep", "--envs", "minatar:breakout", "--seeds", "0", "--replay-ratio", "2", "--steps", "400"]


@pytest.mark.parametrize("envs, methods, message", [
    ("minatar:breakout", "base,plastc", "--methods 'plastc': unknown method 'plastc'"),
    ("minatar:breakout", "base,base+crelu+l2init", "--methods 'base+crelu+l2init': unknown method 'l2init'"),
    ("minatar:breakout,dmc:cheetah-run", "base+c_chain",
     "--methods base+c_chain on dmc:cheetah-run: method 'c_chain' is implemented for the rainbow agent"),
])
def test_a_sweep_with_a_bad_method_fails_before_any_trial(tmp_path, capsys, envs, methods, message):
    argv = [*GRID, "--methods", methods, "--out", str(tmp_path / "sweep")]
    argv[argv.index("--envs") + 1] = envs
    assert message in one_line_error(capsys, argv)
    assert not (tmp_path / "sweep").exists()  # no manifest, no run directory: nothing started


def test_an_existing_sweep_resumes_under_the_same_method_flags(tmp_path):
    """A sweep.json written before the grammar (methods as the strings given) is the grid the same command builds."""
    from plastic.sweep.commands import _new_or_existing_manifest
    from plastic.sweep.manifest import Manifest

    grid = {"envs": ["minatar:breakout"], "methods": ["base+sam+crelu", "plastic"], "replay_ratios": [2],
            "seeds": [0], "steps": 400}
    Manifest.create(tmp_path / "sweep", grid, train_args=[], options={}).save()
    args = build_parser().parse_args([*GRID, "--methods", "base+sam+crelu,plastic", "--out", str(tmp_path / "sweep")])
    manifest = _new_or_existing_manifest(args)
    assert list(manifest.trials) == ["minatar_breakout/base+sam+crelu/rr2/seed0", "minatar_breakout/plastic/rr2/seed0"]


# ------------------------------------------------------------------------------------------------ plastic synthetic
def test_synthetic_spellings_keep_their_meaning_and_names():
    from plastic.synthetic.methods import PLASTIC, Method, parse_methods

    assert Method.parse("base") == Method(frozenset()) and Method.parse("base").name == "base"
    assert Method.parse("plastic").switches == frozenset(PLASTIC) == {"ln", "sam", "crelu", "reset"}
    assert Method.parse("plastic").name == "plastic"
    assert Method.parse("sam+ln").name == Method.parse("LN+SAM").name == "ln+sam"
    assert Method.parse("base+redo").switches == {"redo"}
    assert Method.parse("plastic+redo").name == "ln+sam+crelu+reset+redo"  # the new grammar, on top of a preset
    combinations = [m.name for m in parse_methods("combinations")]
    assert len(combinations) == 16 and combinations[:2] == ["base", "ln"] and combinations[-1] == "plastic"


@pytest.mark.parametrize("methods, message", [
    ("base,ln+shrink_perturb", "--methods 'ln+shrink_perturb': switch 'shrink_perturb' is not available in plastic "
                               "synthetic; after '+' only switches: ln, sam, crelu, reset, redo, l2_init"),
    ("plastic-dagger", "--methods 'plastic-dagger': 'plastic-dagger' is not available in plastic synthetic; allowed: "
                       "a preset (base, plastic) or a switch (ln, sam, crelu, reset, redo"),
    ("base,dropout", "--methods 'dropout': unknown method 'dropout'"),
])
def test_synthetic_refuses_what_it_does_not_implement_in_one_line(tmp_path, capsys, methods, message):
    argv = ["synthetic", "--dataset", "digits", "--methods", methods, "--out", str(tmp_path / "out")]
    assert message in one_line_error(capsys, argv)
    assert not (tmp_path / "out").exists()


def test_the_older_preset_flag_validates_like_before():
    assert from_preset_and_switches("plastic", " ln , sam+crelu ") == MethodSpec("plastic", ("ln", "sam", "crelu"))
    with pytest.raises(ValueError, match=r"--methods 'ln,sma': unknown method 'sma'; allowed switches: ln, sam"):
        from_preset_and_switches("base", "ln,sma")
