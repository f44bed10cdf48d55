"""nexcage create [-b DIR] [--console-socket S] [--pid-file F] [--preserve-fds N] ID
nexcage create --image REF [--pull missing|always|never] [--platform P] [-t] ID [-- CMD...]"""

from __future__ import annotations

from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, VALUE, Args, Option, int_option, one_id
from nexcage.errors import UsageError
from nexcage.ops import lifecycle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nexcage.ops.image_bundle import ImageSource

OPTIONS: tuple[Option, ...] = (
    (("--bundle", "-b"), "bundle", VALUE),
    (("--console-socket",), "console_socket", VALUE),
    (("--pid-file",), "pid_file", VALUE),
    (("--no-pivot",), "no_pivot", BOOL),
    (("--no-new-keyring",), "no_new_keyring", BOOL),
    (("--preserve-fds",), "preserve_fds", VALUE),
    (("--pidfd-socket",), "pidfd_socket", VALUE),
    (("--no-subreaper",), "no_subreaper", BOOL),  # crun accepts and ignores it on create
    # nexcage's own: a container straight from an image (PRODUCT.md §1.2)
    (("--image",), "image", VALUE),
    (("--pull",), "pull", VALUE),
    (("--platform",), "platform", VALUE),
    (("--tls-verify",), "tls_verify", BOOL),
    (("--tty", "-t"), "tty", BOOL),
)
_IMAGE_ONLY = ("pull", "platform", "tls_verify", "tty")


def options(args: Args) -> lifecycle.CreateOptions:
    return lifecycle.CreateOptions(
        pid_file=args.get("pid_file"),
        console_socket=args.get("console_socket"),
        preserve_fds=int_option(args, "preserve_fds"),
        no_pivot=args.flag("no_pivot"),
        no_new_keyring=args.flag("no_new_keyring"),
    )


def target(args: Args, verb: str) -> tuple[str, ImageSource | None]:
    """The container id, and the image source with ``--image`` (``ID [-- CMD...]``)."""
    ref = args.get("image")
    if ref is None:
        for dest in _IMAGE_ONLY:
            if dest in args.options:
                raise UsageError(f"--{dest.replace('_', '-')} needs --image")
        return one_id(args, verb), None
    if args.get("bundle") is not None:
        raise UsageError("--image and --bundle cannot be used together")
    if not args.positionals:
        raise UsageError(f"{verb}: container id cannot be empty")
    from nexcage.ops.image_bundle import ImageSource  # image code only on this branch

    tls = args.options.get("tls_verify")
    source = ImageSource(
        ref,
        command=args.positionals[1:],
        tty=args.flag("tty"),
        pull=args.get("pull") or "missing",
        platform=args.get("platform"),
        tls_verify=tls if isinstance(tls, bool) else None,
    )
    return args.positionals[0], source


def run(args: Args) -> int:
    container_id, image = target(args, "create")
    ctx = make_context(args)
    lifecycle.create(ctx, container_id, args.get("bundle") or ".", options(args), image=image)
    return 0
