"""A tiny declarative base for typed, frozen models of JSON documents.

Why not dataclasses: ``import dataclasses`` costs ~34 ms here and config.json is parsed on the hot
path of ``create`` (docs/DESIGN.md). A model is a class with ``__slots__``, class-level annotations
for mypy and a ``FIELDS`` table ``(json key, attribute, kind, required)`` read by one generic
parser, :meth:`Model.parse`. A *kind* is any callable ``(value, json_path, errors) -> value``:
the scalar kinds below, :func:`list_of`, :func:`map_of`, or another model's ``parse``.

Parsing never stops at the first problem: every type or required-field violation is appended to
``errors`` with its JSON path (``linux.namespaces[2].type``) and the offending value becomes
``None``; the caller raises one :class:`~nexcage.errors.SpecError` listing them all.

Unknown keys are kept, not rejected (runtime-spec config.md "Extensibility": runtimes MUST ignore
unknown properties): each instance has ``extra`` (unknown key -> raw value) and ``raw`` (the very
dict it was parsed from), so nothing is lost and :meth:`Model.to_json` re-emits the original.
JSON ``null`` counts as absent, as Go's encoding/json treats it (runc, crun via Go-made configs).
"""

from __future__ import annotations

from nexcage.errors import Violation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, NoReturn, Self

    Kind = Callable[[object, str, list[Violation]], Any]
    Field = tuple[str, str, Kind, bool]

REQUIRED = True

_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages ("expected string, got array")."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def child(path: str, key: str) -> str:
    """JSON path of an object member: ``child("linux", "sysctl") == "linux.sysctl"``."""
    return f"{path}.{key}" if path else key


def entry(path: str, key: str) -> str:
    """JSON path of a map entry; keys may hold dots, so they are quoted: ``sysctl["net.x"]``."""
    quoted = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'{path}["{quoted}"]'


def slots(fields: tuple[Field, ...]) -> tuple[str, ...]:
    """The ``__slots__`` of a model: its attribute names, in table order."""
    return tuple(field[1] for field in fields)


def copy_json(value: Any) -> Any:
    """Deep copy of decoded JSON (dicts and lists; scalars are immutable)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


class Model:
    """Base of every typed model: frozen, slotted, keeps unknown keys and its raw dict."""

    __slots__ = ("extra", "raw")
    FIELDS: ClassVar[tuple[Field, ...]] = ()
    _KEYS: ClassVar[frozenset[str]] = frozenset()
    extra: dict[str, Any]
    raw: dict[str, Any]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._KEYS = frozenset(field[0] for field in cls.FIELDS)

    @classmethod
    def parse(cls, raw: object, path: str, errors: list[Violation]) -> Self | None:
        """Build an instance from decoded JSON, appending every violation to ``errors``."""
        if not isinstance(raw, dict):
            errors.append(Violation(path, f"expected object, got {json_type(raw)}"))
            return None
        self = object.__new__(cls)
        put = object.__setattr__
        put(self, "raw", raw)
        matched = 0
        for key, attr, kind, required in cls.FIELDS:
            value = raw.get(key)
            if value is None:
                if key in raw:
                    matched += 1  # explicit null: known key, treated as absent
                if required:
                    errors.append(Violation(child(path, key), "required field is missing"))
                put(self, attr, None)
                continue
            matched += 1
            put(self, attr, kind(value, child(path, key), errors))
        keys = cls._KEYS
        extra = {} if matched == len(raw) else {k: v for k, v in raw.items() if k not in keys}
        put(self, "extra", extra)
        return self

    def to_json(self) -> dict[str, Any]:
        """A deep copy of the document this model was parsed from, unknown keys included."""
        result: dict[str, Any] = copy_json(self.raw)
        return result

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is frozen; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is frozen; cannot delete {name!r}")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{attr}={getattr(self, attr)!r}"
            for _, attr, _, _ in self.FIELDS
            if getattr(self, attr, None) is not None
        )
        return f"{type(self).__name__}({shown})"


# -- kinds ------------------------------------------------------------------------------------


def STRING(value: object, path: str, errors: list[Violation]) -> str | None:
    if isinstance(value, str):
        return value
    errors.append(Violation(path, f"expected string, got {json_type(value)}"))
    return None


def BOOL(value: object, path: str, errors: list[Violation]) -> bool | None:
    if isinstance(value, bool):
        return value
    errors.append(Violation(path, f"expected boolean, got {json_type(value)}"))
    return None


def OBJECT(value: object, path: str, errors: list[Violation]) -> dict[str, Any] | None:
    """A JSON object kept as a raw dict (other platforms: solaris, windows, vm, zos, freebsd)."""
    if isinstance(value, dict):
        return value
    errors.append(Violation(path, f"expected object, got {json_type(value)}"))
    return None


def _integer(name: str, low: int, high: int) -> Kind:
    # Go's encoding/json rejects fractions, booleans and out-of-range numbers for integer
    # fields, so runc/crun would refuse these configs too.
    def parse(value: object, path: str, errors: list[Violation]) -> int | None:
        if type(value) is int:
            if low <= value <= high:
                return value
            errors.append(Violation(path, f"{value} is out of range for {name}"))
            return None
        errors.append(Violation(path, f"expected {name}, got {json_type(value)}"))
        return None

    return parse


INT32 = _integer("int32", -(2**31), 2**31 - 1)
INT64 = _integer("int64", -(2**63), 2**63 - 1)
UINT16 = _integer("uint16", 0, 2**16 - 1)
UINT32 = _integer("uint32", 0, 2**32 - 1)
UINT64 = _integer("uint64", 0, 2**64 - 1)
INT = INT64  # Go int on the 64-bit platforms runtimes ship for
UINT = UINT64  # Go uint, likewise


def list_of(kind: Kind) -> Kind:
    """A JSON array of ``kind``, parsed to a tuple (models are frozen all the way down)."""

    def parse(value: object, path: str, errors: list[Violation]) -> tuple[Any, ...] | None:
        if isinstance(value, list):
            return tuple([kind(v, f"{path}[{i}]", errors) for i, v in enumerate(value)])
        errors.append(Violation(path, f"expected array, got {json_type(value)}"))
        return None

    return parse


def map_of(kind: Kind) -> Kind:
    """A JSON object used as a map from string keys to ``kind``."""

    def parse(value: object, path: str, errors: list[Violation]) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return {k: kind(v, entry(path, k), errors) for k, v in value.items()}
        errors.append(Violation(path, f"expected object, got {json_type(value)}"))
        return None

    return parse


STRINGS = list_of(STRING)
STRING_MAP = map_of(STRING)
