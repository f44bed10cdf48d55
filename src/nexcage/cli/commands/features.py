"""nexcage [--runtime NAME] features: nexcage's features document (runtime-spec features.md,
v1.3.0); with ``--runtime``, as that backend narrows it."""

from __future__ import annotations

from nexcage.cli import output
from nexcage.cli.parser import Args, Option
from nexcage.ops import features

OPTIONS: tuple[Option, ...] = ()


def run(args: Args) -> int:
    output.json(features.document(args.glob("runtime")))
    return 0
