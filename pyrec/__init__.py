"""pyrec: a native-accelerated live-stream recorder writing fragmented MP4."""
from __future__ import annotations

__version__ = "0.1.0"

# The public names load on first use (PEP 562), so that `import pyrec` and the `pyrec`
# command pay only for the modules a command needs (tests/test_imports.py guards it).
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy/pyright know the name)
if TYPE_CHECKING:
    from pyrec._core import PyrecError
    from pyrec.paths import PathContext
    from pyrec.recorder import FileSink, RecordedFile, Recorder
    from pyrec.schedule import Schedule, ScheduleError
    from pyrec.source import record_file
    from pyrec.tracks import TrackSpec

_LAZY = {
    "PyrecError": "pyrec._core",
    "PathContext": "pyrec.paths",
    "FileSink": "pyrec.recorder",
    "RecordedFile": "pyrec.recorder",
    "Recorder": "pyrec.recorder",
    "Schedule": "pyrec.schedule",
    "ScheduleError": "pyrec.schedule",
    "record_file": "pyrec.source",
    "TrackSpec": "pyrec.tracks",
}

__all__ = ["PyrecError", "PathContext", "FileSink", "RecordedFile", "Recorder", "Schedule",
           "ScheduleError", "record_file", "TrackSpec", "__version__"]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyrec' has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=(name,)), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
