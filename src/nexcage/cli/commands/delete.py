"""nexcage delete [--force] ID"""

from __future__ import annotations

from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, Args, Option, one_id
from nexcage.ops import lifecycle

OPTIONS: tuple[Option, ...] = ((("--force", "-f"), "force", BOOL),)


def run(args: Args) -> int:
    lifecycle.delete(make_context(args), one_id(args, "delete"), force=args.flag("force"))
    return 0
