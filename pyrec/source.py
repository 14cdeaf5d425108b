"""Recording a source: FLV through the C reader (no Python per packet), anything else PyAV
opens (MPEG-TS, MP4, MKV, RTSP, HLS) through a demux loop that hands packets over in batches."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import timedelta

from pyrec import _core
from pyrec.lightdata import dataclass
from pyrec.paths import PathContext
from pyrec.recorder import (FINISH_MODES, SEGMENTATION_RULES, FileSink, Output, RecordedFile,
                            Recorder)
from pyrec.tracks import (DEFAULT_AUDIO_NAME, DEFAULT_VIDEO_NAME, TrackSpec, audio_timescale,
                          timescale_for)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from fractions import Fraction
    from typing import Any

    from pyrec.schedule import Schedule

__all__ = ["record_file", "SourceTrack", "Progress", "is_flv"]

Progress = Callable[[float], None]  # fraction done, 0..1
_BATCH = 512
# Reads small enough to stay in the L2 cache for the parse and copies that follow (~25% less
# CPU for `pyrec record` than 1 MiB reads; bench/RESULTS.md).
_READ = 1 << 16


@dataclass(frozen=True)
class SourceTrack:
    id: int
    name: str
    kind: str  # "video" | "audio"


def is_flv(source: str) -> bool:
    """An FLV file (by its signature), or "-": FLV on standard input."""
    if source == "-":
        return True
    if not os.path.isfile(source):
        return False
    with open(source, "rb") as f:
        return f.read(3) == b"FLV"


def _select(available: Sequence[SourceTrack], wanted: Sequence[str] | None) -> list[SourceTrack]:
    if not wanted:
        return list(available)
    out = []
    for w in wanted:
        hits = [t for t in available if t.name == w or str(t.id) == w or t.kind == w]
        if not hits:
            names = ", ".join(f"{t.id}:{t.name} ({t.kind})" for t in available) or "none"
            raise ValueError(f"track {w!r} is not in the source; it has {names}")
        out.extend(h for h in hits if h not in out)
    return sorted(out, key=lambda t: t.id)


def _context(source: str, context: PathContext | None) -> PathContext:
    if context is not None:
        return context
    stem = "stdin" if source == "-" else (
        os.path.splitext(os.path.basename(source.rstrip("/")))[0] or "stream")
    return PathContext(stream=stem, id=stem)


def record_file(source: str, output: Output, *, tracks: Sequence[str] | None = None,
                interval_ms: int = 0, schedule: str | None = None,
                segmentation: str = "discontinuity", part_duration_ms: int = 1000,
                context: PathContext | None = None, overwrite: bool = False,
                progress: Progress | None = None,
                on_file: Callable[[RecordedFile], None] | None = None,
                finish: str = "hybrid") -> list[RecordedFile]:
    """Record `source` into fMP4 files named by `output`. Returns the finished files.
    `finish`: "hybrid" (files end as progressive MP4s too) or "fragmented" (fMP4 + mfra).
    KeyboardInterrupt finalises the open file first, then propagates."""
    if finish not in FINISH_MODES:
        raise ValueError(f"finish must be one of {FINISH_MODES}, got {finish!r}")
    if segmentation not in SEGMENTATION_RULES:
        raise ValueError(f"segmentation must be one of {SEGMENTATION_RULES}")
    if interval_ms and schedule:
        raise ValueError("interval and schedule cannot be used at the same time")
    if schedule:
        from pyrec.schedule import Schedule
    sched = Schedule(schedule) if schedule else None
    ctx = _context(source, context)
    if is_flv(source):
        return _record_flv(source, output, tracks, interval_ms, sched, segmentation,
                           part_duration_ms, ctx, overwrite, progress, on_file, finish)
    return _record_av(source, output, tracks, interval_ms, sched, segmentation,
                      part_duration_ms, ctx, overwrite, progress, on_file, finish)


def _record_flv(source: str, output: Output, tracks: Sequence[str] | None, interval_ms: int,
                sched: Schedule | None, segmentation: str, part_duration_ms: int,
                ctx: PathContext, overwrite: bool, progress: Progress | None,
                on_file: Callable[[RecordedFile], None] | None,
                finish: str = "hybrid") -> list[RecordedFile]:
    # An FLV file has at most one video and one audio track; names follow OME's defaults.
    sink = FileSink(output, context=ctx, overwrite=overwrite, on_file=on_file, finish=finish)
    sid: list[int] = []

    def opener(sequence: int, start_ms: int) -> int:
        fd = sink.open(sequence, start_ms)
        if sched is not None and sid:
            boundary = sched.next_after(sink.wall(start_ms))
            src.split(sid[0], int((boundary - sink.t0) / timedelta(milliseconds=1)))
        return fd

    def on_ready(source: Any) -> None:
        found = source.tracks()
        available = [SourceTrack(t["id"], DEFAULT_VIDEO_NAME if t["kind"] == "video"
                                 else DEFAULT_AUDIO_NAME, t["kind"]) for t in found]
        chosen = _select(available, tracks)
        mask = sum(1 << t.id for t in chosen)
        sid.append(source.attach(mask, opener, sink.close, part_duration_ms=part_duration_ms,
                                 continuity=segmentation == "continuity",
                                 interval_ms=interval_ms, keep_leading=True, finish=finish))

    src = _core.FlvSource(on_ready)
    stdin = source == "-"
    total = 0 if stdin else os.path.getsize(source)
    done = 0
    buf = bytearray(_READ)
    view = memoryview(buf)
    try:
        with (open(0, "rb", buffering=0, closefd=False) if stdin
              else open(source, "rb", buffering=0)) as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                src.feed(view[:n])
                done += n
                if progress is not None and total:
                    progress(done / total)
    except BaseException:
        # What stopped the reading (a track not in the source, Ctrl-C, ...) is the error to
        # report: finishing the files must not replace it (by TRUNCATED for the unread rest).
        try:
            src.close()
        except (_core.PyrecError, OSError, ValueError):
            pass
        finally:
            if sid:
                try:
                    src.detach(sid[0])
                except (_core.PyrecError, OSError, ValueError):
                    pass
        raise
    else:
        try:
            src.close()
        finally:
            if sid:
                src.detach(sid[0])  # raises the recording's own error, if any
    if not sid:
        raise _core.make_error(_core.Err.STATE, f"{source}: no audio or video to record")
    return sink.files


def _spec_for(stream: Any) -> tuple[TrackSpec, int, int]:
    """The track, the multiplier from the stream's time base to input ticks, and the input
    timescale (that of the track, except audio: timed at its sample rate, converted in C)."""
    cc = stream.codec_context
    tb: Fraction = stream.time_base
    timescale, mult = timescale_for(tb)
    extradata = bytes(cc.extradata or b"")
    if stream.type == "video":
        spec = TrackSpec(codec=cc.name, timescale=timescale, width=cc.width or 0,
                         height=cc.height or 0, config=extradata)
        return spec, mult, timescale
    layout = getattr(cc, "layout", None)
    channels = getattr(layout, "nb_channels", 0) if layout is not None else 0
    rate = audio_timescale(cc.name, cc.sample_rate or 0)
    spec = TrackSpec(codec=cc.name, timescale=rate or timescale, sample_rate=cc.sample_rate or 0,
                     channels=channels or getattr(cc, "channels", 0) or 0, config=extradata)
    return spec, mult, timescale


def _record_av(source: str, output: Output, tracks: Sequence[str] | None, interval_ms: int,
               sched: Schedule | None, segmentation: str, part_duration_ms: int,
               ctx: PathContext, overwrite: bool, progress: Progress | None,
               on_file: Callable[[RecordedFile], None] | None,
               finish: str = "hybrid") -> list[RecordedFile]:
    import av  # deferred: FLV recording does not need it

    try:
        container = av.open(source)
    except av.FFmpegError as e:
        raise _core.make_error(_core.Err.MALFORMED,
                               f"{source}: cannot open as media ({e})") from None
    try:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        available = []
        nv = na = 0
        for i, s in enumerate(streams):
            if s.type == "video":
                name = DEFAULT_VIDEO_NAME if nv == 0 else f"{DEFAULT_VIDEO_NAME}_{nv}"
                nv += 1
            else:
                name = DEFAULT_AUDIO_NAME if na == 0 else f"{DEFAULT_AUDIO_NAME}_{na}"
                na += 1
            available.append(SourceTrack(i, name, s.type))
        chosen = _select(available, tracks)
        if not chosen:
            raise ValueError(f"{source}: no audio or video stream to record")
        selected = [streams[t.id] for t in chosen]
        specs, mults, in_ts = zip(*(_spec_for(s) for s in selected))
        index_of = {s.index: i for i, s in enumerate(selected)}
        rec = Recorder(list(specs), output, part_duration_ms=part_duration_ms,
                       interval_ms=interval_ms, schedule=sched, segmentation=segmentation,
                       keep_leading=True, in_timescale=in_ts,
                       context=ctx, overwrite=overwrite, on_file=on_file, finish=finish)
        duration = container.duration / 1e6 if container.duration else 0.0
        try:
            _demux_into(container, selected, index_of, mults, rec, progress, duration)
        finally:
            rec.close()
        return rec.files
    finally:
        container.close()


def _demux_into(container: Any, selected: list[Any], index_of: dict[int, int],
                mults: Sequence[int], rec: Recorder, progress: Progress | None,
                duration: float) -> None:
    import numpy as np

    nopts = np.iinfo(np.int64).min
    track = np.empty(_BATCH, np.int32)
    dts = np.empty(_BATCH, np.int64)
    pts = np.empty(_BATCH, np.int64)
    flags = np.empty(_BATCH, np.uint8)
    sizes = np.empty(_BATCH, np.int64)
    chunks: list[bytes] = []
    n = 0
    last_report = 0.0
    # Packets without a DTS (Matroska gives none to the first B-frame-delayed video packets):
    # held per track until one with a DTS comes, then placed one duration apart before it.
    held: dict[int, list[tuple[int, int, bool, bytes]]] = {}

    def add(t: int, d: int, p: int, key: bool, data: bytes) -> None:
        nonlocal n
        track[n] = t
        dts[n] = d
        pts[n] = p
        flags[n] = 1 if key else 0
        sizes[n] = len(data)
        chunks.append(data)
        n += 1
        if n == _BATCH:
            rec.write_batch(track, dts, pts, flags, sizes, b"".join(chunks))
            n = 0
            chunks.clear()

    def release(t: int, next_dts: int | None) -> None:
        waiting = held.pop(t, [])
        for k, (p, step, key, data) in enumerate(waiting):
            d = p if next_dts is None else min(p, next_dts - (len(waiting) - k) * step)
            add(t, d, p, key, data)

    for pkt in container.demux(selected):
        if pkt.size == 0 and pkt.dts is None:
            continue  # the demuxer's flush packet
        t = index_of[pkt.stream.index]
        m = mults[t]
        if pkt.dts is None:
            if pkt.pts is None:
                continue
            step = (pkt.duration or 1) * m
            held.setdefault(t, []).append((pkt.pts * m, step, bool(pkt.is_keyframe), bytes(pkt)))
            continue
        if t in held:
            release(t, pkt.dts * m)
        add(t, pkt.dts * m, pkt.pts * m if pkt.pts is not None else nopts,
            bool(pkt.is_keyframe), bytes(pkt))
        if (progress is not None and duration > 0 and pkt.pts is not None
                and n % 64 == 0):
            done = min(1.0, float(pkt.pts * pkt.time_base) / duration)
            if done - last_report >= 0.01:
                last_report = done
                progress(done)
    for t in list(held):
        release(t, None)
    if n:
        rec.write_batch(track[:n], dts[:n], pts[:n], flags[:n], sizes[:n], b"".join(chunks))
    if progress is not None:
        progress(1.0)
