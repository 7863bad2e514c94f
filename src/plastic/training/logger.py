"""Run logging: `metrics.jsonl` (one JSON object per line, machine-readable), TensorBoard events under `tb/`, optional
Weights & Biases, and the progress bar. Metric names follow CleanRL (`charts/episodic_return`, `losses/td_loss`,
`charts/SPS`, ...). On resume, lines written after the checkpoint are cut off and TensorBoard purges the same
steps, so a resumed run's logs equal an uninterrupted run's."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


class RunLogger:
    def __init__(self, run_dir: Path, *, total_steps: int, start_step: int = 0, state: dict | None = None,
                 progress: bool = True, tensorboard: bool = True, wandb_config: dict | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        if state is not None and self.path.exists():
            with open(self.path, "r+b") as handle:
                handle.truncate(state["metrics_bytes"])
        elif state is None and self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "ab")
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step if state else None)
        self.wandb = None
        if wandb_config is not None:
            try:
                import wandb
            except ImportError as error:
                raise ValueError("--set wandb=true needs Weights & Biases: pip install 'plastic-rl[wandb]'") from error
            self.wandb = wandb.init(project=wandb_config.pop("project"), config=wandb_config,
                                    dir=str(self.run_dir), resume="allow", id=self.run_dir.name)
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                        disable=not progress, file=sys.stderr, smoothing=0.05)

    def log(self, step: int, time_s: float, metrics: dict[str, float]) -> None:
        clean = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}
        record = {"step": step, "time_s": round(time_s, 3), **clean}
        line = json.dumps(record, allow_nan=True) + "\n"
        self._file.write(line.encode())
        self._file.flush()
        for key, value in clean.items():
            if isinstance(value, float) and math.isfinite(value):
                if self.writer is not None:
                    self.writer.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(clean, step=step)

    def progress(self, step: int, **postfix) -> None:
        self.bar.update(step - self.bar.n)
        if postfix:
            self.bar.set_postfix({k: (("-" if math.isnan(v) else f"{v:.3g}") if isinstance(v, float) else v)
                                  for k, v in postfix.items()}, refresh=False)

    def state_dict(self) -> dict:
        self._file.flush()
        os.fsync(self._file.fileno())
        return {"metrics_bytes": self._file.tell()}

    def close(self) -> None:
        self.bar.close()
        self._file.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
