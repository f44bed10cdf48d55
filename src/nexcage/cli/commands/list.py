"""nexcage list [--format table|json] [-q]: a corrupt record is reported, the rest listed."""

from __future__ import annotations

from nexcage import log
from nexcage.cli import output
from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, VALUE, Args, Option
from nexcage.errors import UsageError
from nexcage.ops import lifecycle

OPTIONS: tuple[Option, ...] = (
    (("--format", "-f"), "format", VALUE),
    (("--quiet", "-q"), "quiet", BOOL),
)


def run(args: Args) -> int:
    fmt = args.get("format") or "table"
    if fmt not in ("table", "json"):
        raise UsageError(f"invalid format option {fmt!r}")
    states, broken = lifecycle.list_states(make_context(args))
    for problem in broken:
        log.warning(str(problem))
    if args.flag("quiet"):
        output.write("".join(s["id"] + "\n" for s in states))
    elif fmt == "json":
        output.json(states, indent=None)
    else:
        rows = [
            [s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]]
            for s in states
        ]
        output.table(["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], rows)
    return 0
