"""nexcage check [--format text|json]: exit 1 on any FAIL."""

from __future__ import annotations

from nexcage.backends import probe
from nexcage.cli import output
from nexcage.cli.main import make_context
from nexcage.cli.parser import VALUE, Args, Option
from nexcage.errors import UsageError
from nexcage.ops import check

OPTIONS: tuple[Option, ...] = ((("--format", "-f"), "format", VALUE),)


def run(args: Args) -> int:
    fmt = args.get("format") or "text"
    if fmt not in ("text", "json"):
        raise UsageError(f"invalid format option {fmt!r}")
    ctx = make_context(args)
    results = check.run_checks(
        ctx.settings, probe(ctx.settings.runtime_paths, ctx.store.backend_root)
    )
    output.write(check.render(results, fmt))
    return 1 if any(r.status == "FAIL" for r in results) else 0
