"""nexcage create [-b DIR] [--console-socket S] [--pid-file F] [--preserve-fds N] ID"""

from __future__ import annotations

from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, VALUE, Args, Option, int_option, one_id
from nexcage.ops import lifecycle

OPTIONS: tuple[Option, ...] = (
    (("--bundle", "-b"), "bundle", VALUE),
    (("--console-socket",), "console_socket", VALUE),
    (("--pid-file",), "pid_file", VALUE),
    (("--no-pivot",), "no_pivot", BOOL),
    (("--no-new-keyring",), "no_new_keyring", BOOL),
    (("--preserve-fds",), "preserve_fds", VALUE),
    (("--pidfd-socket",), "pidfd_socket", VALUE),
    (("--no-subreaper",), "no_subreaper", BOOL),  # crun accepts and ignores it on create
)


def options(args: Args) -> lifecycle.CreateOptions:
    return lifecycle.CreateOptions(
        pid_file=args.get("pid_file"),
        console_socket=args.get("console_socket"),
        preserve_fds=int_option(args, "preserve_fds"),
        no_pivot=args.flag("no_pivot"),
        no_new_keyring=args.flag("no_new_keyring"),
    )


def run(args: Args) -> int:
    container_id = one_id(args, "create")
    lifecycle.create(make_context(args), container_id, args.get("bundle") or ".", options(args))
    return 0
