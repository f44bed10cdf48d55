"""nexcage pause ID / nexcage resume ID (cgroup freezer, through the backend)."""

from __future__ import annotations

from nexcage.cli.main import make_context
from nexcage.cli.parser import Args, Option, one_id
from nexcage.ops import lifecycle

OPTIONS: tuple[Option, ...] = ()


def run(args: Args) -> int:
    container_id = one_id(args, args.command)
    if args.command == "pause":
        lifecycle.pause(make_context(args), container_id)
    else:
        lifecycle.resume(make_context(args), container_id)
    return 0
