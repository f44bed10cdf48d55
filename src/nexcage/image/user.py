"""An image's ``User`` resolved through the image's own /etc/passwd and /etc/group.

The rules are moby/sys/user ``GetExecUser`` (used by umoci's ``MutateRuntimeSpec`` and by runc),
line by line:

- ``User`` is ``user[:group]``; each part is a name or a number. Empty means uid 0.
- The user part matches the first passwd entry with that name, or, when numeric, that uid. A
  name with no entry is an error; a number with no entry is used as is (gid stays 0).
- A group part matches the first group entry with that name (or numeric gid) and replaces the
  gid; a name with no entry is an error, a number is used as is.
- Without a group part, a user found in passwd gets as additional gids every group whose member
  list names it. (The image-spec conversion text says "unless the user part is numeric"; umoci
  and runc resolve a numeric uid found in passwd to its name and add its groups: we follow them.)
- Fields that are not numbers parse as 0, blank lines are skipped (moby ``parseLine``).

The files are read with `rootfs.Root` (``clamp=True``): a symlinked /etc/passwd is followed the
way the container will see it, never out of the root.
"""

from __future__ import annotations

from nexcage.errors import InvalidImage, UnsafePath, Violation
from nexcage.image.rootfs import Root

MAX_ID = (1 << 31) - 1
MAX_DB_BYTES = 16 << 20


class ExecUser:
    __slots__ = ("additional_gids", "gid", "home", "uid")

    def __init__(self, uid: int, gid: int, additional_gids: list[int], home: str) -> None:
        self.uid = uid
        self.gid = gid
        self.additional_gids = additional_gids
        self.home = home

    def __repr__(self) -> str:
        return f"ExecUser({self.uid}, {self.gid}, {self.additional_gids}, {self.home!r})"


def _int(text: str) -> int:
    # Go's strconv.Atoi: optional sign, decimal digits only; moby ignores the error (0).
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body or not body.isascii() or not body.isdigit():
        return 0
    return int(text)


def _lines(text: str | None) -> list[list[str]]:
    if text is None:
        return []
    return [line.strip().split(":") for line in text.splitlines() if line.strip()]


def _field(parts: list[str], i: int) -> str:
    return parts[i] if i < len(parts) else ""


def _numeric(text: str) -> int | None:
    body = text[1:] if text[:1] in ("+", "-") else text
    if body and body.isascii() and body.isdigit():
        return int(text)
    return None


def resolve(spec: str, passwd: str | None, group: str | None) -> ExecUser:
    """moby GetExecUser with defaults uid 0, gid 0, home "/". ``passwd``/``group`` are the
    files' contents, None when the image has none. Raises InvalidImage at ``config.User``."""
    user_arg, _, group_arg = spec.partition(":")
    matched, uid, gid, home = _find_user(user_arg, passwd)
    sgids: list[int] = []
    if group_arg or matched:
        found = _find_groups(group_arg, matched, group)
        if not group_arg:
            sgids = found  # supplementary groups only in the implicit form
        elif found:
            gid = found[0]
        else:
            gid_arg = _numeric(group_arg)
            if gid_arg is None:
                raise _error(f"unable to find group {group_arg}: no matching entries in group file")
            if not 0 <= gid_arg <= MAX_ID:
                raise _error(f"gid {gid_arg} is out of range")
            gid = gid_arg
    return ExecUser(uid, gid, sgids, home)


def _find_user(user_arg: str, passwd: str | None) -> tuple[str, int, int, str]:
    """(matched name or "", uid, gid, home) for the user part."""
    uid_arg = _numeric(user_arg)
    for parts in _lines(passwd):
        name, entry_uid = parts[0], _int(_field(parts, 2))
        if user_arg == "":
            hit = entry_uid == 0  # the default user's own entry
        elif uid_arg is not None:
            hit = entry_uid == uid_arg
        else:
            hit = name == user_arg
        if hit:  # the first match wins
            return name, entry_uid, _int(_field(parts, 3)), _field(parts, 5)
    if not user_arg:
        return "", 0, 0, "/"
    if uid_arg is None:
        raise _error(f"unable to find user {user_arg}: no matching entries in passwd file")
    if not 0 <= uid_arg <= MAX_ID:
        raise _error(f"uid {uid_arg} is out of range")
    return "", uid_arg, 0, "/"


def _find_groups(group_arg: str, user: str, group: str | None) -> list[int]:
    """Gids of the group entries the group part names, or (without one) that list ``user``."""
    gid_arg = _numeric(group_arg)
    found = []
    for parts in _lines(group):
        name, entry_gid = parts[0], _int(_field(parts, 2))
        if not group_arg:
            members = _field(parts, 3)
            hit = user in (members.split(",") if members else [])
        elif gid_arg is not None:
            hit = entry_gid == gid_arg
        else:
            hit = name == group_arg
        if hit:
            found.append(entry_gid)
    return found


def _error(message: str) -> InvalidImage:
    return InvalidImage("image config", [Violation("config.User", message)])


def resolve_in_rootfs(rootfs: str, spec: str) -> ExecUser:
    """`resolve` against ``rootfs``/etc/passwd and /etc/group."""
    with Root(rootfs, clamp=True) as root:
        try:
            passwd = root.read_file("etc/passwd", MAX_DB_BYTES)
            group = root.read_file("etc/group", MAX_DB_BYTES)
        except UnsafePath as exc:
            raise _error(f"cannot read the image's user database: {exc}") from None
    return resolve(
        spec,
        passwd.decode("utf-8", "surrogateescape") if passwd is not None else None,
        group.decode("utf-8", "surrogateescape") if group is not None else None,
    )
