"""The config reader and the typed builder every config goes through."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxaudit.config import checked, from_mapping, keyword_types, read_config_file
from voxaudit.errors import VoxauditError

WHERE = "audit.toml: [audit]"


@dataclass(frozen=True)
class Options:
    """One field of every kind the builder knows."""

    count: int = 1
    rate: float = 0.5
    flag: bool = False
    name: str = "x"
    cap: int | None = 500
    snrs: tuple[float, ...] = (30.0,)
    pair: tuple[float, float] | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    folder: Path | None = None
    cell: Literal["gru", "lstm"] = "gru"
    extra: dict[str, Any] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Needs:
    required: str
    inner: Options = field(default_factory=Options)

    def __post_init__(self) -> None:
        if self.required == "bad":
            raise VoxauditError("required must not be 'bad'")


def _error(values: Any, cls: type = Options) -> str:
    with pytest.raises(VoxauditError) as caught:
        from_mapping(cls, values, WHERE)
    return str(caught.value)


@given(st.integers())
def test_any_int_round_trips_for_int_fields(value):
    assert from_mapping(Options, {"count": value, "cap": value}, WHERE).count == value
    assert from_mapping(Options, {"cap": value}, WHERE).cap == value


@given(st.one_of(st.integers(), st.floats(allow_nan=False)))
def test_a_float_field_takes_any_number_as_given(value):
    assert from_mapping(Options, {"rate": value}, WHERE).rate == value


@given(st.text().filter(lambda s: s.lower() != "none"))
def test_any_string_is_refused_for_an_int_naming_the_key(value):
    assert _error({"count": value}) == f"{WHERE}: key 'count': expected an integer, got {value!r}"
    assert f"key 'cap': expected an integer or none, got {value!r}" in _error({"cap": value})


@given(st.lists(st.integers() | st.floats(allow_nan=False)))
def test_lists_become_tuples(values):
    assert from_mapping(Options, {"snrs": values}, WHERE).snrs == tuple(values)


@given(st.text(min_size=1).filter(lambda k: k not in Options.__dataclass_fields__))
def test_an_unknown_key_is_named_with_the_known_ones(key):
    message = _error({key: 1})
    assert message.startswith(f"{WHERE}: unknown key(s) {key}; known: cap, cell, count")


@pytest.mark.parametrize("none", ["none", "None", "NONE", None])
def test_none_stands_for_none_in_optional_fields_only(none):
    options = from_mapping(Options, {"cap": none, "pair": none, "folder": none}, WHERE)
    assert (options.cap, options.pair, options.folder) == (None, None, None)
    if none is not None:  # in a plain str field, "none" is a string like any other
        assert from_mapping(Options, {"name": none}, WHERE).name == none


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_per_side": "eight"}, "unknown key(s) max_per_side"),
        ({"count": "eight"}, "key 'count': expected an integer, got 'eight'"),
        ({"count": True}, "key 'count': expected an integer, got True"),
        ({"count": 2.0}, "key 'count': expected an integer, got 2.0"),
        ({"rate": "fast"}, "key 'rate': expected a number, got 'fast'"),
        ({"rate": False}, "key 'rate': expected a number, got False"),
        ({"flag": 1}, "key 'flag': expected true or false, got 1"),
        ({"name": 3}, "key 'name': expected a string, got 3"),
        ({"snrs": 30}, "key 'snrs': expected a list, got 30"),
        ({"snrs": [30, "loud"]}, "key 'snrs[1]': expected a number, got 'loud'"),
        ({"pair": [1]}, "key 'pair': expected a list of 2 values or none, got [1]"),
        ({"pair": [1, "a"]}, "key 'pair[1]': expected a number, got 'a'"),
        ({"sizes": {"a": "b"}}, "key 'sizes.a': expected an integer, got 'b'"),
        ({"sizes": [1]}, "key 'sizes': expected a table, got [1]"),
        ({"folder": 3}, "key 'folder': expected a path or none, got 3"),
        ({"cell": "rnn"}, "key 'cell': expected one of 'gru', 'lstm', got 'rnn'"),
        ({"names": ["a", 1]}, "key 'names[1]': expected a string, got 1"),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_section_and_key(values, message):
    error = _error(values)
    assert error == f"{WHERE}: {message}" or error.startswith(f"{WHERE}: {message};")
    assert "\n" not in error


def test_values_are_converted():
    options = from_mapping(
        Options,
        {
            "snrs": [20, 10.5],
            "pair": [1, 2],
            "folder": "runs/x",
            "names": ["a"],
            "extra": {"k": []},
        },
        WHERE,
    )
    assert options.snrs == (20, 10.5) and options.pair == (1, 2)
    assert options.folder == Path("runs/x") and options.names == ["a"]
    assert options.extra == {"k": []}


def test_required_keys_nested_tables_and_the_classes_own_checks():
    assert _error({}, Needs) == f"{WHERE}: missing key(s) required"
    assert _error({"required": "bad"}, Needs) == f"{WHERE}: required must not be 'bad'"
    nested = _error({"required": "x", "inner": {"count": "two"}}, Needs)
    assert nested == f"{WHERE}: inner: key 'count': expected an integer, got 'two'"
    assert from_mapping(Needs, {"required": "x", "inner": {"count": 2}}, WHERE).inner.count == 2
    assert _error(["not", "a", "table"]).startswith(f"{WHERE}: expected a table of settings")


def test_keyword_types_and_checked_for_functions_and_classes():
    def make(pool: list[str], size: int = 1, *rest: Any, ratio: float | None = None, **more: Any):
        return pool

    class Made:
        def __init__(self, size: int, label="speaker") -> None:
            self.size = size

    assert keyword_types(make) == {"pool": list[str], "size": int, "ratio": float | None}
    assert keyword_types(Made) == {"size": int, "label": Any}
    assert checked({"ratio": "none", "size": 3}, keyword_types(make), WHERE) == {
        "ratio": None,
        "size": 3,
    }
    with pytest.raises(VoxauditError, match=r"key 'size': expected an integer, got 'x'"):
        checked({"size": "x", "bogus": 1}, keyword_types(Made), WHERE)  # the known key first


def test_read_config_file_reads_toml_yaml_and_json_and_names_the_file(tmp_path):
    for name, text in [
        ("a.toml", "x = 1\n"),
        ("a.yaml", "x: 1\n"),
        ("a.json", json.dumps({"x": 1})),
    ]:
        (tmp_path / name).write_text(text)
        assert read_config_file(tmp_path / name) == {"x": 1}
    (tmp_path / "list.json").write_text("[1]")
    for path, message in [
        (tmp_path / "missing.toml", "cannot read the config file"),
        (tmp_path / "list.json", "expected a table of settings at the top level"),
        (tmp_path / "a.ini", "config files end in"),
    ]:
        if path.suffix == ".ini":
            path.write_text("x")
        with pytest.raises(VoxauditError, match=message) as caught:
            read_config_file(path)
        assert str(path) in str(caught.value)
