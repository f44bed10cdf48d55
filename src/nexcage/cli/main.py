"""Entry point: parse -> dispatch -> exception to exit code. The only place that maps errors to
exit codes and the only caller of ``sys.exit`` (via the return value)."""

from __future__ import annotations

import os
import sys

from nexcage import log
from nexcage.cli import parser
from nexcage.errors import ExitCode, NexcageError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from nexcage.ops.context import Context

# verb -> module in nexcage.cli.commands (imported only when that verb runs: start-up is latency)
COMMANDS = {
    "create": "create",
    "start": "start",
    "state": "state",
    "kill": "kill",
    "delete": "delete",
    "run": "run",
    "exec": "exec",
    "list": "list",
    "ps": "ps",
    "pause": "pause",
    "resume": "pause",
    "update": "update",
    "features": "features",
    "spec": "spec",
    "events": "events",
    "check": "check",
    "config": "config",
    # nexcage's own verbs (PRODUCT.md §1.2)
    "image": "image",
    "bundle": "bundle",
    "template": "template",
    "snapshot": "snapshot",
    "storage": "storage",
}
USAGE = """nexcage - a runc-compatible container runtime for crun, runc, LXC and Proxmox VE

usage: nexcage [global options] command [command options] [arguments...]

commands:
  create    create a container            start     start a created container
  run       create and start a container  state     output the state of a container
  kill      send a signal to a container  delete    delete a container
  exec      run a process in a container  ps        list a container's processes
  list      list containers               pause     freeze a container
  resume    thaw a container              update    change a container's resources
  events    resource statistics           features  show the enabled features
  spec      write a new config.json       check     check the host
  config    show the effective configuration
  image     pull, ls, inspect, rm, prune, import, export images
  bundle    write an OCI bundle from an image      template  an LXC/Proxmox template
  snapshot  create, ls, rollback, rm snapshots     storage   init, df, gc

global options:
  --root DIR          state root (default /run/nexcage)
  --data-root DIR     images and storage (default /var/lib/nexcage)
  --log FILE          log file (default stderr)       --log-format text|json
  --runtime NAME      force a backend (crun, runc)    --config FILE
  --debug             debug logging                   --systemd-cgroup
  --version, -v       print the version
"""


def _module(verb: str) -> Any:
    name = f"nexcage.cli.commands.{COMMANDS[verb]}"
    __import__(name)
    return sys.modules[name]


def _options_of(verb: str) -> tuple[tuple[parser.Option, ...], bool]:
    module = _module(verb)
    return module.OPTIONS, getattr(module, "TAIL", False)


def version_text() -> str:
    from nexcage import OCI_VERSION, __version__

    # go-runc's parser wants the first line to start with "<name> version " (CONTRACTS.md §1.12).
    return f"nexcage version {__version__}\nspec: {OCI_VERSION}\n"


def make_context(args: parser.Args) -> Context:
    from nexcage import settings
    from nexcage.ops.context import Context

    flags = {
        "--root": args.glob("root"),
        "--data-root": args.glob("data_root"),
        "--runtime": args.glob("runtime"),
        "--config": args.glob("config"),
        "--log-format": args.glob("log_format"),
        "--log-level": args.glob("log_level"),
    }
    loaded = settings.load(flags, os.environ)
    if loaded.log_format != (args.glob("log_format") or "text") or loaded.log_level:
        # log_format / log_level from the config file or NEXCAGE_* (the flags were applied at
        # start-up, before settings could be read, so that settings errors are logged too).
        log.setup(
            args.glob("log"), loaded.log_format, args.globals.get("debug") is True, loaded.log_level
        )
    return Context(
        loaded,
        log_file=args.glob("log"),
        debug=args.globals.get("debug") is True,
        systemd_cgroup=args.globals.get("systemd_cgroup") is True,
        runtime_flag=args.glob("runtime"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse(argv, COMMANDS, _options_of)
        log.setup(
            args.glob("log"),
            args.glob("log_format") or "text",
            args.globals.get("debug") is True,
        )
    except UsageError as exc:
        sys.stderr.write(f"nexcage: {exc}\n")
        return exc.exit_code
    try:
        if args.globals.get("version") is True:
            from nexcage.cli import output

            output.write(version_text())
            return ExitCode.OK
        if not args.command or args.globals.get("help") is True:
            sys.stderr.write(USAGE)
            return ExitCode.OK if args.globals.get("help") is True else ExitCode.USAGE
        module = _module(args.command)
        code: int = module.run(args)
        return code
    except NexcageError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        return _fail(NexcageError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")))
    finally:
        log.close()


def _fail(exc: NexcageError) -> int:
    message = str(exc)
    # runc: the decisive error is the last level=error line of the log (containerd and podman
    # surface it) and, when logging to a file, also goes to stderr.
    log.error(message)
    if log.to_file():
        sys.stderr.write(f"nexcage: {message}\n")
    if exc.hint:
        log.info(f"hint: {exc.hint}")
    return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
