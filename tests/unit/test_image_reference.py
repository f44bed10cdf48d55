"""Image references: parsing, Docker Hub defaults, and clear errors for malformed ones."""

from __future__ import annotations

import pytest

from nexcage.errors import ExitCode, InvalidReference
from nexcage.image.reference import parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "full"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.20", "docker.io/library/alpine:3.20"),
        ("library/alpine", "docker.io/library/alpine:latest"),
        ("docker.io/alpine", "docker.io/library/alpine:latest"),
        ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3"),
        ("user/app:v1.2_rc-3", "docker.io/user/app:v1.2_rc-3"),
        ("ghcr.io/org/team/app:1", "ghcr.io/org/team/app:1"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b:tag"),
        ("[::1]:5000/app:x", "[::1]:5000/app:x"),
        (f"alpine@{D}", f"docker.io/library/alpine@{D}"),
        (f"quay.io/x/y:t@{D}", f"quay.io/x/y:t@{D}"),
        ("a__b/c.d-e---f:T", "docker.io/a__b/c.d-e---f:T"),
    ],
)
def test_normalised(text: str, full: str) -> None:
    assert str(parse(text)) == full


def test_fields() -> None:
    ref = parse("registry.example:8443/ns/app:v1")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "registry.example:8443", "ns/app", "v1", None,
    )  # fmt: skip
    assert ref.api_host == "registry.example:8443"
    assert ref.lookup == "v1"
    hub = parse(f"busybox@{D}")
    assert hub.api_host == "registry-1.docker.io"
    assert hub.tag is None and hub.lookup == D
    assert parse("x", default_tag=False).tag is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty reference"),
        ("Alpine", "must be lowercase"),
        ("docker.io/Library/alpine", "must be lowercase"),
        ("alpine:", "invalid tag"),
        ("alpine:-x", "invalid tag"),
        ("alpine:" + "x" * 129, "invalid tag"),
        ("alpine@sha256:abc", "64 lowercase hexadecimal"),
        ("alpine@sha256:" + "A" * 64, "64 lowercase hexadecimal"),
        ("alpine@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("alpine@", "invalid digest"),
        ("host:5000/", "empty repository name"),
        ("a//b", "empty path component"),
        ("a/-b", "invalid repository path component"),
        ("a b", "whitespace"),
        (" alpine", "whitespace"),
        ("https://ghcr.io/x", "no scheme"),
        ("host:99999/x", "invalid registry port"),
        ("ho_st.io/x", "invalid registry host"),
        ("x/" + "a" * 260, "longer than 255"),
    ],
)
def test_malformed(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse(text)
    assert reason in info.value.reason
    assert info.value.reference == text
    assert repr(text) in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE
