"""A client for the OCI distribution API: manifests and blobs of one repository.

HTTP library: **urllib3 2.x**. It streams response bodies (``preload_content=False``) so a layer
goes from the socket through ``hashlib`` into the store 1 MiB at a time and never sits in memory;
its ``PoolManager`` keeps connections alive and is thread-safe, which the bounded pool of blob
downloads shares; ``Retry`` gives bounded retries with exponential backoff that honour
``Retry-After`` (429/5xx); it follows blob redirects (307 to object storage) and drops the
``Authorization`` header when a redirect leaves the registry's host:port (CONTRACTS.md §3.8); it
verifies certificates against the system store by default. ``requests`` would add four packages
and its own overhead on every chunk, ``httpx`` more, and the standard library has neither pooling
across threads nor retries. urllib3 is also the one HTTP dependency nexcage already has.

Transport: HTTPS with certificate verification, except for registries named insecure
(``[registries] insecure`` or ``--tls-verify=false``), which are tried over HTTPS without
verification and then over plain HTTP, as podman does.

Every byte is verified: a manifest against the digest asked for (or the registry's
``Docker-Content-Digest``), a blob by size and sha256 while it streams (`ImageStore.writer`). A
connection lost mid-blob resumes from the partial file with ``Range``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util.retry import Retry

from nexcage import log
from nexcage.errors import ContentMismatch, ManifestUnknown, RegistryError, Unauthorized
from nexcage.image import manifest as mf
from nexcage.image.auth import Authenticator, Credentials

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nexcage.image.progress import Progress
    from nexcage.image.reference import Reference
    from nexcage.image.store import ImageStore

CHUNK = 1 << 20
BLOB_WORKERS = 3
BLOB_ATTEMPTS = 4  # per blob, each resuming where the last one stopped
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def _retry(*, probe: bool = False) -> Retry:
    """Bounded retries with exponential backoff. ``probe``: the first request to an insecure
    registry, where a connection or read error means "not plain HTTP", not "try again"."""
    return Retry(
        total=5,
        connect=0 if probe else 3,
        read=0 if probe else 2,
        other=0,  # TLS failures (a bad certificate) do not get better by retrying
        status=3,
        redirect=5,
        backoff_factor=0.2,
        backoff_max=5.0,
        status_forcelist=_RETRY_STATUS,
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )


def _error_text(body: bytes) -> tuple[str, str]:
    """(code, message) from a distribution error body ``{"errors":[{"code","message"}]}``."""
    try:
        import json

        first = json.loads(body)["errors"][0]
        return str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "", body[:200].decode("utf-8", "replace").strip()


def _reason(exc: BaseException) -> str:
    """The innermost cause of a urllib3 error, which is the readable one."""
    reason: object = getattr(exc, "reason", None)
    while isinstance(reason, BaseException) and getattr(reason, "reason", None) is not None:
        reason = getattr(reason, "reason", None)
    return str(reason or exc)


class RegistryClient:
    """Manifests and blobs of ``ref``'s repository. Thread-safe once constructed."""

    def __init__(
        self,
        ref: Reference,
        *,
        insecure: bool = False,
        credentials: Credentials | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.ref = ref
        self.host = ref.api_host
        self.insecure = insecure
        self._scheme: str | None = None if insecure else "https"
        self._scheme_lock = threading.Lock()
        self.http = urllib3.PoolManager(
            num_pools=4,
            maxsize=BLOB_WORKERS + 1,
            cert_reqs="CERT_NONE" if insecure else "CERT_REQUIRED",
            retries=_retry(),
            timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
            headers={"User-Agent": "nexcage"},
        )
        if insecure:
            # The user asked for no verification; urllib3 would warn on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.auth = Authenticator(ref.registry, ref.repository, self.http, credentials)

    def _fail(self, message: str, **kw: Any) -> RegistryError:
        return RegistryError(self.ref.registry, self.ref.repository, message, **kw)

    def _send(
        self, method: str, path: str, headers: dict[str, str], stream: bool
    ) -> urllib3.BaseHTTPResponse:
        if self._scheme is None:
            with self._scheme_lock:  # the first call only: blob threads start after manifests
                if self._scheme is None:
                    resp = self._try_plain(method, path, headers, stream)
                    if resp is not None:
                        return resp
        url = f"{self._scheme}://{self.host}{path}"
        try:
            return self.http.request(
                method, url, headers=headers, preload_content=not stream, redirect=True
            )
        except HTTPError as exc:
            reason = _reason(exc)
            hint = None
            if "SSL" in reason and not self.insecure:
                hint = (
                    f"if {self.host} serves plain HTTP or a self-signed certificate, name it in "
                    "[registries] insecure or pass --tls-verify=false"
                )
            raise self._fail(f"{method} {url}: {reason}", hint=hint) from None

    def _try_plain(
        self, method: str, path: str, headers: dict[str, str], stream: bool
    ) -> urllib3.BaseHTTPResponse | None:
        """An insecure registry: plain HTTP if it answers HTTP, else HTTPS without verification.

        HTTP is tried first because a TLS server answers it at once (Go: 400 "Client sent an
        HTTP request to an HTTPS server"), whereas a plain server may wait for the rest of a TLS
        ClientHello it cannot parse. The probe is the real request, so it costs no round trip.
        """
        try:
            resp = self.http.request(
                method,
                f"http://{self.host}{path}",
                headers=headers,
                preload_content=not stream,
                redirect=True,
                retries=_retry(probe=True),
            )
        except HTTPError:
            self._scheme = "https"
            return None
        if resp.status == 400:
            resp.drain_conn()
            self._scheme = "https"
            return None
        self._scheme = "http"
        return resp

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """One API call with auth: a 401 is answered (at most twice) and the call repeated.
        Returns the final response, whatever its status (the caller interprets it)."""
        sent = self.auth.header()
        for _ in range(3):
            hdrs = dict(headers or {})
            if sent:
                hdrs["Authorization"] = sent
            resp = self._send(method, path, hdrs, stream)
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.drain_conn()
            if not challenge:
                raise Unauthorized(self.ref.registry, self.ref.repository, "HTTP 401")
            sent = self.auth.answer(challenge, sent)
        raise Unauthorized(self.ref.registry, self.ref.repository, "credentials rejected")

    def _check_status(self, resp: urllib3.BaseHTTPResponse, what: str, lookup: str) -> None:
        if resp.status in (200, 206):
            return
        code, message = _error_text(resp.read(65536) or b"")
        if resp.status == 404 and what == "manifest":
            raise ManifestUnknown(self.ref.registry, self.ref.repository, lookup, code=code)
        if resp.status == 403:
            raise Unauthorized(
                self.ref.registry, self.ref.repository, message or "denied", status=403
            )
        detail = f": {code} {message}".rstrip() if code or message else ""
        raise self._fail(
            f"{what} {lookup}: HTTP {resp.status}{detail}", status=resp.status, code=code
        )

    # -- manifests ----------------------------------------------------------------------------

    def head_manifest(self, lookup: str) -> str | None:
        """The digest the registry reports for a tag or digest (None if it does not say)."""
        path = f"/v2/{self.ref.repository}/manifests/{lookup}"
        resp = self.request("HEAD", path, {"Accept": ", ".join(mf.ACCEPT)})
        self._check_status(resp, "manifest", lookup)
        digest = resp.headers.get("Docker-Content-Digest", "")
        return digest if digest.startswith("sha256:") else None

    def get_manifest(self, lookup: str, *, size: int | None = None) -> tuple[bytes, str, str]:
        """(bytes, content type, digest) of a manifest or index, verified: against ``lookup``
        when it is a digest (and ``size`` when known), else against ``Docker-Content-Digest``."""
        path = f"/v2/{self.ref.repository}/manifests/{lookup}"
        resp = self.request("GET", path, {"Accept": ", ".join(mf.ACCEPT)}, stream=True)
        try:
            self._check_status(resp, "manifest", lookup)
            data = resp.read(mf.MAX_MANIFEST_BYTES + 1)
        finally:
            resp.release_conn()
        what = f"{self.ref.name} manifest {lookup}"
        if len(data) > mf.MAX_MANIFEST_BYTES:
            raise ContentMismatch(what, "size", f"at most {mf.MAX_MANIFEST_BYTES}", str(len(data)))
        if size is not None and len(data) != size:
            raise ContentMismatch(what, "size", str(size), str(len(data)))
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        claimed = resp.headers.get("Docker-Content-Digest", "")
        expected = lookup if lookup.startswith("sha256:") else claimed
        if expected.startswith("sha256:") and actual != expected:
            raise ContentMismatch(what, "digest", expected, actual)
        return data, resp.headers.get("Content-Type", ""), actual

    # -- blobs --------------------------------------------------------------------------------

    def fetch_blob(
        self, desc: mf.Descriptor, store: ImageStore, progress: Progress | None = None
    ) -> None:
        """Stream one blob into the store, verified; resume after a lost connection."""
        attempt = 0
        while True:
            attempt += 1
            try:
                self._fetch_once(desc, store, progress)
                return
            except (HTTPError, OSError) as exc:
                if attempt >= BLOB_ATTEMPTS:
                    raise self._fail(
                        f"blob {desc.digest}: download failed {attempt} times, the last: "
                        f"{_reason(exc)} (a partial download is kept for the next pull)"
                    ) from None
                log.debug(f"blob {desc.digest}: {_reason(exc)}; resuming (attempt {attempt + 1})")
                time.sleep(min(0.1 * 2**attempt, 5.0))

    def _fetch_once(
        self, desc: mf.Descriptor, store: ImageStore, progress: Progress | None
    ) -> None:
        with store.writer(desc.digest, desc.size) as w:
            if w.complete:
                if progress:
                    progress.advance(desc.digest, desc.size)
                return
            headers = {"Range": f"bytes={w.offset}-"} if w.offset else {}
            path = f"/v2/{self.ref.repository}/blobs/{desc.digest}"
            resp = self.request("GET", path, headers, stream=True)
            try:
                self._check_status(resp, "blob", desc.digest)
                if w.offset and resp.status != 206:
                    w.reset()  # the server ignored Range: start over
                if progress:
                    progress.advance(desc.digest, w.offset, absolute=True)
                for chunk in resp.stream(CHUNK, decode_content=False):
                    w.write(chunk)
                    if progress:
                        progress.advance(desc.digest, len(chunk))
            finally:
                resp.release_conn()
            w.commit()

    def get_blob_bytes(self, desc: mf.Descriptor, limit: int = mf.MAX_MANIFEST_BYTES) -> bytes:
        """A small blob (an image config) in memory, verified by size and digest."""
        if desc.size > limit:
            raise ContentMismatch(desc.digest, "size", f"at most {limit}", str(desc.size))
        resp = self.request("GET", f"/v2/{self.ref.repository}/blobs/{desc.digest}", stream=True)
        try:
            self._check_status(resp, "blob", desc.digest)
            data = resp.read(desc.size + 1)
        except HTTPError as exc:
            raise self._fail(f"blob {desc.digest}: {_reason(exc)}") from None
        finally:
            resp.release_conn()
        if len(data) != desc.size:
            raise ContentMismatch(desc.digest, "size", str(desc.size), str(len(data)))
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != desc.digest:
            raise ContentMismatch(desc.digest, "digest", desc.digest, actual)
        return data

    def fetch_blobs(
        self,
        descs: Sequence[mf.Descriptor],
        store: ImageStore,
        progress: Progress | None = None,
        workers: int = BLOB_WORKERS,
    ) -> None:
        """Fetch blobs in parallel (bounded). After a failure no new download starts; the first
        failure is raised once the running ones ended, so no thread outlives the call."""
        todo = [d for d in descs if not store.has_blob(d.digest)]
        if progress:
            for d in descs:
                progress.expect(d.digest, d.size)
                if d not in todo:
                    progress.advance(d.digest, d.size)
        if len(todo) <= 1 or workers <= 1:
            for d in todo:
                self.fetch_blob(d, store, progress)
            return
        with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            futures = [pool.submit(self.fetch_blob, d, store, progress) for d in todo]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()  # not started: pointless after a failure; running ones finish
        for future in futures:
            error = None if future.cancelled() else future.exception()
            if error is not None:
                raise error
