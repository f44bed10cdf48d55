"""nexcage run [-d] [--keep] [-b DIR] [--console-socket S] [--pid-file F] ID

Foreground: the exit status is the container's (128+N for a signal)."""

from __future__ import annotations

from nexcage.cli.commands import create
from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, Args, Option, int_option, one_id
from nexcage.ops import process

OPTIONS: tuple[Option, ...] = (
    *create.OPTIONS,
    (("--detach", "-d"), "detach", BOOL),
    (("--keep",), "keep", BOOL),
)


def run(args: Args) -> int:
    container_id = one_id(args, "run")
    return process.run(
        make_context(args),
        container_id,
        args.get("bundle") or ".",
        detach=args.flag("detach"),
        keep=args.flag("keep"),
        pid_file=args.get("pid_file"),
        console_socket=args.get("console_socket"),
        preserve_fds=int_option(args, "preserve_fds"),
        no_pivot=args.flag("no_pivot"),
        no_new_keyring=args.flag("no_new_keyring"),
    )
