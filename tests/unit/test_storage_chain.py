"""Chain ids (OCI image spec, config.md "Layer ChainID") and the test-only crash hook."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest

from nexcage.storage import layers

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


def test_chain_ids_follow_the_spec() -> None:
    assert layers.chain_ids([]) == []
    assert layers.chain_ids([A]) == [A]  # ChainID(L0) = DiffID(L0)
    ab = "sha256:" + hashlib.sha256(f"{A} {B}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {C}".encode()).hexdigest()
    assert layers.chain_ids([A, B, C]) == [A, ab, abc]


def test_same_diff_on_other_parents_is_another_layer() -> None:
    assert layers.chain_ids([A, C])[1] != layers.chain_ids([B, C])[1]
    # ... and a shared base is the same layer in both images
    assert layers.chain_ids([A, B])[0] == layers.chain_ids([A, C])[0]


def test_hook_is_inert_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(layers.HOOK_ENV, raising=False)
    layers.hook("layer-applied")
    monkeypatch.setenv(layers.HOOK_ENV, "rootfs-created=kill")
    layers.hook("layer-applied")  # another point: nothing happens


def test_hook_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(layers.HOOK_ENV, "other=kill,layer-applied=sleep:0.2")
    started = time.monotonic()
    layers.hook("layer-applied")
    assert time.monotonic() - started >= 0.2


def test_hook_kills_with_sigkill() -> None:
    code = "from nexcage.storage import layers; layers.hook('rootfs-created'); print('alive')"
    env = {**os.environ, layers.HOOK_ENV: "rootfs-created=kill"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert proc.returncode == -9 and "alive" not in proc.stdout
