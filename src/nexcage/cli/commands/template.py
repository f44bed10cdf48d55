"""nexcage template [--pull P] [--platform P] [--tls-verify=false] REF --format lxc [-o DIR]

An image as an LXC image: DIR/rootfs.tar.xz and DIR/meta.tar.xz (DIR defaults to the current
directory), for ``lxc-create -t local -- --metadata DIR/meta.tar.xz --fstree DIR/rootfs.tar.xz``.
Prints the two paths, then the ``config`` in the metadata (the keys the image config became)."""

from __future__ import annotations

from nexcage.cli import output
from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, VALUE, Args, Option
from nexcage.errors import UsageError

OPTIONS: tuple[Option, ...] = (
    (("--format", "-f"), "format", VALUE),
    (("--output", "-o"), "output", VALUE),
    (("--pull",), "pull", VALUE),
    (("--platform",), "platform", VALUE),
    (("--tls-verify",), "tls_verify", BOOL),
)
USAGE = "usage: nexcage template REF --format lxc [-o DIR]"


def run(args: Args) -> int:
    if len(args.positionals) != 1 or not args.get("format"):
        raise UsageError(USAGE)
    from nexcage.ops.template import make_template

    tls = args.options.get("tls_verify")
    made = make_template(
        make_context(args),
        args.positionals[0],
        args.get("format") or "",
        args.get("output"),
        pull=args.get("pull") or "missing",
        platform=args.get("platform"),
        tls_verify=tls if isinstance(tls, bool) else None,
    )
    output.write(f"{made.meta}\n{made.rootfs}\n{made.config}")
    return 0
