"""Image references: ``[registry[:port]/]repository[:tag][@digest]``.

The grammar is distribution's ``reference`` package (``reference/regexp.go``, ``normalize.go``):

- The first ``/``-separated component is a registry when it contains ``.`` or ``:``, is
  ``localhost``, or has an uppercase letter (so ``Foo/bar`` fails as a registry-less repository
  instead of being silently lowercased); otherwise the registry is ``docker.io``.
- Repository components: ``[a-z0-9]+`` joined by ``.``, ``_``, ``__`` or runs of ``-``; the whole
  name (registry included) at most 255 characters. Docker Hub names of one component get the
  ``library/`` prefix (CONTRACTS.md §3.8).
- Tag: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; ``latest`` when neither tag nor digest is given.
- Digest: ``algorithm:encoded``. Only ``sha256`` (64 lowercase hex) is accepted: the store keys
  blobs by it and a reference naming another algorithm could never be verified.
"""

from __future__ import annotations

import re

from nexcage.errors import InvalidReference

DOCKER_HUB = "docker.io"
# docker.io is an alias: the API lives at registry-1.docker.io (CONTRACTS.md §3.8).
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG = "latest"
NAME_MAX = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_HOST_PART = re.compile(r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\Z")
_IPV6 = re.compile(r"\[[0-9a-fA-F:]+\]\Z")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}\Z")
_DIGEST_GRAMMAR = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")


class Reference:
    """A parsed, normalised reference. ``str()`` gives the full form
    (``docker.io/library/alpine:latest``); ``tag`` is None for a digest-only reference."""

    __slots__ = ("digest", "registry", "repository", "tag")

    def __init__(self, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """host[:port] to send distribution API requests to."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def lookup(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest if given, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += ":" + self.tag
        if self.digest is not None:
            text += "@" + self.digest
        return text

    def __repr__(self) -> str:
        return f"Reference({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def is_sha256_digest(text: str) -> bool:
    return _SHA256.match(text) is not None


def check_digest(text: str, what: str) -> str:
    """``text`` if it is a ``sha256:<64 hex>`` digest, else InvalidReference naming ``what``."""
    if _SHA256.match(text):
        return text
    if _DIGEST_GRAMMAR.match(text):
        algorithm = text.split(":", 1)[0]
        if algorithm == "sha256":
            raise InvalidReference(what, "a sha256 digest is 64 lowercase hexadecimal characters")
        raise InvalidReference(what, f"unsupported digest algorithm {algorithm!r} (sha256 only)")
    raise InvalidReference(what, f"invalid digest {text!r} (expected sha256:<64 hex>)")


def _is_registry(component: str) -> bool:
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component != component.lower()
    )


def _check_registry(text: str, host: str) -> None:
    name, sep, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not sep:
        name, port = host, ""
    if sep and not (port.isdigit() and 0 < int(port) < 65536):
        raise InvalidReference(text, f"invalid registry port in {host!r}")
    if _IPV6.match(name):
        return
    parts = name.split(".")
    if not name or not all(_HOST_PART.match(p) for p in parts):
        raise InvalidReference(text, f"invalid registry host {host!r}")


def _split_tail(text: str, rest: str) -> tuple[str, str | None, str | None]:
    """(path, tag, digest) from ``path[:tag][@digest]``."""
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        check_digest(digest, text)
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReference(
                text, f"invalid tag {tag!r} (letters, digits, _ . -; at most 128 characters)"
            )
    return rest, tag, digest


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise ``text``. Raises InvalidReference with the reason.

    ``default_tag``: give ``latest`` to a reference with neither tag nor digest.
    """
    if not text:
        raise InvalidReference(text, "empty reference")
    if text != text.strip() or any(c.isspace() or ord(c) < 32 for c in text):
        raise InvalidReference(text, "contains whitespace or control characters")
    if "://" in text:
        raise InvalidReference(text, "a reference has no scheme (use host[:port]/repo)")
    registry = DOCKER_HUB
    first, slash, after = text.partition("/")
    # The registry part may hold a port (`host:5000/x`), which must not be read as a tag.
    if slash and _is_registry(first):
        _check_registry(text, first)
        registry = DOCKER_HUB if first in _HUB_ALIASES else first
        rest = after
    else:
        rest = text
    path, tag, digest = _split_tail(text, rest)
    if not path:
        raise InvalidReference(text, "empty repository name")
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            if component != component.lower():
                reason = "repository name must be lowercase"
            elif not component:
                reason = "empty path component in the repository name"
            else:
                reason = f"invalid repository path component {component!r}"
            raise InvalidReference(text, reason)
    if registry == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if len(registry) + 1 + len(path) > NAME_MAX:
        raise InvalidReference(text, f"repository name longer than {NAME_MAX} characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest)


def normalize(text: str) -> str:
    """The full string form of a reference (``alpine`` -> ``docker.io/library/alpine:latest``)."""
    return str(parse(text))
