"""Busybox root filesystems, runtime bundles and image archives, from the host's static busybox.

Everything here uses the standard library only, so tests, benchmarks and the README demo can build
a runnable container without a registry or network:

- ``make_rootfs(dir)``: a root filesystem at ``dir`` (static busybox plus every applet as a symlink,
  ``/etc/passwd`` and ``/etc/group`` with root and an unprivileged user 1000).
- ``make_bundle(dir, args, ...)``: an OCI runtime bundle (``dir/config.json`` + ``dir/rootfs``).
- ``make_oci_archive(rootfs_dir, out_tar, ref_name)``: an OCI image-layout tar (oci-archive) that
  ``ctr image import``, ``podman load`` and ``skopeo`` accept.
- ``make_docker_archive(rootfs_dir, out_tar, repo_tag)``: the ``docker save`` format, for tools that
  only take that one.

Archives are reproducible: fixed mtimes, sorted entries, gzip without a timestamp, so the same
rootfs always yields the same digests.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUSYBOX = "/bin/busybox"

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The test image every engine test uses: its name, and the Env baked into its config (so a test
# can tell image env from env given on the command line).
TEST_IMAGE_REF = "docker.io/library/busybox-test:latest"
TEST_IMAGE_ENV = (DEFAULT_PATH, "NEXCAGE_IMAGE=busybox-test")

# Applets the tests rely on; used when `busybox --list` cannot be run (it always can for the
# Debian busybox-static build, which lists ~270 applets).
REQUIRED_APPLETS = (
    "sh", "true", "false", "echo", "cat", "sleep", "id", "env", "pwd", "ls", "ps", "hostname",
    "kill", "wc", "head", "grep", "mkdir", "stat", "readlink", "test", "[", "tty", "touch", "rm",
    "printf", "uname", "whoami", "mount", "cut", "sed", "tr", "seq", "date",
)  # fmt: skip

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "user:x:1000:1000:Unprivileged user:/home/user:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n"
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

# A fixed timestamp for every archive entry (2020-01-01T00:00:00Z), so digests are reproducible.
EPOCH = 1577836800
CREATED = "2020-01-01T00:00:00Z"

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


def busybox_applets(busybox: str = BUSYBOX) -> list[str]:
    """Applet names the busybox binary provides (`busybox --list`), plus REQUIRED_APPLETS."""
    try:
        out = subprocess.run(
            [busybox, "--list"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
        names = {line.strip() for line in out.splitlines() if line.strip()}
    except (OSError, subprocess.SubprocessError):
        names = set()
    names.update(REQUIRED_APPLETS)
    names.discard("busybox")
    # An applet name must be a plain file name (the list has "[" and "[["; both are fine).
    return sorted(n for n in names if "/" not in n and n not in {".", ".."})


def make_rootfs(dir: str | os.PathLike[str], *, busybox: str = BUSYBOX) -> str:
    """Create a busybox root filesystem *at* ``dir`` (not below it) and return its path.

    Layout: ``/bin/busybox`` (a copy, never a hard link: a container writing to it must not
    touch the host's binary) and every applet as a relative symlink in ``/bin``; ``/etc/passwd``,
    ``/etc/group`` (root, user 1000, nobody), ``/etc/hosts``, empty ``/etc/hostname`` and
    ``/etc/resolv.conf`` (engines bind-mount over them); ``/tmp`` and ``/var/tmp`` (1777);
    ``/root``, ``/home/user`` (owned by 1000 when we are root); ``/proc``, ``/sys``, ``/dev``,
    ``/run`` mount points.
    """
    root = Path(dir)
    for sub in ("bin", "etc", "proc", "sys", "dev", "run", "root", "home/user", "var/tmp", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "usr").mkdir(exist_ok=True)
    for name, dest in (("usr/bin", "../bin"), ("sbin", "bin"), ("usr/sbin", "../bin")):
        if not (root / name).is_symlink() and not (root / name).exists():
            (root / name).symlink_to(dest)
    for sub in ("tmp", "var/tmp"):
        (root / sub).chmod(0o1777)
    (root / "root").chmod(0o700)
    if os.geteuid() == 0:
        os.chown(root / "home/user", 1000, 1000)

    target = root / "bin" / "busybox"
    shutil.copyfile(busybox, target)
    target.chmod(0o755)
    for applet in busybox_applets(busybox):
        link = root / "bin" / applet
        if not link.is_symlink() and not link.exists():
            link.symlink_to("busybox")

    files = {
        "etc/passwd": PASSWD,
        "etc/group": GROUP,
        "etc/hosts": HOSTS,
        "etc/hostname": "",
        "etc/resolv.conf": "",
    }
    for name, text in files.items():
        (root / name).write_text(text)
        (root / name).chmod(0o644)
    return os.fspath(root)


# --------------------------------------------------------------------------------------------
# Runtime bundle
# --------------------------------------------------------------------------------------------

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

_MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
)  # fmt: skip
_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
]


def bundle_config(
    args: Sequence[str],
    *,
    oci_version: str = "1.0.2",
    terminal: bool = False,
    env: Mapping[str, str] | Sequence[str] | None = None,
    cwd: str = "/",
    hostname: str | None = None,
    annotations: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config.json document `make_bundle` writes (see there for the parameters)."""
    if not args:
        raise ValueError("process.args must not be empty")
    config: dict[str, Any] = {
        # crun 1.8.1 accepts only versions containing "1.0" (CONTRACTS.md §0): keep 1.0.2.
        "ociVersion": oci_version,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": _merge_env(env, terminal=terminal),
            "cwd": cwd,
            "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "mounts": copy.deepcopy(_MOUNTS),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": list(_MASKED_PATHS),
            "readonlyPaths": list(_READONLY_PATHS),
        },
    }
    if hostname is not None:
        config["hostname"] = hostname
    if annotations:
        config["annotations"] = dict(annotations)
    if extra:
        _deep_merge(config, extra)
    return config


def make_bundle(
    dir: str | os.PathLike[str],
    args: Sequence[str],
    *,
    oci_version: str = "1.0.2",
    terminal: bool = False,
    env: Mapping[str, str] | Sequence[str] | None = None,
    cwd: str = "/",
    hostname: str | None = None,
    annotations: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Write a runnable OCI bundle at ``dir`` and return its absolute path.

    ``dir/rootfs`` is created with `make_rootfs` unless it already exists (so a caller may
    prepare or reuse one); ``dir/config.json`` is always (re)written, with ``root.path =
    "rootfs"`` (relative, resolved against the bundle like runc does).

    The config mirrors ``runc spec`` with the differences a test wants: a writable root, no
    ``/sys/fs/cgroup`` mount, no seccomp, no ``linux.cgroupsPath`` (the runtime picks one), no
    default hostname. Namespaces: pid, ipc, uts, mount, network.

    - ``env``: a mapping or ``K=V`` strings added after the defaults (``PATH``, plus
      ``TERM=xterm`` when ``terminal``); a key given again replaces the default.
    - ``extra``: merged into the document last; nested mappings are merged key by key, anything
      else (lists included) replaces the value. A ``None`` value deletes the key.
    """
    bundle = Path(dir).absolute()
    bundle.mkdir(parents=True, exist_ok=True)
    rootfs = bundle / "rootfs"
    if not rootfs.exists():
        make_rootfs(rootfs)
    config = bundle_config(
        args,
        oci_version=oci_version,
        terminal=terminal,
        env=env,
        cwd=cwd,
        hostname=hostname,
        annotations=annotations,
        extra=extra,
    )
    tmp = bundle / ".config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.replace(bundle / "config.json")
    return os.fspath(bundle)


def _merge_env(env: Mapping[str, str] | Sequence[str] | None, *, terminal: bool) -> list[str]:
    items = [DEFAULT_PATH] + (["TERM=xterm"] if terminal else [])
    extra = [f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping) else list(env or ())
    merged: dict[str, str] = {}
    for item in items + extra:
        key = item.split("=", 1)[0]
        merged.pop(key, None)  # a key given again moves to its new position
        merged[key] = item
    return list(merged.values())


def _deep_merge(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


# --------------------------------------------------------------------------------------------
# Image archives
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageArchive:
    """What `make_oci_archive` / `make_docker_archive` wrote."""

    path: str
    ref_name: str
    manifest_digest: str  # sha256:… of the manifest (OCI); "" for docker archives
    config_digest: str  # sha256:… of the image config (= the image ID podman reports)
    layer_digest: str  # sha256:… of the gzip layer blob (OCI) or the tar layer (docker)
    diff_id: str  # sha256:… of the uncompressed layer tar


def go_arch() -> str:
    """The OCI/Go architecture name of this machine (amd64, arm64, …)."""
    machine = platform.machine()
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "armv7l": "arm",
        "i686": "386",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(machine, machine)


def layer_tar(rootfs_dir: str | os.PathLike[str]) -> bytes:
    """An uncompressed, reproducible layer tar of ``rootfs_dir`` (paths relative, no leading /)."""
    root = Path(rootfs_dir)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in _walk_sorted(root):
            path = root / rel
            info = tar.gettarinfo(os.fspath(path), arcname=rel)
            info.mtime = EPOCH
            info.uname = info.gname = ""
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            elif info.isdir() or info.issym() or info.islnk():
                tar.addfile(info)
            else:
                # Device nodes, fifos, sockets: not wanted in a test image (engines create /dev).
                continue
    return buf.getvalue()


def _walk_sorted(root: Path) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath).relative_to(root)
        entries = sorted(dirnames + filenames)
        for name in entries:
            yield (base / name).as_posix()


def _image_config(
    diff_id: str, cmd: Sequence[str], env: Sequence[str], workdir: str, user: str
) -> dict[str, Any]:
    return {
        "created": CREATED,
        "architecture": go_arch(),
        "os": "linux",
        "config": {
            "Env": list(env),
            "Cmd": list(cmd),
            "WorkingDir": workdir,
            "User": user,
            "Labels": {"org.opencontainers.image.title": "nexcage busybox test image"},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "tests/support/busybox.py"}],
    }


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = EPOCH
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mtime = EPOCH
    info.mode = 0o755
    tar.addfile(info)


def make_oci_archive(
    rootfs_dir: str | os.PathLike[str],
    out_tar: str | os.PathLike[str],
    ref_name: str,
    *,
    cmd: Sequence[str] = ("/bin/sh",),
    env: Sequence[str] = (DEFAULT_PATH,),
    workdir: str = "/",
    user: str = "",
) -> ImageArchive:
    """Write an OCI image-layout tar ("oci-archive") of ``rootfs_dir`` to ``out_tar``.

    Contents: ``oci-layout``, ``index.json`` (one manifest descriptor annotated with
    ``org.opencontainers.image.ref.name = ref_name`` and this machine's platform),
    ``blobs/sha256/…`` for the manifest, the config (``Cmd``, ``Env``, ``WorkingDir``, ``User``)
    and one gzip layer. ``ref_name`` is what a tool sees as the tag: use a tag such as
    ``latest`` (``ctr image import --index-name`` names the image itself) or a full reference
    such as ``docker.io/library/busybox-test:latest`` (``podman load`` then uses it as the name).
    """
    raw = layer_tar(rootfs_dir)
    layer = gzip.compress(raw, compresslevel=6, mtime=0)
    diff_id, layer_digest = _sha256(raw), _sha256(layer)
    config = _canonical(_image_config(diff_id, cmd, env, workdir, user))
    config_digest = _sha256(config)
    manifest = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [
                {"mediaType": MT_OCI_LAYER_GZIP, "digest": layer_digest, "size": len(layer)}
            ],
        }
    )
    manifest_digest = _sha256(manifest)
    index = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": [
                {
                    "mediaType": MT_OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "annotations": {REF_NAME_ANNOTATION: ref_name},
                    "platform": {"architecture": go_arch(), "os": "linux"},
                }
            ],
        }
    )
    out = Path(out_tar)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}))
        _add_bytes(tar, "index.json", index)
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest, data in sorted(
            {manifest_digest: manifest, config_digest: config, layer_digest: layer}.items()
        ):
            _add_bytes(tar, "blobs/sha256/" + digest.removeprefix("sha256:"), data)
    tmp.replace(out)
    return ImageArchive(os.fspath(out), ref_name, manifest_digest, config_digest, layer_digest,
                        diff_id)  # fmt: skip


def make_docker_archive(
    rootfs_dir: str | os.PathLike[str],
    out_tar: str | os.PathLike[str],
    repo_tag: str,
    *,
    cmd: Sequence[str] = ("/bin/sh",),
    env: Sequence[str] = (DEFAULT_PATH,),
    workdir: str = "/",
    user: str = "",
) -> ImageArchive:
    """Write a ``docker save`` style archive (docker-archive, v1.2) tagged ``repo_tag``.

    Contents: ``manifest.json`` (``[{"Config","RepoTags","Layers"}]``), ``repositories``, the
    config as ``<hex>.json`` and the uncompressed layer as ``<hex>/layer.tar``.
    """
    raw = layer_tar(rootfs_dir)
    diff_id = _sha256(raw)
    config = _canonical(_image_config(diff_id, cmd, env, workdir, user))
    config_digest = _sha256(config)
    config_hex = config_digest.removeprefix("sha256:")
    layer_dir = diff_id.removeprefix("sha256:")
    manifest = [
        {
            "Config": f"{config_hex}.json",
            "RepoTags": [repo_tag],
            "Layers": [f"{layer_dir}/layer.tar"],
        }
    ]
    repo, _, tag = repo_tag.rpartition(":")
    if not repo or "/" in tag:
        repo, tag = repo_tag, "latest"
    out = Path(out_tar)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, layer_dir)
        _add_bytes(tar, f"{layer_dir}/VERSION", b"1.0")
        _add_bytes(tar, f"{layer_dir}/layer.tar", raw)
        _add_bytes(tar, f"{config_hex}.json", config)
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        _add_bytes(tar, "repositories", json.dumps({repo: {tag: layer_dir}}).encode())
    tmp.replace(out)
    return ImageArchive(os.fspath(out), repo_tag, "", config_digest, diff_id, diff_id)
