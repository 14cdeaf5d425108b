"""The friendly recording API: tracks and packets in, finished fMP4 files out."""
from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from pyrec import _core
from pyrec.lightdata import dataclass, field
from pyrec.paths import PathContext, expand, has_end_time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import queue
    import threading
    from typing import Any

    import numpy as np

    from pyrec.schedule import Schedule
    from pyrec.tracks import TrackSpec

__all__ = ["Recorder", "RecordedFile", "FileSink", "SEGMENTATION_RULES", "FINISH_MODES",
           "rename_no_replace"]

SEGMENTATION_RULES = ("discontinuity", "continuity")
# How a file is finished: "hybrid" also makes it a progressive MP4 (moov with every sample
# after the fragments, one mdat over them); "fragmented" keeps fMP4 with an mfra index.
FINISH_MODES = ("hybrid", "fragmented")

Output = str | os.PathLike[str] | Callable[[int, int], str]


@dataclass(frozen=True)
class RecordedFile:
    """A finished file. Times are ms of the recording's media clock (0 = first keyframe)."""

    path: str
    sequence: int
    start_ms: int
    end_ms: int
    bytes: int
    payload_bytes: int
    packets: int
    error: str | None = None
    error_message: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    tracks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


class _Syncer:
    """Flushes finished live files to the disk (fsync) on a background thread: the file is
    complete and renamed at once; its durability follows without holding up the thread that
    finished it (the ingest loop, where 200 files closing at one split would otherwise wait
    on the disk one after another)."""

    def __init__(self) -> None:
        import _thread  # built in: queue and threading load with the first live file

        self._q: queue.SimpleQueue[int] | None = None
        self._thread: threading.Thread | None = None
        self._lock = _thread.allocate_lock()

    def sync_and_close(self, fd: int) -> None:
        with self._lock:
            if self._thread is None:
                import queue
                import threading

                self._q = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._run, name="pyrec-fsync",
                                                daemon=True)
                self._thread.start()
        self._q.put(fd)  # type: ignore[union-attr]

    def _run(self) -> None:
        q = self._q
        assert q is not None
        while True:
            fd = q.get()
            try:
                os.fsync(fd)
            except OSError:
                pass  # the writer already reported any write error; this is best effort
            finally:
                os.close(fd)


_syncer = _Syncer()
_USED_MAX = 4096


def _now() -> datetime:
    return datetime.now().astimezone()


class FileSink:
    """Where files go: expands the output template per file, creates the file (never
    overwriting unless asked), and at close renames files whose name has ${EndTime}.

    `clock` gives the wall time of media time 0 plus the media offset, so file names follow
    the media (a file source recorded faster than real time gets media-consistent names)."""

    def __init__(self, output: Output, *, context: PathContext | None = None,
                 overwrite: bool = False, clock: Callable[[], datetime] = _now,
                 on_file: Callable[[RecordedFile], None] | None = None,
                 on_open: Callable[[int, str, datetime], None] | None = None,
                 live: bool = False,
                 resolve: Callable[[str], str] | None = None,
                 keep_files: bool = True, sequence_offset: int = 0,
                 unique: bool = False,
                 on_error: Callable[[int, BaseException], None] | None = None,
                 finish: str = "hybrid",
                 sync: Callable[[int], None] | None = None) -> None:
        self.output = output
        self.context = context or PathContext()
        self.overwrite = overwrite
        self.on_file = on_file
        self.on_open = on_open
        self.on_error = on_error  # (sequence, exception) when a file cannot be created
        # live: sync(fd) takes a finished file's descriptor to fsync and close it off the
        # ingest loop (default: a background thread)
        self.sync = sync
        self.resolve = resolve
        self.keep_files = keep_files
        self.sequence_offset = sequence_offset  # added to the recorder's 0-based sequence
        self.unique = unique  # a taken name gets -1, -2, ... instead of an error
        self.finish = finish  # how a file cut short by a write error is finished (not live)
        self.files: list[RecordedFile] = []
        self.clock = clock
        self.live = live
        self.t0 = clock()
        self._open: dict[int, tuple[str, str | None, datetime]] = {}  # fd -> (path, final tmpl, start)
        self._used: dict[str, None] = {}  # names this sink created (the latest _USED_MAX)
        self._create_failed = False

    def wall(self, media_ms: int) -> datetime:
        """Wall time of a media time: the clock itself for live sources (names follow the
        real start), t0 + media offset for files recorded faster than real time."""
        if self.live:
            return self.clock()
        t = self.t0 + timedelta(milliseconds=media_ms)
        # t0 in local time (a fixed offset, as datetime.now().astimezone() gives): follow the
        # local zone's rules, so names after a DST change show the new local hour
        return t.astimezone() if t.utcoffset() == self.t0.astimezone().utcoffset() else t

    def _ctx(self, sequence: int, start: datetime, end: datetime | None) -> PathContext:
        c = self.context
        return PathContext(vhost=c.vhost, app=c.app, stream=c.stream, id=c.id,
                           transaction_id=c.transaction_id, sequence=sequence,
                           start_time=start, end_time=end)

    def open(self, sequence: int, start_ms: int) -> int:
        """Create the file of `sequence` and return its descriptor. A failure (the folder
        blocked by a file, a read-only or full disk, no descriptor left, a path leaving its
        root...) raises, after `on_error` was told: the recording then stops with that error
        while other recordings go on."""
        try:
            return self._create(sequence + self.sequence_offset, start_ms)
        except BaseException as e:
            self._create_failed = True
            if self.on_error is not None:
                self.on_error(sequence + self.sequence_offset, e)
            raise

    def _create(self, sequence: int, start_ms: int) -> int:
        start = self.wall(start_ms)
        later: str | None = None
        if callable(self.output):
            path = str(self.output(sequence, start_ms))
        else:
            template = os.fspath(self.output)
            if has_end_time(template):
                later = template
                from pathlib import Path

                final_dir = Path(expand(template, self._ctx(sequence, start, start))).parent
                path = str(final_dir / f".pyrec-{os.getpid()}-{id(self)}-{sequence}.part")
            else:
                path = expand(template, self._ctx(sequence, start, None))
        if self.resolve is not None:
            path = self.resolve(path)  # the final name is resolved again at close
        d = os.path.dirname(path)
        if d:
            try:
                os.makedirs(d, exist_ok=True)
            except FileExistsError:  # something that is not a folder stands in its place
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), d) from None
        fd, path = self._create_unique(path)
        self._open[fd] = (path, later, start)
        if self.on_open is not None:
            try:
                self.on_open(sequence, path, start)
            except BaseException:
                del self._open[fd]
                os.close(fd)
                try:
                    os.unlink(path)  # created just now and empty
                except OSError:
                    pass
                raise
        return fd

    def _create_unique(self, path: str) -> tuple[int, str]:
        """Create `path`, or name-1.ext, name-2.ext, ... when a file of this recording already
        has that name (a template without ${Sequence}) -- as the server names them. A file
        that was there before is replaced only with `overwrite`; otherwise the template's own
        name is an error unless `unique` (the server) asks for the next free name, and a -N
        name moves on to the next N."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        stem, ext = os.path.splitext(path)
        for n in range(1000):
            candidate = f"{stem}-{n}{ext}" if n else path
            if candidate in self._used:
                continue
            replace = self.overwrite  # never a file of this recording: skipped above
            try:
                fd = os.open(candidate, flags | (os.O_TRUNC if replace else os.O_EXCL), 0o644)
            except FileExistsError:
                if self.unique or n:
                    continue
                raise FileExistsError(errno.EEXIST, "output file exists, not overwriting "
                                      "(--overwrite replaces it)", candidate) from None
            self._used[candidate] = None
            if len(self._used) > _USED_MAX:
                del self._used[next(iter(self._used))]
            return fd, candidate
        raise FileExistsError(errno.EEXIST, "no free name for the output file", path)

    def close(self, info: dict[str, Any]) -> None:
        fd = info["fd"]
        path, later, start = self._open.pop(fd)
        end = self.clock() if self.live else self.wall(info["end_ms"])
        if info.get("error_code") == _core.Err.CALLBACK and self._create_failed:
            # The file after this one could not be created (reported through on_error and
            # the recorder's error); this one was finished whole.
            info = {**info, "error": None, "error_code": 0, "error_message": None}
        if info["error"] is None and self.live:
            (self.sync or _syncer.sync_and_close)(fd)  # never stall the ingest loop on the disk
        else:
            try:
                if info["error"] is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if info["error"] is not None and info["bytes"] and not self.live:
                _finish_cut_short(path, self.finish)  # live: the task manager retries
        sequence = info["sequence"] + self.sequence_offset
        if later is not None:
            final = expand(later, self._ctx(sequence, start, end))
            if self.resolve is not None:
                final = self.resolve(final)
            path = self._rename(path, final)
        rf = RecordedFile(path=path, sequence=sequence, start_ms=info["start_ms"],
                          end_ms=info["end_ms"], bytes=info["bytes"],
                          payload_bytes=info["payload_bytes"], packets=info["packets"],
                          error=info["error"], error_message=info.get("error_message"),
                          start_time=start, end_time=end, tracks=info["tracks"])
        if self.keep_files:
            self.files.append(rf)
        if self.on_file is not None:
            self.on_file(rf)

    def _rename(self, tmp: str, final: str) -> str:
        return rename_no_replace(tmp, final)


def _finish_cut_short(path: str, finish: str) -> None:
    """A file a write error (a full disk) cut short holds whole fragments but no index: try
    to finish it now (the failed write was cut back, so a moov or index often fits); if the
    disk is still full it stays a valid fMP4 that `pyrec.repair` finishes later (the server
    retries until it fits)."""
    from pyrec import repair

    try:
        repair.repair(path, finish=finish)
    except OSError:
        pass


def rename_no_replace(tmp: str, final: str) -> str:
    """Rename without ever replacing an existing file: name-1.mp4, name-2.mp4, ...
    Returns the name used."""
    stem, ext = os.path.splitext(final)
    candidate, n = final, 0
    while True:
        try:
            os.link(tmp, candidate)
        except FileExistsError:
            n += 1
            candidate = f"{stem}-{n}{ext}"
            continue
        os.unlink(tmp)
        return candidate


class Recorder:
    """Record packets of `tracks` into fMP4 files.

    output: a path template (macros of the Record API: ${Sequence}, ${StartTime:FORMAT},
    ${EndTime:FORMAT}, ...) or a callable (sequence, start_ms) -> path.
    Splits: `interval_ms` (media time) or `schedule` ("S M H", wall clock of the media) or
    split(); always at the next keyframe of the first video track.
    keep_leading: the first file starts with the first packet of any track (a file source:
    every packet kept); otherwise with the first keyframe of the first video track (live).
    in_timescale: per track, the timescale of the times given to write() when it is not the
    track's own (audio then lands on its sample grid when the times agree within 1 ms).
    finish: "hybrid" (default: a finished file is also a progressive MP4 with a complete
    moov) or "fragmented" (a finished file stays fMP4, with an mfra index).
    """

    def __init__(self, tracks: Sequence[TrackSpec], output: Output, *,
                 part_duration_ms: int = 1000, interval_ms: int = 0,
                 schedule: str | Schedule | None = None,
                 segmentation: str = "discontinuity", wrap_bits: int = 0,
                 jump_threshold_ms: int = 10000, interleave_ms: int = 1000,
                 keep_leading: bool = False, in_timescale: Sequence[int] = (),
                 context: PathContext | None = None, overwrite: bool = False,
                 clock: Callable[[], datetime] = _now,
                 on_file: Callable[[RecordedFile], None] | None = None,
                 finish: str = "hybrid") -> None:
        if segmentation not in SEGMENTATION_RULES:
            raise ValueError(f"segmentation must be one of {SEGMENTATION_RULES}, got {segmentation!r}")
        if interval_ms and schedule:
            raise ValueError("interval and schedule cannot be used at the same time")
        if finish not in FINISH_MODES:
            raise ValueError(f"finish must be one of {FINISH_MODES}, got {finish!r}")
        if interval_ms < 0 or part_duration_ms <= 0:
            raise ValueError("interval_ms must be >= 0 and part_duration_ms > 0")
        self.tracks = list(tracks)
        if isinstance(schedule, str):
            from pyrec.schedule import Schedule
        self.schedule = Schedule(schedule) if isinstance(schedule, str) else schedule
        self.sink = FileSink(output, context=context, overwrite=overwrite, clock=clock,
                             on_file=on_file, finish=finish)
        self._core = _core.Recorder(
            [t.as_core() for t in self.tracks], self._open, self.sink.close,
            part_duration_ms=part_duration_ms, continuity=segmentation == "continuity",
            interval_ms=interval_ms, wrap_bits=wrap_bits, jump_threshold_ms=jump_threshold_ms,
            interleave_ms=interleave_ms, keep_leading=keep_leading,
            in_timescale=[int(t) for t in in_timescale], finish=finish)
        self._closed = False

    def _open(self, sequence: int, start_ms: int) -> int:
        fd = self.sink.open(sequence, start_ms)
        if self.schedule is not None:
            boundary = self.schedule.next_after(self.sink.wall(start_ms))
            at = int((boundary - self.sink.t0) / timedelta(milliseconds=1))
            self._core.split(at)
        return fd

    @property
    def files(self) -> list[RecordedFile]:
        return self.sink.files

    def write(self, track: int, dts: int, pts: int | None, data: Any, key: bool = False) -> None:
        """One packet: times in ticks of the track's timescale, `data` any bytes-like
        object, `key` for a keyframe (see pyrec._core.Recorder.write)."""
        self._core.write(track, dts, pts, data, key)

    def write_batch(self, track: np.ndarray, dts: np.ndarray, pts: np.ndarray,
                    flags: np.ndarray, sizes: np.ndarray, payload: Any) -> int:
        """n packets: arrays of length n (converted to int32 track, int64 dts/pts, uint8
        flags with bit 0 = keyframe, int64 sizes) and one buffer of the payloads back to
        back. Returns the number of packets rejected as malformed (see
        pyrec._core.Recorder.write_batch)."""
        import numpy as np

        return int(self._core.write_batch(
            np.ascontiguousarray(track, dtype=np.int32), np.ascontiguousarray(dts, dtype=np.int64),
            np.ascontiguousarray(pts, dtype=np.int64), np.ascontiguousarray(flags, dtype=np.uint8),
            np.ascontiguousarray(sizes, dtype=np.int64), payload))

    def split(self, at_ms: int | None = None) -> None:
        """Start the next file at the next keyframe, or at the first keyframe at or after
        media time `at_ms` (see pyrec._core.Recorder.split)."""
        self._core.split(at_ms)

    def flush(self) -> None:
        self._core.flush()

    def stats(self) -> dict[str, Any]:
        return dict(self._core.stats())

    def close(self) -> list[RecordedFile]:
        if not self._closed:
            self._closed = True
            self._core.close()
        return self.files

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
