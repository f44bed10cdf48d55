"""nexcage update [--resources FILE|-] [--memory N ...] ID"""

from __future__ import annotations

import os

from nexcage.cli.main import make_context
from nexcage.cli.parser import VALUE, Args, Option, one_id
from nexcage.ops import lifecycle

OPTIONS: tuple[Option, ...] = (
    (("--resources", "-r"), "resources", VALUE),
    *(
        ((f"--{name}",), name.replace("-", "_"), VALUE)
        for name in (
            "memory",
            "memory-swap",
            "memory-reservation",
            "kernel-memory",
            "kernel-memory-tcp",
            "cpu-period",
            "cpu-quota",
            "cpu-burst",
            "cpu-share",
            "cpu-rt-period",
            "cpu-rt-runtime",
            "cpuset-cpus",
            "cpuset-mems",
            "cpu-idle",
            "pids-limit",
            "blkio-weight",
            "l3-cache-schema",
            "mem-bw-schema",
        )
    ),
)


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
    for names, dest, _kind in OPTIONS:
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
