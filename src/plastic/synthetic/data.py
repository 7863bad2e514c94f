"""Data for the synthetic experiments: CIFAR-10 (paper App. A.2), scikit-learn's digits, chunks and label maps.

- `load_cifar10(data_dir)` reads the standard `cifar-10-batches-py` folder (pickles `data_batch_1..5`, `test_batch`,
  each a dict with `data`: 10000 x 3072 uint8, R then G then B plane, and `labels`). If the folder is missing it
  downloads the canonical archive, checks its md5 and unpacks it atomically (temp folder + rename).
- `load_digits()` is real image data that ships with scikit-learn (1,797 8x8 grey images), for machines without
  CIFAR-10. Any other `(images, labels)` arrays become an `ImageDataset` directly.
- `chunk_indices` splits the training set into the chunks of input adaptation (§3: 100 chunks, one per phase).
- `label_permutations` gives the class re-assignment of every phase of label adaptation (§3: "each class's labels
  uniformly reassigned, ensuring a consistent reassignment within a class").
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
LABEL_MAP_MODES = ("permutation", "shift")


@dataclass(frozen=True)
class ImageDataset:
    """Images `(N, C, H, W)` float32 (standardised per channel with training statistics) and int64 labels."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    @classmethod
    def from_arrays(
        cls,
        name: str,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        num_classes: int | None = None,
    ) -> ImageDataset:
        """Standardise `(N, C, H, W)` images (any numeric dtype) with the training set's per-channel mean and std."""
        train = np.asarray(train_images, dtype=np.float32)
        test = np.asarray(test_images, dtype=np.float32)
        if train.ndim != 4 or test.ndim != 4 or train.shape[1:] != test.shape[1:]:
            raise ValueError(f"images must be (N, C, H, W) with equal C, H, W; got {train.shape} and {test.shape}")
        if len(train) != len(train_labels) or len(test) != len(test_labels):
            raise ValueError("images and labels must have the same length")
        mean = train.mean(axis=(0, 2, 3), keepdims=True)
        std = train.std(axis=(0, 2, 3), keepdims=True) + 1e-8
        train_labels = np.asarray(train_labels, dtype=np.int64)
        test_labels = np.asarray(test_labels, dtype=np.int64)
        if num_classes is None:
            num_classes = int(max(train_labels.max(), test_labels.max())) + 1
        return cls(
            name,
            np.ascontiguousarray((train - mean) / std),
            train_labels,
            np.ascontiguousarray((test - mean) / std),
            test_labels,
            num_classes,
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def validation_split(self, fraction: float = 0.1, seed: int = 0) -> ImageDataset:
        """Hold out `fraction` of the training set as the test set (for hyper-parameter selection; the real test set
        is never looked at while selecting)."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction={fraction} must be in (0, 1)")
        order = np.random.default_rng(seed).permutation(len(self.train_labels))
        n_val = max(1, int(round(fraction * len(order))))
        val, train = order[:n_val], order[n_val:]
        return ImageDataset(
            f"{self.name}-validation",
            self.train_images[train],
            self.train_labels[train],
            self.train_images[val],
            self.train_labels[val],
            self.num_classes,
        )


# ----------------------------------------------------------------------------------------------------- CIFAR-10


def _missing_cifar_message(folder: Path) -> str:
    files = ", ".join((*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE))
    return (
        f"CIFAR-10 not found at {folder}: put the python version there (files {files}), e.g. by unpacking "
        f"cifar-10-python.tar.gz from {CIFAR10_URL} into {folder.parent}, or use --dataset digits"
    )


def _fetch(url: str, destination: Path) -> None:
    """Download `url` to `destination` (a seam the tests replace)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
        shutil.copyfileobj(response, out)


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_cifar10(data_dir: str | os.PathLike, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """Download and unpack the archive into `data_dir/cifar-10-batches-py`; the folder appears whole or not at all."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / CIFAR10_FOLDER
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".cifar10-download-") as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        _fetch(url, archive)
        actual = md5sum(archive)
        if actual != md5:
            raise OSError(f"downloaded {url} has md5 {actual}, expected {md5}")
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        unpacked = Path(tmp) / CIFAR10_FOLDER
        if not unpacked.is_dir():
            raise OSError(f"archive from {url} has no {CIFAR10_FOLDER}/ folder")
        os.replace(unpacked, target)  # atomic on one file system
    return target


def _cifar_folder(data_dir: Path) -> Path:
    return data_dir if data_dir.name == CIFAR10_FOLDER else data_dir / CIFAR10_FOLDER


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        batch = pickle.load(handle, encoding="latin1")
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(batch["labels"], dtype=np.int64)


def load_cifar10(
    data_dir: str | os.PathLike, download: bool = True, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5
) -> ImageDataset:
    """CIFAR-10 from `data_dir/cifar-10-batches-py` (or `data_dir` itself when it is that folder).

    A missing folder is downloaded when `download` (and the network allows); otherwise `FileNotFoundError` says which
    files to put where.
    """
    folder = _cifar_folder(Path(data_dir))
    if not folder.is_dir():
        if not download:
            raise FileNotFoundError(_missing_cifar_message(folder))
        try:
            download_cifar10(folder.parent, url=url, md5=md5)
        except OSError as error:  # URLError is an OSError
            raise FileNotFoundError(f"{_missing_cifar_message(folder)} (download failed: {error})") from error
    missing = [name for name in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{_missing_cifar_message(folder)}; missing: {', '.join(missing)}")
    train = [_read_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    test_images, test_labels = _read_batch(folder / CIFAR10_TEST_FILE)
    return ImageDataset.from_arrays(
        "cifar10",
        np.concatenate([images for images, _ in train]),
        np.concatenate([labels for _, labels in train]),
        test_images,
        test_labels,
        num_classes=10,
    )


def write_cifar10_folder(
    folder: str | os.PathLike,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
) -> Path:
    """Write uint8 `(N, 3, 32, 32)` arrays as a `cifar-10-batches-py` folder (5 training batches and a test batch)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(len(train_labels)), len(CIFAR10_TRAIN_FILES))
    batches = [(name, train_images[idx], train_labels[idx]) for name, idx in zip(CIFAR10_TRAIN_FILES, parts)]
    batches.append((CIFAR10_TEST_FILE, test_images, test_labels))
    for name, images, labels in batches:
        data = np.asarray(images, dtype=np.uint8).reshape(len(images), 3 * 32 * 32)
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": [int(label) for label in labels]}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        pickle.dump({"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072}, handle)
    return folder


# ----------------------------------------------------------------------------------------------------- digits


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes) as `(N, 1, 8, 8)`, split into train and test."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = bunch.images.astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return ImageDataset.from_arrays("digits", images[train], labels[train], images[test], labels[test], 10)


# ----------------------------------------------------------------------------------------------------- schedules


def chunk_indices(num_examples: int, num_chunks: int, seed: int) -> list[np.ndarray]:
    """Shuffle `range(num_examples)` with `seed` and split it into `num_chunks` chunks of (nearly) equal size."""
    if not 1 <= num_chunks <= num_examples:
        raise ValueError(f"num_chunks={num_chunks} must be in [1, num_examples={num_examples}]")
    order = np.random.default_rng(seed).permutation(num_examples)
    return np.array_split(order, num_chunks)


def label_permutations(num_phases: int, num_classes: int, mode: str, seed: int) -> np.ndarray:
    """Class maps, one row per phase: in phase `p` an example of class `y` has label `maps[p, y]`.

    Phase 0 keeps the original labels. `"permutation"` (paper) draws a fresh random permutation every later phase;
    `"shift"` (public code) maps `y -> (y + p) mod num_classes`.
    """
    if mode not in LABEL_MAP_MODES:
        raise ValueError(f"unknown label map mode {mode!r}; allowed: {', '.join(LABEL_MAP_MODES)}")
    classes = np.arange(num_classes)
    if mode == "shift":
        return np.stack([(classes + p) % num_classes for p in range(num_phases)])
    rng = np.random.default_rng(seed)
    return np.stack([classes] + [rng.permutation(num_classes) for _ in range(num_phases - 1)])
