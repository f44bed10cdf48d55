"""nexcage state ID: the OCI state JSON (runc's field names, status derived live)."""

from __future__ import annotations

from nexcage.cli import output
from nexcage.cli.main import make_context
from nexcage.cli.parser import Args, Option, one_id
from nexcage.ops import lifecycle

OPTIONS: tuple[Option, ...] = ()


def run(args: Args) -> int:
    output.json(lifecycle.state(make_context(args), one_id(args, "state")))
    return 0
