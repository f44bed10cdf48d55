"""An OCI image config as the ``config`` of an LXC image (``nexcage template --format lxc``), pure.

An LXC image is two tarballs: the root filesystem and a metadata tarball whose ``config`` the
``local`` template (``lxc-create -t local -- --metadata META --fstree ROOTFS``,
/usr/share/lxc/templates/lxc-local) appends to the new container's config. What it reads from the
metadata: ``config`` (required; ``config-user`` instead for an unprivileged ``lxc-create``),
``excludes``, ``fstab``, ``templates`` and ``create-message`` (all optional). It then runs
``sed -i s#LXC_NAME#<name>#g`` (likewise ``LXC_PATH``, ``LXC_ROOTFS``, ``LXC_TEMPLATE_CONFIG``,
``LXC_HOOK_DIR``) over the config: a value holding one of those words would come out changed.

The keys: ``lxc.include`` of LXC's ``common.conf`` (and ``userns.conf`` in ``config-user``),
as LXC's own images and lxc-oci do; ``lxc.arch`` from the image's architecture; then what the
image config decides, through the same conversion as ``nexcage bundle`` (image/bundle.py: env
with PATH and HOME, WorkingDir, the user resolved in the image's /etc/passwd) and the same
translation as the lxc backend (lxc_config.py): ``lxc.init.cmd`` (Entrypoint + Cmd, when LXC's
split on spaces can reproduce them), ``lxc.environment``, ``lxc.init.cwd``, ``lxc.init.uid``,
``lxc.init.gid``, ``lxc.init.groups`` and ``lxc.signal.halt`` (StopSignal; SIGTERM when the image
names none, as Docker and Proxmox's OCI import stop a container; LXC's own default, SIGPWR, is
for a system init).

Every image-derived value is refused when it holds a line feed, carriage return or NUL (it would
end its config line and start another: an ``lxc.mount.entry`` of the host's ``/``) or one of the
words lxc-local replaces; `check_image` says so with the image config's JSON paths before
anything is unpacked or written, `template_keys` checks the final values again and `render`
refuses them a third time.
"""

from __future__ import annotations

from nexcage.backends.translate.lxc_config import (
    HostFacts,
    Translation,
    init_cmd,
    render,
    translate,
)
from nexcage.errors import Finding, Violation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nexcage.spec.config import Spec

# Words lxc-local substitutes in the config it assembles (templates/lxc-local.in).
PLACEHOLDERS = ("LXC_NAME", "LXC_PATH", "LXC_ROOTFS", "LXC_TEMPLATE_CONFIG", "LXC_HOOK_DIR")
COMMON = ("lxc.include", "LXC_TEMPLATE_CONFIG/common.conf")
USERNS = ("lxc.include", "LXC_TEMPLATE_CONFIG/userns.conf")
DEFAULT_HALT = "SIGTERM"
# Keys the image decides, in the order lxc_config.translate emits them.
IMAGE_KEYS = frozenset(
    {
        "lxc.environment",
        "lxc.init.cwd",
        "lxc.init.uid",
        "lxc.init.gid",
        "lxc.init.groups",
        "lxc.signal.halt",
    }
)
# OCI (GOARCH) architecture -> a name lxc.arch accepts (LXC confile.c lxc_config_parse_arch).
ARCHES = {
    "amd64": "amd64",
    "arm64": "arm64",
    "386": "i386",
    "arm": "armhf",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64le": "mips64el",
}
_CHARS = (("\n", "a line feed"), ("\r", "a carriage return"), ("\0", "a NUL"))
# runtime-spec paths of the translation -> the image config field they come from
_SOURCES = (
    ("process.args", "config.Cmd"),
    ("process.cwd", "config.WorkingDir"),
    ("process.user", "config.User"),
    ("annotations", "config.StopSignal"),
)


def problem(value: str) -> str:
    """Why ``value`` cannot go into a template's config, or ""."""
    for char, name in _CHARS:
        if char in value:
            return f"contains {name}: refused, it would inject lines into the LXC config"
    for word in PLACEHOLDERS:
        if word in value:
            return f"contains {word}, which lxc-local replaces when it creates a container"
    return ""


def image_values(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(JSON path, value) of every string of the image config a template key derives from."""
    conf = doc.get("config")
    conf = conf if isinstance(conf, dict) else {}
    found: list[tuple[str, str]] = []
    for field in ("Entrypoint", "Cmd", "Env"):
        items = conf.get(field)
        for i, item in enumerate(items if isinstance(items, list) else ()):
            if isinstance(item, str):
                found.append((f"config.{field}[{i}]", item))
    for field in ("WorkingDir", "User", "StopSignal"):
        value = conf.get(field)
        if isinstance(value, str):
            found.append((f"config.{field}", value))
    return found


def check_image(doc: dict[str, Any]) -> list[Violation]:
    """Every image-derived value that cannot be written into a template's config."""
    return [Violation(path, why) for path, value in image_values(doc) if (why := problem(value))]


def _image_path(path: str, spec: Spec, doc: dict[str, Any]) -> str:
    """The image config field a finding of the translation comes from (by value for Env)."""
    if path.startswith("process.env["):
        env = spec.process.env or () if spec.process is not None else ()
        index = int(path[len("process.env[") : path.index("]")])
        entry = env[index] if index < len(env) else None
        for image_path, value in image_values(doc):
            if image_path.startswith("config.Env[") and value == entry:
                return image_path
        return "config.User"  # HOME, from the user's passwd entry in the image
    for prefix, field in _SOURCES:
        if path.startswith(prefix):
            return field
    return path


def template_keys(spec: Spec, doc: dict[str, Any]) -> Translation:
    """The ``config`` keys (without the includes) for ``spec``, the runtime config
    ``image.bundle.runtime_spec`` made of the image config ``doc``; findings carry image
    config paths."""
    full = translate(spec, container_id="template", bundle="/", host=HostFacts())
    out = Translation()
    arch = ARCHES.get(str(doc.get("architecture") or ""))
    if arch:
        out.add("lxc.arch", arch, "architecture")
    args = spec.process.args or () if spec.process is not None else ()
    command = init_cmd(args)
    if command is None:
        out.find(
            "config.Cmd",
            "LXC splits lxc.init.cmd on spaces, without quoting: an argument that is empty or "
            "holds a space (or a line break) cannot be written there",
        )
    else:
        out.add("lxc.init.cmd", command, "config.Cmd")
    for key, value in full.keys:
        if key in IMAGE_KEYS:
            out.keys.append((key, value))
    if not out.get("lxc.signal.halt"):
        out.add("lxc.signal.halt", DEFAULT_HALT, "config.StopSignal")
    for finding in full.findings:
        if finding.path.startswith(("process.args", "process.env", "process.cwd",
                                    "process.user", "annotations")):  # fmt: skip
            out.findings.append(Finding(_image_path(finding.path, spec, doc), finding.reason))
    for key, value in out.keys:
        why = problem(value)
        if why:
            out.find(key, why)
    return out


def config_text(keys: list[tuple[str, str]], header: str, *, user: bool = False) -> str:
    """The metadata's ``config`` (``user``: ``config-user``, for unprivileged containers)."""
    includes = [COMMON, USERNS] if user else [COMMON]
    return render([*includes, *keys], header)
