"""nexcage image pull|ls|inspect|rm|prune|import|export

image pull [--platform OS/ARCH[/VARIANT]] [--creds USER:PASS] [--tls-verify=false] [-q] REF
image ls [--format table|json]
image inspect REF|DIGEST
image rm REF|DIGEST...
image prune
image import [--platform P] FILE|DIR [REF]  (oci-archive, docker-archive, OCI layout dir)
image export REF FILE              (oci-archive)
"""

from __future__ import annotations

from nexcage.cli import output
from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, VALUE, Args, Option
from nexcage.errors import UsageError

OPTIONS: tuple[Option, ...] = (
    (("--platform",), "platform", VALUE),
    (("--creds",), "creds", VALUE),
    (("--tls-verify",), "tls_verify", BOOL),
    (("--quiet", "-q"), "quiet", BOOL),
    (("--format", "-f"), "format", VALUE),
)
USAGE = "usage:\n" + __doc__.split("\n\n", 1)[1].split('"""')[0].rstrip()


def _size(n: int) -> str:
    """Decimal units, as podman and docker print image sizes."""
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}GB"


def _pull(args: Args, rest: list[str]) -> int:
    from nexcage.image.progress import for_stderr
    from nexcage.ops import images

    if len(rest) != 1:
        raise UsageError("usage: nexcage image pull [options] REF")
    tls = args.options.get("tls_verify")
    options = images.PullOptions(
        platform=args.get("platform"),
        creds=args.get("creds"),
        tls_verify=tls if isinstance(tls, bool) else None,
    )
    progress = for_stderr(rest[0], quiet=args.flag("quiet"))
    record = images.pull(make_context(args), rest[0], options, progress)
    output.write(record.manifest_digest + "\n")
    return 0


def _ls(args: Args, rest: list[str]) -> int:
    from nexcage.ops import images

    fmt = args.get("format") or "table"
    if rest or fmt not in ("table", "json"):
        raise UsageError("usage: nexcage image ls [--format table|json]")
    found = images.images(make_context(args))
    if fmt == "json":
        output.json([r.to_json() for r in found])
        return 0
    rows = [
        [r.ref, r.manifest_digest[7:19], str(r.platform), _size(r.size), _created(r.created)]
        for r in found
    ]
    output.table(["REFERENCE", "DIGEST", "PLATFORM", "SIZE", "CREATED"], rows)
    return 0


def _created(text: str) -> str:
    # RFC 3339 as written by image builders; show the date and time to the second.
    return text[:19].replace("T", " ") if text else "-"


def _inspect(args: Args, rest: list[str]) -> int:
    from nexcage.ops import images

    if len(rest) != 1:
        raise UsageError("usage: nexcage image inspect REF|DIGEST")
    output.json(images.inspect(make_context(args), rest[0]))
    return 0


def _rm(args: Args, rest: list[str]) -> int:
    from nexcage.ops import images

    if not rest:
        raise UsageError("usage: nexcage image rm REF|DIGEST...")
    lines = []
    untagged, layers = images.remove(make_context(args), rest)
    for ref, freed in untagged:
        lines.append(f"Untagged: {ref}")
        lines += [f"Deleted: {d}" for d in freed]
    lines += [f"Released layer: {chain} ({driver})" for driver, chain in layers]
    output.write("\n".join(lines) + "\n")
    return 0


def _prune(args: Args, rest: list[str]) -> int:
    from nexcage.ops import images

    if rest:
        raise UsageError("usage: nexcage image prune")
    freed, layers = images.prune(make_context(args))
    output.write("".join(f"Deleted: {d}\n" for d in freed))
    output.write("".join(f"Released layer: {chain} ({driver})\n" for driver, chain in layers))
    return 0


def _import(args: Args, rest: list[str]) -> int:
    if len(rest) not in (1, 2):
        raise UsageError("usage: nexcage image import FILE|DIR [REF]")
    from nexcage.ops import images_io

    ref = rest[1] if len(rest) == 2 else None
    records = images_io.import_image(
        make_context(args), rest[0], ref, platform=args.get("platform")
    )
    output.write("".join(f"{r.ref} {r.manifest_digest}\n" for r in records))
    return 0


def _export(args: Args, rest: list[str]) -> int:
    if len(rest) != 2:
        raise UsageError("usage: nexcage image export REF FILE")
    from nexcage.ops import images_io

    images_io.export_image(make_context(args), rest[0], rest[1])
    return 0


SUBCOMMANDS = {
    "pull": _pull,
    "ls": _ls,
    "list": _ls,
    "inspect": _inspect,
    "rm": _rm,
    "remove": _rm,
    "prune": _prune,
    "import": _import,
    "export": _export,
}


def run(args: Args) -> int:
    if not args.positionals or args.positionals[0] not in SUBCOMMANDS:
        raise UsageError(USAGE)
    return SUBCOMMANDS[args.positionals[0]](args, args.positionals[1:])
