"""Manifest, index and image-config models: media types, JSON-path errors, platform choice."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nexcage.errors import InvalidImage, PlatformNotFound
from nexcage.image import manifest as mf

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _manifest(media_type: str = mf.OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": mf.OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": mf.OCI_LAYER_GZIP, "digest": D2, "size": 20}],
    }
    doc.update(extra)
    return doc


def _index(*platforms: dict[str, Any] | None) -> dict[str, Any]:
    entries = []
    for plat in platforms:
        entry: dict[str, Any] = {"mediaType": mf.OCI_MANIFEST, "digest": D3, "size": 5}
        if plat is not None:
            entry["platform"] = plat
        entries.append(entry)
    return {"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": entries}


def test_manifest_parses_and_keeps_raw() -> None:
    doc = _manifest(annotations={"a": "b"}, unknownKey=[1])
    m = mf.parse_manifest(_bytes(doc), "m")
    assert m.media_type == mf.OCI_MANIFEST
    assert m.config == mf.Descriptor(mf.OCI_CONFIG, D1, 10)
    assert [(d.digest, d.size) for d in m.layers] == [(D2, 20)]
    assert m.annotations == {"a": "b"}
    assert m.raw["unknownKey"] == [1]  # unknown keys kept, never re-serialised
    mf.check_runnable(m, "m")


def test_docker_schema2_and_missing_media_type() -> None:
    docker = _manifest(mf.DOCKER_MANIFEST)
    docker["config"]["mediaType"] = mf.DOCKER_CONFIG
    docker["layers"][0]["mediaType"] = mf.DOCKER_LAYER_GZIP
    m = mf.parse_manifest(_bytes(docker), "d")
    mf.check_runnable(m, "d")
    assert m.media_type == mf.DOCKER_MANIFEST
    bare = _manifest()
    del bare["mediaType"]  # optional in OCI: Content-Type or the shape decides
    assert isinstance(mf.parse_document(_bytes(bare), "b"), mf.Manifest)
    assert mf.parse_document(_bytes(bare), "b", mf.DOCKER_MANIFEST).media_type == (
        mf.DOCKER_MANIFEST
    )


def test_manifest_errors_have_json_paths() -> None:
    doc = _manifest(schemaVersion=1)
    doc["layers"] = [{"mediaType": mf.OCI_LAYER, "digest": "md5:x", "size": -1}, "nope"]
    doc["config"] = {"digest": D1}
    with pytest.raises(InvalidImage) as info:
        mf.parse_manifest(_bytes(doc), "manifest X")
    paths = {v.path for v in info.value.violations}
    assert paths == {
        "schemaVersion", "config.mediaType", "config.size", "layers[0].digest",
        "layers[0].size", "layers[1]",
    }  # fmt: skip
    assert str(info.value).startswith("manifest X: 6 problem(s)")


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"\xff"])
def test_not_json(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        mf.parse_document(data, "x")


def test_schema1_refused() -> None:
    with pytest.raises(InvalidImage, match="schema 1"):
        mf.parse_document(_bytes({"schemaVersion": 1, "name": "x", "fsLayers": []}), "x")


def test_not_runnable() -> None:
    doc = _manifest()
    doc["config"]["mediaType"] = "application/vnd.example.artifact+json"
    doc["layers"][0]["mediaType"] = "application/x-helm"
    with pytest.raises(InvalidImage) as info:
        mf.check_runnable(mf.parse_manifest(_bytes(doc), "a"), "a")
    assert {v.path for v in info.value.violations} == {"config.mediaType", "layers[0].mediaType"}


def test_index_and_platform_selection() -> None:
    doc = _index(
        {"os": "unknown", "architecture": "unknown"},
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "linux", "architecture": "arm", "variant": "v6"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        None,
    )
    doc["manifests"][2]["digest"] = D1
    doc["manifests"][4]["digest"] = D2
    index = mf.parse_document(_bytes(doc), "i")
    assert isinstance(index, mf.Index)
    pick = mf.select_platform
    assert pick(index, mf.Platform("linux", "amd64"), "i") is index.manifests[1]
    assert pick(index, mf.Platform("linux", "arm64"), "i").digest == D1
    assert pick(index, mf.parse_platform("linux/arm64/v8"), "i").digest == D1
    assert pick(index, mf.parse_platform("linux/arm/v7"), "i").digest == D2
    with pytest.raises(PlatformNotFound) as info:
        pick(index, mf.parse_platform("linux/s390x"), "reg/x:1")
    assert info.value.available == ["linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/arm/v7"]
    assert "linux/s390x" in str(info.value) and "linux/arm/v6" in str(info.value)


def test_arm64_without_variant_is_v8() -> None:
    index = mf.parse_index(_bytes(_index({"os": "linux", "architecture": "arm64"})), "i")
    assert mf.select_platform(index, mf.parse_platform("linux/arm64/v8"), "i").digest == D3
    with pytest.raises(PlatformNotFound):
        mf.select_platform(index, mf.parse_platform("linux/arm64/v9"), "i")


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "a/b/c/d", ""])
def test_bad_platform_text(text: str) -> None:
    with pytest.raises(InvalidImage, match="os/arch"):
        mf.parse_platform(text)


def test_host_platform() -> None:
    host = mf.host_platform()
    assert host.os == "linux" and host.architecture in {"amd64", "arm64", "arm", "ppc64le",
                                                         "s390x", "riscv64", "386"}  # fmt: skip


def _config(**conf: Any) -> dict[str, Any]:
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": conf,
        "rootfs": {"type": "layers", "diff_ids": [D1]},
    }


def test_config_valid() -> None:
    doc = _config(Env=["A=1", "B="], Cmd=None, Entrypoint=["/x"], Labels={"k": "v"}, User="1:2")
    assert mf.parse_config(_bytes(doc), "c", 1) == doc
    assert mf.diff_ids(doc) == [D1]
    assert str(mf.config_platform(doc)) == "linux/amd64"


def test_config_non_string_env_has_json_path() -> None:
    doc = _config(Env=["PATH=/bin", 42, {"x": 1}], Cmd="sh", Labels={"a": 1}, WorkingDir=7)
    with pytest.raises(InvalidImage) as info:
        mf.parse_config(_bytes(doc), "image config", 1)
    paths = {v.path: v.message for v in info.value.violations}
    assert paths["config.Env[1]"] == "must be a string, not number"
    assert paths["config.Env[2]"] == "must be a string, not object"
    assert set(paths) == {"config.Env[1]", "config.Env[2]", "config.Cmd", "config.Labels.a",
                          "config.WorkingDir"}  # fmt: skip


def test_config_structure_errors() -> None:
    doc = _config(Env=["NOEQUALS"])
    doc["rootfs"] = {"type": "tar", "diff_ids": ["bad"]}
    del doc["os"]
    with pytest.raises(InvalidImage) as info:
        mf.parse_config(_bytes(doc), "c", 2)
    assert {v.path for v in info.value.violations} == {
        "os", "config.Env[0]", "rootfs.type", "rootfs.diff_ids[0]", "rootfs.diff_ids",
    }  # fmt: skip
