"""nexcage.spec.model: the declarative base (kinds, frozen instances, unknown keys, paths)."""

from __future__ import annotations

import pytest

from nexcage.errors import Violation
from nexcage.spec import config
from nexcage.spec.model import (
    BOOL,
    INT32,
    INT64,
    OBJECT,
    REQUIRED,
    STRING,
    STRINGS,
    UINT16,
    UINT32,
    UINT64,
    Model,
    child,
    copy_json,
    entry,
    json_type,
    list_of,
    map_of,
    slots,
)


class Point(Model):
    FIELDS = (
        ("x", "x", INT64, REQUIRED),
        ("label", "label", STRING, False),
        ("tags", "tags", STRINGS, False),
    )
    __slots__ = slots(FIELDS)
    x: int
    label: str | None
    tags: tuple[str, ...] | None


class Shape(Model):
    FIELDS = (
        ("points", "points", list_of(Point.parse), False),
        ("named", "named", map_of(Point.parse), False),
        ("origin", "origin", Point.parse, False),
    )
    __slots__ = slots(FIELDS)
    points: tuple[Point, ...] | None
    named: dict[str, Point] | None
    origin: Point | None


def parse(model: type[Model], raw: object) -> tuple[Model | None, list[Violation]]:
    errors: list[Violation] = []
    return model.parse(raw, "", errors), errors


def test_parse_sets_attributes_and_absent_fields_are_none() -> None:
    point, errors = parse(Point, {"x": 3})
    assert errors == []
    assert isinstance(point, Point)
    assert (point.x, point.label, point.tags) == (3, None, None)


def test_instances_are_frozen() -> None:
    point, _ = parse(Point, {"x": 3})
    with pytest.raises(AttributeError, match="frozen"):
        point.x = 4  # type: ignore[union-attr]
    with pytest.raises(AttributeError, match="frozen"):
        del point.x  # type: ignore[union-attr]
    with pytest.raises(AttributeError):
        point.nonexistent = 1  # type: ignore[union-attr]


def test_arrays_become_tuples() -> None:
    point, _ = parse(Point, {"x": 1, "tags": ["a", "b"]})
    assert isinstance(point, Point)
    assert point.tags == ("a", "b")


def test_unknown_keys_are_kept_in_extra_and_raw_is_the_source() -> None:
    raw = {"x": 1, "z": {"deep": [1]}, "label": "p", "vendor.key": None}
    point, errors = parse(Point, raw)
    assert errors == []
    assert isinstance(point, Point)
    assert point.extra == {"z": {"deep": [1]}, "vendor.key": None}
    assert point.raw is raw


def test_to_json_is_a_deep_copy_of_the_source() -> None:
    raw = {"origin": {"x": 1, "unknown": [1, 2]}, "points": [{"x": 2, "y": 3}], "q": True}
    shape, _ = parse(Shape, raw)
    assert isinstance(shape, Shape)
    out = shape.to_json()
    assert out == raw
    out["origin"]["unknown"].append(3)
    assert raw["origin"]["unknown"] == [1, 2]
    assert shape.origin is not None
    assert shape.origin.to_json() == {"x": 1, "unknown": [1, 2]}


def test_null_is_absent_and_a_required_null_is_missing() -> None:
    point, errors = parse(Point, {"x": None, "label": None})
    assert isinstance(point, Point)
    assert point.label is None
    assert point.extra == {}
    assert errors == [Violation("x", "required field is missing")]


def test_required_field_missing() -> None:
    _, errors = parse(Point, {})
    assert errors == [Violation("x", "required field is missing")]


def test_not_an_object() -> None:
    point, errors = parse(Point, [1])
    assert point is None
    assert errors == [Violation("", "expected object, got array")]


def test_nested_paths_for_lists_and_maps() -> None:
    raw = {
        "points": [{"x": 1}, {"x": "one"}, 7],
        "named": {"a.b": {"x": True}, "ok": {"x": 2}},
        "origin": {"label": 5},
    }
    _, errors = parse(Shape, raw)
    assert errors == [
        Violation("points[1].x", "expected int64, got string"),
        Violation("points[2]", "expected object, got number"),
        Violation('named["a.b"].x', "expected int64, got boolean"),
        Violation("origin.x", "required field is missing"),
        Violation("origin.label", "expected string, got number"),
    ]


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (STRING, 1, "expected string, got number"),
        (BOOL, "true", "expected boolean, got string"),
        (BOOL, 0, "expected boolean, got number"),
        (OBJECT, [], "expected object, got array"),
        (UINT32, True, "expected uint32, got boolean"),
        (UINT32, 1.0, "expected uint32, got number"),
        (UINT32, -1, "-1 is out of range for uint32"),
        (UINT32, 2**32, "4294967296 is out of range for uint32"),
        (UINT16, 65536, "65536 is out of range for uint16"),
        (UINT64, 2**64, f"{2**64} is out of range for uint64"),
        (INT32, 2**31, f"{2**31} is out of range for int32"),
        (INT64, -(2**63) - 1, f"{-(2**63) - 1} is out of range for int64"),
        (STRINGS, "sh", "expected array, got string"),
        (map_of(STRING), ["a"], "expected object, got array"),
    ],
)
def test_kind_violations(kind: object, value: object, message: str) -> None:
    errors: list[Violation] = []
    assert kind(value, "p", errors) is None  # type: ignore[operator]
    assert errors == [Violation("p", message)]


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (UINT32, 0),
        (UINT32, 2**32 - 1),
        (UINT64, 2**64 - 1),
        (INT64, -(2**63)),
        (INT32, -1),
        (UINT16, 65535),
        (BOOL, False),
        (STRING, ""),
    ],
)
def test_kind_accepts_boundaries(kind: object, value: object) -> None:
    errors: list[Violation] = []
    assert kind(value, "p", errors) == value  # type: ignore[operator]
    assert errors == []


def test_path_helpers() -> None:
    assert child("", "process") == "process"
    assert child("process", "args") == "process.args"
    assert entry("linux.sysctl", "net.ipv4.ip_forward") == 'linux.sysctl["net.ipv4.ip_forward"]'
    assert entry("a", 'q"\\') == 'a["q\\"\\\\"]'
    assert json_type(None) == "null"
    assert json_type(1.5) == "number"
    assert json_type({}) == "object"


def test_copy_json_copies_containers() -> None:
    value = {"a": [{"b": 1}]}
    copied = copy_json(value)
    assert copied == value
    assert copied["a"] is not value["a"]
    assert copied["a"][0] is not value["a"][0]


def test_repr_shows_set_fields() -> None:
    point, _ = parse(Point, {"x": 1, "label": "p"})
    assert repr(point) == "Point(x=1, label='p')"


def _models() -> list[type[Model]]:
    return [
        obj
        for obj in vars(config).values()
        if isinstance(obj, type) and issubclass(obj, Model) and obj is not Model
    ]


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_every_config_model_declares_its_table(model: type[Model]) -> None:
    attrs = [field[1] for field in model.FIELDS]
    keys = [field[0] for field in model.FIELDS]
    assert len(set(keys)) == len(keys)
    assert model.__slots__ == tuple(attrs)
    # every attribute is annotated for mypy, and nothing else is
    annotated = [name for name in model.__annotations__ if name != "FIELDS"]
    assert sorted(annotated) == sorted(attrs)
    for _, _, kind, required in model.FIELDS:
        assert callable(kind)
        assert isinstance(required, bool)


def test_all_runtime_spec_models_exist() -> None:
    names = {m.__name__ for m in _models()}
    assert len(names) >= 35
    assert {"Spec", "Process", "Linux", "Resources", "Seccomp", "MemoryPolicy"} <= names
