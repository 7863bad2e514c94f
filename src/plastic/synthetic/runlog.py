"""`OUT/runs.jsonl`: every finished synthetic training run, so that re-running a command continues it.

`plastic synthetic` trains many independent runs: with `--select`, every setting of the grid for a few seeds on the
validation split, then the chosen settings for `--seeds` seeds. Each finished run is appended to `runs.jsonl` as one
line: its key (the data it trained on, its `RunConfig`, its seed, the plastic-rl version and whether MKL's AVX-512
shim was loaded) and its rows. A later command with the same `--out` takes every run whose key it finds there
instead of training it again, so an interrupted command continues where it stopped, a command with more seeds or
methods trains only what is new, and a long study can be carried from one machine to another by copying the file.
A run's rows depend only on its key (the seed fixes everything, whichever worker trains it), so a continued command
ends with the same results as an uninterrupted one, to float rounding when the machines differ. A line cut short by
a kill is ignored, and that run is trained again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from plastic import __version__, runtime

if TYPE_CHECKING:
    from plastic.synthetic.data import ImageDataset
    from plastic.synthetic.experiment import RunConfig

RUN_LOG_NAME = "runs.jsonl"


def dataset_fingerprint(dataset: ImageDataset) -> str:
    """The dataset's name, sizes and a hash of its arrays: a validation split differs from the full training set,
    and two fractions of held-out data differ from each other."""
    digest = hashlib.sha1()
    for array in (dataset.train_labels, dataset.test_labels, dataset.train_images, dataset.test_images):
        digest.update(np.ascontiguousarray(array).tobytes())
    return f"{dataset.name}:{len(dataset.train_labels)}+{len(dataset.test_labels)}:{digest.hexdigest()[:16]}"


class RunLog:
    """The finished runs of one `--out` folder: `get` the rows of a run trained before, `add` those of a new one.

    `fresh=True` ignores the runs in the file, which the first `add` replaces (until then the file is untouched, so
    a command that fails before finishing a run loses nothing)."""

    def __init__(self, path: str | os.PathLike, fresh: bool = False):
        self.path = Path(path)
        self._runs: dict[str, list[dict[str, Any]]] = {}
        self._fingerprints: dict[int, tuple[ImageDataset, str]] = {}
        self._replace = fresh
        # The parts of every key that this process fixes, read once (the shim's check reads /proc/self/maps).
        self._process = {"version": __version__, "mkl_avx512": runtime.mkl_shim_loaded()}
        if not fresh and self.path.is_file():
            self._read()

    def _read(self) -> None:
        text = self.path.read_text()
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # the last line of a killed command, cut short
            try:
                entry = json.loads(line)
                self._runs[entry["key"]] = entry["rows"]
            except (ValueError, KeyError, TypeError):
                continue
        if text and not text.endswith("\n"):  # drop the cut line, so that the next record starts on a line of its own
            with open(self.path, "r+b") as handle:
                handle.truncate(len(text.encode()) - len(text.rsplit("\n", 1)[-1].encode()))

    def __len__(self) -> int:
        return len(self._runs)

    def key(self, dataset: ImageDataset, config: RunConfig, seed: int) -> str:
        from plastic.synthetic.experiment import config_record

        if id(dataset) not in self._fingerprints:  # the dataset is kept with it, so that its id is not reused
            self._fingerprints[id(dataset)] = (dataset, dataset_fingerprint(dataset))
        fingerprint = self._fingerprints[id(dataset)][1]
        return json.dumps({"data": fingerprint, "config": config_record(config), "seed": seed, **self._process},
                          sort_keys=True)

    def get(self, key: str) -> list[dict[str, Any]] | None:
        return self._runs.get(key)

    def add(self, key: str, rows: list[dict[str, Any]]) -> None:
        """Append one finished run, flushed to disk before returning: a kill loses at most the run in training."""
        self._runs[key] = rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w" if self._replace else "a") as handle:
            self._replace = False
            handle.write(json.dumps({"key": key, "rows": rows}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
