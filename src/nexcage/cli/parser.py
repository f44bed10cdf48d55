"""Command-line parsing shaped like runc's (urfave/cli), without argparse (21 ms to import here).

- ``--flag value`` and ``--flag=value``; Go-style single-dash long flags (``-bundle x``,
  ``-no-subreaper``: go-runc emits them); bool flags take ``--flag=true|false``.
- Global flags before or after the verb. Unknown *global* flags before the verb are tolerated
  (podman and go-runc forward runtime flags we may not know, CONTRACTS.md §1.3); unknown
  command flags are usage errors with urfave's wording.
- Commands with a command tail (``exec``, ``ps``) stop parsing flags at the first positional.
"""

from __future__ import annotations

from nexcage.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Container, Sequence

VALUE = "value"
BOOL = "bool"
MULTI = "multi"
# (names, destination, kind)
Option = tuple[tuple[str, ...], str, str]

GLOBAL_OPTIONS: tuple[Option, ...] = (
    (("--root",), "root", VALUE),
    (("--data-root",), "data_root", VALUE),
    (("--log",), "log", VALUE),
    (("--log-format",), "log_format", VALUE),
    (("--config",), "config", VALUE),
    (("--runtime",), "runtime", VALUE),
    (("--debug",), "debug", BOOL),
    (("--systemd-cgroup",), "systemd_cgroup", BOOL),
    (("--version", "-v"), "version", BOOL),
    (("--help", "-h"), "help", BOOL),
    # Accepted for runc compatibility, no effect on nexcage itself.
    (("--rootless",), "rootless", VALUE),
    (("--criu",), "criu", VALUE),
    (("--log-level",), "log_level", VALUE),
)
_TRUE = ("true", "1", "yes", "t")
_FALSE = ("false", "0", "no", "f")


class Args:
    __slots__ = ("command", "globals", "options", "positionals")

    def __init__(self) -> None:
        self.globals: dict[str, str | bool | list[str]] = {}
        self.command = ""
        self.options: dict[str, str | bool | list[str]] = {}
        self.positionals: list[str] = []

    def get(self, dest: str) -> str | None:
        value = self.options.get(dest)
        return value if isinstance(value, str) else None

    def flag(self, dest: str) -> bool:
        return self.options.get(dest) is True

    def many(self, dest: str) -> list[str]:
        value = self.options.get(dest)
        return value if isinstance(value, list) else []

    def glob(self, dest: str) -> str | None:
        value = self.globals.get(dest)
        return value if isinstance(value, str) else None


def _index(options: Sequence[Option]) -> dict[str, tuple[str, str]]:
    return {name: (dest, kind) for names, dest, kind in options for name in names}


def _normalise(name: str) -> str:
    # Go's flag package accepts -name for --name.
    if name.startswith("-") and not name.startswith("--") and len(name) > 2:
        return "-" + name
    return name


def _store(
    target: dict[str, str | bool | list[str]],
    name: str,
    dest: str,
    kind: str,
    inline: str | None,
    argv: Sequence[str],
    i: int,
) -> int:
    """Store one option; return the index of the next unread argument."""
    if kind == BOOL:
        if inline is None or inline.lower() in _TRUE:
            target[dest] = True
        elif inline.lower() in _FALSE:
            target[dest] = False
        else:
            raise UsageError(f"invalid boolean value {inline!r} for flag {name}")
        return i + 1
    if inline is None:
        if i + 1 >= len(argv):
            raise UsageError(f"flag needs an argument: {name}")
        inline = argv[i + 1]
        i += 1
    if kind == MULTI:
        current = target.get(dest)
        values = current if isinstance(current, list) else []
        values.append(inline)
        target[dest] = values
    else:
        target[dest] = inline
    return i + 1


def _parse_globals(argv: Sequence[str], args: Args, verbs: Container[str]) -> int:
    """Global flags before the verb; return the index of the verb."""
    globals_ = _index(GLOBAL_OPTIONS)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            break
        if arg == "--":
            return i + 1
        name, eq, value = arg.partition("=")
        name = _normalise(name)
        inline = value if eq else None
        if name in globals_:
            dest, kind = globals_[name]
            i = _store(args.globals, name, dest, kind, inline, argv, i)
            continue
        # An unknown global flag: skip it, and its value if the next word is not a verb.
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        takes_value = (
            inline is None and nxt is not None and nxt not in verbs and not nxt.startswith("-")
        )
        i += 2 if takes_value else 1
    return i


def parse(
    argv: Sequence[str],
    verbs: Container[str],
    options_of: Callable[[str], tuple[tuple[Option, ...], bool]],
) -> Args:
    """Parse argv. ``options_of(verb)`` gives the verb's options and whether it has a command
    tail; it is called only for the verb on the command line (its module is imported then)."""
    args = Args()
    i = _parse_globals(argv, args, verbs)
    if i >= len(argv):
        return args
    verb = argv[i]
    if verb not in verbs:
        raise UsageError(f"No help topic for '{verb}'")  # runc's wording for an unknown command
    args.command = verb
    options, has_tail = options_of(verb)
    local = _index(options)
    globals_ = _index(GLOBAL_OPTIONS)
    i += 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            args.positionals.extend(argv[i + 1 :])
            break
        if arg.startswith("-") and arg != "-" and not (has_tail and args.positionals):
            name, eq, value = arg.partition("=")
            name = _normalise(name)
            inline = value if eq else None
            if name in local:
                i = _store(args.options, name, *local[name], inline, argv, i)
            elif name in globals_:
                i = _store(args.globals, name, *globals_[name], inline, argv, i)
            else:
                raise UsageError(f"flag provided but not defined: {name}")
            continue
        args.positionals.append(arg)
        if has_tail and len(args.positionals) == 1:
            # exec/ps: everything after the id belongs to the command (or to ps).
            rest = list(argv[i + 1 :])
            if rest[:1] == ["--"]:
                rest = rest[1:]
            args.positionals.extend(rest)
            break
        i += 1
    return args


def int_option(args: Args, dest: str, default: int = 0) -> int:
    value = args.get(dest)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"invalid value {value!r} for --{dest.replace('_', '-')}") from None
    if number < 0:
        raise UsageError(f"invalid value {value!r} for --{dest.replace('_', '-')}")
    return number


def one_id(args: Args, verb: str) -> str:
    if len(args.positionals) != 1:
        raise UsageError(
            f'"{verb}" requires exactly 1 argument(s)'
            if args.positionals
            else f"{verb}: container id cannot be empty"
        )
    return args.positionals[0]
