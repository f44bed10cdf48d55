"""One cheap ``HEAD`` of a manifest, for the "already stored?" check of a second pull.

A second ``image pull`` of an unchanged image should cost one manifest HEAD and well under
100 ms. Importing urllib3 alone takes longer than that on a small machine (``http.client``,
``email``, ``importlib.metadata``), so this asks the question over a bare socket: one request,
``Connection: close``, status line and headers only. Anything it does not understand (401
challenges, redirects, a digest it cannot read, any error) answers None and the caller takes the
full `RegistryClient` path, which handles auth, retries and TLS verification.

Used only for registries named insecure (plain HTTP, or HTTPS without verification): for the
others the full client's certificate checks are not worth duplicating here, and their network
latency dwarfs an import anyway.
"""

from __future__ import annotations

import socket

from nexcage.image.reference import is_sha256_digest

MAX_HEADER_BYTES = 64 << 10


def _split_host(host: str, default_port: int) -> tuple[str, int]:
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name, int(port) if port else default_port


def _head(
    host: str, path: str, accept: str, *, tls: bool, timeout: float
) -> tuple[int, dict[str, str]]:
    name, port = _split_host(host, 443 if tls else 80)
    request = (
        f"HEAD {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n"
        "User-Agent: nexcage\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    with socket.create_connection((name, port), timeout=timeout) as raw:
        sock: socket.socket = raw
        if tls:
            import ssl

            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # insecure registries only (module docstring)
            sock = context.wrap_socket(raw, server_hostname=name)
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            block = sock.recv(65536)
            if not block:
                break
            data += block
            if len(data) > MAX_HEADER_BYTES:
                raise ValueError("response headers too long")
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError("not an HTTP response")
    headers = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return int(parts[1]), headers


def manifest_digest(
    host: str, repository: str, lookup: str, accept: str, *, timeout: float = 10.0
) -> str | None:
    """The ``Docker-Content-Digest`` an insecure registry reports for ``lookup``, or None."""
    path = f"/v2/{repository}/manifests/{lookup}"
    for tls in (False, True):  # plain HTTP first, as RegistryClient does for insecure hosts
        try:
            status, headers = _head(host, path, accept, tls=tls, timeout=timeout)
        except (OSError, ValueError, UnicodeError):
            continue
        if status == 400 and not tls:
            continue  # an HTTPS server answering plain HTTP
        digest = headers.get("docker-content-digest", "")
        return digest if status == 200 and is_sha256_digest(digest) else None
    return None
