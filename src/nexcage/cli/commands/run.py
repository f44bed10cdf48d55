"""nexcage run [-d] [--keep] [-b DIR] [--console-socket S] [--pid-file F] ID
nexcage run --image REF [--pull P] [--platform P] [-t] [-d] ID [-- CMD...]

Foreground: the exit status is the container's (128+N for a signal)."""

from __future__ import annotations

from nexcage.cli.commands import create
from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, Args, Option
from nexcage.ops import process

OPTIONS: tuple[Option, ...] = (
    *create.OPTIONS,
    (("--detach", "-d"), "detach", BOOL),
    (("--keep",), "keep", BOOL),
)


def run(args: Args) -> int:
    container_id, image = create.target(args, "run")
    return process.run(
        make_context(args),
        container_id,
        args.get("bundle") or ".",
        create.options(args),
        detach=args.flag("detach"),
        keep=args.flag("keep"),
        image=image,
    )
