"""nexcage snapshot (being built; see the open issues)."""

from __future__ import annotations

from nexcage.cli.parser import Args, Option
from nexcage.errors import NexcageError

OPTIONS: tuple[Option, ...] = ()
TAIL = True


def run(args: Args) -> int:
    raise NexcageError("nexcage snapshot is not implemented yet")
