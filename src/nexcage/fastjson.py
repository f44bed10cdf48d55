"""JSON without importing ``json``.

``import json`` pulls in ``re`` and ``enum`` and costs ~16 ms on the reference machine, as much as
the interpreter's own start; engines spawn nexcage several times per container (STYLE.md: start-up
time is a product feature). CPython's C accelerator ``_json`` has the scanner and encoder that
``json`` itself uses; we drive them directly and fall back to ``json`` where ``_json`` is missing.

Semantics match ``json.loads``/``json.dumps`` for what nexcage reads and writes: strict strings,
duplicate keys keep the last value, NaN/Infinity rejected on output, non-ASCII escaped.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class JSONError(ValueError):
    """Malformed JSON; ``pos`` is the character offset, ``lineno``/``colno`` are 1-based."""

    def __init__(self, msg: str, doc: str, pos: int) -> None:
        lineno = doc.count("\n", 0, pos) + 1
        colno = pos - doc.rfind("\n", 0, pos)
        super().__init__(f"{msg}: line {lineno} column {colno} (char {pos})")
        self.msg = msg
        self.pos = pos
        self.lineno = lineno
        self.colno = colno


def _constant(name: str) -> Any:
    # Called by the scanner for NaN/Infinity/-Infinity: not JSON, reject like a strict parser.
    raise ValueError(f"invalid constant {name}")


class _Context:
    # The attribute set _json.make_scanner reads from its context object (json.decoder.JSONDecoder).
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict[str, str] = {}


_WS = " \t\n\r"
_scan: Callable[[str, int], tuple[Any, int]] | None = None
_encoders: dict[int | None, Callable[[Any, int], Any]] = {}


def _scanner() -> Callable[[str, int], tuple[Any, int]]:
    global _scan
    if _scan is None:
        try:
            import _json

            _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
        except (ImportError, AttributeError, TypeError):  # pragma: no cover - non-CPython
            import json

            decoder = json.JSONDecoder()
            _scan = decoder.scan_once  # type: ignore[attr-defined]
    return _scan


def loads(text: str | bytes) -> Any:
    """Parse one JSON document; raise JSONError with position on malformed input."""
    if isinstance(text, bytes | bytearray):
        data = bytes(text)
        if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM (not via the utf-8-sig codec: +0.5 ms)
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONError("invalid UTF-8", "", exc.start) from None
    idx = 0
    end = len(text)
    while idx < end and text[idx] in _WS:
        idx += 1
    if idx == end:
        raise JSONError("Expecting value", text, idx)
    try:
        obj, idx = _scanner()(text, idx)
    except SystemError:
        # CPython 3.11's C scanner raises json.decoder.JSONDecodeError only if json.decoder is
        # already imported, and otherwise returns NULL with no exception set. Malformed input is
        # the rare path: let json itself locate the error.
        _Context.memo.clear()
        return _loads_with_json(text)
    except StopIteration as exc:
        raise JSONError("Expecting value", text, exc.value) from None
    except ValueError as exc:
        # The C scanner raises json.JSONDecodeError (a ValueError) with .pos when json is loaded,
        # or a plain ValueError for our invalid-constant hook.
        pos = getattr(exc, "pos", idx)
        raise JSONError(getattr(exc, "msg", str(exc)), text, pos) from None
    finally:
        _Context.memo.clear()
    while idx < end and text[idx] in _WS:
        idx += 1
    if idx != end:
        raise JSONError("Extra data", text, idx)
    return obj


def _loads_with_json(text: str) -> Any:
    import json

    try:
        return json.loads(text, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise JSONError(exc.msg, text, exc.pos) from None
    except ValueError as exc:  # an invalid constant: no position from json either
        raise JSONError(str(exc), text, 0) from None


def _reject(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _encoder() -> Callable[[Any, int], Any]:
    enc = _encoders.get(None)
    if enc is None:
        try:
            import _json

            enc = _json.make_encoder(
                {},  # markers: detect cycles
                _reject,
                _json.encode_basestring_ascii,
                None,  # indent: the C encoder only does compact output
                ":",
                ",",
                False,  # sort_keys
                False,  # skipkeys
                False,  # allow_nan
            )
        except (ImportError, AttributeError, TypeError):  # pragma: no cover - non-CPython
            import json

            def enc(obj: Any, _level: int) -> Any:
                return [json.dumps(obj, allow_nan=False, separators=(",", ":"))]

        _encoders[None] = enc
    return enc


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Serialise to compact JSON, or indented by ``indent`` spaces like Go's MarshalIndent."""
    enc = _encoder()
    if indent is None:
        return "".join(enc(obj, 0))
    out: list[str] = []
    _indented(obj, enc, " " * indent, 0, out)
    return "".join(out)


def _indented(
    obj: Any, enc: Callable[[Any, int], Any], pad: str, level: int, out: list[str]
) -> None:
    # The C encoder only does compact output; containers are laid out here, scalars go to it.
    if isinstance(obj, dict) and obj:
        inner = "\n" + pad * (level + 1)
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            out.append(("," if i else "") + inner)
            out.extend(enc(key, 0))
            out.append(": ")
            _indented(value, enc, pad, level + 1, out)
        out.append("\n" + pad * level + "}")
    elif isinstance(obj, list | tuple) and obj:
        inner = "\n" + pad * (level + 1)
        out.append("[")
        for i, value in enumerate(obj):
            out.append(("," if i else "") + inner)
            _indented(value, enc, pad, level + 1, out)
        out.append("\n" + pad * level + "]")
    else:
        out.extend(enc(obj, 0))
