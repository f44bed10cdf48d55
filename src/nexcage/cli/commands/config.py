"""nexcage config show [--format text|json]: every effective value with its source."""

from __future__ import annotations

from nexcage import settings
from nexcage.cli import output
from nexcage.cli.main import make_context
from nexcage.cli.parser import VALUE, Args, Option
from nexcage.errors import UsageError

OPTIONS: tuple[Option, ...] = ((("--format", "-f"), "format", VALUE),)


def run(args: Args) -> int:
    if args.positionals != ["show"]:
        raise UsageError("usage: nexcage config show [--format text|json]")
    fmt = args.get("format") or "text"
    if fmt not in ("text", "json"):
        raise UsageError(f"invalid format option {fmt!r}")
    output.write(settings.render_config_show(make_context(args).settings, fmt))
    return 0
