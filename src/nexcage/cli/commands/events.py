"""nexcage events [--stats] [--interval D] ID: the backend's own (runc has it; crun 1.8 refuses)."""

from __future__ import annotations

from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, VALUE, Args, Option, one_id
from nexcage.ops import process

OPTIONS: tuple[Option, ...] = (
    (("--interval",), "interval", VALUE),
    (("--stats",), "stats", BOOL),
)


def run(args: Args) -> int:
    options = (["--stats"] if args.flag("stats") else []) + (
        ["--interval", interval] if (interval := args.get("interval")) else []
    )
    process.events(make_context(args), one_id(args, "events"), options)
    return 0
