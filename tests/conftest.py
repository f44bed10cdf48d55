"""Shared fixtures.

Runtime under test: ``--runtime-binary PATH`` (pytest option) > env ``NEXCAGE_TEST_RUNTIME`` >
``<repo>/.venv/bin/nexcage``. The engine tests (tests/e2e/engines) run unchanged against any
runc-compatible binary, e.g. ``pytest tests/e2e/engines --runtime-binary /usr/sbin/runc``.

Strict mode (``NEXCAGE_TEST_STRICT=1`` or ``CI`` set): a missing tool, missing root or an
unusable runtime binary fails the test instead of skipping it (see ``support.missing``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import missing, require_root, strict_mode
from support.busybox import (
    TEST_IMAGE_ENV,
    TEST_IMAGE_REF,
    ImageArchive,
    make_bundle,
    make_oci_archive,
    make_rootfs,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNTIME = REPO / ".venv" / "bin" / "nexcage"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runtime-binary",
        default=None,
        metavar="PATH",
        help="runc-compatible runtime the engine tests drive (default: env NEXCAGE_TEST_RUNTIME, "
        f"else {DEFAULT_RUNTIME.relative_to(REPO)})",
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"nexcage runtime under test: {_runtime_choice(config)[0]}",
        f"strict mode (missing tools fail): {strict_mode()}",
    ]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None:
        require_root()


def _runtime_choice(config: pytest.Config) -> tuple[str, str]:
    option: str | None = config.getoption("--runtime-binary")
    if option:
        return os.path.abspath(option), "--runtime-binary"
    env = os.environ.get("NEXCAGE_TEST_RUNTIME")
    if env:
        return os.path.abspath(env), "NEXCAGE_TEST_RUNTIME"
    return os.fspath(DEFAULT_RUNTIME), "default"


# --------------------------------------------------------------------------------------------
# Host preparation
# --------------------------------------------------------------------------------------------


def _hybrid_v2_controllers() -> list[str]:
    """Controllers enabled in the cgroup v2 part of a hybrid layout that v1 could host."""
    unified = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if not unified.exists():
        return []  # pure v1 or pure v2: nothing to fix
    in_v2 = unified.read_text().split()
    v1_capable = set()
    for line in Path("/proc/cgroups").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4 and fields[3] == "1":
            v1_capable.add(fields[0])
    return [c for c in in_v2 if c in v1_capable]


@pytest.fixture(scope="session")
def hugetlb_cgroup_v1() -> list[str]:
    """Move controllers out of the v2 part of a hybrid cgroup layout; return what was mounted.

    crun 1.8.1 refuses hybrid layouts with controllers enabled in the v2 hierarchy ("cgroups in
    hybrid mode not supported, drop all controllers from cgroupv2", CONTRACTS.md §0). On this
    kind of machine only ``hugetlb`` sits there, and the documented fix is to mount it as a v1
    hierarchy: ``mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup
    /sys/fs/cgroup/hugetlb``. The mount is left in place afterwards: it is idempotent, other
    tests rely on it, and the controller would not return to v2 while any hugetlb cgroup exists.
    """
    if os.geteuid() != 0:
        return []
    mounted = []
    for controller in _hybrid_v2_controllers():
        target = Path("/sys/fs/cgroup") / controller
        target.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["mount", "-t", "cgroup", "-o", controller, "cgroup", os.fspath(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            missing(f"cannot mount the {controller} cgroup v1 hierarchy: {proc.stderr.strip()}")
        mounted.append(controller)
    return mounted


# --------------------------------------------------------------------------------------------
# The runtime under test
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def runtime_binary(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    hugetlb_cgroup_v1: list[str],
) -> str:
    """Absolute path of the runc-compatible runtime under test (checked with ``--version``).

    With env ``NEXCAGE_TEST_ARGV_LOG=FILE`` this is instead a logging wrapper (same basename)
    that appends every argv an engine sends to FILE before exec'ing the real runtime.
    """
    path, source = _runtime_choice(request.config)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        missing(f"runtime binary {path} (from {source}) is not an executable file")
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, check=False,
                          timeout=30)  # fmt: skip
    if proc.returncode != 0:
        missing(
            f"runtime binary {path} (from {source}) is not usable: `--version` exited "
            f"{proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}"
        )
    log = os.environ.get("NEXCAGE_TEST_ARGV_LOG")
    if log:
        return _argv_logger(path, os.path.abspath(log), tmp_path_factory.mktemp("argv-logger"))
    return path


def _argv_logger(real: str, log: str, directory: Path) -> str:
    """A wrapper script that appends its argv to ``log`` and execs ``real``.

    It keeps ``real``'s basename, because podman decides per basename whether a runtime takes
    ``--log-format=json`` (``runtime_supports_json``, CONTRACTS.md §1.17). One line per call:
    ``<unix time> <pid> <arg> <arg> …`` (arguments space-separated, for reading, not parsing).
    """
    wrapper = directory / os.path.basename(real)
    wrapper.write_text(
        "#!/bin/sh\n"
        "# written by tests/conftest.py (NEXCAGE_TEST_ARGV_LOG): record argv, run the runtime\n"
        "{\n"
        '  printf \'%s %s\' "$(date +%s.%N)" "$$"\n'
        '  for a in "$@"; do printf \' %s\' "$a"; done\n'
        "  printf '\\n'\n"
        f"}} >> {shlex.quote(log)}\n"
        f'exec {shlex.quote(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return os.fspath(wrapper)


@pytest.fixture
def runtime_root() -> Iterator[str]:
    """A private, empty state directory for the runtime's ``--root``; removed afterwards."""
    path = tempfile.mkdtemp(prefix="nexcage-root-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Bundles and images
# --------------------------------------------------------------------------------------------


@pytest.fixture
def busybox_bundle() -> Iterator[Callable[..., str]]:
    """Factory: ``busybox_bundle(args, **make_bundle_kwargs) -> bundle path``.

    Each call makes a fresh bundle (own rootfs) in its own temporary directory; all of them are
    removed when the test ends. Keyword arguments are those of `support.busybox.make_bundle`.
    """
    made: list[str] = []

    def factory(args: list[str] | tuple[str, ...], **kwargs: Any) -> str:
        parent = tempfile.mkdtemp(prefix="nexcage-bundle-")
        made.append(parent)
        return make_bundle(os.path.join(parent, "bundle"), args, **kwargs)

    yield factory
    for parent in made:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox rootfs built once per session. Shared: copy it before changing anything."""
    return make_rootfs(tmp_path_factory.mktemp("busybox-rootfs") / "rootfs")


@pytest.fixture(scope="session")
def busybox_image(busybox_rootfs: str, tmp_path_factory: pytest.TempPathFactory) -> ImageArchive:
    """An OCI archive of `busybox_rootfs` whose ref name is `TEST_IMAGE_REF`, built once.

    Image config: ``Cmd ["/bin/sh"]``, ``Env`` = `TEST_IMAGE_ENV`, ``WorkingDir "/"``.
    ``podman load`` names the image `TEST_IMAGE_REF`.
    """
    out = tmp_path_factory.mktemp("busybox-image") / "busybox-oci.tar"
    return make_oci_archive(busybox_rootfs, out, TEST_IMAGE_REF, env=TEST_IMAGE_ENV)
