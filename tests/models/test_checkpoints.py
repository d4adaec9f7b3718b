"""Checkpoint provenance: the base a fine-tuned checkpoint records, and what it says of it."""

from __future__ import annotations

import hashlib

import torch

from voxaudit.models.checkpoints import (
    CHECKPOINT,
    FORMAT,
    base_provenance,
    checkpoint_base,
    checkpoint_file,
    file_sha256,
)


def _write(path, metadata, train_ids):
    path.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "metadata": metadata, "data": {"train_ids": train_ids}}
    torch.save(state, path / CHECKPOINT)
    return path


def test_checkpoint_file_accepts_the_run_folder_or_the_file(tmp_path):
    run = _write(tmp_path / "run", None, None)
    assert checkpoint_file(run) == run / CHECKPOINT == checkpoint_file(run / CHECKPOINT)


def test_base_provenance_names_the_file_its_hash_and_its_training_ids(tmp_path):
    base = _write(tmp_path / "base", {"kind": "asr", "role": "shadow-0"}, ["a", "b"])
    record = base_provenance(base)
    data = (base / CHECKPOINT).read_bytes()
    assert record["path"] == str((base / CHECKPOINT).resolve())
    assert record["sha256"] == hashlib.sha256(data).hexdigest() == file_sha256(base / CHECKPOINT)
    assert (record["kind"], record["role"]) == ("asr", "shadow-0")
    assert (record["train_ids"], record["n_train_ids"]) == (["a", "b"], 2)
    assert record["base"] is None and record["corpus_fingerprint"] is None


def test_a_checkpoint_without_run_metadata_has_unknown_provenance(tmp_path):
    record = base_provenance(_write(tmp_path / "bare", None, None))
    assert record["kind"] is record["role"] is record["train_ids"] is record["n_train_ids"] is None


def test_checkpoint_base_reads_the_recorded_base_and_its_ancestors(tmp_path):
    grandparent = _write(tmp_path / "g", {"kind": "asr", "role": "target"}, ["x"])
    parent = _write(tmp_path / "p", {"kind": "asr", "base": base_provenance(grandparent)}, ["y"])
    child = _write(tmp_path / "c", {"kind": "asr", "base": base_provenance(parent)}, ["z"])
    assert checkpoint_base(grandparent) is None
    recorded = checkpoint_base(child)
    assert recorded["train_ids"] == ["y"] and recorded["base"]["train_ids"] == ["x"]
