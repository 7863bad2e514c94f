"""Checkpoints: atomic writes, keep-last-K pruning, fallback to the previous file when the newest is damaged."""

import os

import pytest
import torch

from plastic.training.checkpoint import (
    checkpoint_paths,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from plastic.training.files import atomic_write, atomic_write_text


def state(step):
    return {"weights": torch.full((3,), float(step)), "step_seen": step}


def test_keep_last_k_prunes_the_oldest(tmp_path):
    for step in (100, 200, 300, 400, 500):
        save_checkpoint(tmp_path, step, state(step), keep=2)
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["step_000000400.pt", "step_000000500.pt"]
    loaded, path = load_latest_checkpoint(tmp_path)
    assert path.name == "step_000000500.pt"
    assert loaded["step"] == 500 and loaded["step_seen"] == 500
    assert torch.equal(loaded["weights"], torch.full((3,), 500.0))


def test_checkpoints_are_ordered_by_step_not_by_name_length(tmp_path):
    for step in (9, 10, 1_000_000_000):
        save_checkpoint(tmp_path, step, state(step), keep=5)
    (tmp_path / "checkpoints" / "notes.txt").write_text("not a checkpoint")
    assert [load_checkpoint(p)["step"] for p in checkpoint_paths(tmp_path)] == [9, 10, 1_000_000_000]


def test_no_checkpoint_folder_means_no_checkpoint(tmp_path):
    assert checkpoint_paths(tmp_path) == []
    assert load_latest_checkpoint(tmp_path) is None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path, damage):
    save_checkpoint(tmp_path, 100, state(100), keep=3)
    newest = save_checkpoint(tmp_path, 200, state(200), keep=3)
    data = newest.read_bytes()
    newest.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a zip" * 50, "empty": b""}[damage])
    with pytest.warns(UserWarning, match="step_000000200.pt"):
        loaded, path = load_latest_checkpoint(tmp_path)
    assert path.name == "step_000000100.pt"
    assert loaded["step"] == 100


def test_a_file_without_the_completion_mark_is_refused(tmp_path):
    path = tmp_path / "checkpoints" / "step_000000300.pt"
    path.parent.mkdir()
    torch.save({"step": 300}, path)
    with pytest.raises(ValueError, match="not a complete plastic checkpoint"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="no readable checkpoint: step_000000300.pt is unreadable"):
        load_latest_checkpoint(tmp_path)


def test_atomic_write_leaves_no_temp_file_and_keeps_the_old_content_when_the_writer_raises(tmp_path):
    target = tmp_path / "result.json"
    atomic_write_text(target, "old\n")

    def failing_writer(handle):
        handle.write(b"half of the new con")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, failing_writer)
    assert target.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["result.json"]


def test_atomic_write_creates_the_folder_and_replaces_the_file(tmp_path):
    target = tmp_path / "a" / "b.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["b.txt"]


def test_interrupted_checkpoint_save_leaves_the_previous_checkpoints_intact(tmp_path):
    save_checkpoint(tmp_path, 100, state(100), keep=1)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(tmp_path, 200, {"bad": Unpicklable()}, keep=1)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["step_000000100.pt"]
    assert load_latest_checkpoint(tmp_path)[0]["step"] == 100
