"""The LXC backend's two small C programs: where they are, and how they are built.

- ``nexcage-lxc-init`` (``helpers/init.c``): static, bind-mounted into every container as its
  init (and run as nexcage's mount hook). Static so it runs in any rootfs.
- ``nexcage-lxc-monitor`` (``helpers/monitor.c``): links liblxc (``lxc-dev``); runs one container
  in the foreground and exits with its init's status.

``scripts/setup-host`` builds both into ``<venv>/libexec/nexcage`` with
``python -m nexcage.backends.lxc.install DIR``. ``NEXCAGE_LXC_LIBEXEC`` points elsewhere.
"""

from __future__ import annotations

import os
import sys

from nexcage.errors import BackendNotFound

INIT = "nexcage-lxc-init"
MONITOR = "nexcage-lxc-monitor"
ENV = "NEXCAGE_LXC_LIBEXEC"
SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers")


def candidates() -> list[str]:
    found = []
    if os.environ.get(ENV):
        found.append(os.environ[ENV])
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    found += [
        os.path.join(venv, "libexec", "nexcage"),
        os.path.join(sys.prefix, "libexec", "nexcage"),
        "/usr/local/libexec/nexcage",
        "/usr/libexec/nexcage",
    ]
    return found


def find() -> tuple[str, str]:
    """(init helper, monitor) paths; BackendNotFound with the fix when they are missing."""
    for directory in candidates():
        init = os.path.join(directory, INIT)
        monitor = os.path.join(directory, MONITOR)
        if os.access(init, os.X_OK) and os.access(monitor, os.X_OK):
            return init, monitor
    raise BackendNotFound(
        "lxc",
        f"the lxc backend's helpers ({INIT}, {MONITOR}) are not installed in any of "
        f"{', '.join(candidates())}; build them with scripts/setup-host (needs gcc, libc6-dev "
        f"and lxc-dev) or `python -m nexcage.backends.lxc.install DIR`",
    )


def build(directory: str) -> tuple[str, str]:
    """Compile both helpers into ``directory`` (atomically replaced); return their paths."""
    import shutil

    from nexcage.host import run as host_run

    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise BackendNotFound("lxc", "building the lxc helpers needs gcc (apt-get install gcc)")
    os.makedirs(directory, mode=0o755, exist_ok=True)
    outputs = []
    for name, source, flags in (
        (INIT, "init.c", ["-static"]),
        (MONITOR, "monitor.c", []),
    ):
        target = os.path.join(directory, name)
        tmp = target + ".tmp"
        libs = ["-llxc"] if name == MONITOR else []
        host_run.run(
            [gcc, "-O2", "-Wall", "-Wextra", "-s", *flags, "-o", tmp,
             os.path.join(SOURCES, source), *libs],
            capture=True,
        )  # fmt: skip
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        outputs.append(target)
    return outputs[0], outputs[1]


if __name__ == "__main__":  # pragma: no cover - used by scripts/setup-host
    for path in build(sys.argv[1] if len(sys.argv) > 1 else candidates()[1]):
        print(path)
