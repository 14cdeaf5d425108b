"""pyrec: a native-accelerated live-stream recorder writing fragmented MP4."""
from __future__ import annotations

__version__ = "0.1.0"

from pyrec._core import PyrecError
from pyrec.paths import PathContext
from pyrec.recorder import FileSink, RecordedFile, Recorder
from pyrec.schedule import Schedule, ScheduleError
from pyrec.source import record_file
from pyrec.tracks import TrackSpec

__all__ = ["PyrecError", "PathContext", "FileSink", "RecordedFile", "Recorder", "Schedule",
           "ScheduleError", "record_file", "TrackSpec", "__version__"]
