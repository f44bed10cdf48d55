"""nexcage delete [--force] ID"""

from __future__ import annotations

from nexcage.cli.main import make_context
from nexcage.cli.parser import Args, one_id
from nexcage.ops import lifecycle


def run(args: Args) -> int:
    lifecycle.delete(make_context(args), one_id(args, "delete"), force=args.flag("force"))
    return 0
