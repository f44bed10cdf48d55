"""nexcage bundle [--pull P] [--platform P] [--tls-verify=false] [-t] REF DIR [-- CMD...]

Writes DIR/config.json and DIR/rootfs from the image (pulled if missing), like `umoci unpack`.
A command after ``--`` replaces the image's Cmd."""

from __future__ import annotations

from nexcage.cli import output
from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, VALUE, Args, Option
from nexcage.errors import UsageError

OPTIONS: tuple[Option, ...] = (
    (("--pull",), "pull", VALUE),
    (("--platform",), "platform", VALUE),
    (("--tls-verify",), "tls_verify", BOOL),
    (("--tty", "-t"), "tty", BOOL),
)


def run(args: Args) -> int:
    if len(args.positionals) < 2:
        raise UsageError("usage: nexcage bundle [options] REF DIR [-- CMD...]")
    from nexcage.ops.image_bundle import make_bundle

    ref, directory, *command = args.positionals
    tls = args.options.get("tls_verify")
    record = make_bundle(
        make_context(args),
        ref,
        directory,
        command=command or None,
        tty=args.flag("tty"),
        pull=args.get("pull") or "missing",
        platform=args.get("platform"),
        tls_verify=tls if isinstance(tls, bool) else None,
    )
    output.write(f"{record.ref} {record.manifest_digest}\n")
    return 0
