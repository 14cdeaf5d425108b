"""Type stub for the C core bindings (pyrec/_core.pyx)."""
import enum
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

class PyrecError(Exception):
    name: str
    code: int
    message: str
    offset: int
    errno: int
    def __init__(self, name: str, code: int, message: str, offset: int = ..., errno: int = ...) -> None: ...

def progressive_moov(moov: bytes, tables: list[tuple[int, int, Any, Any, Any, Any, Any, Any]]
                     ) -> bytes:
    """The progressive moov of a fragmented file: `moov` is its initial moov box; one table
    per track: (track_id, first_dts, sizes uint32, durations uint32, ctos int32, keys uint8,
    chunk offsets uint64, chunk sample counts uint32). Raises PyrecError."""
def codec_id(name: str) -> int: ...
def codec_name(codec: int) -> str | None: ...
def codec_is_video(codec: int) -> bool: ...
def error_names() -> dict[int, tuple[str, str]]: ...

class Err(enum.IntEnum):
    """The C error table (csrc/include/pyrec/error.h), one member per code."""
    NOMEM: int
    INVAL: int
    CODEC: int
    CONFIG: int
    MALFORMED: int
    TRUNCATED: int
    TOOBIG: int
    IO: int
    STATE: int
    NOTRACK: int
    CALLBACK: int

def make_error(code: int, message: str) -> PyrecError: ...
def parse_flv(data: bytes | bytearray | memoryview) -> list[dict[str, Any]]: ...

Opener = Callable[[int, int], int]
Closer = Callable[[dict[str, Any]], None]

class Recorder:
    def __init__(self, tracks: list[tuple[int, int, int, int, int, int, bytes]], opener: Opener,
                 closer: Closer, *, part_duration_ms: int = ..., continuity: bool = ...,
                 interval_ms: int = ..., wrap_bits: int = ..., jump_threshold_ms: int = ...,
                 interleave_ms: int = ..., max_fragment_bytes: int = ...,
                 keep_leading: bool = ..., in_timescale: Sequence[int] = ...,
                 finish: str = ...) -> None:
        """keep_leading: record from the first packet of any track (else from the first video
        keyframe). in_timescale[i]: timescale of the times written for track i when it differs
        from the track's (audio is then placed on its sample grid when within 1 ms).
        finish: "hybrid" (default: a progressive MP4 at close) or "fragmented"."""
    def write(self, track: int, dts: int, pts: int | None, data: Any, key: bool = ...) -> None:
        """Write one packet of track `track` (its index in the track list).

        dts, pts: the packet's decode and presentation times in ticks of the track's timescale
        (of in_timescale[track] when that was given)
        (pts None: the same as dts). They need not be clean: wrap-around, equal or backward
        DTS and jumps are repaired and counted in stats()["tracks"][track].
        data: the payload, any C-contiguous bytes-like object (bytes, bytearray, memoryview,
        a uint8 numpy array); it is copied when it has to wait in the interleaving queue.
        key: a sync sample (keyframe); files start and splits land on keyframes of the first
        video track (any packet for audio-only recordings).

        Raises PyrecError: MALFORMED for an empty payload, NOTRACK for a track index out of
        range, or the recorder's sticky error once it failed (e.g. IO with its errno, or
        CALLBACK when a file could not be created; the opener's own exception is raised
        instead when it has one). ValueError once the recorder is closed."""
    def write_batch(self, track: npt.NDArray[np.int32], dts: npt.NDArray[np.int64],
                    pts: npt.NDArray[np.int64], flags: npt.NDArray[np.uint8],
                    sizes: npt.NDArray[np.int64], payload: Any) -> int:
        """Write n packets in one call, without Python per packet.

        The five arrays are one-dimensional, C-contiguous, of length n and of exactly these
        dtypes: track int32 (track indexes), dts int64 and pts int64 (ticks of each packet's
        track timescale; pts INT64_MIN = no pts, the same as dts), flags uint8 (bit 0 = 1:
        keyframe; the other bits are reserved, ignored today: keep them 0), sizes int64
        (payload bytes of each packet, >= 0). Another dtype is a ValueError here ("Buffer
        dtype mismatch"); pyrec.Recorder.write_batch converts any integer arrays first. payload: one C-contiguous bytes-like buffer holding the packets
        back to back: packet i is payload[sum(sizes[:i]) : sum(sizes[:i + 1])]; it may be
        longer than sum(sizes) (the rest is ignored).

        Returns the number of packets rejected as malformed (empty ones), which are skipped
        and counted in stats()["tracks"][t]["rejected"]; every other packet was accepted.
        Raises ValueError when the lengths differ, a size is negative or the sizes exceed
        the payload (nothing written); PyrecError as write() does on the first packet that
        fails (the ones before it are written)."""
    def split(self, at_ms: int | None = ...) -> None:
        """End the current file and start the next one at a keyframe of the first video track:
        with no argument at the next keyframe written; with `at_ms` at the first keyframe
        whose media time (ms since the recording's first sample) is at or after it. That
        keyframe is the first sample of the next file; nothing is lost or doubled. A later
        call replaces a pending one. Raises ValueError once the recorder is closed."""
    def flush(self) -> None: ...
    def close(self) -> dict[str, Any] | None: ...
    def stats(self) -> dict[str, Any]:
        """{"tracks": [per track: received, written, dropped_start, rejected and the timestamp
        repairs wrap, equal, backward, jump_forward, jump_backward, pts_fixed], "files",
        "media_ms", "queued", "file": the open file or None}."""

class FlvSource:
    def __init__(self, on_ready: Callable[[FlvSource], None] | None = ..., *,
                 probe_ms: int = ..., max_tag_size: int = ..., has_video: bool = ...,
                 has_audio: bool = ...) -> None: ...
    def feed(self, data: Any) -> None: ...
    def tracks(self) -> list[dict[str, Any]]: ...
    def attach(self, track_mask: int, opener: Opener, closer: Closer, *,
               part_duration_ms: int = ..., continuity: bool = ..., interval_ms: int = ...,
               jump_threshold_ms: int = ..., interleave_ms: int = ...,
               max_fragment_bytes: int = ..., keep_leading: bool = ..., finish: str = ...) -> int: ...
    def detach(self, sid: int) -> None: ...
    def sink_error(self, sid: int) -> BaseException | None: ...
    def split(self, sid: int, at_ms: int | None = ...) -> None: ...
    def sink_stats(self, sid: int) -> dict[str, Any]: ...
    def close(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...

RTMP_BADNAME: int
LAG_BOUNDS_US: tuple[int, ...]

class Server:
    """The RTMP ingest loop (csrc/server.c). `handler` gets on_connect, on_publish,
    on_stream_ready, on_stream_closing, on_stream_end, on_log and on_callback_error."""
    def __init__(self, handler: Any, *, host: str = ..., port: int = ...,
                 max_connections: int = ..., handshake_timeout_ms: int = ...,
                 idle_timeout_ms: int = ..., probe_ms: int = ..., max_message_size: int = ...,
                 max_chunk_streams: int = ...) -> None: ...
    @property
    def port(self) -> int: ...
    def run(self) -> None: ...
    def stop(self) -> None: ...
    def attach(self, key: int, track_mask: int, opener: Opener, closer: Closer,
               **kw: Any) -> int: ...
    def detach(self, key: int, sid: int) -> None: ...
    def split(self, key: int, sid: int, at_ms: int | None = ...) -> None: ...
    def tracks(self, key: int) -> list[dict[str, Any]]: ...
    def sink_stats(self, key: int, sid: int) -> tuple[dict[str, Any], BaseException | None]: ...
    def park(self, key: int, sid: int) -> int: ...
    def adopt(self, pid: int, key: int, track_mask: int) -> int: ...
    def discard(self, pid: int) -> None: ...
    def kick(self, key: int) -> bool: ...
    def stats(self) -> dict[str, Any]: ...
