"""Names the storage drivers turn into paths and ZFS dataset names, and storage init's sizes."""

from __future__ import annotations

import pytest

from nexcage.errors import StorageError
from nexcage.storage import names
from nexcage.storage.init import parse_size

HEX = "0123456789abcdef" * 4


def test_chain_ids() -> None:
    assert names.chain_hex("x", f"sha256:{HEX}") == HEX
    assert names.chain_from_hex(HEX) == f"sha256:{HEX}"
    assert names.chain_from_hex(".tmp-" + HEX) is None


@pytest.mark.parametrize(
    "bad", ["", HEX, f"sha512:{HEX}", f"sha256:{HEX.upper()}", f"sha256:{HEX}0", "sha256:../x"]
)
def test_bad_chain_ids(bad: str) -> None:
    with pytest.raises(StorageError, match="invalid chain id"):
        names.chain_hex("overlay", bad)


@pytest.mark.parametrize("good", ["c1", "a+b", "A_b.c-d", "x" * 255])
def test_container_ids(good: str) -> None:
    assert names.check_container("zfs", good) == good


@pytest.mark.parametrize("bad", ["", ".", "..", ".hidden", "a/b", "a b", "x" * 256, "a:b"])
def test_bad_container_ids(bad: str) -> None:
    with pytest.raises(StorageError, match="invalid container id"):
        names.check_container("dir", bad)


def test_zfs_components_round_trip() -> None:
    assert names.zfs_component("a+b") == "a:b"
    assert names.from_zfs_component("a:b") == "a+b"


@pytest.mark.parametrize("bad", ["", ".x", "-x", "a/b", "a@b", "a b", "x" * 201])
def test_bad_snapshot_names(bad: str) -> None:
    with pytest.raises(StorageError, match="invalid snapshot name") as info:
        names.check_snapshot(bad, "btrfs")
    assert info.value.driver == "btrfs"


def test_rfc3339() -> None:
    assert names.rfc3339(0) == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("text", "size"),
    [("20G", 20 << 30), ("512M", 512 << 20), ("1T", 1 << 40), ("200MiB", 200 << 20),
     ("134217728", 128 << 20), ("1gb", 1 << 30)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert parse_size("btrfs", text) == size


@pytest.mark.parametrize("text", ["", "G", "1.5G", "-1G", "twenty", "20X"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(StorageError, match="invalid size"):
        parse_size("zfs", text)


def test_parse_size_minimum() -> None:
    with pytest.raises(StorageError, match="too small"):
        parse_size("btrfs", "64M")
    assert parse_size("zfs", "64M") == 64 << 20
