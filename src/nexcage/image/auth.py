"""Registry credentials and the ``WWW-Authenticate`` challenge flow (CONTRACTS.md §3.8).

Credentials, first found wins (containers-auth.json(5), then Docker's file):

1. ``--creds USER:PASS``;
2. ``$REGISTRY_AUTH_FILE``;
3. ``${XDG_RUNTIME_DIR}/containers/auth.json``;
4. ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``.

In each file ``auths`` keys may name ``registry/namespace/repo`` (most specific wins), the
registry, or Docker's spellings (``https://index.docker.io/v1/``); a value's ``auth`` is
``base64(user:pass)``. Credential helpers (``credHelpers``, ``credsStore``) are not run.

Challenges: ``Bearer realm=…,service=…,scope=…`` ⇒ ``GET realm?service=…&scope=…`` (with
``account=USER`` and HTTP Basic credentials when there are some); the answer's ``token`` or
``access_token`` is cached per scope for ``expires_in`` seconds (at least 60). ``Basic`` ⇒ the
credentials go to the registry itself.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from nexcage.errors import RegistryError, Unauthorized, UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import urllib3

MIN_TOKEN_SECONDS = 60
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:  # never show the password in a traceback or log
        return f"Credentials({self.username!r}, <redacted>)"


def parse_creds(text: str) -> Credentials:
    """``--creds USER[:PASS]`` (podman's spelling)."""
    user, sep, password = text.partition(":")
    if not user or not sep:
        raise UsageError("--creds: expected USER:PASSWORD")
    return Credentials(user, password)


def auth_files(environ: Mapping[str, str]) -> list[str]:
    files = []
    if environ.get("REGISTRY_AUTH_FILE"):
        files.append(environ["REGISTRY_AUTH_FILE"])
    if environ.get("XDG_RUNTIME_DIR"):
        files.append(os.path.join(environ["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    docker = environ.get("DOCKER_CONFIG") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".docker"
    )
    files.append(os.path.join(docker, "config.json"))
    return files


def _normalise_key(key: str) -> str:
    for prefix in ("https://", "http://"):
        key = key.removeprefix(prefix)
    key = key.rstrip("/")
    for suffix in ("/v1", "/v2"):
        key = key.removesuffix(suffix)
    if key in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return key


def _decode_auth(entry: object, path: str, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, sep, password = "", "", ""
        if not (sep and user):
            raise UsageError(f"{path}: auths.{key}.auth is not base64 of USER:PASSWORD")
        return Credentials(user, password)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret)
    return None


def find_credentials(
    registry: str, repository: str, environ: Mapping[str, str]
) -> Credentials | None:
    """Credentials for ``registry/repository`` from the auth files, most specific key first."""
    wanted = [f"{registry}/{repository}"]
    parts = repository.split("/")
    wanted += [f"{registry}/{'/'.join(parts[:i])}" for i in range(len(parts) - 1, 0, -1)]
    wanted.append(registry)
    for path in auth_files(environ):
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read registry credentials from {path}: {exc}") from None
        auths = doc.get("auths") if isinstance(doc, dict) else None
        if not isinstance(auths, dict):
            continue
        by_key = {_normalise_key(k): (k, v) for k, v in auths.items()}
        for key in wanted:
            if key in by_key:
                found = _decode_auth(by_key[key][1], path, by_key[key][0])
                if found is not None:
                    return found
    return None


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "bearer" or "basic"
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """``WWW-Authenticate`` values: ``Bearer realm="…",service="…"`` (one or more)."""
    found: list[Challenge] = []
    text = header.strip()
    while text:
        scheme, _, text = text.partition(" ")
        params: dict[str, str] = {}
        while True:
            m = _PARAM.match(text)
            if not m or not m.group(0).strip():
                break
            value = m.group(2) if m.group(2) is not None else m.group(3)
            params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
            text = text[m.end() :]
        found.append(Challenge(scheme.strip().lower(), params))
        text = text.strip().lstrip(",").strip()
    return [c for c in found if c.scheme]


class Authenticator:
    """Answers a registry's challenges for one registry; thread-safe (parallel blob fetches)."""

    def __init__(
        self,
        registry: str,
        repository: str,
        http: urllib3.PoolManager,
        credentials: Credentials | None,
    ) -> None:
        self.registry = registry
        self.repository = repository
        self.credentials = credentials
        self._http = http
        self._lock = threading.Lock()
        self._header: str | None = None
        self._tokens: dict[str, tuple[str, float]] = {}

    def header(self) -> str | None:
        """The ``Authorization`` value to send now (None: anonymous until challenged)."""
        with self._lock:
            return self._header

    def answer(self, www_authenticate: str, sent: str | None) -> str:
        """The ``Authorization`` value that answers a 401's challenge, fetching a token if
        needed. ``sent`` is what the refused request carried: the same answer again means the
        registry refused it, which is an error, not a loop."""
        challenges = parse_challenges(www_authenticate)
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            value = "Bearer " + self._token(bearer, force=sent is not None)
        elif any(c.scheme == "basic" for c in challenges):
            if self.credentials is None:
                raise Unauthorized(self.registry, self.repository, "authentication required")
            value = self.credentials.basic()
        else:
            raise Unauthorized(
                self.registry,
                self.repository,
                f"unsupported authentication challenge {www_authenticate!r}",
            )
        if value == sent:
            why = "credentials rejected" if self.credentials else "authentication required"
            raise Unauthorized(self.registry, self.repository, why)
        with self._lock:
            self._header = value
        return value

    def _token(self, challenge: Challenge, *, force: bool) -> str:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise Unauthorized(self.registry, self.repository, f"bad token realm {realm!r}")
        scope = challenge.params.get("scope") or f"repository:{self.repository}:pull"
        with self._lock:
            cached = self._tokens.get(scope)
        if cached and cached[1] > time.monotonic() and not force:
            return cached[0]
        query: dict[str, str] = {"scope": scope}
        if challenge.params.get("service"):
            query["service"] = challenge.params["service"]
        headers = {}
        if self.credentials is not None:
            query["account"] = self.credentials.username
            headers["Authorization"] = self.credentials.basic()
        sep = "&" if "?" in realm else "?"
        try:
            resp = self._http.request(
                "GET", realm + sep + urlencode(query), headers=headers, redirect=True
            )
        except Exception as exc:
            raise RegistryError(
                self.registry, self.repository, f"token server {realm} unreachable: {exc}"
            ) from None
        if resp.status in (401, 403):
            why = "credentials rejected by the token server" if self.credentials else "denied"
            raise Unauthorized(self.registry, self.repository, why, status=resp.status)
        if resp.status != 200:
            raise RegistryError(
                self.registry,
                self.repository,
                f"token server {realm} answered HTTP {resp.status}",
                status=resp.status,
            )
        return self._keep(scope, resp.data, realm)

    def _keep(self, scope: str, body: bytes, realm: str) -> str:
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
            expires = doc.get("expires_in") or MIN_TOKEN_SECONDS
        except (ValueError, AttributeError):
            token, expires = None, 0
        if not isinstance(token, str) or not token:
            raise RegistryError(
                self.registry, self.repository, f"token server {realm} sent no token"
            )
        seconds = max(int(expires) if isinstance(expires, int | float) else 0, MIN_TOKEN_SECONDS)
        with self._lock:
            # Renew a little early: a token that expires in flight costs a 401 round trip.
            self._tokens[scope] = (token, time.monotonic() + seconds - 10)
        return token
