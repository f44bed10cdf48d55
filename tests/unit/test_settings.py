"""nexcage.settings: priority flag > env > file > default, fail-closed validation, config show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from nexcage import settings
from nexcage.errors import ConfigError, UsageError


@pytest.fixture(autouse=True)
def no_default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default config path somewhere empty: the host's /etc must not leak in."""
    path = tmp_path / "etc" / "config.toml"
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", str(path))
    return path


def write(tmp_path: Path, text: str, name: str = "config.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load_file(path: str, env: dict[str, str] | None = None, **flags: str) -> settings.Settings:
    argv = {"--config": path, **{"--" + k.replace("_", "-"): v for k, v in flags.items()}}
    return settings.load(argv, env or {})


def config_error(path: str, env: dict[str, str] | None = None, **flags: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_file(path, env, **flags)
    return info.value


# --- defaults and file selection -------------------------------------------------------------


def test_defaults_without_any_file() -> None:
    s = settings.load({}, {})
    assert s.data_root == "/var/lib/nexcage"
    assert s.state_root == "/run/nexcage"
    assert s.default_runtime is None
    assert s.log_format == "text"
    assert s.log_level is None
    assert s.storage_driver == "auto"
    assert s.zfs_dataset is None
    assert s.insecure_registries == []
    assert s.routing == []
    assert s.runtime_paths == {}
    assert s.proxmox.node is None and s.proxmox.token_secret_file is None
    assert s.config_file is None
    assert set(s.sources.values()) == {"default"}
    assert {k for k, _, _ in s.effective()} == set(s.sources)


def test_default_file_is_read_when_present(no_default_config: Path) -> None:
    no_default_config.parent.mkdir()
    no_default_config.write_text('state_root = "/srv/run"\n')
    s = settings.load({}, {})
    assert s.state_root == "/srv/run"
    assert s.sources["state_root"] == f"file:{no_default_config}"
    assert s.config_file == str(no_default_config)
    assert s.config_file_source == "default"


def test_env_config_and_flag_config(tmp_path: Path) -> None:
    env_file = write(tmp_path, 'data_root = "/env"\n', "env.toml")
    flag_file = write(tmp_path, 'data_root = "/flag"\n', "flag.toml")
    s = settings.load({}, {"NEXCAGE_CONFIG": env_file})
    assert (s.data_root, s.config_file_source) == ("/env", "env:NEXCAGE_CONFIG")
    s = settings.load({"--config": flag_file}, {"NEXCAGE_CONFIG": env_file})
    assert (s.data_root, s.config_file_source) == ("/flag", "flag:--config")
    assert s.sources["data_root"] == f"file:{flag_file}"


# --- priority, key by key ----------------------------------------------------------------------

# (dotted key, TOML snippet, file value, env var, env value, flag, flag value, effective value)
PRIORITY = [
    ("data_root", 'data_root = "/f"', "/f", "NEXCAGE_DATA_ROOT", "/e", "--data-root", "/x"),
    ("state_root", 'state_root = "/f"', "/f", "NEXCAGE_ROOT", "/e", "--root", "/x"),
    ("default_runtime", 'default_runtime = "lxc"', "lxc", "NEXCAGE_RUNTIME", "runc", "--runtime",
     "crun"),
    ("log_format", 'log_format = "json"', "json", "NEXCAGE_LOG_FORMAT", "text", "--log-format",
     "json"),
    ("log_level", 'log_level = "info"', "info", "NEXCAGE_LOG_LEVEL", "error", "--log-level",
     "debug"),
    ("storage.driver", '[storage]\ndriver = "btrfs"', "btrfs", "NEXCAGE_STORAGE_DRIVER", "zfs",
     None, None),
    ("runtimes.crun.path", '[runtimes.crun]\npath = "/f/crun"', "/f/crun", "NEXCAGE_CRUN_PATH",
     "/e/crun", None, None),
    ("runtimes.runc.path", '[runtimes.runc]\npath = "/f/runc"', "/f/runc", "NEXCAGE_RUNC_PATH",
     "/e/runc", None, None),
]  # fmt: skip


@pytest.mark.parametrize("case", PRIORITY, ids=[case[0] for case in PRIORITY])
def test_priority_flag_env_file_default(tmp_path: Path, case: tuple[str | None, ...]) -> None:
    key, toml, file_value, env, env_value, flag, flag_value = case
    assert key is not None and toml is not None and env is not None and env_value is not None
    path = write(tmp_path, toml + "\n")
    s = settings.load({"--config": path}, {})
    assert (s.value(key), s.sources[key]) == (file_value, f"file:{path}")
    s = settings.load({"--config": path}, {env: env_value})
    assert (s.value(key), s.sources[key]) == (env_value, f"env:{env}")
    if flag is not None:
        s = settings.load({"--config": path, flag: flag_value}, {env: env_value})
        assert (s.value(key), s.sources[key]) == (flag_value, f"flag:{flag}")
    # Every other key kept its default.
    others = {k: src for k, src in s.sources.items() if k != key}
    assert set(others.values()) == {"default"}


def test_file_only_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[storage]
zfs_dataset = "rpool/nexcage"
[registries]
insecure = ["127.0.0.1:5000", "registry.lan"]
[proxmox]
node = "pve1"
api_url = "https://pve1:8006/api2/json"
token_id = "root@pam!nexcage"
token_secret_file = "/etc/nexcage/pve-token"
storage = "local-zfs"
bridge = "vmbr0"
[[routing]]
pattern = "kube-*"
runtime = "crun"
""",
    )
    s = settings.load({"--config": path}, {})
    assert s.zfs_dataset == "rpool/nexcage"
    assert s.insecure_registries == ["127.0.0.1:5000", "registry.lan"]
    p = s.proxmox
    assert (p.node, p.api_url, p.token_id) == (
        "pve1",
        "https://pve1:8006/api2/json",
        "root@pam!nexcage",
    )
    assert (p.token_secret_file, p.storage, p.bridge) == (
        "/etc/nexcage/pve-token",
        "local-zfs",
        "vmbr0",
    )
    assert [(r.pattern, r.runtime) for r in s.routing] == [("kube-*", "crun")]
    for key in (
        "storage.zfs_dataset",
        "registries.insecure",
        "routing",
        *(f"proxmox.{k}" for k in settings.PROXMOX_KEYS),
    ):
        assert s.sources[key] == f"file:{path}", key


def test_runtime_paths_attribute(tmp_path: Path) -> None:
    path = write(tmp_path, '[runtimes.crun]\npath = "/opt/crun"\n')
    s = settings.load({"--config": path}, {"NEXCAGE_RUNC_PATH": "/opt/runc"})
    assert s.runtime_paths == {"crun": "/opt/crun", "runc": "/opt/runc"}


def test_relative_env_and_flag_paths_become_absolute() -> None:
    s = settings.load({"--root": "run"}, {"NEXCAGE_DATA_ROOT": "data", "NEXCAGE_CRUN_PATH": "c"})
    assert s.state_root == os.path.join(os.getcwd(), "run")
    assert s.data_root == os.path.join(os.getcwd(), "data")
    assert s.runtime_paths["crun"] == os.path.join(os.getcwd(), "c")


def test_unknown_and_empty_env_are_ignored() -> None:
    s = settings.load({}, {"NEXCAGE_TEST_STRICT": "1", "NEXCAGE_WHATEVER": "x", "NEXCAGE_ROOT": ""})
    assert set(s.sources.values()) == {"default"}


def test_forced_runtime_only_from_flag() -> None:
    assert settings.load({}, {"NEXCAGE_RUNTIME": "runc"}).forced_runtime is None
    assert settings.load({"--runtime": "lxc"}, {}).forced_runtime == "lxc"


def test_none_flags_are_not_given() -> None:
    s = settings.load({"--root": None, "--config": None, "--runtime": None}, {})
    assert set(s.sources.values()) == {"default"}


def test_unknown_flag_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="--bogus"):
        settings.load({"--bogus": "x"}, {})


# --- fail closed -------------------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_root = "/d"\ncolour = "blue"\n')
    err = config_error(path)
    assert (err.source, err.key) == (f"file:{path}", "colour")
    assert "unknown key" in err.message
    assert err.expected is not None and "data_root" in err.expected


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[storage]\ndrivr = "overlay"', "storage.drivr"),
        ('[registries]\nsecure = ["a"]', "registries.secure"),
        ('[proxmox]\nhost = "pve"', "proxmox.host"),
        ('[runtimes.crun]\nextra_args = ["--x"]', "runtimes.crun.extra_args"),
        ('[runtimes.youki]\npath = "/bin/youki"', "runtimes.youki"),
        ('[[routing]]\npattern = "a"\nruntime = "crun"\n[[routing]]\npattern = "b"\n'
         'runtime = "crun"\nweight = 1', "routing[1].weight"),
    ],
)  # fmt: skip
def test_unknown_key_in_tables(tmp_path: Path, toml: str, key: str) -> None:
    path = write(tmp_path, toml + "\n")
    err = config_error(path)
    assert (err.source, err.key) == (f"file:{path}", key)
    assert "unknown key" in str(err)
    assert path in str(err)


def test_inline_proxmox_secret_is_refused_with_a_hint(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, '[proxmox]\ntoken_secret = "s3cr3t"\n'))
    assert err.key == "proxmox.token_secret"
    assert err.hint is not None and "token_secret_file" in err.hint
    assert "s3cr3t" not in str(err)


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ("data_root = 1", "data_root", "absolute path"),
        ('data_root = "relative/dir"', "data_root", "absolute path"),
        ('state_root = ""', "state_root", "non-empty string"),
        ("default_runtime = true", "default_runtime", "string"),
        ('default_runtime = "docker"', "default_runtime", "one of crun, lxc, proxmox, runc"),
        ('log_format = "xml"', "log_format", "one of text, json"),
        ('log_level = "verbose"', "log_level", "one of debug, info, warning, error"),
        ('storage = "overlay"', "storage", "table"),
        ('[storage]\ndriver = "ext4"', "storage.driver", "auto, overlay, btrfs, zfs, dir"),
        ('[storage]\nzfs_dataset = "/rpool"', "storage.zfs_dataset", "ZFS dataset"),
        ('[registries]\ninsecure = "127.0.0.1:5000"', "registries.insecure", "array of strings"),
        ("[registries]\ninsecure = [5000]", "registries.insecure", "string"),
        ('[registries]\ninsecure = ["http://a"]', "registries.insecure", "host[:port]"),
        ("[proxmox]\nnode = 1", "proxmox.node", "string"),
        ('[proxmox]\napi_url = "pve1:8006"', "proxmox.api_url", "http(s) URL"),
        ('[proxmox]\ntoken_id = "root"', "proxmox.token_id", "USER@REALM!TOKENID"),
        ('[proxmox]\ntoken_secret_file = "tok"', "proxmox.token_secret_file", "absolute path"),
        ("[proxmox]\nstorage = []", "proxmox.storage", "string"),
        ("[proxmox]\nbridge = 0", "proxmox.bridge", "string"),
        ('runtimes = "crun"', "runtimes", "table"),
        ('[runtimes]\ncrun = "/bin/crun"', "runtimes.crun", "table"),
        ("[runtimes.crun]\npath = 1", "runtimes.crun.path", "absolute path"),
        ('[routing]\npattern = "x"', "routing", "array of tables"),
        ('routing = ["x"]', "routing[0]", "table"),
        ('[[routing]]\npattern = "x"', "routing[0].runtime", "string"),
        ('[[routing]]\nruntime = "crun"', "routing[0].pattern", "string"),
        ('[[routing]]\npattern = 1\nruntime = "crun"', "routing[0].pattern", "string"),
        ('[[routing]]\npattern = "x"\nruntime = "docker"', "routing[0].runtime", "one of"),
        ("log_format = 2026-01-01", "log_format", "string"),
    ],
)
def test_wrong_type_or_value(tmp_path: Path, toml: str, key: str, expected: str) -> None:
    path = write(tmp_path, toml + "\n")
    err = config_error(path)
    assert err.source == f"file:{path}"
    assert err.key == key
    assert err.expected is not None and expected in err.expected
    assert f"file:{path}: {key}:" in str(err)


def test_wrong_type_names_the_toml_type(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, "data_root = 3.5\n"))
    assert "wrong type float" in err.message


@pytest.mark.parametrize(
    ("text", "line"),
    [("a = [1,\n", 1), ('data_root = "/d"\nstate_root = = "/r"\n', 2), ("[storage\n", 1)],
)
def test_invalid_toml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    err = config_error(path)
    assert err.source == f"file:{path}"
    assert err.key == f"line {line}"
    assert "invalid TOML" in err.message


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'data_root = "/d"\nstate_root = "\xff"\n')
    err = config_error(str(path))
    assert (err.key, "invalid UTF-8" in err.message) == ("line 2", True)


@pytest.mark.parametrize(
    "text",
    [
        '{"ociVersion": "1.0.2", "process": {"args": ["sh"]}}\n',
        'ociVersion = "1.0.2"\n',
        "not toml at all, but has ociVersion somewhere {\n",
    ],
)
def test_oci_bundle_config_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text, "config.json")
    err = config_error(path)
    assert err.source == f"file:{path}"
    assert "OCI bundle config" in err.message
    assert "not a nexcage config" in err.message


def test_missing_explicit_file_flag(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    err = config_error(missing)
    assert err.source == "flag:--config"
    assert missing in str(err)


def test_missing_explicit_file_env(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        settings.load({}, {"NEXCAGE_CONFIG": missing})
    assert info.value.source == "env:NEXCAGE_CONFIG"
    assert missing in str(info.value)


def test_config_that_is_a_directory(tmp_path: Path) -> None:
    err = config_error(str(tmp_path))
    assert "directory" in err.message


def test_unreadable_default_file_is_an_error(no_default_config: Path) -> None:
    # A default file that exists but cannot be parsed fails too: only absence is fine.
    no_default_config.parent.mkdir()
    no_default_config.write_text("x = \n")
    with pytest.raises(ConfigError) as info:
        settings.load({}, {})
    assert info.value.source == f"file:{no_default_config}"


def test_bad_regex_names_the_rule_index(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[routing]]\npattern = "kube-*"\nruntime = "crun"\n'
        '[[routing]]\npattern = "^db-(\\\\d+$"\nruntime = "lxc"\n',
    )
    err = config_error(path)
    assert err.key == "routing[1].pattern"
    assert "invalid regular expression" in err.message


@pytest.mark.parametrize(
    ("env", "value", "key"),
    [
        ("NEXCAGE_STORAGE_DRIVER", "ext4", "storage.driver"),
        ("NEXCAGE_RUNTIME", "docker", "default_runtime"),
        ("NEXCAGE_LOG_FORMAT", "xml", "log_format"),
        ("NEXCAGE_LOG_LEVEL", "loud", "log_level"),
        ("NEXCAGE_ROOT", "/run/\nx", "state_root"),
    ],
)
def test_bad_env_value(env: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings.load({}, {env: value})
    assert (info.value.source, info.value.key) == (f"env:{env}", key)


def test_bad_flag_values() -> None:
    with pytest.raises(ConfigError) as info:
        settings.load({"--runtime": "docker"}, {})
    assert (info.value.source, info.value.key) == ("flag:--runtime", "default_runtime")
    with pytest.raises(ConfigError) as info:
        settings.load({"--root": ""}, {})
    assert info.value.source == "flag:--root"
    with pytest.raises(ConfigError):
        settings.load({"--config": ""}, {})


def test_bad_log_format_flag_uses_runc_wording() -> None:
    with pytest.raises(UsageError, match=r"^invalid log-format: xml$"):
        settings.load({"--log-format": "xml"}, {})


def test_file_error_beats_later_sources(tmp_path: Path) -> None:
    # A broken file fails even when env and flags would override the bad key.
    path = write(tmp_path, "state_root = 1\n")
    with pytest.raises(ConfigError):
        settings.load({"--config": path, "--root": "/r"}, {"NEXCAGE_ROOT": "/e"})


# --- routing -----------------------------------------------------------------------------------


def test_match_route(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[routing]]
pattern = "kube-*"
runtime = "crun"
[[routing]]
pattern = "^pve-[0-9]+"
runtime = "proxmox"
[[routing]]
pattern = "-db$"
runtime = "lxc"
[[routing]]
pattern = "kube-db"
runtime = "runc"
[[routing]]
pattern = "sys-?"
runtime = "lxc"
""",
    )
    s = settings.load({"--config": path}, {})
    assert settings.match_route(s, "kube-db") == "crun"  # first match wins
    assert settings.match_route(s, "pve-101-web") == "proxmox"
    assert settings.match_route(s, "x-pve-101") is None  # ^ anchors
    assert settings.match_route(s, "orders-db") == "lxc"
    assert settings.match_route(s, "orders-db-1") is None  # $ anchors
    assert settings.match_route(s, "sys-a") == "lxc"
    assert settings.match_route(s, "sys-ab") is None  # a glob matches the whole id
    assert settings.match_route(s, "Kube-x") is None  # case-sensitive
    assert [r.is_regex for r in s.routing] == [False, True, True, False, False]


def test_no_routing_rules() -> None:
    assert settings.match_route(settings.load({}, {}), "anything") is None


# --- hot path ----------------------------------------------------------------------------------


def _modules_after(code: str, env: dict[str, str]) -> set[str]:
    script = "import sys\n" + code + "\nprint(' '.join(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-I", "-c", script],
        env={**env, "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


HEAVY = {"json", "re", "enum", "typing", "dataclasses", "logging", "datetime", "tomllib"}


def test_load_without_file_imports_nothing_heavy(tmp_path: Path) -> None:
    code = (
        "import os, nexcage.settings as s, nexcage.log\n"
        f"s.DEFAULT_CONFIG = {str(tmp_path / 'absent.toml')!r}\n"
        "x = s.load({'--root': '/r'}, {'NEXCAGE_RUNTIME': 'crun'})\n"
        "s.match_route(x, 'id')\n"
    )
    assert _modules_after(code, {}) & HEAVY == set()


def test_render_text_is_toml_with_sources(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'data_root = "/srv/nexcage"\n[registries]\ninsecure = ["a:5000"]\n'
        '[[routing]]\npattern = "kube-*"\nruntime = "crun"\n',
    )
    s = settings.load({"--config": path, "--root": "/r"}, {"NEXCAGE_STORAGE_DRIVER": "dir"})
    text = settings.render_config_show(s, "text")
    doc = tomllib.loads(text)  # TOML-ish enough to parse back
    assert doc["data_root"] == "/srv/nexcage"
    assert doc["state_root"] == "/r"
    assert doc["storage"]["driver"] == "dir"
    assert doc["registries"]["insecure"] == ["a:5000"]
    assert doc["routing"] == [{"pattern": "kube-*", "runtime": "crun"}]
    assert "default_runtime" not in doc  # unset values are comments
    lines = text.splitlines()
    assert lines[0] == f"# config file: {path} (flag:--config)"
    assert f'data_root = "/srv/nexcage"  # file:{path}' in lines
    assert 'state_root = "/r"  # flag:--root' in lines
    assert 'driver = "dir"  # env:NEXCAGE_STORAGE_DRIVER' in lines
    assert 'log_format = "text"  # default' in lines
    assert "# default_runtime is not set  # default" in lines
    assert f"[[routing]]  # file:{path}" in lines


def test_render_text_without_file() -> None:
    text = settings.render_config_show(settings.load({}, {}), "text")
    assert text.startswith("# config file: none (")
    assert "# no [[routing]] rules  # default" in text


def test_render_json(tmp_path: Path) -> None:
    path = write(tmp_path, '[proxmox]\nnode = "pve1"\n')
    s = settings.load({"--config": path}, {"NEXCAGE_ROOT": "/e"})
    doc = json.loads(settings.render_config_show(s, "json"))
    assert doc["config_file"] == path
    assert doc["config_file_source"] == "flag:--config"
    values = doc["settings"]
    assert values["proxmox.node"] == {"value": "pve1", "source": f"file:{path}"}
    assert values["state_root"] == {"value": "/e", "source": "env:NEXCAGE_ROOT"}
    assert values["data_root"] == {"value": "/var/lib/nexcage", "source": "default"}
    assert values["default_runtime"] == {"value": None, "source": "default"}
    assert values["routing"] == {"value": [], "source": "default"}
    assert list(values) == [k for k, _, _ in s.effective()]


def test_render_bad_format() -> None:
    with pytest.raises(UsageError):
        settings.render_config_show(settings.load({}, {}), "yaml")


def test_effective_lists_every_key() -> None:
    keys = [k for k, _, _ in settings.load({}, {}).effective()]
    assert keys[:3] == ["data_root", "state_root", "default_runtime"]
    assert "storage.driver" in keys and "runtimes.crun.path" in keys and keys[-1] == "routing"
