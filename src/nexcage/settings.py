"""nexcage configuration: defaults < config file (TOML) < environment ``NEXCAGE_*`` < flags.

PRODUCT.md §5. Every invocation loads settings, so this module is on the hot path (DESIGN.md): no
``json``/``re``/``typing``/``dataclasses``; ``tomllib`` (24 ms) is imported only when a config file
is actually read, ``re`` only when a routing rule is a regex, ``fnmatch`` only when a glob rule is
matched.

Validation fails closed: an unknown key or a value of the wrong type raises ``ConfigError`` naming
the source (``file:PATH``, ``env:NAME``, ``flag:--name``), the dotted key and what was expected. A
value is never silently dropped or coerced.
"""

from __future__ import annotations

import os

from nexcage.errors import ConfigError, UsageError
from nexcage.fastjson import dumps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from re import Pattern
    from typing import Any

DEFAULT_CONFIG = "/etc/nexcage/config.toml"
DEFAULT_DATA_ROOT = "/var/lib/nexcage"
DEFAULT_STATE_ROOT = "/run/nexcage"

# Backend names a value may name (PRODUCT.md table; `vm` and `jail` are "later").
RUNTIMES = frozenset({"crun", "runc", "lxc", "proxmox"})
# Backends whose binary path can be overridden with [runtimes.<name>] path / NEXCAGE_<NAME>_PATH.
BINARY_RUNTIMES = ("crun", "runc")
STORAGE_DRIVERS = ("auto", "overlay", "btrfs", "zfs", "dir")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
PROXMOX_KEYS = ("node", "api_url", "token_id", "token_secret_file", "storage", "bridge")

# Environment variables nexcage reads. Other NEXCAGE_* names are ignored: other tools (test
# harnesses, wrappers) may set some of their own.
ENV_VARS = {
    "NEXCAGE_DATA_ROOT": "data_root",
    "NEXCAGE_ROOT": "state_root",
    "NEXCAGE_RUNTIME": "default_runtime",
    "NEXCAGE_LOG_FORMAT": "log_format",
    "NEXCAGE_LOG_LEVEL": "log_level",
    "NEXCAGE_STORAGE_DRIVER": "storage.driver",
    "NEXCAGE_CRUN_PATH": "runtimes.crun.path",
    "NEXCAGE_RUNC_PATH": "runtimes.runc.path",
}
ENV_CONFIG = "NEXCAGE_CONFIG"

# Global flags that carry settings, spelled as on the command line (the keys of load()'s `flags`).
FLAGS = {
    "--data-root": "data_root",
    "--root": "state_root",
    "--runtime": "default_runtime",
    "--log-format": "log_format",
    "--log-level": "log_level",
}
FLAG_CONFIG = "--config"

SOURCE_DEFAULT = "default"


class _Bad(Exception):
    """A value failed validation: what is wrong and what was expected."""

    def __init__(self, message: str, expected: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected


def _type_name(value: object) -> str:
    # TOML's names for the types tomllib returns (bool first: it is an int subclass).
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "datetime"


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"wrong type {_type_name(value)}", "string")
    if not value:
        raise _Bad("empty string", "non-empty string")
    if "\0" in value or "\n" in value or "\r" in value:
        raise _Bad("contains a NUL or line break", "string without control characters")
    return value


def _abs_path(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"wrong type {_type_name(value)}", "absolute path (string)")
    text = _string(value)
    if not text.startswith("/"):
        raise _Bad(f"{text!r} is not absolute", "absolute path (string)")
    return os.path.normpath(text)


def _choice(choices: tuple[str, ...] | frozenset[str]) -> Callable[[object], str]:
    expected = "one of " + ", ".join(sorted(choices) if isinstance(choices, frozenset) else choices)

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise _Bad(f"wrong type {_type_name(value)}", f"string, {expected}")
        if value not in choices:
            raise _Bad(f"invalid value {value!r}", expected)
        return value

    return check


_ZFS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/")


def _zfs_dataset(value: object) -> str:
    text = _string(value)
    if text.startswith("/") or text.endswith("/") or "//" in text or set(text) - _ZFS_CHARS:
        raise _Bad(f"invalid dataset name {text!r}", "ZFS dataset name such as rpool/nexcage")
    return text


def _host_port(value: object) -> str:
    text = _string(value)
    if "://" in text or "/" in text or " " in text or "\t" in text:
        raise _Bad(f"invalid registry {text!r}", "host[:port] without scheme or path")
    return text


def _registry_list(value: object) -> list[str]:
    if not isinstance(value, list):
        raise _Bad(f"wrong type {_type_name(value)}", "array of strings")
    out: list[str] = []
    for i, item in enumerate(value):
        try:
            out.append(_host_port(item))
        except _Bad as exc:
            raise _Bad(f"[{i}]: {exc.message}", exc.expected) from None
    return out


def _url(value: object) -> str:
    text = _string(value)
    if not (text.startswith("https://") or text.startswith("http://")) or len(text) < 9:
        raise _Bad(f"invalid URL {text!r}", "http(s) URL such as https://pve1:8006/api2/json")
    return text


def _token_id(value: object) -> str:
    text = _string(value)
    user, _, token = text.partition("!")
    if "@" not in user or not token:
        raise _Bad(f"invalid token id {text!r}", "API token id USER@REALM!TOKENID")
    return text


# Dotted key -> (validator, default). The order is the order of `config show`.
_SCHEMA: dict[str, tuple[Callable[[object], Any], Any]] = {
    "data_root": (_abs_path, DEFAULT_DATA_ROOT),
    "state_root": (_abs_path, DEFAULT_STATE_ROOT),
    "default_runtime": (_choice(RUNTIMES), None),
    "log_format": (_choice(LOG_FORMATS), "text"),
    "log_level": (_choice(LOG_LEVELS), None),
    "storage.driver": (_choice(STORAGE_DRIVERS), "auto"),
    "storage.zfs_dataset": (_zfs_dataset, None),
    "registries.insecure": (_registry_list, []),
    "proxmox.node": (_string, None),
    "proxmox.api_url": (_url, None),
    "proxmox.token_id": (_token_id, None),
    "proxmox.token_secret_file": (_abs_path, None),
    "proxmox.storage": (_string, None),
    "proxmox.bridge": (_string, None),
    "runtimes.crun.path": (_abs_path, None),
    "runtimes.runc.path": (_abs_path, None),
}
# Keys valid inside each table of the file ([runtimes.<name>] is handled separately).
_TABLES = {
    "storage": ("driver", "zfs_dataset"),
    "registries": ("insecure",),
    "proxmox": PROXMOX_KEYS,
}
_TOP_KEYS = (
    "data_root",
    "state_root",
    "default_runtime",
    "log_format",
    "log_level",
    "storage",
    "registries",
    "proxmox",
    "runtimes",
    "routing",
)
_HINTS = {
    "proxmox.token_secret": "put the secret in a file readable only by root and set "
    "token_secret_file; secrets are never stored in the config file",
}


class RoutingRule:
    """One ``[[routing]]`` rule: a glob, or a regex when it starts with ``^`` or ends with ``$``."""

    __slots__ = ("_regex", "index", "pattern", "runtime")

    def __init__(self, index: int, pattern: str, runtime: str) -> None:
        self.index = index
        self.pattern = pattern
        self.runtime = runtime
        self._regex: Pattern[str] | None = None

    @property
    def is_regex(self) -> bool:
        return self.pattern.startswith("^") or self.pattern.endswith("$")

    def compile(self) -> Pattern[str]:
        """The compiled regex (regex rules only); ``re.error`` on a bad pattern."""
        if self._regex is None:
            import re

            self._regex = re.compile(self.pattern)
        return self._regex

    def matches(self, container_id: str) -> bool:
        if self.is_regex:
            # search, not match: "-db$" anchors only the end, "^kube-" only the start.
            return self.compile().search(container_id) is not None
        import fnmatch

        return fnmatch.fnmatchcase(container_id, self.pattern)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RoutingRule) and (self.pattern, self.runtime) == (
            other.pattern,
            other.runtime,
        )

    def __hash__(self) -> int:
        return hash((self.pattern, self.runtime))

    def __repr__(self) -> str:
        return f"RoutingRule({self.index}, {self.pattern!r}, {self.runtime!r})"


class ProxmoxSettings:
    __slots__ = PROXMOX_KEYS

    def __init__(self, values: dict[str, str | None]) -> None:
        self.node: str | None = values.get("node")
        self.api_url: str | None = values.get("api_url")
        self.token_id: str | None = values.get("token_id")
        self.token_secret_file: str | None = values.get("token_secret_file")
        self.storage: str | None = values.get("storage")
        self.bridge: str | None = values.get("bridge")


class Settings:
    """The effective configuration. ``sources[key]`` says where each value came from."""

    __slots__ = (
        "config_file",
        "config_file_source",
        "data_root",
        "default_runtime",
        "insecure_registries",
        "log_format",
        "log_level",
        "proxmox",
        "routing",
        "runtime_paths",
        "sources",
        "state_root",
        "storage_driver",
        "zfs_dataset",
    )

    def __init__(
        self,
        values: dict[str, Any],
        sources: dict[str, str],
        routing: list[RoutingRule],
        config_file: str | None = None,
        config_file_source: str = SOURCE_DEFAULT,
    ) -> None:
        self.data_root: str = values["data_root"]
        self.state_root: str = values["state_root"]
        # None: decided elsewhere ("crun if present, else runc").
        self.default_runtime: str | None = values["default_runtime"]
        self.log_format: str = values["log_format"]
        # None: info and up to a --log file, warning and up to stderr (nexcage.log).
        self.log_level: str | None = values["log_level"]
        self.storage_driver: str = values["storage.driver"]
        self.zfs_dataset: str | None = values["storage.zfs_dataset"]
        self.insecure_registries: list[str] = list(values["registries.insecure"])
        self.proxmox = ProxmoxSettings({k: values["proxmox." + k] for k in PROXMOX_KEYS})
        self.runtime_paths: dict[str, str] = {
            name: values[f"runtimes.{name}.path"]
            for name in BINARY_RUNTIMES
            if values[f"runtimes.{name}.path"] is not None
        }
        self.routing = routing
        self.sources = sources
        # The file actually read (None: none) and where its name came from.
        self.config_file = config_file
        self.config_file_source = config_file_source

    @property
    def forced_runtime(self) -> str | None:
        """The backend forced with ``--runtime`` (routing step 1, PRODUCT.md §2), else None."""
        if self.sources.get("default_runtime", "").startswith("flag:"):
            return self.default_runtime
        return None

    def value(self, key: str) -> Any:
        """The effective value of a dotted key (``storage.driver``)."""
        if key == "routing":
            return [{"pattern": r.pattern, "runtime": r.runtime} for r in self.routing]
        if key.startswith("proxmox."):
            return getattr(self.proxmox, key[8:])
        if key.startswith("runtimes."):
            return self.runtime_paths.get(key.split(".")[1])
        attr = {
            "storage.driver": "storage_driver",
            "storage.zfs_dataset": "zfs_dataset",
            "registries.insecure": "insecure_registries",
        }.get(key, key)
        if attr not in Settings.__slots__ or attr == "sources":
            raise KeyError(key)
        return getattr(self, attr)

    def effective(self) -> list[tuple[str, Any, str]]:
        """Every key with its effective value and source, for ``nexcage config show``."""
        keys = [*_SCHEMA, "routing"]
        return [(key, self.value(key), self.sources.get(key, SOURCE_DEFAULT)) for key in keys]


# ---------------------------------------------------------------------------------------------
# Loading


def _set(
    values: dict[str, Any], sources: dict[str, str], key: str, raw: object, source: str
) -> None:
    validator = _SCHEMA[key][0]
    try:
        values[key] = validator(raw)
    except _Bad as exc:
        raise ConfigError(source, key, exc.message, expected=exc.expected) from None
    sources[key] = source


def _config_path(
    flags: Mapping[str, str | None], environ: Mapping[str, str]
) -> tuple[str, str, bool]:
    """(path, source, explicit): which config file to read."""
    flag = flags.get(FLAG_CONFIG)
    if flag is not None:
        if not flag:
            raise ConfigError("flag:" + FLAG_CONFIG, "config", "empty path", expected="file path")
        return os.path.abspath(flag), "flag:" + FLAG_CONFIG, True
    env = environ.get(ENV_CONFIG)
    if env:
        return os.path.abspath(env), "env:" + ENV_CONFIG, True
    return DEFAULT_CONFIG, SOURCE_DEFAULT, False


def _read_config(path: str, name_source: str, explicit: bool) -> dict[str, Any] | None:
    """Parse the config file; None when the default file does not exist."""
    source = "file:" + path
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if not explicit:
            return None
        raise ConfigError(
            name_source, "config", f"config file {path} does not exist", expected="existing file"
        ) from None
    except IsADirectoryError:
        raise ConfigError(source, "config", "is a directory", expected="TOML file") from None
    except OSError as exc:
        raise ConfigError(source, "config", f"cannot read: {exc.strerror}") from None
    if b"ociVersion" in data:
        # A bundle's config.json passed by mistake (PRODUCT.md §5): say so, whatever its syntax.
        raise ConfigError(
            source,
            "ociVersion",
            "this is an OCI bundle config (config.json), not a nexcage config",
            expected=f"nexcage TOML config such as {DEFAULT_CONFIG}",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(source, f"line {line}", "invalid UTF-8", expected="TOML") from None
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        # tomllib: "Expected '=' after a key in a key/value pair (at line 3, column 5)"
        # or "... (at end of document)".
        lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        where = f"line {max(lines, 1)}"
        at = msg.rfind(" (at ")
        if at >= 0:
            if msg.startswith("(at line ", at + 1):
                where = msg[at + 5 : msg.find(",", at)]
            msg = msg[:at]
        raise ConfigError(source, where, f"invalid TOML: {msg}", expected="TOML") from None


def _unknown(source: str, key: str, allowed: tuple[str, ...]) -> ConfigError:
    err = ConfigError(source, key, "unknown key", expected="one of " + ", ".join(allowed))
    err.hint = _HINTS.get(key)
    return err


def _apply_file(
    doc: dict[str, Any], source: str, values: dict[str, Any], sources: dict[str, str]
) -> list[RoutingRule]:
    routing: list[RoutingRule] = []
    for top, item in doc.items():
        if top not in _TOP_KEYS:
            raise _unknown(source, top, _TOP_KEYS)
        if top in _TABLES:
            if not isinstance(item, dict):
                raise ConfigError(source, top, f"wrong type {_type_name(item)}", expected="table")
            for sub, raw in item.items():
                if sub not in _TABLES[top]:
                    raise _unknown(source, f"{top}.{sub}", _TABLES[top])
                _set(values, sources, f"{top}.{sub}", raw, source)
        elif top == "runtimes":
            _apply_runtimes(item, source, values, sources)
        elif top == "routing":
            routing = _parse_routing(item, source)
            sources["routing"] = source
        else:
            _set(values, sources, top, item, source)
    return routing


def _apply_runtimes(
    item: object, source: str, values: dict[str, Any], sources: dict[str, str]
) -> None:
    if not isinstance(item, dict):
        raise ConfigError(source, "runtimes", f"wrong type {_type_name(item)}", expected="table")
    for name, table in item.items():
        if name not in BINARY_RUNTIMES:
            raise _unknown(source, f"runtimes.{name}", BINARY_RUNTIMES)
        if not isinstance(table, dict):
            raise ConfigError(
                source, f"runtimes.{name}", f"wrong type {_type_name(table)}", expected="table"
            )
        for sub, raw in table.items():
            if sub != "path":
                raise _unknown(source, f"runtimes.{name}.{sub}", ("path",))
            _set(values, sources, f"runtimes.{name}.path", raw, source)


def _parse_routing(item: object, source: str) -> list[RoutingRule]:
    if not isinstance(item, list):
        raise ConfigError(
            source, "routing", f"wrong type {_type_name(item)}", expected="array of tables"
        )
    rules: list[RoutingRule] = []
    check_runtime = _choice(RUNTIMES)
    for i, rule in enumerate(item):
        where = f"routing[{i}]"
        if not isinstance(rule, dict):
            raise ConfigError(source, where, f"wrong type {_type_name(rule)}", expected="table")
        for sub in rule:
            if sub not in ("pattern", "runtime"):
                raise _unknown(source, f"{where}.{sub}", ("pattern", "runtime"))
        for sub in ("pattern", "runtime"):
            if sub not in rule:
                raise ConfigError(source, f"{where}.{sub}", "missing", expected="string")
        try:
            pattern = _string(rule["pattern"])
        except _Bad as exc:
            raise ConfigError(
                source, f"{where}.pattern", exc.message, expected=exc.expected
            ) from None
        try:
            runtime = check_runtime(rule["runtime"])
        except _Bad as exc:
            raise ConfigError(
                source, f"{where}.runtime", exc.message, expected=exc.expected
            ) from None
        parsed = RoutingRule(i, pattern, runtime)
        if parsed.is_regex:
            # Validated now so a typo fails every invocation, not only the create it would route.
            import re

            try:
                parsed.compile()
            except re.error as exc:
                raise ConfigError(
                    source,
                    f"{where}.pattern",
                    f"invalid regular expression {pattern!r}: {exc}",
                    expected="Python regex (a glob unless it starts with ^ or ends with $)",
                ) from None
        rules.append(parsed)
    return rules


def load(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Effective settings: flag > env > file > default.

    ``flags`` maps global flag names as spelled on the command line (``--root``, ``--data-root``,
    ``--runtime``, ``--log-format``, ``--log-level``, ``--config``) to their value, None when not
    given. An empty environment variable counts as unset; an empty flag value is an error.
    """
    for name in flags:
        if name not in FLAGS and name != FLAG_CONFIG:
            raise ValueError(f"settings.load: unknown flag {name!r}")  # a programming error
    values: dict[str, Any] = {key: default for key, (_, default) in _SCHEMA.items()}
    values["registries.insecure"] = []
    sources = {key: SOURCE_DEFAULT for key in _SCHEMA}
    sources["routing"] = SOURCE_DEFAULT
    routing: list[RoutingRule] = []

    path, name_source, explicit = _config_path(flags, environ)
    doc = _read_config(path, name_source, explicit)
    config_file = None
    if doc is not None:
        config_file = path
        routing = _apply_file(doc, "file:" + path, values, sources)

    for env, key in ENV_VARS.items():
        raw = environ.get(env)
        if raw:
            if key.endswith("_root") or key.endswith(".path"):
                # runc makes --root absolute (filepath.Abs); do the same for env and flags.
                raw = os.path.abspath(raw)
            _set(values, sources, key, raw, "env:" + env)

    for flag, key in FLAGS.items():
        raw = flags.get(flag)
        if raw is None:
            continue
        if key == "log_format" and raw not in LOG_FORMATS:
            raise UsageError(f"invalid log-format: {raw}")  # runc's wording (CONTRACTS.md §1.3)
        if raw and key.endswith("_root"):
            raw = os.path.abspath(raw)
        _set(values, sources, key, raw, "flag:" + flag)

    return Settings(values, sources, routing, config_file, name_source)


def match_route(settings: Settings, container_id: str) -> str | None:
    """The runtime of the first ``[[routing]]`` rule matching ``container_id``, else None."""
    for rule in settings.routing:
        if rule.matches(container_id):
            return rule.runtime
    return None


# ---------------------------------------------------------------------------------------------
# nexcage config show


def _toml_value(value: Any) -> str:
    # A JSON string (ASCII, \uXXXX escapes) is a valid TOML basic string; same for arrays of them.
    return dumps(value)


def render_config_show(settings: Settings, fmt: str = "text") -> str:
    """The effective configuration with the source of every value: TOML-ish text or JSON."""
    if fmt == "json":
        doc = {
            "config_file": settings.config_file,
            "config_file_source": settings.config_file_source,
            "settings": {
                key: {"value": value, "source": source}
                for key, value, source in settings.effective()
            },
        }
        return dumps(doc, indent=2) + "\n"
    if fmt != "text":
        raise UsageError(f"invalid format: {fmt}")
    if settings.config_file:
        head = f"# config file: {settings.config_file} ({settings.config_file_source})"
    else:
        head = f"# config file: none ({DEFAULT_CONFIG} does not exist)"
    lines = [head]
    section = ""
    routing: tuple[Any, str] = ([], SOURCE_DEFAULT)
    for key, value, source in settings.effective():
        if key == "routing":
            routing = (value, source)
            continue
        table, _, name = key.rpartition(".")
        if table != section:
            lines.extend(["", f"[{table}]"])
            section = table
        if value is None:
            lines.append(f"# {name} is not set  # {source}")
        else:
            lines.append(f"{name} = {_toml_value(value)}  # {source}")
    rules, source = routing
    if not rules:
        lines.extend(["", f"# no [[routing]] rules  # {source}"])
    for rule in rules:
        lines.extend(["", f"[[routing]]  # {source}"])
        lines.append(f"pattern = {_toml_value(rule['pattern'])}")
        lines.append(f"runtime = {_toml_value(rule['runtime'])}")
    return "\n".join(lines) + "\n"
