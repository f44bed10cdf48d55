"""Typed models of OCI / Docker schema2 indexes, manifests and image configs; platform selection.

CONTRACTS.md §3.2-3.6. Parsing is strict about what nexcage relies on (descriptor digests and
sizes, media types, ``rootfs.diff_ids``, the types of ``config`` fields that become the runtime
spec) and keeps everything else: each model holds the raw document it came from, so nothing is
ever re-serialised over the registry's bytes (a manifest's digest is the hash of its exact bytes).
Every problem is reported with its JSON path (``config.Env[1]``), all of them at once.

The models are small ``__slots__`` classes, not dataclasses, and ``typing`` is not imported at
run time: a second ``image pull`` of a stored image should take well under 100 ms, and
``dataclasses`` alone costs ~25 ms to import (docs/DESIGN.md).
"""

from __future__ import annotations

import json
import os

from nexcage.errors import InvalidImage, PlatformNotFound, Violation
from nexcage.image.reference import is_sha256_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Media types (CONTRACTS.md §3.2)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1_UNSIGNED = "application/vnd.docker.distribution.manifest.v1+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_LAYER_ND,
        OCI_LAYER_ND_GZIP,
        OCI_LAYER_ND_ZSTD,
        DOCKER_LAYER_GZIP,
        DOCKER_LAYER_FOREIGN,
    }
)
# What nexcage asks registries for, in order of preference (CONTRACTS.md §3.8).
ACCEPT = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
# distribution refuses manifests over 4 MiB; reading more would only let a server fill memory.
MAX_MANIFEST_BYTES = 4 << 20

# platform.machine() -> (GOARCH, variant) (CONTRACTS.md §3.4)
_MACHINES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}
# Variants a platform without one is taken to be (an arm64 image without variant is v8).
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


class _Model:
    """Value semantics for the slot classes below: equality, hash and repr over the slots."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(tuple(repr(v) for v in self._values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({args})"


class Platform(_Model):
    __slots__ = ("architecture", "os", "os_features", "os_version", "variant")

    def __init__(
        self,
        os: str,
        architecture: str,
        variant: str = "",
        os_version: str = "",
        os_features: tuple[str, ...] = (),
    ) -> None:
        self.os = os
        self.architecture = architecture
        self.variant = variant
        self.os_version = os_version
        self.os_features = os_features

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return text + (f"/{self.variant}" if self.variant else "")

    def matches(self, wanted: Platform) -> bool:
        """True if an image for ``self`` satisfies a request for ``wanted``.

        A request without a variant takes any variant; ``arm64`` with no variant equals ``v8``.
        """
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        if not wanted.variant:
            return True
        default = _DEFAULT_VARIANT.get(self.architecture, "")
        return (self.variant or default) == wanted.variant

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            doc["variant"] = self.variant
        if self.os_version:
            doc["os.version"] = self.os_version
        if self.os_features:
            doc["os.features"] = list(self.os_features)
        return doc


def host_platform() -> Platform:
    machine = os.uname().machine  # the `platform` module would cost an import
    arch, variant = _MACHINES.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant]`` as given to ``--platform`` (``linux/arm64/v8``)."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidImage(
            "--platform", [Violation("", f"invalid platform {text!r} (expected os/arch[/variant])")]
        )
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


class Descriptor(_Model):
    __slots__ = ("annotations", "digest", "media_type", "platform", "size", "urls")

    def __init__(
        self,
        media_type: str,
        digest: str,
        size: int,
        urls: tuple[str, ...] = (),
        annotations: dict[str, str] | None = None,
        platform: Platform | None = None,
    ) -> None:
        self.media_type = media_type
        self.digest = digest
        self.size = size
        self.urls = urls
        self.annotations: dict[str, str] = annotations if annotations is not None else {}
        self.platform = platform

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            doc["urls"] = list(self.urls)
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        if self.platform is not None:
            doc["platform"] = self.platform.to_json()
        return doc


class Manifest(_Model):
    """An image manifest; ``raw`` is the document as parsed (unknown keys kept)."""

    __slots__ = ("annotations", "config", "layers", "media_type", "raw")

    def __init__(
        self,
        media_type: str,
        config: Descriptor,
        layers: tuple[Descriptor, ...],
        annotations: dict[str, str],
        raw: dict[str, Any],
    ) -> None:
        self.media_type = media_type
        self.config = config
        self.layers = layers
        self.annotations = annotations
        self.raw = raw


class Index(_Model):
    __slots__ = ("annotations", "manifests", "media_type", "raw")

    def __init__(
        self,
        media_type: str,
        manifests: tuple[Descriptor, ...],
        annotations: dict[str, str],
        raw: dict[str, Any],
    ) -> None:
        self.media_type = media_type
        self.manifests = manifests
        self.annotations = annotations
        self.raw = raw


class _Checker:
    """Collects violations while reading a JSON document."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def bad(self, path: str, message: str) -> None:
        self.violations.append(Violation(path, message))

    def string(self, doc: dict[str, Any], key: str, path: str, *, required: bool) -> str:
        value = doc.get(key)
        if value is None:
            if required:
                self.bad(path, "required")
            return ""
        if not isinstance(value, str):
            self.bad(path, f"must be a string, not {_kind(value)}")
            return ""
        return value

    def strings(self, value: object, path: str) -> tuple[str, ...]:
        """An array of strings (null allowed: Docker writes ``"Cmd": null``)."""
        if value is None:
            return ()
        if not isinstance(value, list):
            self.bad(path, f"must be an array of strings, not {_kind(value)}")
            return ()
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.bad(f"{path}[{i}]", f"must be a string, not {_kind(item)}")
        return tuple(v for v in value if isinstance(v, str))

    def string_map(self, value: object, path: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(path, f"must be an object of strings, not {_kind(value)}")
            return {}
        for key, item in value.items():
            if not isinstance(item, str):
                self.bad(f"{path}.{key}", f"must be a string, not {_kind(item)}")
        return {k: v for k, v in value.items() if isinstance(v, str)}

    def object(self, value: object, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(path, f"must be an object, not {_kind(value)}")
            return {}
        return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "number", float: "number", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _platform_of(c: _Checker, value: object, path: str) -> Platform | None:
    if value is None:
        return None
    doc = c.object(value, path)
    return Platform(
        os=c.string(doc, "os", path + ".os", required=True),
        architecture=c.string(doc, "architecture", path + ".architecture", required=True),
        variant=c.string(doc, "variant", path + ".variant", required=False),
        os_version=c.string(doc, "os.version", path + '."os.version"', required=False),
        os_features=c.strings(doc.get("os.features"), path + '."os.features"'),
    )


def _descriptor(c: _Checker, value: object, path: str) -> Descriptor:
    doc = c.object(value, path)
    if not isinstance(value, dict):
        return Descriptor("", "", 0)
    media_type = c.string(doc, "mediaType", path + ".mediaType", required=True)
    digest = c.string(doc, "digest", path + ".digest", required=True)
    if digest and not is_sha256_digest(digest):
        c.bad(path + ".digest", f"unsupported or malformed digest {digest!r} (sha256 only)")
    size = doc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        c.bad(path + ".size", "required non-negative integer")
        size = 0
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        urls=c.strings(doc.get("urls"), path + ".urls"),
        annotations=c.string_map(doc.get("annotations"), path + ".annotations"),
        platform=_platform_of(c, doc.get("platform"), path + ".platform"),
    )


def load_json(data: bytes, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidImage(source, [Violation("", f"not valid JSON: {exc}")]) from None
    if not isinstance(doc, dict):
        raise InvalidImage(source, [Violation("", f"must be an object, not {_kind(doc)}")])
    return doc


def media_type_of(doc: dict[str, Any], content_type: str = "") -> str:
    """A document's media type: its ``mediaType`` field, else the HTTP Content-Type, else guessed
    from its shape (an OCI index or manifest may omit ``mediaType``)."""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    content_type = content_type.split(";", 1)[0].strip()
    if content_type in INDEX_TYPES or content_type in MANIFEST_TYPES:
        return content_type
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1
    if "manifests" in doc:
        return OCI_INDEX
    return OCI_MANIFEST


def parse_manifest(data: bytes, source: str, content_type: str = "") -> Manifest:
    doc = load_json(data, source)
    c = _Checker()
    media_type = media_type_of(doc, content_type)
    if media_type not in MANIFEST_TYPES:
        c.bad("mediaType", f"not an image manifest: {media_type!r}")
    if doc.get("schemaVersion") != 2:
        c.bad("schemaVersion", "must be 2")
    config = _descriptor(c, doc.get("config"), "config")
    layers_raw = doc.get("layers")
    layers: list[Descriptor] = []
    if not isinstance(layers_raw, list):
        c.bad("layers", "required array of descriptors")
    else:
        layers = [_descriptor(c, item, f"layers[{i}]") for i, item in enumerate(layers_raw)]
    annotations = c.string_map(doc.get("annotations"), "annotations")
    if c.violations:
        raise InvalidImage(source, c.violations)
    return Manifest(media_type, config, tuple(layers), annotations, doc)


def check_runnable(manifest: Manifest, source: str) -> None:
    """Refuse manifests that are not container images (artifacts, unknown layer types)."""
    c = _Checker()
    if manifest.config.media_type not in CONFIG_TYPES:
        c.bad("config.mediaType", f"not an image config: {manifest.config.media_type!r}")
    for i, layer in enumerate(manifest.layers):
        if layer.media_type not in LAYER_TYPES:
            c.bad(f"layers[{i}].mediaType", f"unsupported layer type {layer.media_type!r}")
    if c.violations:
        raise InvalidImage(source, c.violations)


def parse_index(data: bytes, source: str, content_type: str = "") -> Index:
    doc = load_json(data, source)
    c = _Checker()
    media_type = media_type_of(doc, content_type)
    if media_type not in INDEX_TYPES:
        c.bad("mediaType", f"not an image index: {media_type!r}")
    if doc.get("schemaVersion") != 2:
        c.bad("schemaVersion", "must be 2")
    items = doc.get("manifests")
    manifests: list[Descriptor] = []
    if not isinstance(items, list):
        c.bad("manifests", "required array of descriptors")
    else:
        manifests = [_descriptor(c, item, f"manifests[{i}]") for i, item in enumerate(items)]
    annotations = c.string_map(doc.get("annotations"), "annotations")
    if c.violations:
        raise InvalidImage(source, c.violations)
    return Index(media_type, tuple(manifests), annotations, doc)


def parse_document(data: bytes, source: str, content_type: str = "") -> Manifest | Index:
    """An index or a manifest, by media type. Docker schema 1 is refused with a clear error."""
    doc = load_json(data, source)
    media_type = media_type_of(doc, content_type)
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_UNSIGNED):
        raise InvalidImage(
            source, [Violation("mediaType", "Docker schema 1 manifests are not supported")]
        )
    if media_type in INDEX_TYPES:
        return parse_index(data, source, content_type)
    return parse_manifest(data, source, content_type)


def select_platform(index: Index, wanted: Platform, source: str) -> Descriptor:
    """The first manifest entry for ``wanted`` (image-index.md: "the first matching entry SHOULD
    be used"). Entries of unknown media type and attestation manifests (``unknown/unknown``)
    never match. Raises PlatformNotFound listing the platforms the index has."""
    available: list[str] = []
    for entry in index.manifests:
        if entry.media_type not in MANIFEST_TYPES and entry.media_type not in INDEX_TYPES:
            continue
        if entry.platform is None:
            continue
        if entry.platform.os == "unknown" or entry.platform.architecture == "unknown":
            continue
        if entry.platform.matches(wanted):
            return entry
        available.append(str(entry.platform))
    raise PlatformNotFound(source, str(wanted), available)


# ---------------------------------------------------------------------------------------------
# Image config (CONTRACTS.md §3.6)

_CONFIG_STRINGS = ("User", "WorkingDir", "StopSignal")
_CONFIG_ARRAYS = ("Env", "Entrypoint", "Cmd")


def check_config(doc: dict[str, Any], layer_count: int | None = None) -> list[Violation]:
    """Every violation in an image config document (fields that become the runtime spec)."""
    c = _Checker()
    c.string(doc, "architecture", "architecture", required=True)
    c.string(doc, "os", "os", required=True)
    c.string(doc, "created", "created", required=False)
    conf = c.object(doc.get("config"), "config")
    for key in _CONFIG_STRINGS:
        c.string(conf, key, f"config.{key}", required=False)
    for key in _CONFIG_ARRAYS:
        c.strings(conf.get(key), f"config.{key}")
    for i, entry in enumerate(conf.get("Env") or []):
        if isinstance(entry, str) and ("=" not in entry or entry.startswith("=")):
            c.bad(f"config.Env[{i}]", f"not NAME=VALUE: {entry!r}")
    c.string_map(conf.get("Labels"), "config.Labels")
    c.object(conf.get("Volumes"), "config.Volumes")
    c.object(conf.get("ExposedPorts"), "config.ExposedPorts")
    rootfs = c.object(doc.get("rootfs"), "rootfs")
    if "rootfs" not in doc:
        c.bad("rootfs", "required")
    elif rootfs.get("type") != "layers":
        c.bad("rootfs.type", 'must be "layers"')
    diff_ids = c.strings(rootfs.get("diff_ids"), "rootfs.diff_ids")
    for i, diff_id in enumerate(diff_ids):
        if not is_sha256_digest(diff_id):
            c.bad(f"rootfs.diff_ids[{i}]", f"malformed digest {diff_id!r} (sha256 only)")
    if layer_count is not None and len(diff_ids) != layer_count:
        c.bad("rootfs.diff_ids", f"{len(diff_ids)} diff_ids for {layer_count} layers")
    return c.violations


def parse_config(data: bytes, source: str, layer_count: int | None = None) -> dict[str, Any]:
    """The image config as a dict, after `check_config` found nothing wrong."""
    doc = load_json(data, source)
    violations = check_config(doc, layer_count)
    if violations:
        raise InvalidImage(source, violations)
    return doc


def config_platform(doc: dict[str, Any]) -> Platform:
    return Platform(
        os=str(doc.get("os", "")),
        architecture=str(doc.get("architecture", "")),
        variant=str(doc.get("variant") or ""),
        os_version=str(doc.get("os.version") or ""),
    )


def diff_ids(doc: dict[str, Any]) -> list[str]:
    rootfs = doc.get("rootfs") or {}
    return [d for d in rootfs.get("diff_ids") or [] if isinstance(d, str)]
