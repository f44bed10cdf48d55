"""Exception hierarchy and exit codes.

Imports nothing from nexcage. Library code raises these; only ``cli/main.py`` turns them into
exit codes and messages. Messages reuse runc's wording where engines match on it
(CONTRACTS.md §1.18): "container does not exist", "container not running", ...
"""

from __future__ import annotations

# Imported by every invocation: no enum/dataclasses/typing here (see docs/DESIGN.md, "hot path").


class ExitCode:
    OK = 0
    FAILURE = 1
    USAGE = 2
    # runc: exec could not start the process (CONTRACTS.md §1.13)
    EXEC_FAILED = 255


class NexcageError(Exception):
    """Base class: a message for humans, an optional hint, an exit code."""

    exit_code: int = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(NexcageError):
    """Bad command line: unknown flag, missing argument, wrong value."""

    exit_code = ExitCode.USAGE


class InvalidContainerID(NexcageError):
    def __init__(self, container_id: str, reason: str) -> None:
        # runc: libcontainer validateID -> "invalid container ID format"
        super().__init__(f"invalid container ID format: {reason}")
        self.container_id = container_id
        self.reason = reason


class ContainerNotFound(NexcageError):
    def __init__(self, container_id: str) -> None:
        # containerd and podman match on "does not exist" (CONTRACTS.md §1.18)
        super().__init__("container does not exist")
        self.container_id = container_id


class ContainerExists(NexcageError):
    def __init__(self, container_id: str) -> None:
        super().__init__("container with given ID already exists")
        self.container_id = container_id


class InvalidState(NexcageError):
    """The verb is not allowed in the container's current status."""

    def __init__(self, container_id: str, status: str, message: str) -> None:
        super().__init__(message)
        self.container_id = container_id
        self.status = status


class StateCorrupt(NexcageError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"corrupt state record {path}: {reason}")
        self.path = path
        self.reason = reason


class BundleError(NexcageError):
    """Missing bundle directory, config.json or rootfs; unreadable config.json."""

    def __init__(self, path: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class Violation:
    """One problem in a JSON document, located by its JSON path (``linux.namespaces[2].type``)."""

    __slots__ = ("message", "path")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Violation) and (self.path, self.message) == (
            other.path,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.message))

    def __repr__(self) -> str:
        return f"Violation({self.path!r}, {self.message!r})"

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


class SpecError(NexcageError):
    """A document (config.json, process.json, resources) is malformed or violates the spec.

    Carries *every* violation found, not just the first.
    """

    def __init__(self, source: str, violations: list[Violation]) -> None:
        lines = "; ".join(str(v) for v in violations)
        super().__init__(f"{source}: {len(violations)} problem(s): {lines}")
        self.source = source
        self.violations = violations


class Finding:
    """A field a backend cannot honour: never dropped silently (PRODUCT.md §2)."""

    __slots__ = ("path", "reason")

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Finding) and (self.path, self.reason) == (
            other.path,
            other.reason,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.reason))

    def __repr__(self) -> str:
        return f"Finding({self.path!r}, {self.reason!r})"

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class Unsupported(NexcageError):
    def __init__(self, backend: str, findings: list[Finding]) -> None:
        lines = "; ".join(str(f) for f in findings)
        super().__init__(f"backend {backend} cannot honour: {lines}")
        self.backend = backend
        self.findings = findings


class ConfigError(NexcageError):
    """The nexcage configuration (file, env, flag) is invalid; fails closed."""

    def __init__(self, source: str, key: str, message: str, *, expected: str | None = None) -> None:
        text = f"{source}: {key}: {message}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)
        self.source = source
        self.key = key
        self.expected = expected


class BackendNotFound(NexcageError):
    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"runtime backend {name!r} is not available", hint=None)
        self.name = name


class CommandFailed(NexcageError):
    """A subprocess exited non-zero. ``stderr_tail`` holds the end of what it printed."""

    def __init__(
        self, argv: list[str], returncode: int, stderr_tail: str = "", *, message: str = ""
    ) -> None:
        prog = argv[0].rsplit("/", 1)[-1] if argv else "?"
        detail = message or stderr_tail.strip() or f"exit status {returncode}"
        super().__init__(f"{prog}: {detail}")
        self.argv = argv
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class HostError(NexcageError):
    """An OS-level operation failed (mount, cgroup write, socket, ...)."""


# ---------------------------------------------------------------------------------------------
# Images: references, registries, the content store (issue 3)


class ImageError(NexcageError):
    """Base class of image, registry and content-store failures."""


class InvalidReference(ImageError):
    """An image reference that does not parse (``[registry[:port]/]repo[:tag][@digest]``)."""

    exit_code = ExitCode.USAGE

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {reason}")
        self.reference = reference
        self.reason = reason


class ImageNotFound(ImageError):
    """Nothing in the local store answers to ``what`` (a reference or a digest prefix)."""

    def __init__(self, what: str, *, reason: str = "") -> None:
        super().__init__(f"image not known: {what}" + (f" ({reason})" if reason else ""))
        self.what = what
        self.reason = reason


class BlobNotFound(ImageError):
    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} is not in the content store")
        self.digest = digest


class ContentMismatch(ImageError):
    """Downloaded or imported content whose size or digest is not what its descriptor says.

    ``kind`` is ``"digest"`` or ``"size"``; a short read (truncated blob) is a size mismatch with
    ``actual < expected``.
    """

    def __init__(self, what: str, kind: str, expected: str, actual: str) -> None:
        if kind == "size":
            detail = f"size {actual} bytes, expected {expected}"
        else:
            detail = f"digest {actual}, expected {expected}"
        super().__init__(f"{what}: content does not match its descriptor: {detail}")
        self.what = what
        self.kind = kind
        self.expected = expected
        self.actual = actual


class RegistryError(ImageError):
    """The registry answered with an error (or not at all).

    ``status`` is the HTTP status (0: no answer), ``code`` the distribution error code
    (``MANIFEST_UNKNOWN``, ``NAME_UNKNOWN``, ``DENIED``, ...) when the registry sent one.
    """

    def __init__(
        self,
        registry: str,
        repository: str,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(f"{registry}/{repository}: {message}", hint=hint)
        self.registry = registry
        self.repository = repository
        self.status = status
        self.code = code


class ManifestUnknown(RegistryError):
    """The tag or digest does not exist in the repository (registry answered 404)."""

    def __init__(self, registry: str, repository: str, reference: str, *, code: str = "") -> None:
        super().__init__(
            registry,
            repository,
            f"manifest {reference!r} not found (unknown tag or digest)",
            status=404,
            code=code or "MANIFEST_UNKNOWN",
        )
        self.reference = reference


class Unauthorized(RegistryError):
    """401/403: no credentials where some are needed, or the registry refused them."""

    def __init__(self, registry: str, repository: str, reason: str, *, status: int = 401) -> None:
        super().__init__(
            registry,
            repository,
            f"unauthorized: {reason}",
            status=status,
            code="UNAUTHORIZED" if status == 401 else "DENIED",
            hint="give credentials with --creds USER:PASS or in $REGISTRY_AUTH_FILE, "
            "${XDG_RUNTIME_DIR}/containers/auth.json or ~/.docker/config.json",
        )
        self.reason = reason


class PlatformNotFound(ImageError):
    """The image index has no manifest for the wanted platform; lists the ones it has."""

    def __init__(self, reference: str, wanted: str, available: list[str]) -> None:
        have = ", ".join(available) if available else "none"
        super().__init__(f"{reference}: no image for platform {wanted} (the index has: {have})")
        self.reference = reference
        self.wanted = wanted
        self.available = available


class InvalidImage(SpecError):
    """A manifest, index or image config that is malformed; every violation has a JSON path."""


# ---------------------------------------------------------------------------------------------
# Unpacking layers, importing archives (issue 3, unpack/layout)


class LayerError(ImageError):
    """A layer that cannot be applied safely or at all: a path leaving the root, a link to outside
    it, a bad whiteout, a device node where none may be made, a corrupt or truncated tar.

    ``layer`` is the blob digest, ``entry`` the tar member name ("" for the layer as a whole).
    """

    def __init__(self, layer: str, entry: str, reason: str) -> None:
        where = f"layer {layer}" + (f": entry {entry!r}" if entry else "")
        super().__init__(f"{where}: {reason}")
        self.layer = layer
        self.entry = entry
        self.reason = reason


class ArchiveError(ImageError):
    """A file or directory given to ``image import`` that is not an image archive or layout."""

    def __init__(self, path: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {reason}", hint=hint)
        self.path = path
        self.reason = reason


class UnsafePath(ImageError):
    """A path inside a root filesystem that would lead out of it (or cannot be walked)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path or '/'}: {reason}")
        self.path = path
        self.reason = reason


class StorageError(NexcageError):
    """A storage driver operation failed or was refused (driver name and what was asked)."""

    def __init__(self, driver: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"storage {driver}: {message}", hint=hint)
        self.driver = driver


class ImageInUse(ImageError):
    """``image rm`` of an image whose layers a container's rootfs is made from."""

    def __init__(self, reference: str, containers: list[str]) -> None:
        shown = ", ".join(containers[:10]) + (" ..." if len(containers) > 10 else "")
        super().__init__(
            f"image {reference} is in use by container(s) {shown}: not removed",
            hint="delete the container(s) first (nexcage delete ID); `nexcage storage gc` "
            "removes what a crashed create left",
        )
        self.reference = reference
        self.containers = containers


class SnapshotNotFound(StorageError):
    def __init__(self, driver: str, container_id: str, name: str, available: list[str]) -> None:
        have = ", ".join(available) if available else "none"
        super().__init__(
            driver, f"container {container_id} has no snapshot {name!r} (snapshots: {have})"
        )
        self.container_id = container_id
        self.name = name
