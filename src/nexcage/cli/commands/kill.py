"""nexcage kill [--all] ID [SIGNAL]: signal by name (TERM, SIGTERM) or number; default SIGTERM."""

from __future__ import annotations

from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, Args, Option
from nexcage.errors import UsageError
from nexcage.host import signals
from nexcage.ops import lifecycle

OPTIONS: tuple[Option, ...] = ((("--all", "-a"), "all", BOOL),)


def run(args: Args) -> int:
    if not 1 <= len(args.positionals) <= 2:
        raise UsageError('"kill" requires a minimum of 1 and a maximum of 2 arguments')
    signum = signals.parse(args.positionals[1] if len(args.positionals) == 2 else "SIGTERM")
    lifecycle.kill(make_context(args), args.positionals[0], signum, all_processes=args.flag("all"))
    return 0
