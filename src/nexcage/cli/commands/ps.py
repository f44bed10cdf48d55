"""nexcage ps [--format table|json] ID [ps-args...]"""

from __future__ import annotations

from nexcage.cli import output
from nexcage.cli.main import make_context
from nexcage.cli.parser import VALUE, Args, Option
from nexcage.errors import UsageError
from nexcage.ops import process

OPTIONS: tuple[Option, ...] = ((("--format", "-f"), "format", VALUE),)
TAIL = True  # ps arguments follow the id


def run(args: Args) -> int:
    fmt = args.get("format") or "table"
    if fmt not in ("table", "json"):
        raise UsageError(f"invalid format option {fmt!r}")
    if not args.positionals:
        raise UsageError('"ps" requires a minimum of 1 argument')
    pids = process.ps(make_context(args), args.positionals[0], fmt, args.positionals[1:])
    if pids is not None:
        if fmt == "json":
            output.json(pids, indent=None)
        else:
            output.write("PID\n")
    return 0
