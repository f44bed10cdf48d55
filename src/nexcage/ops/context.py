"""What every use case needs: settings, the state store, and how to reach a backend."""

from __future__ import annotations

from nexcage.state.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nexcage.backends.base import Backend
    from nexcage.settings import Settings


class Context:
    __slots__ = ("debug", "log_file", "runtime_flag", "settings", "store", "systemd_cgroup")

    def __init__(
        self,
        settings: Settings,
        *,
        log_file: str | None = None,
        debug: bool = False,
        systemd_cgroup: bool = False,
        runtime_flag: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = Store(settings.state_root)
        self.log_file = log_file
        self.debug = debug
        self.systemd_cgroup = systemd_cgroup
        # --runtime on the command line (settings.default_runtime also holds it, at flag priority,
        # but routing must know whether the *flag* was given: it outranks annotations).
        self.runtime_flag = runtime_flag

    def backend(self, name: str) -> Backend:
        from nexcage.backends import open_backend

        return open_backend(
            name,
            self.store.backend_root(name),
            binary=self.settings.runtime_paths.get(name),
            log_file=self.log_file,
            debug=self.debug,
            systemd_cgroup=self.systemd_cgroup,
        )
