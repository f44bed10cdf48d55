"""Image config -> runtime config.json (image-spec conversion.md, umoci ``MutateRuntimeSpec``;
CONTRACTS.md §3.9). Pure: the caller unpacks the rootfs and resolves the user.

Starting point: ``spec.default.default_spec()`` (runc's ``spec`` template, ociVersion 1.3.0),
then, as umoci does:

- ``process.args`` = Entrypoint ++ Cmd; a command given by the user replaces Cmd (the
  Entrypoint stays, as with ``docker run IMAGE ARGS``). Nothing at all is an error (umoci would
  run the template's ``sh``; a container whose command nobody chose is a surprise).
- ``process.env``: the template's PATH, each image Env entry replacing a same-named one,
  ``HOME`` from the user's passwd entry when the image sets none; ``TERM=xterm`` only with a
  terminal (podman, Docker), which umoci keeps always.
- ``process.cwd`` = WorkingDir or ``/``; ``process.user`` = the resolved uid, gid and
  additional gids; ``process.terminal`` only when asked for (umoci sets it always).
- ``root`` = ``rootfs``, writable; ``hostname`` given by the caller (a short id).
- Volumes -> ``tmpfs`` mounts (source ``none``, ``rw,nosuid,nodev,noexec,relatime``: umoci's).
- Annotations ``org.opencontainers.image.{os,architecture,variant,os.version,author,created,
  stopSignal,exposedPorts}``, then every Label copied over them (labels win, conversion.md).

Every image-derived value is checked first; all problems are reported at once, each with its
JSON path in the image config (``config.Env[2]``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from nexcage.errors import InvalidImage, Violation
from nexcage.image import manifest as mf
from nexcage.image.user import ExecUser
from nexcage.spec.default import default_spec
from nexcage.spec.versions import minimal_version

ANNOTATION = "org.opencontainers.image."
STOP_SIGNAL = ANNOTATION + "stopSignal"
EXPOSED_PORTS = ANNOTATION + "exposedPorts"
# image config field -> annotation (conversion.md "Annotation Fields")
_ANNOTATED = (
    ("os", ANNOTATION + "os"),
    ("architecture", ANNOTATION + "architecture"),
    ("variant", ANNOTATION + "variant"),
    ("os.version", ANNOTATION + "os.version"),
    ("author", ANNOTATION + "author"),
    ("created", ANNOTATION + "created"),
)
VOLUME_OPTIONS = ("rw", "nosuid", "nodev", "noexec", "relatime")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _conf(doc: dict[str, Any]) -> dict[str, Any]:
    conf = doc.get("config")
    return conf if isinstance(conf, dict) else {}


def check_image_config(doc: dict[str, Any]) -> list[Violation]:
    """Every problem that stops ``doc`` from becoming a runtime config (types, NULs, relative
    paths, a non-Linux image), beyond `manifest.check_config`'s."""
    found = list(mf.check_config(doc))
    if found:
        return found
    if doc.get("os") != "linux":
        found.append(Violation("os", f"only linux images can run here, not {doc.get('os')!r}"))
    conf = _conf(doc)
    for key in ("Entrypoint", "Cmd", "Env"):
        for i, item in enumerate(conf.get(key) or []):
            if "\0" in item:
                found.append(Violation(f"config.{key}[{i}]", "contains NUL"))
    for key in ("User", "WorkingDir", "StopSignal"):
        value = conf.get(key)
        if isinstance(value, str) and ("\0" in value or "\n" in value):
            found.append(Violation(f"config.{key}", "contains NUL or a newline"))
    workdir = conf.get("WorkingDir") or ""
    if workdir and not workdir.startswith("/"):
        found.append(Violation("config.WorkingDir", f"must be an absolute path, not {workdir!r}"))
    for path in conf.get("Volumes") or {}:
        if not path.startswith("/") or "\0" in path:
            found.append(Violation(f"config.Volumes.{path}", "must be an absolute path"))
    for key in conf.get("Labels") or {}:
        if not key:
            found.append(Violation("config.Labels", "empty label name"))
    return found


def validate(doc: dict[str, Any], command: Sequence[str] | None = None) -> None:
    """Raise InvalidImage with every reason ``doc`` (and a user's command) cannot run."""
    problems = check_image_config(doc)
    conf = _conf(doc)
    if not problems and not (conf.get("Entrypoint") or command or conf.get("Cmd")):
        problems.append(
            Violation("config.Cmd", "the image has no Entrypoint or Cmd and no command was given")
        )
    for i, arg in enumerate(command or ()):
        if "\0" in arg:
            problems.append(Violation(f"command[{i}]", "contains NUL"))
    if problems:
        raise InvalidImage("image config", problems)


def working_dir(doc: dict[str, Any]) -> str:
    return posixpath.normpath(_conf(doc).get("WorkingDir") or "/")


def volumes(doc: dict[str, Any]) -> list[str]:
    """Volume paths, normalised, sorted, without duplicates."""
    return sorted({posixpath.normpath(p) for p in _conf(doc).get("Volumes") or {}})


def user_spec(doc: dict[str, Any]) -> str:
    return str(_conf(doc).get("User") or "")


def _env(image_env: Sequence[str], home: str, tty: bool) -> list[str]:
    merged: dict[str, str] = {"PATH": DEFAULT_PATH}
    if tty:
        merged["TERM"] = "TERM=xterm"
    for item in image_env:
        merged[item.split("=", 1)[0]] = item  # same name: the image's wins, in place
    merged.setdefault("HOME", f"HOME={home or '/'}")
    return list(merged.values())


def _annotations(doc: dict[str, Any]) -> dict[str, str]:
    conf = _conf(doc)
    out: dict[str, str] = {}
    for field, key in _ANNOTATED:
        value = doc.get(field)
        if isinstance(value, str) and value:
            out[key] = value
    if conf.get("StopSignal"):
        out[STOP_SIGNAL] = conf["StopSignal"]
    ports = conf.get("ExposedPorts") or {}
    if ports:
        out[EXPOSED_PORTS] = ",".join(sorted(ports))
    out.update(conf.get("Labels") or {})
    return out


def runtime_spec(
    doc: dict[str, Any],
    user: ExecUser,
    *,
    command: Sequence[str] | None = None,
    tty: bool = False,
    hostname: str = "nexcage",
    cgroup_ns: bool = True,
) -> dict[str, Any]:
    """The config.json for an image config ``doc`` and its resolved ``user``.

    Raises InvalidImage (JSON paths into the image config) for anything unusable.
    """
    validate(doc, command)
    conf = _conf(doc)
    args = [*(conf.get("Entrypoint") or []), *(command or conf.get("Cmd") or [])]
    spec = default_spec(cgroup_ns=cgroup_ns)
    process = spec["process"]
    process["terminal"] = tty
    process["args"] = args
    process["env"] = _env(conf.get("Env") or [], user.home, tty)
    process["cwd"] = working_dir(doc)
    process["user"] = {"uid": user.uid, "gid": user.gid}
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    spec["root"] = {"path": "rootfs", "readonly": False}
    spec["hostname"] = hostname
    taken = {posixpath.normpath(m["destination"]) for m in spec["mounts"]}
    for path in volumes(doc):
        if path not in taken:
            spec["mounts"].append(
                {
                    "destination": path,
                    "type": "tmpfs",
                    "source": "none",
                    "options": list(VOLUME_OPTIONS),
                }
            )
    annotations = _annotations(doc)
    if annotations:
        spec["annotations"] = annotations
    # Declare the oldest spec release that covers what the bundle uses (umoci writes 1.0.x), so
    # the bundle also runs directly on runtimes that check the version (crun 1.8).
    spec["ociVersion"] = minimal_version(spec)
    return spec
