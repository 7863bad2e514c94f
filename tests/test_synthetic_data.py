"""Specifications of the synthetic experiments' data: CIFAR-10 folder format, download, chunks, label maps."""

import hashlib
import tarfile

import numpy as np
import pytest

from plastic.synthetic import data
from plastic.synthetic.data import (
    CIFAR10_FOLDER,
    chunk_indices,
    label_permutations,
    load_cifar10,
    load_digits,
    write_cifar10_folder,
)


def tiny_cifar_arrays(n_train=50, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8),
        rng.integers(0, 10, n_train),
        rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8),
        rng.integers(0, 10, n_test),
    )


def test_chunks_partition_the_training_set_into_equal_chunks():
    chunks = chunk_indices(50_000, 100, seed=3)
    assert len(chunks) == 100 and all(len(c) == 500 for c in chunks)
    assert np.array_equal(np.sort(np.concatenate(chunks)), np.arange(50_000))
    again = chunk_indices(50_000, 100, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(chunks, again))
    assert not np.array_equal(chunks[0], chunk_indices(50_000, 100, seed=4)[0])


def test_uneven_chunks_differ_by_at_most_one():
    sizes = [len(c) for c in chunk_indices(1437, 100, seed=0)]
    assert sum(sizes) == 1437 and max(sizes) - min(sizes) == 1
    with pytest.raises(ValueError, match="num_chunks"):
        chunk_indices(10, 11, seed=0)


def test_label_permutation_moves_every_image_of_a_class_to_one_new_class():
    maps = label_permutations(100, 10, "permutation", seed=1)
    assert maps.shape == (100, 10)
    assert np.array_equal(maps[0], np.arange(10))  # phase 0: original labels
    assert all(np.array_equal(np.sort(row), np.arange(10)) for row in maps)  # each phase is a bijection
    labels = np.random.default_rng(0).integers(0, 10, 1000)
    for phase in (1, 57):
        new = maps[phase][labels]
        for c in range(10):
            assert set(new[labels == c]) == {maps[phase][c]}
    assert len({tuple(row) for row in maps[1:]}) > 90  # fresh draws, not one fixed permutation


def test_shift_label_map_is_the_public_codes_cyclic_shift():
    maps = label_permutations(12, 10, "shift", seed=0)
    assert maps[3].tolist() == [3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert np.array_equal(maps[10], np.arange(10))
    with pytest.raises(ValueError, match="label map mode"):
        label_permutations(3, 10, "rotate", seed=0)


def test_cifar_folder_round_trip_keeps_labels_and_rgb_plane_order(tmp_path):
    train_x, train_y, test_x, test_y = tiny_cifar_arrays()
    train_x[0] = 0
    train_x[0, 0] = 255  # red plane only
    write_cifar10_folder(tmp_path / CIFAR10_FOLDER, train_x, train_y, test_x, test_y)
    dataset = load_cifar10(tmp_path, download=False)
    assert dataset.train_images.shape == (50, 3, 32, 32) and dataset.test_images.shape == (20, 3, 32, 32)
    assert np.array_equal(dataset.train_labels, train_y) and np.array_equal(dataset.test_labels, test_y)
    assert np.allclose(dataset.train_images.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    red, green = dataset.train_images[0, 0], dataset.train_images[0, 1]
    assert red.min() > 1.0 and green.max() < -1.0
    # data_dir may also be the cifar-10-batches-py folder itself
    assert np.array_equal(load_cifar10(tmp_path / CIFAR10_FOLDER, download=False).test_labels, test_y)


def test_missing_cifar_says_where_to_put_which_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py.*data_batch_1.*test_batch"):
        load_cifar10(tmp_path / "nowhere", download=False)


def _archive(tmp_path):
    source = tmp_path / "source"
    write_cifar10_folder(source / CIFAR10_FOLDER, *tiny_cifar_arrays())
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / CIFAR10_FOLDER, arcname=CIFAR10_FOLDER)
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_from_url_checks_md5_and_unpacks(tmp_path):
    archive, md5 = _archive(tmp_path)
    dataset = load_cifar10(tmp_path / "data", url=archive.as_uri(), md5=md5)
    assert dataset.train_images.shape[0] == 50
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [CIFAR10_FOLDER]  # no temp files left


def test_download_with_wrong_md5_leaves_nothing_behind(tmp_path):
    archive, _ = _archive(tmp_path)
    with pytest.raises(FileNotFoundError, match="md5"):
        load_cifar10(tmp_path / "data", url=archive.as_uri(), md5="0" * 32)
    assert list((tmp_path / "data").iterdir()) == []


def test_unreachable_network_gives_the_missing_data_message(tmp_path, monkeypatch):
    def offline(url, destination):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_fetch", offline)
    with pytest.raises(FileNotFoundError, match="network unreachable"):
        load_cifar10(tmp_path / "data")


def test_digits_are_real_images_split_without_overlap():
    dataset = load_digits()
    assert dataset.train_images.shape[1:] == (1, 8, 8)
    assert len(dataset.train_labels) + len(dataset.test_labels) == 1797
    assert len(dataset.test_labels) == 359 and dataset.num_classes == 10
    validation = dataset.validation_split(0.1, seed=0)
    assert len(validation.test_labels) == 144 and len(validation.train_labels) == 1438 - 144
