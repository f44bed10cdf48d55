"""``nexcage [--runtime NAME] features``: each backend's capabilities, and the lxc backend's
narrower document (what its translation refuses is not listed). Pure."""

from __future__ import annotations

import pytest

from nexcage.backends.translate import lxc_config
from nexcage.errors import BackendNotFound
from nexcage.ops import features


def test_every_backend_reports_its_capabilities() -> None:
    notes = features.document()["annotations"]
    assert notes["org.nexcage.capabilities.lxc"] == (
        "console-socket,created-state,exec,pause,preserve-fds,ps,update"
    )
    assert "created-state" in notes["org.nexcage.capabilities.crun"]
    assert "org.nexcage.backend" not in notes


def test_lxc_document_lists_only_what_lxc_honours() -> None:
    base = features.document()
    doc = features.document("lxc")
    assert doc["annotations"]["org.nexcage.backend"] == "lxc"
    assert doc["hooks"] == [] and base["hooks"]
    assert (
        set(doc["mountOptions"]) == set(base["mountOptions"]) - lxc_config.UNSUPPORTED_MOUNT_OPTIONS
    )
    assert "rbind" in doc["mountOptions"] and "rro" not in doc["mountOptions"]
    linux = doc["linux"]
    assert set(linux["namespaces"]) == set(base["linux"]["namespaces"])
    assert linux["seccomp"] == {"enabled": False} and linux["cgroup"]["systemd"] is False
    assert linux["mountExtensions"]["idmap"]["enabled"] is False
    assert linux["capabilities"] == base["linux"]["capabilities"]
    assert features.document("crun")["hooks"] == base["hooks"]


def test_unknown_runtime() -> None:
    with pytest.raises(BackendNotFound, match="unknown runtime backend 'foo'"):
        features.document("foo")
