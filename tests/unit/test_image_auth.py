"""Registry credentials (auth files, --creds) and WWW-Authenticate challenge parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from nexcage.errors import UsageError
from nexcage.image.auth import Credentials, find_credentials, parse_challenges, parse_creds


def _auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_challenges() -> None:
    [bearer] = parse_challenges(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull",error="insufficient_scope"'
    )
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token", "service": "registry.example",
        "scope": "repository:a/b:pull", "error": "insufficient_scope",
    }  # fmt: skip
    [basic] = parse_challenges('Basic realm="Registry Realm"')
    assert basic.scheme == "basic" and basic.params == {"realm": "Registry Realm"}
    assert parse_challenges('Basic realm=x, charset="UTF-8"')[0].params["charset"] == "UTF-8"
    assert parse_challenges("") == []


def test_creds_flag() -> None:
    assert parse_creds("u:p:with:colons") == Credentials("u", "p:with:colons")
    assert "secret" not in repr(parse_creds("u:secret"))
    for bad in ("user", ":pass", ""):
        with pytest.raises(UsageError):
            parse_creds(bad)


def test_auth_file_precedence_and_keys(tmp_path: Path) -> None:
    podman = tmp_path / "auth.json"
    podman.write_text(json.dumps({"auths": {
        "reg.example:5000/team/app": _auth("app-user", "1"),
        "reg.example:5000": _auth("reg-user", "2"),
    }}))  # fmt: skip
    docker = tmp_path / "docker" / "config.json"
    docker.parent.mkdir()
    docker.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": _auth("hub-user", "3"),
        "other.example": {"username": "plain", "password": "4"},
    }}))  # fmt: skip
    env = {"REGISTRY_AUTH_FILE": str(podman), "DOCKER_CONFIG": str(docker.parent)}
    find = find_credentials
    assert find("reg.example:5000", "team/app", env) == Credentials("app-user", "1")
    assert find("reg.example:5000", "team/other", env) == Credentials("reg-user", "2")
    assert find("docker.io", "library/alpine", env) == Credentials("hub-user", "3")
    assert find("other.example", "x", env) == Credentials("plain", "4")
    assert find("nowhere.example", "x", env) is None
    xdg = tmp_path / "run"
    (xdg / "containers").mkdir(parents=True)
    (xdg / "containers" / "auth.json").write_text(
        json.dumps({"auths": {"nowhere.example": _auth("xdg", "5")}})
    )
    env["XDG_RUNTIME_DIR"] = str(xdg)
    assert find("nowhere.example", "x", env) == Credentials("xdg", "5")


def test_broken_auth_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "auth.json"
    bad.write_text("{nope")
    with pytest.raises(UsageError, match=str(bad)):
        find_credentials("r", "x", {"REGISTRY_AUTH_FILE": str(bad)})
    bad.write_text(json.dumps({"auths": {"r": {"auth": "!!!"}}}))
    with pytest.raises(UsageError, match="base64"):
        find_credentials("r", "x", {"REGISTRY_AUTH_FILE": str(bad)})
