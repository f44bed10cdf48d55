"""Pull benchmark: nexcage image pull + bundle against skopeo copy + umoci unpack.

Usage: .venv/bin/python bench/pull.py [--rounds N] [--json] [--tmpdir DIR]

At start it builds, without network, a ~200 MiB OCI image in 6 gzip layers (a busybox base,
incompressible ``os.urandom`` files, compressible log text, ~12 000 small source-like files, a
mixed layer with a whiteout, a last random file) into an OCI layout in its temp dir, starts a
private ``docker-registry`` on 127.0.0.1 (tests/support/registry.py) and pushes the image with
``skopeo copy``. Each round then runs, in an order that rotates every round, two items:

- nexcage: ``image pull --tls-verify=false REF`` into a fresh ``--data-root``, ``bundle REF DIR``,
  then pulls of the now stored image on that data root (plain, ``--quiet``, and with the registry
  named insecure in a ``--config`` file instead of ``--tls-verify=false``);
- skopeo + umoci: ``skopeo copy docker://REF oci:DIR:TAG`` and ``umoci unpack --image DIR:TAG B``.

After each item ``sync`` flushes the dirty pages, so one item's write-back does not land in the
next item's time; every round's output stays until the end of the run (see `loop`: ext4 makes file
creation slow right after mass deletion) and is removed then. Every command goes through the
C trampoline of bench/lifecycle.py (``posix_spawn`` + ``wait4``: wall time on CLOCK_MONOTONIC,
``ru_maxrss`` and user+sys CPU of the command alone, not of a fork of this process). Needs root
(umoci unpack keeps owners), skopeo, umoci, docker-registry and a C compiler; see bench/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import platform
import random
import shutil
import stat
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NEXCAGE = REPO / ".venv" / "bin" / "nexcage"
sys.path.insert(0, os.fspath(REPO / "tests"))

from rusage import build_trampoline  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from support import pids_with_arg  # noqa: E402  (tests/ is not a package on sys.path)
from support.busybox import make_rootfs  # noqa: E402
from support.registry import DockerRegistry, start_registry  # noqa: E402

REPOSITORY, TAG = "bench/pull", "v1"
CALL_TIMEOUT_S = 300  # one command; a hung call is killed (by pid) and counts as an error
SETUP_TIMEOUT_S = 300  # the push of the built image
MAX_ERRORS = 3  # give up after this many failed items: the figures would mean nothing
GZIP_LEVEL = 6  # what docker, skopeo and umoci use by default
MIB = 1 << 20
EPOCH = 1577836800  # 2020-01-01T00:00:00Z, every entry's mtime
TARGET_RATIO = 0.6  # issue 3: nexcage pull + bundle <= 0.6 x skopeo copy + umoci unpack
TARGET_SECOND_MS = 100.0  # a second pull of a stored image
TARGET_RSS_MIB = 80.0  # peak RSS of the pull (the issue names the pull; bundle shown against it)

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

FIRST_STEPS = ("nexcage pull", "nexcage bundle", "skopeo copy", "umoci unpack")
SECOND = ("stored", "stored-quiet", "stored-config")
SECOND_LABELS = {
    "stored": "image pull (stored)",
    "stored-quiet": "image pull --quiet (stored)",
    "stored-config": "image pull (stored; insecure via --config, no --tls-verify)",
}
ITEMS = ("nexcage", "skopeo-umoci")


class BenchError(Exception):
    """A call failed: which step, and what the tool said."""

    def __init__(self, step: str, rc: int, stderr: str) -> None:
        super().__init__(f"{step}: exit {rc}: {stderr.strip()[-800:]}")


class Call:
    """One finished process: wall time, exit code, peak RSS (KiB), user+sys and sys CPU time,
    stdout."""

    __slots__ = ("cpu_ns", "maxrss_kib", "ns", "outer_ns", "rc", "stdout", "sys_ns")

    def __init__(self, report: str, outer_ns: int, stdout: str) -> None:
        status, maxrss, user_us, sys_us, ns = (int(field) for field in report.split())
        self.rc = os.waitstatus_to_exitcode(status)
        self.maxrss_kib, self.ns = maxrss, ns
        self.cpu_ns, self.sys_ns = (user_us + sys_us) * 1000, sys_us * 1000
        self.outer_ns, self.stdout = outer_ns, stdout


class Spawner:
    """Runs argv through the trampoline: stdin on /dev/null, stdout on /dev/null or a file,
    stderr to a file (read only on failure)."""

    def __init__(self, workdir: str, home: str) -> None:
        self.trampoline = build_trampoline(workdir, "pull")
        # The same small environment for every tool; HOME is an empty private dir, so no user's
        # auth or registries files take part.
        self.env = {
            "LANG": "C.UTF-8",
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": home,
        }
        self.null = os.open(os.devnull, os.O_RDWR)
        files = ("stdout", "stderr", "report")
        self.out, self.err, self.report = (
            os.open(os.path.join(workdir, name), os.O_RDWR | os.O_CREAT, 0o600) for name in files
        )

    def close(self) -> None:
        for fd in (self.null, self.out, self.err, self.report):
            os.close(fd)

    def run(self, step: str, argv: list[str], *, capture: bool = False) -> Call:
        """Run ``argv``; a non-zero exit raises BenchError naming ``step``."""
        for fd in (self.out, self.err, self.report):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        actions = [
            (os.POSIX_SPAWN_DUP2, self.null, 0),
            (os.POSIX_SPAWN_DUP2, self.out if capture else self.null, 1),
            (os.POSIX_SPAWN_DUP2, self.err, 2),
            (os.POSIX_SPAWN_DUP2, self.report, 3),
        ]
        command = [self.trampoline, str(CALL_TIMEOUT_S), *argv]
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(self.trampoline, command, self.env, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        outer_ns = time.perf_counter_ns() - t0
        report = _read_all(self.report)
        if os.waitstatus_to_exitcode(status) != 0 or not report:
            raise BenchError(step, os.waitstatus_to_exitcode(status), "trampoline failed")
        call = Call(report, outer_ns, _read_all(self.out) if capture else "")
        if call.rc != 0:
            raise BenchError(step, call.rc, _read_all(self.err))
        return call


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


# -- the image --------------------------------------------------------------------------------


class _Counted:
    """A write-only file object: hashes and counts the bytes on their way to ``inner``."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.hash, self.size = inner, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.inner.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Random:
    """``size`` bytes of os.urandom as a file to read, so a big file never sits in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


class LayerWriter:
    """One gzip layer streamed into the layout's blob dir; diff_id and digest computed on the
    way (tar -> hash -> gzip -> hash -> file)."""

    def __init__(self, blobs: str, name: str) -> None:
        self.blobs, self.name = blobs, name
        self.tmp = os.path.join(blobs, f".{name}.tmp")
        self.out = open(self.tmp, "wb")  # noqa: SIM115  (closed in finish)
        self.compressed = _Counted(self.out)
        self.gz = gzip.GzipFile(
            filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=self.compressed, mtime=0
        )
        self.raw = _Counted(self.gz)
        self.tar = tarfile.open(  # noqa: SIM115  (closed in finish)
            fileobj=self.raw, mode="w", format=tarfile.PAX_FORMAT, copybufsize=MIB
        )
        self.files = self.content = 0
        self.dirs: set[str] = set()

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, EPOCH
        info.uname = info.gname = "root"
        return info

    def directory(self, name: str, mode: int = 0o755) -> None:
        """``name`` and its missing parents, each once."""
        parent = os.path.dirname(name)
        if parent and parent not in self.dirs:
            self.directory(parent)
        if name not in self.dirs:
            self.dirs.add(name)
            self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))

    def file(
        self, name: str, data: bytes | None = None, *, random_size: int = 0, mode: int = 0o644
    ) -> None:
        """A regular file with ``data``, or ``random_size`` bytes of os.urandom."""
        self.directory(os.path.dirname(name))
        info = self._info(name, tarfile.REGTYPE, mode)
        if data is not None:
            info.size = len(data)
            self.tar.addfile(info, _Bytes(data))
        else:
            info.size = random_size
            self.tar.addfile(info, _Random(random_size))
        self.files += 1
        self.content += info.size

    def link(self, name: str, target: str, *, hard: bool = False) -> None:
        self.directory(os.path.dirname(name))
        info = self._info(name, tarfile.LNKTYPE if hard else tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)
        self.files += 1

    def add_tree(self, root: str) -> None:
        """Every entry below ``root`` (sorted), as root:root with the fixed mtime."""
        for top, dirs, names in os.walk(root):
            dirs.sort()
            for entry in sorted(dirs + names):
                path = os.path.join(top, entry)
                rel = os.path.relpath(path, root)
                info = self.tar.gettarinfo(path, rel)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = EPOCH
                if info.isreg():
                    with open(path, "rb") as f:
                        self.tar.addfile(info, f)
                    self.files += 1
                    self.content += info.size
                else:
                    self.tar.addfile(info)
                    if info.isdir():
                        self.dirs.add(rel)
                    else:
                        self.files += 1

    def finish(self) -> dict[str, Any]:
        self.tar.close()
        self.gz.close()
        self.out.close()
        digest = self.compressed.digest
        os.rename(self.tmp, os.path.join(self.blobs, digest.removeprefix("sha256:")))
        return {
            "name": self.name,
            "digest": digest,
            "size": self.compressed.size,
            "diff_id": self.raw.digest,
            "tar_size": self.raw.size,
            "content_size": self.content,
            "files": self.files,
        }


class _Bytes:
    """``read`` over a bytes object (io.BytesIO copies it)."""

    def __init__(self, data: bytes) -> None:
        self.view, self.pos = memoryview(data), 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.view) if n < 0 else self.pos + n
        chunk = bytes(self.view[self.pos : end])
        self.pos += len(chunk)
        return chunk


def _log_text(size: int, seed: int) -> bytes:
    """Access-log-like lines: compresses ~10x, as real logs and text assets do."""
    lines, total, i = [], 0, seed * 1_000_003
    while total < size:
        line = (
            f"2020-01-01T{i // 3600000 % 24:02d}:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}."
            f"{i % 1000:03d}Z INFO worker-{i % 8} GET /api/v1/items/{i * 7919 % 100003} "
            f"status={(200, 200, 200, 304, 404)[i % 5]} bytes={i * 31 % 65536} ms={i % 97}\n"
        )
        lines.append(line)
        total += len(line)
        i += 1
    return "".join(lines).encode()[:size]


SOURCE = (
    "def handler(request, context):\n"
    '    """Serve one request; the context carries the configuration."""\n'
    "    items = context.store.lookup(request.path, limit=context.limit)\n"
    "    if not items:\n"
    "        return Response(status=404, body=b'not found')\n"
    "    return Response(status=200, body=render(items, request.headers))\n\n"
)


def _source(size: int, tag: str) -> bytes:
    """Source-like text: a template with a random token per function (compresses ~3-4x)."""
    parts = [f"# {tag}: generated for the nexcage pull benchmark\nimport os\n\n"]
    total = len(parts[0])
    while total < size:
        part = f'TOKEN_{total} = "{os.urandom(12).hex()}"\n' + SOURCE
        parts.append(part)
        total += len(part)
    return "".join(parts).encode()[:size]


def build_layers(blobs: str, scratch: str) -> list[dict[str, Any]]:
    """The six layers (content sizes in MiB: ~1.5 base, 64, 48, ~27, ~36, 24 = ~200)."""
    rng = random.Random(20201)  # file sizes reproducible; random content is os.urandom
    layers = []

    base = LayerWriter(blobs, "base")  # a runnable busybox root (/bin/sh for the image Cmd)
    base.add_tree(make_rootfs(os.path.join(scratch, "rootfs")))
    layers.append(base.finish())

    big = LayerWriter(blobs, "random")  # incompressible: 4 x 16 MiB
    for k in range(4):
        big.file(f"opt/data/blob-{k}.bin", random_size=16 * MIB)
    layers.append(big.finish())

    logs = LayerWriter(blobs, "logs")  # compressible: 6 x 8 MiB of log text
    for k in range(6):
        logs.file(f"var/log/bench/app-{k}.log", _log_text(8 * MIB, k))
    layers.append(logs.finish())

    small = LayerWriter(blobs, "small-files")  # 12 000 source-like files of 0.5-4 KiB
    for pkg in range(60):
        for mod in range(200):
            name = f"usr/lib/bench/pkg{pkg:02d}/mod{mod:03d}.py"
            small.file(name, _source(rng.randrange(512, 4096), name))
    layers.append(small.finish())

    mixed = LayerWriter(blobs, "mixed")  # 2000 files of 4-32 KiB, half random; links, whiteout
    for k in range(2000):
        size = rng.randrange(4096, 32768)
        folder = f"srv/assets/{k % 40:02d}"
        if k % 2:
            mixed.file(f"{folder}/asset-{k}.bin", random_size=size)
        else:
            mixed.file(f"{folder}/asset-{k}.txt", _source(size, f"asset {k}"))
    mixed.link("srv/assets/latest", "00/asset-0.txt")
    mixed.link("srv/assets/00/asset-0.hardlink", "srv/assets/00/asset-0.txt", hard=True)
    mixed.file("var/log/bench/.wh.app-5.log", b"")  # deletes a file of the logs layer
    layers.append(mixed.finish())

    last = LayerWriter(blobs, "update")  # incompressible: one 24 MiB file, a changed /etc file
    last.file("opt/data/model.bin", random_size=24 * MIB)
    last.file("etc/motd", b"nexcage pull benchmark image\n")
    layers.append(last.finish())
    return layers


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _put_blob(blobs: str, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    Path(blobs, digest.removeprefix("sha256:")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def build_layout(layout: str, scratch: str) -> dict[str, Any]:
    """An OCI image layout at ``layout`` holding the image as ``TAG``; returns what it holds."""
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)
    Path(layout, "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layers = build_layers(blobs, scratch)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = {
        "created": "2020-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/srv",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"] for layer in layers]},
        "history": [
            {"created": "2020-01-01T00:00:00Z", "created_by": f"bench: {layer['name']}"}
            for layer in layers
        ],
    }
    config_desc = {"mediaType": MT_CONFIG, **_put_blob(blobs, _canonical(config))}
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config_desc,
        "layers": [
            {"mediaType": MT_LAYER, "digest": la["digest"], "size": la["size"]} for la in layers
        ],
    }
    manifest_desc = {"mediaType": MT_MANIFEST, **_put_blob(blobs, _canonical(manifest))}
    index = {
        "schemaVersion": 2,
        "manifests": [{**manifest_desc, "annotations": {"org.opencontainers.image.ref.name": TAG}}],
    }
    Path(layout, "index.json").write_bytes(_canonical(index))
    return {
        "manifest_digest": manifest_desc["digest"],
        "layers": layers,
        "compressed_mib": sum(la["size"] for la in layers) / MIB,
        "tar_mib": sum(la["tar_size"] for la in layers) / MIB,
        "content_mib": sum(la["content_size"] for la in layers) / MIB,
        "files": sum(la["files"] for la in layers),
    }


def push(layout: str, registry: DockerRegistry, home: str) -> None:
    """``skopeo copy`` of the layout into the registry (setup, not measured)."""
    argv = [
        "skopeo",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        f"oci:{layout}:{TAG}",
        f"docker://{registry.host}/{REPOSITORY}:{TAG}",
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"}
    proc = subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"pull: pushing the image failed: {proc.stderr.strip()[-2000:]}")


# -- one round --------------------------------------------------------------------------------


class Bench:
    """What every round needs: the spawner, the reference, the work dir and the tools."""

    def __init__(
        self,
        sp: Spawner,
        workdir: str,
        ref: str,
        config: str,
        digest: str,
        opts: argparse.Namespace,
    ) -> None:
        self.sp, self.workdir, self.ref, self.config, self.digest = sp, workdir, ref, config, digest
        self.opts = opts
        self.skopeo = shutil.which("skopeo") or "skopeo"
        self.umoci = shutil.which("umoci") or "umoci"

    def nexcage(self, where: str) -> dict[str, Any]:
        """First pull into a fresh data root, bundle, then pulls of the stored image."""
        base = [
            os.fspath(NEXCAGE),
            "--root",
            os.path.join(where, "nexcage-state"),
            "--data-root",
            os.path.join(where, "nexcage-data"),
        ]
        calls: dict[str, Any] = {}
        pull = [*base, "image", "pull", "--tls-verify=false"]
        calls["nexcage pull"] = self._pulled(
            self.sp.run("nexcage pull", [*pull, self.ref], capture=True), "nexcage pull"
        )
        bundle = os.path.join(where, "nexcage-bundle")
        calls["nexcage bundle"] = self.sp.run("nexcage bundle", [*base, "bundle", self.ref, bundle])
        argvs = {
            "stored": [*pull, self.ref],
            "stored-quiet": [*pull, "--quiet", self.ref],
            "stored-config": [
                os.fspath(NEXCAGE),
                "--config",
                self.config,
                *base[1:],
                "image",
                "pull",
                self.ref,
            ],
        }
        for k in range(self.opts.second):
            order = SECOND[k % len(SECOND) :] + SECOND[: k % len(SECOND)]
            for variant in order:
                call = self.sp.run(f"nexcage pull ({variant})", argvs[variant], capture=True)
                calls.setdefault(variant, []).append(self._pulled(call, f"pull ({variant})"))
        return calls

    def _pulled(self, call: Call, step: str) -> Call:
        if call.stdout.strip() != self.digest:
            raise BenchError(step, 0, f"printed {call.stdout.strip()!r}, not {self.digest}")
        return call

    def skopeo_umoci(self, where: str) -> dict[str, Any]:
        oci = os.path.join(where, "oci")
        copy = [
            self.skopeo,
            "copy",
            "--src-tls-verify=false",
            f"docker://{self.ref}",
            f"oci:{oci}:{TAG}",
        ]
        unpack = [self.umoci, "unpack", "--image", f"{oci}:{TAG}", os.path.join(where, "umoci")]
        return {
            "skopeo copy": self.sp.run("skopeo copy", copy),
            "umoci unpack": self.sp.run("umoci unpack", unpack),
        }


def compare_rootfs(where: str) -> list[str]:
    """Both tools must have unpacked the same tree, or the times compare different work: the
    same paths with the same type, mode, owner, size, mtime and link target (the rootfs
    directory itself aside: umoci gives it the epoch mtime)."""

    def tree(root: str) -> dict[str, tuple[Any, ...]]:
        found = {}
        for top, dirs, names in os.walk(root):
            for name in dirs + names:
                path = os.path.join(top, name)
                st = os.lstat(path)
                link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
                size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
                found[os.path.relpath(path, root)] = (
                    oct(st.st_mode),
                    st.st_uid,
                    st.st_gid,
                    size,
                    int(st.st_mtime),
                    link,
                )
        return found

    ours = tree(os.path.join(where, "nexcage-bundle", "rootfs"))
    theirs = tree(os.path.join(where, "umoci", "rootfs"))
    if ours == theirs:
        return []
    only_ours = sorted(set(ours) - set(theirs))[:5]
    only_theirs = sorted(set(theirs) - set(ours))[:5]
    changed = sorted(p for p in set(ours) & set(theirs) if ours[p] != theirs[p])[:5]
    detail = [(p, ours[p], theirs[p]) for p in changed]
    return [f"rootfs differ: only nexcage {only_ours}, only umoci {only_theirs}, {detail}"]


def loop(bench: Bench, opts: argparse.Namespace, t_start: float) -> dict[str, Any]:
    """Warm-up rounds, then the measured rounds; items rotate every round."""
    samples: dict[str, list[Call]] = {}
    totals: dict[str, list[int]] = {item: [] for item in ITEMS}
    errors: list[str] = []
    notes: list[str] = []
    done = 0
    for i in range(-opts.warmup, opts.rounds):
        if time.monotonic() - t_start > opts.max_seconds:
            notes.append(
                f"stopped after {done} of {opts.rounds} rounds: {opts.max_seconds:g} s cap"
            )
            break
        where = os.path.join(bench.workdir, f"round-{i + opts.warmup}")
        os.mkdir(where)
        k = i % len(ITEMS)
        results: dict[str, dict[str, Any]] = {}
        for item in ITEMS[k:] + ITEMS[:k]:
            try:
                if item == "nexcage":
                    results[item] = bench.nexcage(where)
                else:
                    results[item] = bench.skopeo_umoci(where)
            except BenchError as exc:
                errors.append(f"round {i + 1}: {exc}" if i >= 0 else f"warm-up: {exc}")
            os.sync()  # this item's write-back is not the next item's time
        if i == 0 and len(results) == len(ITEMS):
            errors.extend(compare_rootfs(where))
        # The round's output stays until the end of the run: ext4 skips inodes freed in the
        # last 60 s when it allocates new ones (ialloc.c, recently_deleted), so deleting
        # ~30 000 files here made the next round's file creation several times slower.
        print(
            f"pull: round {i + 1 if i >= 0 else 'warm-up'} done "
            f"({time.monotonic() - t_start:.0f} s)",
            file=sys.stderr,
        )
        if i >= 0:
            for item, calls in results.items():
                for step, value in calls.items():
                    samples.setdefault(step, []).extend(
                        value if isinstance(value, list) else [value]
                    )
                first = [calls[s].ns for s in FIRST_STEPS if s in calls]
                totals[item].append(sum(first))
            done += 1
        if len(errors) >= MAX_ERRORS:
            notes.append(f"stopped after {done} rounds: {len(errors)} errors")
            break
    return {"samples": samples, "totals": totals, "errors": errors, "notes": notes, "rounds": done}


# -- statistics and report --------------------------------------------------------------------


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def summary(ns: list[int]) -> dict[str, float]:
    ms = [v / 1e6 for v in ns]
    return {"n": len(ms), "median_ms": statistics.median(ms), "p90_ms": p90(ms)}


def call_summary(calls: list[Call]) -> dict[str, float]:
    rss = [c.maxrss_kib / 1024 for c in calls]
    out = summary([c.ns for c in calls])
    out["rss_max_mib"] = max(rss)
    out["rss_median_mib"] = statistics.median(rss)
    out["cpu_median_ms"] = statistics.median(c.cpu_ns / 1e6 for c in calls)
    out["sys_median_ms"] = statistics.median(c.sys_ns / 1e6 for c in calls)
    return out


def figures(
    result: dict[str, Any], image: dict[str, Any], opts: argparse.Namespace, where: str
) -> dict[str, Any]:
    steps = {s: call_summary(calls) for s, calls in result["samples"].items() if calls}
    totals = {item: summary(ns) for item, ns in result["totals"].items() if ns}
    every = [c for calls in result["samples"].values() for c in calls]
    trampoline_ms = statistics.median((c.outer_ns - c.ns) / 1e6 for c in every) if every else 0.0

    def ratio(a: dict[str, Any], key_a: str, b: dict[str, Any], key_b: str) -> float | None:
        if key_a in a and key_b in b:
            return float(a[key_a]["median_ms"] / b[key_b]["median_ms"])
        return None

    ratios = {
        "total": ratio(totals, "nexcage", totals, "skopeo-umoci"),
        "pull_vs_copy": ratio(steps, "nexcage pull", steps, "skopeo copy"),
        "bundle_vs_unpack": ratio(steps, "nexcage bundle", steps, "umoci unpack"),
    }
    targets: dict[str, dict[str, Any]] = {}
    if ratios["total"] is not None:
        targets["ratio"] = {
            "value": ratios["total"],
            "target": TARGET_RATIO,
            "met": ratios["total"] <= TARGET_RATIO,
        }
    for variant in SECOND:
        if variant in steps:
            value = steps[variant]["median_ms"]
            targets[f"second_pull_ms.{variant}"] = {
                "value": value,
                "target": TARGET_SECOND_MS,
                "met": value < TARGET_SECOND_MS,
            }
    for step in ("nexcage pull", "nexcage bundle"):
        if step in steps:
            value = steps[step]["rss_max_mib"]
            targets[f"rss_mib.{step}"] = {
                "value": value,
                "target": TARGET_RSS_MIB,
                "met": value < TARGET_RSS_MIB,
            }
    pull = steps.get("nexcage pull")
    copy = steps.get("skopeo copy")
    throughput = {
        "nexcage_pull_mib_s": image["compressed_mib"] / (pull["median_ms"] / 1e3) if pull else 0,
        "skopeo_copy_mib_s": image["compressed_mib"] / (copy["median_ms"] / 1e3) if copy else 0,
    }
    return {
        "rounds": result["rounds"],
        "warmup": opts.warmup,
        "second_per_round": opts.second,
        "tmpdir": where,
        "trampoline_ms": trampoline_ms,
        "image": {k: v for k, v in image.items() if k != "layers"}
        | {
            "layers": [
                {k: la[k] for k in ("name", "size", "tar_size", "files")} for la in image["layers"]
            ]
        },
        "steps": steps,
        "totals": totals,
        "samples_ms": {
            **{s: [round(c.ns / 1e6, 1) for c in calls] for s, calls in result["samples"].items()},
            **{f"total {i}": [round(ns / 1e6, 1) for ns in v] for i, v in result["totals"].items()},
        },
        "ratios": ratios,
        "throughput": throughput,
        "targets": targets,
        "errors": result["errors"],
        "leaks": result["leaks"],
        "notes": result["notes"],
    }


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def times_table(f: dict[str, Any]) -> str:
    rows = []

    def step_row(label: str, s: dict[str, Any]) -> list[str]:
        return [
            label,
            f"{s['median_ms']:.1f}",
            f"{s['p90_ms']:.1f}",
            f"{s['rss_max_mib']:.1f} / {s['rss_median_mib']:.1f}",
            f"{s['cpu_median_ms']:.0f} ({s['sys_median_ms']:.0f})",
        ]

    def total_row(label: str, t: dict[str, Any]) -> list[str]:
        return [label, f"{t['median_ms']:.1f}", f"{t['p90_ms']:.1f}", "", ""]

    groups = (
        (
            ("nexcage pull", "nexcage image pull (fresh data root)"),
            ("nexcage bundle", "nexcage bundle REF DIR"),
        ),
        (("skopeo copy", "skopeo copy docker:// oci:"), ("umoci unpack", "umoci unpack")),
    )
    for item, group in zip(ITEMS, groups, strict=True):
        for step, label in group:
            if step in f["steps"]:
                rows.append(step_row(label, f["steps"][step]))
        if item in f["totals"]:
            label = "**nexcage total**" if item == "nexcage" else "**skopeo + umoci total**"
            rows.append(total_row(label, f["totals"][item]))
    for variant in SECOND:
        if variant in f["steps"]:
            rows.append(step_row(f"second pull: {SECOND_LABELS[variant]}", f["steps"][variant]))
    header = ["step", "median ms", "p90 ms", "peak RSS MiB max / median", "cpu ms (sys)"]
    return _table(header, rows)


def targets_table(f: dict[str, Any]) -> str:
    def verdict(key: str) -> str:
        t = f["targets"].get(key)
        return "" if t is None else ("met" if t["met"] else "**missed**")

    rows = []
    r = f["ratios"]
    if r["total"] is not None:
        rows.append(
            [
                "nexcage total / (skopeo + umoci) total",
                f"{r['total']:.2f}x",
                f"<= {TARGET_RATIO}x",
                verdict("ratio"),
            ]
        )
    if r["pull_vs_copy"] is not None:
        rows.append(["nexcage pull / skopeo copy", f"{r['pull_vs_copy']:.2f}x", "", ""])
    if r["bundle_vs_unpack"] is not None:
        rows.append(["nexcage bundle / umoci unpack", f"{r['bundle_vs_unpack']:.2f}x", "", ""])
    for variant in SECOND:
        key = f"second_pull_ms.{variant}"
        if key in f["targets"]:
            rows.append(
                [
                    f"second pull, median: {SECOND_LABELS[variant]}",
                    f"{f['targets'][key]['value']:.1f} ms",
                    f"< {TARGET_SECOND_MS:g} ms",
                    verdict(key),
                ]
            )
    for step in ("nexcage pull", "nexcage bundle"):
        key = f"rss_mib.{step}"
        if key in f["targets"]:
            note = "" if step == "nexcage pull" else " (the issue's bound is for the pull)"
            rows.append(
                [
                    f"peak RSS, max: {step}",
                    f"{f['targets'][key]['value']:.1f} MiB",
                    f"< {TARGET_RSS_MIB:g} MiB{note}",
                    verdict(key),
                ]
            )
    return _table(["figure", "value", "target", ""], rows)


def report(f: dict[str, Any]) -> str:
    img = f["image"]
    layers = ", ".join(f"{la['name']} {la['size'] / MIB:.1f}" for la in img["layers"])
    parts = [
        f"nexcage pull benchmark: {f['rounds']} rounds (+{f['warmup']} warm-up), temp dir "
        f"{f['tmpdir']}; spawn trampoline adds {f['trampoline_ms']:.2f} ms per call "
        "(not in the figures)",
        f"image: {len(img['layers'])} gzip layers, {img['compressed_mib']:.1f} MiB compressed "
        f"({layers}), {img['content_mib']:.1f} MiB of file content in {img['files']} entries "
        f"(tar {img['tar_mib']:.1f} MiB)",
    ]
    if not f["steps"]:
        parts.append("no complete round")
    else:
        tp = f["throughput"]
        parts += [
            "",
            "Wall time per step (medians over rounds; totals are per-round sums; second pulls "
            f"x{f['second_per_round']} per round; RSS from wait4 ru_maxrss):",
            times_table(f),
            "",
            f"Download rate (compressed MiB / median pull time): nexcage "
            f"{tp['nexcage_pull_mib_s']:.0f} MiB/s, skopeo {tp['skopeo_copy_mib_s']:.0f} MiB/s",
            "",
            "Ratios (medians) and the issue's targets:",
            targets_table(f),
        ]
    for key in ("notes", "errors", "leaks"):
        parts += ["", f"{key}: " + ("none" if not f[key] else "")]
        parts += [f"  - {item}" for item in f[key]]
    return "\n".join(parts)


# -- main -------------------------------------------------------------------------------------


def leaks(workdir: str, default_roots: dict[str, list[str] | None]) -> list[str]:
    """Processes still running from the work dir, and anything new in nexcage's default
    roots (every call here passes --root and --data-root, so those must not change)."""
    found = [f"process {pid} still runs from {workdir}" for pid in pids_with_arg(workdir)]
    for path, before in default_roots.items():
        now = sorted(os.listdir(path)) if os.path.isdir(path) else None
        if now != before:
            found.append(f"{path} changed during the run: {before} -> {now}")
    if os.path.exists(workdir):
        found.append(f"{workdir} could not be removed")
    return found


def check_space(workdir: str, image: dict[str, Any], opts: argparse.Namespace) -> None:
    """Every round's output stays until the end (see `loop`): refuse to start without room
    for it (per round: two copies of the blobs and two unpacked trees, plus 10 %)."""
    per_round = 2 * (image["compressed_mib"] + image["tar_mib"]) * 1.1
    need = (opts.rounds + opts.warmup) * per_round + image["compressed_mib"]  # + the registry
    free = shutil.disk_usage(workdir).free / MIB
    if free < need:
        raise SystemExit(
            f"pull: {need:.0f} MiB needed in {os.path.dirname(workdir)}, {free:.0f} MiB free: "
            "fewer --rounds or another --tmpdir"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first (default 1)")
    parser.add_argument(
        "--second",
        type=int,
        default=3,
        help="pulls of the stored image per variant and round (default 3)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=900.0,
        help="start no new round after this long (default 900)",
    )
    parser.add_argument("--tmpdir", help="where the image, registry and outputs go ($TMPDIR)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout (the tables go to stderr)",
    )
    opts = parser.parse_args(argv)
    if opts.rounds < 1 or opts.warmup < 0 or opts.second < 1:
        parser.error("--rounds and --second must be at least 1, --warmup at least 0")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("pull: needs root (umoci unpack as root keeps the layers' owners)")
    missing = [t for t in ("skopeo", "umoci", "docker-registry") if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"pull: not found on PATH: {', '.join(missing)}")
    t_start = time.monotonic()
    default_roots = {
        p: sorted(os.listdir(p)) if os.path.isdir(p) else None
        for p in ("/var/lib/nexcage", "/run/nexcage")
    }
    workdir = tempfile.mkdtemp(prefix="nexcage-bench-pull-", dir=opts.tmpdir)
    home = os.path.join(workdir, "home")
    os.mkdir(home, 0o700)
    sp = Spawner(workdir, home)
    registry = None
    try:
        print("pull: building the image ...", file=sys.stderr)
        image = build_layout(os.path.join(workdir, "layout"), os.path.join(workdir, "scratch"))
        shutil.rmtree(os.path.join(workdir, "scratch"))
        check_space(workdir, image, opts)
        registry = start_registry(Path(workdir, "registry-run"), Path(workdir, "registry"))
        push(os.path.join(workdir, "layout"), registry, home)
        config = os.path.join(workdir, "nexcage.toml")
        Path(config).write_text(f'[registries]\ninsecure = ["{registry.host}"]\n')
        os.sync()
        print(f"pull: image built and pushed ({time.monotonic() - t_start:.0f} s)", file=sys.stderr)
        ref = f"{registry.host}/{REPOSITORY}:{TAG}"
        bench = Bench(sp, workdir, ref, config, image["manifest_digest"], opts)
        result = loop(bench, opts, t_start)
    finally:
        if registry is not None:
            registry.stop()
        sp.close()
        shutil.rmtree(workdir, ignore_errors=True)
    result["leaks"] = leaks(workdir, default_roots)
    f = figures(result, image, opts, os.path.dirname(workdir))
    print(report(f), file=sys.stderr if opts.json else sys.stdout)
    if opts.json:
        print(json.dumps(f, indent=None, sort_keys=True))
    return 1 if f["errors"] or f["leaks"] or not f["steps"] else 0


if __name__ == "__main__":
    sys.exit(main())
