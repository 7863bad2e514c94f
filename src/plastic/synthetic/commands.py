"""`plastic synthetic`: the input/label adaptation experiments of §3 / App. A.2 from the command line.

    plastic synthetic --scenario label --methods base,crelu,reset,plastic --seeds 30 --dataset digits --out runs/syn

Writes to `--out`: `results.csv` / `results.jsonl` (one row per scenario, method, seed and phase), `summary.csv`
(final test accuracy per method: mean and 95% CI over seeds), `improvement.png/.pdf` (Fig. 3) and
`curves.png/.pdf`, `config.json`; with `--select` also `selection.csv` (every setting's validation score) and the
chosen settings in `config.json`. `runs.jsonl` keeps every finished run (`runlog.py`): re-running a command with the
same `--out` trains only the runs it does not hold (`--fresh`: train them all again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from plastic import runtime
from plastic.errors import UserError

if TYPE_CHECKING:
    from plastic.synthetic.data import ImageDataset
    from plastic.synthetic.experiment import RunConfig
    from plastic.synthetic.runlog import RunLog

STRIDE_CHOICES = {"paper": (3, 3, 1), "code": (3, 1, 1)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synthetic",
        help="input/label adaptation experiments on CIFAR-10 or digits (paper §3)",
        description="Train the App. A.2 CNN through phases of input adaptation (growing buffer of chunks) or label "
        "adaptation (classes re-assigned every phase) with LN, SAM, CReLU, Reset, ReDo and their combinations.",
    )
    parser.add_argument("--scenario", default=None,
                        help="input, label, or both (comma list); default input (with --replot: every scenario)")
    parser.add_argument(
        "--methods", default="base,plastic",
        help="comma list of methods, as `plastic train --method`: base, plastic (= ln+sam+crelu+reset) or a switch "
        "(ln, sam, crelu, reset, redo, l2_init, hare_tortoise, nap, regrama, parseval, c_chain), then +SWITCH... "
        "(ln+sam, plastic+redo); or 'combinations' for all 16 of ln/sam/crelu/reset; default base,plastic",
    )
    parser.add_argument("--seeds", type=int, default=30, help="number of seeds (0..N-1); default 30 as in the paper")
    parser.add_argument("--dataset", choices=("cifar10", "digits"), default="cifar10")
    parser.add_argument("--data-dir", default="data", help="folder holding (or receiving) cifar-10-batches-py")
    parser.add_argument("--no-download", action="store_true", help="never download CIFAR-10; fail if it is missing")
    parser.add_argument("--phases", type=int, default=100)
    parser.add_argument("--updates-per-phase", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--rho", type=float, default=0.1, help="SAM radius")
    parser.add_argument("--reset-interval", type=int, default=10, help="reset (and ReDo) every N phases (chunks)")
    parser.add_argument("--no-reset-optimizer", action="store_true", help="keep the head's momentum on a reset")
    parser.add_argument("--reset-layers", type=int, default=3,
                        help="reset re-draws the head's last N FC layers: 3 = the whole head (paper, default), 1 = the "
                        "output layer only")
    parser.add_argument("--redo-tau", type=float, default=0.1, help="ReDo dormancy threshold")
    parser.add_argument("--strides", choices=tuple(STRIDE_CHOICES), default=None,
                        help="CIFAR conv strides: paper (3,3,1, default) or code (3,1,1); digits uses 2x2 convs, strides (2,2,2)")
    parser.add_argument("--label-map", choices=("permutation", "shift"), default="permutation",
                        help="label adaptation: random permutation (paper) or cyclic shift (public code)")
    parser.add_argument("--probe-every", type=int, default=25, help="probe λmax / active units every N phases; 0 = off")
    parser.add_argument("--toolkit-probes", action="store_true",
                        help="also probe effective/stable rank, churn, GraMa, effective LR, Hessian trace (docs/toolkit.md)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes, one thread each (default: min(2, CPUs))")
    parser.add_argument("--select", nargs="?", const="full", default=None, choices=("full", "staged"),
                        help="first sweep the paper's grids on a validation split and use the best setting per "
                        "method: full = every method's lr, weight decay and own knobs (rho, reset interval); staged = "
                        "lr and weight decay on Base per scenario, then each method's own knobs at those; "
                        "bare --select = full")
    parser.add_argument("--select-seeds", type=int, default=3, help="seeds per setting in the --select sweep")
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--out", default=None,
                        help="output folder; default runs/synthetic (with --replot: DIR). Every finished run is kept "
                        "in OUT/runs.jsonl, and re-running a command with the same --out trains only the runs it "
                        "does not hold there: an interrupted command continues, more seeds add only the new ones")
    parser.add_argument("--fresh", action="store_true",
                        help="train every run again, ignoring (and then replacing) OUT/runs.jsonl")
    parser.add_argument("--replot", metavar="DIR", default=None,
                        help="train nothing: rebuild summary.csv and the figures from DIR's results.jsonl, into DIR "
                        "or --out, for every scenario or those in --scenario")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run_command)


def _load_dataset(args: argparse.Namespace):
    from plastic.synthetic.data import load_cifar10, load_digits

    if args.dataset == "digits":
        return load_digits()
    try:
        return load_cifar10(args.data_dir, download=not args.no_download)
    except FileNotFoundError as error:
        raise UserError(str(error)) from error


def _scenarios(text: str) -> list[str]:
    from plastic.synthetic.experiment import SCENARIOS

    scenarios = list(SCENARIOS) if text == "both" else [s.strip() for s in text.split(",") if s.strip()]
    if not scenarios or any(s not in SCENARIOS for s in scenarios):
        raise UserError(f"--scenario {text!r}: allowed input, label, both")
    return scenarios


def _configs(args: argparse.Namespace):
    from plastic.synthetic.experiment import RunConfig, parse_methods

    scenarios = _scenarios(args.scenario or "input")
    if args.seeds <= 0:
        raise UserError(f"--seeds {args.seeds}: must be >= 1")
    if args.workers <= 0:
        raise UserError(f"--workers {args.workers}: must be >= 1")
    strides = None
    if args.strides is not None:
        if args.dataset == "digits":
            raise UserError("--strides applies to cifar10 only (digits uses 2x2 convs with strides 2,2,2)")
        strides = STRIDE_CHOICES[args.strides]
    try:
        methods = parse_methods(args.methods)
        base = RunConfig(
            lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum, rho=args.rho,
            reset_interval=args.reset_interval, reset_optimizer=not args.no_reset_optimizer, redo_tau=args.redo_tau,
            reset_layers=args.reset_layers,
            batch_size=args.batch_size, phases=args.phases, updates_per_phase=args.updates_per_phase,
            strides=strides, label_map=args.label_map, probe_every=args.probe_every,
            toolkit_probes=args.toolkit_probes,
        )
    except ValueError as error:
        raise UserError(str(error)) from error
    return [replace(base, scenario=s, method=m) for s in scenarios for m in methods]


class _Progress:
    def __init__(self, total: int, description: str, disable: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=description, unit="phase", disable=disable, dynamic_ncols=True)

    def __call__(self, count: int) -> None:
        self.bar.update(count)

    def close(self) -> None:
        self.bar.close()


def near_chance(summary: list[dict], num_classes: int = 10) -> list[str]:
    """Warnings for the (scenario, method) entries whose mean final test accuracy is under 1.5x chance: such a
    method diverged or did not learn at its settings, and its bar in Fig. 3 says nothing about plasticity."""
    chance = 1.0 / num_classes
    return [f"{e['scenario']} {e['method']} ends at {100 * e['mean']:.1f}% test accuracy, near chance "
            f"({100 * chance:.0f}%): it diverged or did not learn at its settings (config.json), so its comparison "
            "with base measures that, not plasticity" for e in summary if e["mean"] < 1.5 * chance]  # fmt: skip


def _summarize(out: Path, rows: list[dict], num_classes: int = 10) -> None:
    """summary.csv, the figures, and the final accuracies on stdout (warnings for methods left near chance)."""
    from plastic.synthetic.figures import plot_curves, plot_improvement
    from plastic.synthetic.results import write_summary

    summary = write_summary(out, rows)
    for message in near_chance(summary, num_classes):
        print(f"plastic synthetic: warning: {message}", file=sys.stderr)
    figures = ["curves.png"]
    plot_curves(rows, out)
    if any(s["method"] == "base" for s in summary) and any(s["method"] != "base" for s in summary):
        plot_improvement(rows, out)
        figures.append("improvement.png")
    for entry in summary:
        print(f"{entry['scenario']:6s} {entry['method']:22s} {100 * entry['mean']:6.2f} "
              f"[{100 * entry['ci_low']:6.2f}, {100 * entry['ci_high']:6.2f}]  n={entry['n']}")
    print(f"wrote {out}/summary.csv, {', '.join(figures)} (and .pdf)")


def _replot(args: argparse.Namespace) -> int:
    from plastic.synthetic.results import read_rows

    directory = Path(args.replot)
    path = directory / "results.jsonl"
    try:
        rows = read_rows(path)
    except FileNotFoundError:
        raise UserError(f"--replot {directory}: no results.jsonl there (written by `plastic synthetic --out`)") from None
    except ValueError as error:  # JSONDecodeError
        raise UserError(f"--replot {directory}: results.jsonl is not valid JSON lines ({error})") from None
    if args.scenario is not None:
        scenarios = _scenarios(args.scenario)
        rows = [row for row in rows if row.get("scenario") in scenarios]
    if not rows:
        raise UserError(f"--replot {directory}: results.jsonl has no rows" +
                        (f" for --scenario {args.scenario}" if args.scenario else ""))
    config = directory / "config.json"
    num_classes = json.loads(config.read_text()).get("num_classes", 10) if config.is_file() else 10
    out = Path(args.out) if args.out is not None else directory
    out.mkdir(parents=True, exist_ok=True)
    _summarize(out, rows, num_classes)
    return 0


def run_command(args: argparse.Namespace) -> int:
    if args.replot is not None:
        return _replot(args)
    out = Path(args.out or "runs/synthetic")
    configs = _configs(args)
    dataset = _load_dataset(args)
    if args.select and args.select_seeds <= 0:
        raise UserError(f"--select-seeds {args.select_seeds}: must be >= 1")
    from plastic.synthetic.runlog import RUN_LOG_NAME, RunLog

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out / RUN_LOG_NAME, fresh=args.fresh)
    if len(log):
        print(f"plastic synthetic: {log.path} holds {len(log)} finished runs; those this command needs are reused, "
              "not trained again (--fresh retrains them)", file=sys.stderr)
    try:
        return _train(args, out, configs, dataset, log)
    except KeyboardInterrupt:
        print(f"plastic synthetic: {len(log)} finished runs are kept in {log.path}; the same command continues "
              "from there", file=sys.stderr)
        raise


def _train(args: argparse.Namespace, out: Path, configs: list[RunConfig], dataset: ImageDataset, log: RunLog) -> int:
    import torch

    from plastic.synthetic.experiment import config_record, run_many
    from plastic.synthetic.results import to_csv, write_atomic, write_results

    torch.set_num_threads(1)
    if runtime.mkl_avx512_would_help():
        print("plastic synthetic: hint: on this AMD CPU, `plastic --mkl-avx512 synthetic ...` trains ~10-15% faster "
              "(opt-in; see docs/synthetic.md)", file=sys.stderr)
    # mkl_avx512: results differ from the default path's by float rounding, so record which one made them
    record = {"dataset": dataset.name, "num_classes": dataset.num_classes, "seeds": args.seeds,
              "mkl_avx512": runtime.mkl_shim_loaded(), "runs": []}
    if args.select:
        from plastic.synthetic.selection import select, selection_runs

        seeds = list(range(10_000, 10_000 + args.select_seeds))  # never the reporting seeds
        total = selection_runs(configs, args.select, len(seeds)) * args.phases
        progress = _Progress(total, f"select ({args.select})", args.no_progress)
        try:
            configs, table = select(dataset, configs, seeds, args.validation_fraction, args.workers, progress,
                                    protocol=args.select, log=log)
        finally:
            progress.close()
        write_atomic(out / "selection.csv", to_csv(table, ("stage", "scenario", "method")))
    record["runs"] = [config_record(c) for c in configs]
    write_atomic(out / "config.json", json.dumps(record, indent=2) + "\n")

    finished: list[dict] = []

    def checkpoint(rows: list[dict]) -> None:  # rewrite the tables after every finished seed
        finished.extend(rows)
        write_results(out, finished)

    runs = [(config, seed) for config in configs for seed in range(args.seeds)]
    progress = _Progress(len(runs) * args.phases, "synthetic", args.no_progress)
    try:
        rows = run_many(dataset, runs, workers=args.workers, on_phase=progress, on_run=checkpoint, log=log)
    finally:
        progress.close()
    write_results(out, rows)  # in run order
    _summarize(out, rows, dataset.num_classes)
    return 0
