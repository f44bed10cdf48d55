"""nexcage features: nexcage's own features document (runtime-spec features.md, v1.3.0)."""

from __future__ import annotations

from nexcage.cli import output
from nexcage.cli.parser import Args, Option
from nexcage.ops import features

OPTIONS: tuple[Option, ...] = ()


def run(args: Args) -> int:
    output.json(features.document())
    return 0
