"""nexcage update [--resources FILE|-] [--memory N ...] ID"""

from __future__ import annotations

import os

from nexcage.cli.commands import OPTIONS
from nexcage.cli.main import make_context
from nexcage.cli.parser import Args, one_id
from nexcage.ops import lifecycle


def run(args: Args) -> int:
    container_id = one_id(args, "update")
    resources = None
    source = args.get("resources")
    if source == "-":
        resources = _read_all(0)
    elif source is not None:
        with open(source, "rb") as f:
            resources = f.read()
    options: list[str] = []
    for names, dest, _kind in OPTIONS["update"][0]:
        value = args.get(dest)
        if dest != "resources" and value is not None:
            options += [names[0], value]
    lifecycle.update(make_context(args), container_id, options, resources)
    return 0


def _read_all(fd: int) -> bytes:
    chunks = []
    while block := os.read(fd, 65536):
        chunks.append(block)
    return b"".join(chunks)
