"""Registries for the image tests, all on 127.0.0.1 with free ports.

- `DockerRegistry`: the real ``docker-registry`` (distribution 2.8) started with a config file and a
  storage directory, optionally behind ``htpasswd`` basic auth or token auth; ended by its pid.
  Several instances may share one storage directory (push to the open one, pull through the
  authenticated ones).
- `TokenServer`: a bearer token server (the ``WWW-Authenticate: Bearer realm=…`` flow, CONTRACTS.md
  §3.8) issuing RS256 JWTs that docker-registry's ``auth: token`` verifies through the ``x5c``
  header against its ``rootcertbundle``. Keys and signatures come from the ``openssl`` command.
- `FakeRegistry`: a tiny distribution API server serving what a test puts in it, with knobs for
  the misbehaviour a real registry will not show (tampered manifests and blobs, truncated bodies,
  redirects to a storage host, 503s, dropped connections).
- Image builders (`tar_layer`, `build_image`, `build_index`) and `push` (the distribution upload
  API, no tool needed).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support import end_pid, require_tool, wait_for

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
EPOCH = 1577836800


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------------------
# Images


def tar_layer(files: Mapping[str, bytes | None]) -> bytes:
    """An uncompressed layer: ``path -> content`` (None: a directory), reproducible."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(raw: bytes, media_type: str) -> bytes:
    if media_type == MT_GZIP:
        return gzip.compress(raw, mtime=0)
    if media_type == MT_ZSTD:
        import zstandard

        return zstandard.ZstdCompressor().compress(raw)
    return raw


@dataclass
class Image:
    manifest: bytes
    media_type: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)  # layer blob digests, in order

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def build_image(
    layers: list[Mapping[str, bytes | None]],
    *,
    media_type: str = MT_GZIP,
    arch: str = "amd64",
    variant: str = "",
    env: list[Any] | None = None,
    config_extra: Mapping[str, Any] | None = None,
) -> Image:
    """An OCI image: one layer per mapping, compressed as ``media_type``."""
    blobs: dict[str, bytes] = {}
    descs, diff_ids = [], []
    for files in layers:
        raw = tar_layer(files)
        blob = compress(raw, media_type)
        blobs[sha256(blob)] = blob
        diff_ids.append(sha256(raw))
        descs.append({"mediaType": media_type, "digest": sha256(blob), "size": len(blob)})
    config: dict[str, Any] = {
        "created": "2020-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Env": env if env is not None else ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if variant:
        config["variant"] = variant
    config.update(config_extra or {})
    config_bytes = canonical(config)
    blobs[sha256(config_bytes)] = config_bytes
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {
                "mediaType": MT_OCI_CONFIG,
                "digest": sha256(config_bytes),
                "size": len(config_bytes),
            },
            "layers": descs,
        }
    )
    return Image(manifest, MT_OCI_MANIFEST, blobs, config, [d["digest"] for d in descs])


def build_index(images: list[tuple[Image, Mapping[str, str]]]) -> Image:
    """An OCI index over ``(image, platform)`` pairs; its blobs include the manifests."""
    blobs: dict[str, bytes] = {}
    entries = []
    for image, plat in images:
        blobs.update(image.blobs)
        blobs[image.digest] = image.manifest
        entries.append(
            {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.manifest),
                "platform": dict(plat),
            }
        )
    index = canonical({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries})
    return Image(index, MT_OCI_INDEX, blobs)


def _call(
    method: str, url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, Mapping[str, str]]:
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.headers


def push(base: str, repo: str, tag: str, image: Image) -> None:
    """Upload ``image`` (blobs, child manifests, then the manifest) with the distribution API."""
    manifests = {}
    for digest, data in image.blobs.items():
        if data.startswith(b"{") and b'"schemaVersion"' in data:
            manifests[digest] = data  # child manifests of an index go in by digest
            continue
        _, headers = _call("POST", f"{base}/v2/{repo}/blobs/uploads/")
        location = urllib.parse.urljoin(base, headers["Location"])
        sep = "&" if "?" in location else "?"
        _call("PUT", f"{location}{sep}digest={digest}", data,
              {"Content-Type": "application/octet-stream"})  # fmt: skip
    for digest, data in manifests.items():
        media_type = json.loads(data)["mediaType"]
        _call("PUT", f"{base}/v2/{repo}/manifests/{digest}", data, {"Content-Type": media_type})
    _call("PUT", f"{base}/v2/{repo}/manifests/{tag}", image.manifest,
          {"Content-Type": image.media_type})  # fmt: skip


# ------------------------------------------------------------------------------------------
# docker-registry


@dataclass
class DockerRegistry:
    pid: int
    port: int
    log: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        end_pid(self.pid)


def start_registry(workdir: Path, storage: Path, auth: Mapping[str, Any] | None = None
                   ) -> DockerRegistry:  # fmt: skip
    """Start docker-registry on a free port; ``auth`` is its config's ``auth:`` mapping."""
    binary = require_tool("docker-registry")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "nexcage-tests"},
    }
    if auth:
        config["auth"] = dict(auth)
    path = workdir / f"registry-{port}.json"  # YAML is a superset of JSON
    path.write_text(json.dumps(config))
    log = workdir / f"registry-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "serve", str(path)], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL)  # fmt: skip
    registry = DockerRegistry(proc.pid, port, log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            _call("GET", registry.url + "/v2/")
            return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except OSError:
            return False

    try:
        wait_for(ready, timeout=20, what=f"docker-registry on port {port}")
    except BaseException:
        registry.stop()
        raise
    return registry


# ------------------------------------------------------------------------------------------
# Token server


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """``GET /token?service=…&scope=repository:NAME:pull[,push]`` with HTTP Basic credentials
    checked against ``users``; answers ``{"token", "access_token", "expires_in"}`` or 401."""

    def __init__(self, workdir: Path, users: Mapping[str, str], *, service: str, issuer: str):
        require_tool("openssl")
        self.users = dict(users)
        self.service = service
        self.issuer = issuer
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        self.requests: list[dict[str, Any]] = []
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=nexcage-test-token", "-keyout", str(self.key), "-out", str(self.cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True, timeout=30).stdout  # fmt: skip
        self.x5c = base64.b64encode(der).decode()
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.cert)}}  # fmt: skip

    def sign(self, claims: Mapping[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = f"{_b64url(canonical(header))}.{_b64url(canonical(claims))}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True,
                                   capture_output=True, timeout=30).stdout  # fmt: skip
        return f"{signing_input}.{_b64url(signature)}"

    def _grant(self, query: Mapping[str, list[str]], authorization: str) -> tuple[int, bytes]:
        user = None
        if authorization.startswith("Basic "):
            name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if self.users.get(name) != password:
                return 401, b'{"details":"wrong credentials"}'
            user = name
        if user is None:
            return 401, b'{"details":"authentication required"}'
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        token = self.sign({"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + 300,
                           "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                           "access": access})  # fmt: skip
        return 200, canonical({"token": token, "access_token": token, "expires_in": 300})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parsed = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(parsed.query)
                auth = self.headers.get("Authorization", "")
                server.requests.append({"path": parsed.path, "query": query, "basic": bool(auth)})
                status, body = server._grant(query, auth)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------------
# A fake registry for the misbehaviour tests


@dataclass
class Served:
    data: bytes
    media_type: str = "application/octet-stream"
    digest_header: str | None = None  # Docker-Content-Digest to claim (default: the true one)


class FakeRegistry:
    """Serves ``manifests[repo_ref]`` and ``blobs[digest]``; every request is recorded.

    Knobs: ``truncate[digest] = n`` ends every body at offset n of the blob (with the full
    Content-Length) and closes; ``drop_once[digest] = n`` does that once, then serves normally
    (honouring ``Range``); ``fail_first[path_suffix] = k`` answers 503 k times first;
    ``redirect_to`` (another FakeRegistry) answers blob GETs with 307 to its ``/storage/``;
    ``basic = (user, password)`` demands HTTP Basic auth on /v2/ paths.
    """

    def __init__(self) -> None:
        self.manifests: dict[str, Served] = {}
        self.blobs: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.drop_once: dict[str, int] = {}
        self.fail_first: dict[str, int] = {}
        self.redirect_to: FakeRegistry | None = None
        self.basic: tuple[str, str] | None = None
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, repo: str, tag: str, image: Image) -> None:
        self.blobs.update(image.blobs)
        for digest, data in image.blobs.items():
            if data.startswith(b"{") and b'"schemaVersion"' in data:
                self.manifests[f"{repo}@{digest}"] = Served(data, json.loads(data)["mediaType"])
        self.manifests[f"{repo}:{tag}"] = Served(image.manifest, image.media_type)
        self.manifests[f"{repo}@{image.digest}"] = Served(image.manifest, image.media_type)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _reply(self, status: int, body: bytes = b"", headers: Mapping[str, str] = {},
                       head: bool = False) -> None:  # fmt: skip
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _serve(self, head: bool) -> None:
                path = urllib.parse.urlparse(self.path).path
                fake.requests.append((self.command, path, dict(self.headers.items())))
                for suffix, count in list(fake.fail_first.items()):
                    if path.endswith(suffix) and count > 0:
                        fake.fail_first[suffix] = count - 1
                        return self._reply(503, b'{"errors":[{"code":"UNAVAILABLE"}]}')
                if path.startswith("/storage/"):
                    return self._blob(path.rsplit("/", 1)[1], head)
                if fake.basic is not None and path.startswith("/v2/"):
                    expected = "Basic " + base64.b64encode(":".join(fake.basic).encode()).decode()
                    if self.headers.get("Authorization") != expected:
                        return self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                                           {"WWW-Authenticate": 'Basic realm="fake"'})  # fmt: skip
                if path in ("/v2/", "/v2"):
                    return self._reply(200, b"{}", head=head)
                repo, kind, ref = self._split(path)
                if kind == "manifests":
                    key = f"{repo}@{ref}" if ref.startswith("sha256:") else f"{repo}:{ref}"
                    served = fake.manifests.get(key)
                    if served is None:
                        return self._reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                    digest = served.digest_header or sha256(served.data)
                    return self._reply(200, served.data, {
                        "Content-Type": served.media_type, "Docker-Content-Digest": digest,
                        "Content-Length": str(len(served.data))}, head)  # fmt: skip
                if kind == "blobs":
                    if fake.redirect_to is not None and not head:
                        target = f"http://{fake.redirect_to.host}/storage/{ref}"
                        return self._reply(307, b"", {"Location": target})
                    return self._blob(ref, head)
                return self._reply(404)

            @staticmethod
            def _split(path: str) -> tuple[str, str, str]:
                rest = path[len("/v2/") :]
                for kind in ("manifests", "blobs"):
                    marker = f"/{kind}/"
                    if marker in rest:
                        repo, ref = rest.rsplit(marker, 1)
                        return repo, kind, ref
                return "", "", ""

            def _blob(self, digest: str, head: bool) -> None:
                data = fake.blobs.get(digest)
                if data is None:
                    return self._reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
                start = 0
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                body = data[start:]
                headers = {"Content-Length": str(len(body)),
                           "Content-Type": "application/octet-stream"}  # fmt: skip
                status = 200
                if start:
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                cut = fake.truncate.get(digest)
                if cut is not None:
                    cut = max(cut - start, 0)  # the blob ends at that offset, whatever the Range
                elif digest in fake.drop_once:
                    cut = fake.drop_once.pop(digest)
                if cut is not None and not head:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                return self._reply(status, body, headers, head)

        return Handler
