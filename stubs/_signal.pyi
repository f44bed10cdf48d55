# The C half of the signal module (imported directly to avoid signal.py's IntEnum, DESIGN.md).
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

SIGRTMIN: int
SIGRTMAX: int
SIGTERM: int
SIGKILL: int
SIG_DFL: int
SIG_IGN: int

_Handler = Callable[[int, FrameType | None], Any] | int | None

def signal(signalnum: int, handler: _Handler, /) -> _Handler: ...
def __getattr__(name: str) -> int: ...
def pthread_sigmask(how: int, mask: Iterable[int], /) -> set[int]: ...
