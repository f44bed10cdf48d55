"""Regression: a second pull of a moved tag must fetch the new image, and a pull whose registry
cannot be asked must fail, not report the stored image. Before the fix an unknown remote digest
(the quick probe answered 401) counted as "up to date"."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from support.registry import build_image, push, start_registry

REPO = Path(__file__).resolve().parents[2]
NEXCAGE = str(REPO / ".venv" / "bin" / "nexcage")

pytestmark = [pytest.mark.integration]


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="nx-stale-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_moved_tag_behind_auth_is_pulled_again(work: Path) -> None:
    storage = work / "storage"
    registries = []
    try:
        open_reg = start_registry(work, storage)
        registries.append(open_reg)
        hashed = bcrypt.hashpw(b"p", bcrypt.gensalt(rounds=5)).decode()
        (work / "htpasswd").write_text(f"u:{hashed}\n")
        auth = start_registry(
            work, storage, {"htpasswd": {"realm": "x", "path": str(work / "htpasswd")}}
        )
        registries.append(auth)
        v1 = build_image([{"etc/": None, "etc/motd": b"v1\n"}])
        v2 = build_image([{"etc/": None, "etc/motd": b"v2\n"}])
        ref = f"{auth.host}/demo/app:latest"
        pull = [
            NEXCAGE,
            "--root",
            str(work / "state"),
            "--data-root",
            str(work / "data"),
            "image",
            "pull",
        ]
        pull += ["--tls-verify=false", "--creds", "u:p", ref]

        push(open_reg.url, "demo/app", "latest", v1)
        first = subprocess.run(pull, capture_output=True, text=True, timeout=120, check=False)
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == v1.digest
        push(open_reg.url, "demo/app", "latest", v2)  # the tag moves
        second = subprocess.run(pull, capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == v2.digest

        for registry in registries:
            registry.stop()
        registries.clear()
        down = subprocess.run(pull, capture_output=True, text=True, timeout=120, check=False)
        assert down.returncode == 1  # cannot tell whether the stored image is current
    finally:
        for registry in registries:
            registry.stop()
