"""nexcage spec [--rootless] [-b DIR]: write a starter config.json like runc's."""

from __future__ import annotations

import os

from nexcage import fastjson
from nexcage.cli.parser import BOOL, VALUE, Args, Option
from nexcage.errors import NexcageError
from nexcage.spec.default import default_spec

OPTIONS: tuple[Option, ...] = (
    (("--bundle", "-b"), "bundle", VALUE),
    (("--rootless",), "rootless", BOOL),
)


def run(args: Args) -> int:
    path = os.path.join(args.get("bundle") or ".", "config.json")
    if os.path.exists(path):
        raise NexcageError("File config.json exists. Remove it first.")  # runc's wording
    doc = default_spec(rootless=args.flag("rootless"))
    with open(path, "x", encoding="utf-8") as f:
        f.write(fastjson.dumps(doc, indent=2) + "\n")
    return 0
