"""nexcage snapshot create|ls|rollback|rm

snapshot create ID [NAME]      snapshot a container's rootfs (NAME: snap-<UTC time>)
snapshot ls [--format table|json] ID
snapshot rollback ID NAME      restore the rootfs to NAME (the container must be stopped)
snapshot rm ID NAME
"""

from __future__ import annotations

from nexcage.cli import output
from nexcage.cli.main import make_context
from nexcage.cli.parser import VALUE, Args, Option
from nexcage.errors import UsageError

OPTIONS: tuple[Option, ...] = ((("--format", "-f"), "format", VALUE),)
USAGE = "usage:\n" + __doc__.split("\n\n", 1)[1].rstrip()


def _create(args: Args, rest: list[str]) -> int:
    from nexcage.ops import snapshots

    if len(rest) not in (1, 2):
        raise UsageError("usage: nexcage snapshot create ID [NAME]")
    snap = snapshots.create(make_context(args), rest[0], rest[1] if len(rest) == 2 else None)
    output.write(snap.name + "\n")
    return 0


def _ls(args: Args, rest: list[str]) -> int:
    from nexcage.ops import snapshots

    fmt = args.get("format") or "table"
    if len(rest) != 1 or fmt not in ("table", "json"):
        raise UsageError("usage: nexcage snapshot ls [--format table|json] ID")
    found = snapshots.list_snapshots(make_context(args), rest[0])
    if fmt == "json":
        output.json([{"name": s.name, "created": s.created} for s in found])
    else:
        output.table(["NAME", "CREATED"], [[s.name, s.created] for s in found])
    return 0


def _rollback(args: Args, rest: list[str]) -> int:
    from nexcage import log
    from nexcage.ops import snapshots

    if len(rest) != 2:
        raise UsageError("usage: nexcage snapshot rollback ID NAME")
    destroyed = snapshots.rollback(make_context(args), rest[0], rest[1])
    if destroyed:
        log.warning(f"newer snapshots destroyed by the rollback: {', '.join(destroyed)}")
    return 0


def _rm(args: Args, rest: list[str]) -> int:
    from nexcage.ops import snapshots

    if len(rest) != 2:
        raise UsageError("usage: nexcage snapshot rm ID NAME")
    snapshots.remove(make_context(args), rest[0], rest[1])
    return 0


SUBCOMMANDS = {
    "create": _create,
    "ls": _ls,
    "list": _ls,
    "rollback": _rollback,
    "rm": _rm,
    "remove": _rm,
}


def run(args: Args) -> int:
    if not args.positionals or args.positionals[0] not in SUBCOMMANDS:
        raise UsageError(USAGE)
    return SUBCOMMANDS[args.positionals[0]](args, args.positionals[1:])
