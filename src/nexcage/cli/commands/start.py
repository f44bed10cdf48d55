"""nexcage start ID"""

from __future__ import annotations

from nexcage.cli.main import make_context
from nexcage.cli.parser import Args, Option, one_id
from nexcage.ops import lifecycle

OPTIONS: tuple[Option, ...] = ()


def run(args: Args) -> int:
    lifecycle.start(make_context(args), one_id(args, "start"))
    return 0
