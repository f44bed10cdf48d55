"""nexcage storage init|gc|df

storage init --driver btrfs|zfs --size SIZE [--path FILE]   a loop-backed btrfs or a file-backed
                                                           zpool for the data root
storage gc [--dry-run] [--format text|json]                remove what crashes left
storage df [--format table|json]                           usage per driver
"""

from __future__ import annotations

from nexcage.cli import output
from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, VALUE, Args, Option
from nexcage.errors import UsageError

OPTIONS: tuple[Option, ...] = (
    (("--driver",), "driver", VALUE),
    (("--size",), "size", VALUE),
    (("--path",), "path", VALUE),
    (("--dry-run",), "dry_run", BOOL),
    (("--format", "-f"), "format", VALUE),
)
USAGE = "usage:\n" + __doc__.split("\n\n", 1)[1].rstrip()


def _format(args: Args, allowed: tuple[str, ...], usage: str) -> str:
    fmt = args.get("format") or allowed[0]
    if fmt not in allowed:
        raise UsageError(usage)
    return fmt


def _init(args: Args, rest: list[str]) -> int:
    from nexcage.ops import storage

    driver, size = args.get("driver"), args.get("size")
    if rest or driver is None or size is None:
        raise UsageError("usage: nexcage storage init --driver btrfs|zfs --size SIZE [--path F]")
    ctx = make_context(args)
    output.write(storage.init(ctx.settings, driver, size, args.get("path")) + "\n")
    return 0


def _gc(args: Args, rest: list[str]) -> int:
    from nexcage.ops import storage

    fmt = _format(args, ("text", "json"), "usage: nexcage storage gc [--dry-run] [--format F]")
    if rest:
        raise UsageError("usage: nexcage storage gc [--dry-run] [--format text|json]")
    found = storage.gc(make_context(args), dry_run=args.flag("dry_run"))
    if fmt == "json":
        output.json([item.to_json() for item in found])
    else:
        verb = "Would remove" if args.flag("dry_run") else "Removed"
        output.write("".join(f"{verb} {item.kind}: {item.what}\n" for item in found))
    return 0


def _df(args: Args, rest: list[str]) -> int:
    from nexcage.ops import storage

    fmt = _format(args, ("table", "json"), "usage: nexcage storage df [--format table|json]")
    if rest:
        raise UsageError("usage: nexcage storage df [--format table|json]")
    usage = storage.df(make_context(args))
    if fmt == "json":
        output.json(usage)
        return 0
    rows = [
        [
            d["driver"],
            str(d["layers"]),
            _size(d["bytes"].get("layers", 0)),
            str(d["containers"]),
            _size(d["bytes"].get("containers", 0)),
            str(d["snapshots"]),
            _size(d["bytes"].get("snapshots", 0)),
        ]
        for d in usage["drivers"]
    ]
    rows.append(["blobs", str(usage["blobs"]["count"]), _size(usage["blobs"]["bytes"]),
                 "-", "-", "-", "-"])  # fmt: skip
    output.table(["DRIVER", "LAYERS", "SIZE", "CONTAINERS", "SIZE", "SNAPSHOTS", "SIZE"], rows)
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}TB"


SUBCOMMANDS = {"init": _init, "gc": _gc, "df": _df}


def run(args: Args) -> int:
    if not args.positionals or args.positionals[0] not in SUBCOMMANDS:
        raise UsageError(USAGE)
    return SUBCOMMANDS[args.positionals[0]](args, args.positionals[1:])
