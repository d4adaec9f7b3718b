import json

import pytest

from voxaudit.files import write_atomically, write_json


def test_write_json_round_trips_and_makes_folders(tmp_path):
    path = write_json(tmp_path / "a" / "b.json", {"x": [1, 2]})
    assert json.loads(path.read_text("utf-8")) == {"x": [1, 2]}


def test_text_bytes_and_stream_writers(tmp_path):
    assert write_atomically(tmp_path / "t", "héllo").read_text("utf-8") == "héllo"
    assert write_atomically(tmp_path / "b", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert write_atomically(tmp_path / "s", lambda f: f.write(b"abc")).read_bytes() == b"abc"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_atomically(tmp_path / "keep.txt", "old")

    def crash(stream):
        stream.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomically(path, crash)
    assert path.read_text("utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_claim_folder_records_then_refuses_another_config_naming_the_keys(tmp_path):
    from voxaudit.errors import VoxauditError
    from voxaudit.files import claim_folder

    claim_folder(tmp_path, "run.json", {"seed": 0, "steps": (1, 2)}, "a run")
    claim_folder(tmp_path, "run.json", {"steps": [1, 2], "seed": 0}, "a run")  # same, as JSON
    with pytest.raises(VoxauditError, match=r"holds a run made with a different config \(changed: "
                       r"extra, seed\)"):  # fmt: skip
        claim_folder(tmp_path, "run.json", {"seed": 1, "steps": [1, 2], "extra": 3}, "a run")
