"""Container rootfs from a cached image, per storage driver, against a full extraction.

Usage: sudo .venv/bin/python bench/create_from_image.py [--rounds N] [--drivers a,b] [--json]

For a cached image of ~50 MB and of ~500 MB (built here, deterministic, cached in ``--cache``;
imported with ``nexcage image import`` of the OCI archive), it times preparing a container
rootfs on overlay, btrfs (a loop file), zfs (a zfs-fuse pool on a file) and dir, against a full
extraction of the image into a fresh directory — what Proxmox VE 9.1 does per container (GNU
``tar -xzpf`` per layer, and nexcage's own unpacker for reference).

Per driver two figures: ``prepare`` is what ``create --image`` pays for its rootfs
(`ops.storage.prepare_rootfs`: driver selection, the layers checked under the lease, the
snapshot/clone/copy); ``create_rootfs`` is the driver call alone. Layers are unpacked once
before timing (the image is cached); each sample's rootfs is removed untimed. Every round runs
every arm once, in an order that rotates, so drift hits all arms alike. Page cache warm.

Targets (issue): prepare < 50 ms (median) on overlay and btrfs, < 150 ms on zfs-fuse; the
500 MB / 50 MB ratio < 1.3; against full extraction < 0.05 for the 500 MB image.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NEXCAGE = os.fspath(REPO / ".venv" / "bin" / "nexcage")
sys.path[:0] = [os.fspath(REPO / "src"), os.fspath(REPO / "tests")]

from nexcage import settings as settings_mod  # noqa: E402
from nexcage.image.store import ImageRecord, ImageStore  # noqa: E402
from nexcage.image.unpack import unpack_image  # noqa: E402
from nexcage.ops import storage as ops_storage  # noqa: E402
from nexcage.storage import layers, select  # noqa: E402
from nexcage.storage.base import StorageDriver  # noqa: E402
from support.busybox import EPOCH, go_arch, layer_tar, make_rootfs  # noqa: E402

SIZES = (50, 500)  # MB of file data in the image (plus busybox)
DRIVERS = ("overlay", "btrfs", "zfs", "dir")
DATA_LAYERS = 4
TARGET_MS = {"overlay": 50.0, "btrfs": 50.0, "zfs": 150.0}
TARGET_SIZE_RATIO = 1.3
TARGET_VS_EXTRACT = 0.05
MB = 1_000_000


# -- images ------------------------------------------------------------------------------------


def _data_layer(path: Path, index: int, total: int, rng: random.Random) -> None:
    """A layer of ``total`` bytes in files of 4 KiB .. 1 MiB (log-uniform), 100 per directory;
    random content (it does not compress: the unpack does real work)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        written, n = 0, 0
        while written < total:
            size = min(int(2 ** rng.uniform(12, 20)), total - written)
            name = f"data/l{index}/d{n // 100:03d}/f{n:05d}"
            if n % 100 == 0:
                info = tarfile.TarInfo(os.path.dirname(name))
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
                tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, EPOCH
            tar.addfile(info, io.BytesIO(rng.randbytes(size)))
            written += size
            n += 1


def _blob(raw: Path, blobs: Path) -> tuple[str, str, int]:
    """gzip (level 1) ``raw`` into ``blobs``; (digest, diff_id, size)."""
    diff, comp = hashlib.sha256(), hashlib.sha256()
    tmp = blobs / "tmp"
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(raw, "rb") as src, open(tmp, "wb") as dst:
        while block := src.read(1 << 20):
            diff.update(block)
            out = c.compress(block)
            comp.update(out)
            dst.write(out)
        out = c.flush()
        comp.update(out)
        dst.write(out)
    digest = comp.hexdigest()
    os.rename(tmp, blobs / digest)
    return "sha256:" + digest, "sha256:" + diff.hexdigest(), os.path.getsize(blobs / digest)


def build_image(cache: Path, size_mb: int) -> tuple[str, str]:
    """(OCI archive path, reference) of the ``size_mb`` image, built once into ``cache``."""
    ref = f"localhost/bench/image-{size_mb}mb:1"
    archive = cache / f"image-{size_mb}mb.tar"
    if archive.exists():
        return os.fspath(archive), ref
    print(f"building the {size_mb} MB image in {cache} (once)...", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="bench-image-", dir=cache))
    try:
        blobs = work / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        (work / "base.tar").write_bytes(layer_tar(make_rootfs(work / "rootfs")))
        raws = [work / "base.tar"]
        rng = random.Random(size_mb)
        for i in range(DATA_LAYERS):
            raws.append(work / f"layer{i}.tar")
            _data_layer(raws[-1], i, size_mb * MB // DATA_LAYERS, rng)
        descs, diff_ids = [], []
        for raw in raws:
            digest, diff_id, size = _blob(raw, blobs)
            raw.unlink()
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                          "digest": digest, "size": size})  # fmt: skip
            diff_ids.append(diff_id)
        config = {
            "created": "2020-01-01T00:00:00Z", "architecture": go_arch(), "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }  # fmt: skip
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": _put(blobs, config, "application/vnd.oci.image.config.v1+json"),
                    "layers": descs}  # fmt: skip
        mdesc = _put(blobs, manifest, manifest["mediaType"])
        mdesc["annotations"] = {"org.opencontainers.image.ref.name": ref}
        (work / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
        (work / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        with tarfile.open(f"{archive}.tmp", "w") as tar:
            for name in ("oci-layout", "index.json", "blobs"):
                tar.add(work / name, arcname=name)
        os.rename(f"{archive}.tmp", archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return os.fspath(archive), ref


def _put(blobs: Path, doc: dict[str, Any], media_type: str) -> dict[str, Any]:
    data = json.dumps(doc, sort_keys=True).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


# -- drivers -----------------------------------------------------------------------------------


class Unavailable(Exception):
    pass


class Target:
    """One driver, ready: its settings, its data root (images imported), its driver object."""

    def __init__(self, name: str, data_root: Path, config: str | None, workdir: Path) -> None:
        self.name, self.data_root, self.workdir = name, data_root, workdir
        flags = {"--data-root": os.fspath(data_root), "--root": os.fspath(workdir / "run"),
                 "--config": config}  # fmt: skip
        env = {"NEXCAGE_STORAGE_DRIVER": name}
        self.settings = settings_mod.load(flags, env)
        self.driver: StorageDriver = select.open_driver(self.settings)
        self.store = ImageStore(os.fspath(data_root))
        self.records: dict[int, ImageRecord] = {}
        self.n = 0

    def import_image(self, size: int, archive: str, ref: str) -> None:
        argv = [NEXCAGE, "--data-root", os.fspath(self.data_root), "image", "import", archive]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=3600)
        self.records[size] = self.store.resolve(ref)
        started = time.perf_counter()
        top = layers.ensure_image(self.driver, self.store, self.records[size],
                                  ops_storage.lock_dir(os.fspath(self.data_root)))  # fmt: skip
        print(f"  {self.name}: {size} MB image unpacked onto the driver in "
              f"{time.perf_counter() - started:.1f} s (top {top})", file=sys.stderr)  # fmt: skip

    def prepare(self, size: int) -> float:
        """ops.storage.prepare_rootfs, what create --image pays; seconds."""
        self.n += 1
        cid = f"bench-{self.n}"
        bundle = self.workdir / "bundles" / cid
        bundle.mkdir(parents=True)
        started = time.perf_counter()
        ops_storage.prepare_rootfs(self.settings, self.records[size], cid, os.fspath(bundle))
        took = time.perf_counter() - started
        self.driver.remove_rootfs(cid)
        shutil.rmtree(bundle)
        return took

    def create_rootfs(self, size: int) -> float:
        """The driver's snapshot/clone/copy alone; seconds."""
        self.n += 1
        cid = f"bench-{self.n}"
        top = layers.top_chain(self.records[size])
        started = time.perf_counter()
        self.driver.create_rootfs(cid, top)
        took = time.perf_counter() - started
        self.driver.remove_rootfs(cid)
        return took


@contextmanager
def target(name: str, base: Path) -> Iterator[Target]:
    """A data root where driver ``name`` works (support.storage does the loop btrfs and the
    zfs-fuse pool, and undoes them: unmount, losetup -d, daemon stopped by its pid)."""
    from support import unmount_under
    from support.storage import loop_btrfs, zfs_fuse_daemon, zfs_pool

    workdir = base / name
    workdir.mkdir()
    with ExitStack() as stack:
        config = None
        try:
            if name == "btrfs":
                data_root = stack.enter_context(loop_btrfs(workdir, size="6G")) / "data"
            else:
                data_root = workdir / "data"
            data_root.mkdir()
            if name == "zfs":
                stack.enter_context(zfs_fuse_daemon(workdir))
                mountpoint = data_root / "storage" / "zfs"
                dataset = stack.enter_context(zfs_pool(workdir, mountpoint, size="6G"))
                conf = workdir / "config.toml"
                conf.write_text(f'[storage]\nzfs_dataset = "{dataset}"\n')
                config = os.fspath(conf)
        except BaseException as exc:  # support's `missing` raises pytest's Skipped
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise Unavailable(f"{name}: {exc}") from None
        stack.callback(unmount_under, os.fspath(data_root))
        yield Target(name, data_root, config, workdir)


# -- full extraction (what PVE does per container) ---------------------------------------------


def extract_tar(store: ImageStore, record: ImageRecord, dest: Path) -> float:
    """GNU tar of every layer into a fresh directory (as pct create does with the template)."""
    dest.mkdir()
    started = time.perf_counter()
    for desc in record.layers:
        subprocess.run(["tar", "-xzpf", store.blob_path(desc.digest), "-C", os.fspath(dest),
                        "--numeric-owner"], check=True, timeout=3600)  # fmt: skip
    took = time.perf_counter() - started
    shutil.rmtree(dest)
    return took


def extract_nexcage(store: ImageStore, record: ImageRecord, dest: Path) -> float:
    started = time.perf_counter()
    unpack_image(store, record, os.fspath(dest))
    took = time.perf_counter() - started
    shutil.rmtree(dest)
    return took


# -- the run -----------------------------------------------------------------------------------


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def p90_ms(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000


def run(opts: argparse.Namespace) -> dict[str, Any]:
    cache = Path(opts.cache)
    cache.mkdir(parents=True, exist_ok=True)
    images = {size: build_image(cache, size) for size in SIZES}
    base = Path(tempfile.mkdtemp(prefix="bench-create-", dir=opts.tmpdir))
    samples: dict[str, dict[int, list[float]]] = {}
    unavailable: dict[str, str] = {}
    try:
        with ExitStack() as stack:
            targets: list[Target] = []
            for name in opts.drivers:
                try:
                    targets.append(stack.enter_context(target(name, base)))
                except Unavailable as exc:
                    unavailable[name] = str(exc)
                    print(f"skipping {exc}", file=sys.stderr)
            for t in targets:
                for size, (archive, ref) in images.items():
                    t.import_image(size, archive, ref)
            ref_store = targets[0].store if targets else None
            arms: dict[str, Callable[[int], float]] = {}
            for t in targets:
                arms[f"{t.name} prepare"] = t.prepare
                arms[f"{t.name} create_rootfs"] = t.create_rootfs
            if ref_store is not None:
                first = targets[0]
                arms["full extraction (tar)"] = lambda size: extract_tar(
                    first.store, first.records[size], base / "extract"
                )
                if not opts.no_python_extract:
                    arms["full extraction (nexcage unpack)"] = lambda size: extract_nexcage(
                        first.store, first.records[size], base / "extract"
                    )
            items = [(arm, size) for arm in arms for size in SIZES]
            for i in range(opts.warmup + opts.rounds):
                shift = i % len(items)
                for arm, size in items[shift:] + items[:shift]:
                    took = arms[arm](size)
                    if i >= opts.warmup:
                        samples.setdefault(arm, {}).setdefault(size, []).append(took)
                print(f"round {i + 1}/{opts.warmup + opts.rounds} done", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"samples": samples, "unavailable": unavailable, "rounds": opts.rounds}


def figures(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"arms": {}, "unavailable": result["unavailable"]}
    samples = result["samples"]
    extract = samples.get("full extraction (tar)", {})
    for arm, by_size in samples.items():
        f: dict[str, Any] = {}
        for size, values in by_size.items():
            f[f"{size}MB"] = {"median_ms": median_ms(values), "p90_ms": p90_ms(values)}
        small, big = median_ms(by_size[SIZES[0]]), median_ms(by_size[SIZES[1]])
        f["ratio_500_50"] = big / small if small else None
        if SIZES[1] in extract:
            f["vs_extraction_500"] = big / median_ms(extract[SIZES[1]])
        out["arms"][arm] = f
    return out


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(f: dict[str, Any]) -> str:
    lines = [
        "| arm | 50 MB median (p90) ms | 500 MB median (p90) ms | 500/50 | vs full extraction "
        "(500 MB, tar) | targets |",
        "|---|---|---|---|---|---|",
    ]
    for arm, a in f["arms"].items():
        small, big = a[f"{SIZES[0]}MB"], a[f"{SIZES[1]}MB"]
        driver, _, kind = arm.partition(" ")
        targets = ""
        if kind == "prepare" and driver in TARGET_MS:
            fast = big["median_ms"] < TARGET_MS[driver]
            flat = a["ratio_500_50"] < TARGET_SIZE_RATIO
            cheap = a.get("vs_extraction_500", 1) < TARGET_VS_EXTRACT
            targets = (
                f"< {TARGET_MS[driver]:.0f} ms: {_mark(fast)}; "
                f"ratio < {TARGET_SIZE_RATIO}: {_mark(flat)}; "
                f"< {TARGET_VS_EXTRACT}x: {_mark(cheap)}"
            )
        lines.append(
            f"| {arm} | {small['median_ms']:.1f} ({small['p90_ms']:.1f}) "
            f"| {big['median_ms']:.1f} ({big['p90_ms']:.1f}) | {a['ratio_500_50']:.2f} "
            f"| {a.get('vs_extraction_500', float('nan')):.4f} | {targets} |"
        )
    for name, why in f["unavailable"].items():
        lines.append(f"| {name} | unavailable: {why} | | | | |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--drivers", default=",".join(DRIVERS))
    parser.add_argument("--cache", default="/var/tmp/nexcage-bench-images")
    parser.add_argument("--tmpdir", default="/var/tmp")
    parser.add_argument("--no-python-extract", action="store_true",
                        help="leave out nexcage's own (slower) full unpack")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(argv)
    opts.drivers = [d for d in opts.drivers.split(",") if d]
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    # SIGTERM (timeout, kill) unwinds like ^C: mounts, loop devices and zfs-fuse are undone.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("needs root (mounts, loop devices, zfs-fuse)", file=sys.stderr)
        return 2
    result = run(opts)
    f = figures(result)
    print(f"create_from_image: {opts.rounds} rounds (+{opts.warmup} warm-up), medians; "
          f"drivers {', '.join(opts.drivers)}")  # fmt: skip
    print(report(f))
    if opts.json:
        print(json.dumps(f, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
