"""The RTMP ingest server seen from Python: connections and publishes are events; live
streams are registered by (vhost, app, name); recordings are attached to streams and run in
C (parsing, timestamp repair, fMP4 writing) without Python per packet."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyrec import _core
from pyrec.paths import PathContext
from pyrec.recorder import FileSink, Output, RecordedFile
from pyrec.streams import StreamRegistry
from pyrec.tracks import DEFAULT_AUDIO_NAME, DEFAULT_VIDEO_NAME

__all__ = ["IngestServer", "LiveStream", "LiveRecording", "StreamTrack", "IngestLimits"]

log = logging.getLogger("pyrec.ingest")

LIVE_FRAGMENT_BYTES = 128 * 1024
_LEVELS = {10: logging.DEBUG, 20: logging.INFO, 30: logging.WARNING, 40: logging.ERROR}


@dataclass(frozen=True)
class StreamTrack:
    id: int
    name: str
    kind: str            # "video" | "audio"
    codec: str | None    # None when pyrec cannot record it (see `unsupported`)
    unsupported: str | None = None
    sample_rate: int = 0
    channels: int = 0


@dataclass(frozen=True)
class IngestLimits:
    max_connections: int = 4096
    handshake_timeout_ms: int = 10_000
    idle_timeout_ms: int = 30_000
    max_message_size: int = 16 * 1024 * 1024 - 1
    max_chunk_streams: int = 64
    probe_ms: int = 3000


class LiveRecording:
    """One recording attached to a live stream: its files, splits and errors."""

    def __init__(self, stream: LiveStream, sid: int, sink: FileSink, track_ids: list[int]):
        self.stream = stream
        self.sid = sid
        self.sink = sink
        self.track_ids = track_ids
        self.closed = False
        self.parked: int | None = None  # parked id while its stream is gone (files open)

    def park(self) -> None:
        """Keep the file open while the stream is gone (call from on_stream_closing); then
        LiveStream.adopt() it when the stream returns, or stop() it."""
        self.parked = self.stream.server.core.park(self.stream.key, self.sid)

    @property
    def files(self) -> list[RecordedFile]:
        return self.sink.files

    def split(self, at_ms: int | None = None) -> None:
        self.stream.server.core.split(self.stream.key, self.sid, at_ms)

    def stats(self) -> tuple[dict[str, Any], BaseException | None]:
        return self.stream.server.core.sink_stats(self.stream.key, self.sid)

    def stop(self) -> list[RecordedFile]:
        """Finish the open file now (before returning) and detach. Raises the recording's
        error, if it had one."""
        if not self.closed and self.parked is not None:
            self.closed = True
            self.stream.server.core.discard(self.parked)
            self.parked = None
        elif not self.closed:
            self.closed = True
            try:
                self.stream.server.core.detach(self.stream.key, self.sid)
            except _core.PyrecError as e:
                if e.code != _core.Err.NOTRACK:  # the stream ended first: files finished
                    raise
        return self.files


@dataclass
class LiveStream:
    server: IngestServer
    key: int
    vhost: str
    app: str
    name: str
    query: str
    peer: str
    tracks: list[StreamTrack] = field(default_factory=list)
    ready: bool = False
    ended: bool = False
    track_names: tuple[str, str] = (DEFAULT_VIDEO_NAME, DEFAULT_AUDIO_NAME)
    created: datetime = field(default_factory=lambda: datetime.now().astimezone())
    created_mono: float = field(default_factory=time.monotonic)

    def record(self, output: Output | None = None, *, track_ids: Iterable[int] | None = None,
               context: PathContext | None = None,
               on_file: Callable[[RecordedFile], None] | None = None,
               sink: FileSink | None = None, **rec_options: Any) -> LiveRecording:
        """Attach a recording of the selected tracks (all by default). Call from
        on_stream_ready to record from the first keyframe; later calls start at the next one."""
        ids = sorted(set(track_ids)) if track_ids is not None else [t.id for t in self.tracks]
        mask = 0
        for i in ids:
            if not 0 <= i < len(self.tracks):
                raise ValueError(f"stream {self.name} has no track {i}")
            mask |= 1 << i
        if sink is None:
            if output is None:
                raise ValueError("record() needs an output template or a sink")
            ctx = context or PathContext(vhost=self.vhost, app=self.app, stream=self.name,
                                         id=self.name)
            sink = FileSink(output, context=ctx, on_file=on_file, live=True)
        # Live: bound the media a recording holds in memory (a fragment is written when it
        # reaches this size, or the part duration, whichever comes first).
        rec_options.setdefault("max_fragment_bytes", LIVE_FRAGMENT_BYTES)
        sid = self.server.core.attach(self.key, mask, sink.open, sink.close, **rec_options)
        return LiveRecording(self, sid, sink, ids)

    def adopt(self, rec: LiveRecording) -> LiveRecording:
        """Continue a parked recording (same file, continuous timestamps) on this stream."""
        return _adopt(self, rec)


def _adopt(stream: LiveStream, rec: LiveRecording) -> LiveRecording:
    mask = 0
    for i in rec.track_ids:
        mask |= 1 << i
    assert rec.parked is not None
    rec.sid = stream.server.core.adopt(rec.parked, stream.key, mask)
    rec.parked = None
    rec.stream = stream
    return rec


class IngestServer:
    """RTMP server on `host:port`; `apps` maps app name -> track names (video, audio) for
    that app (spec section 10; default bypass_video/bypass_audio). Its streams live in
    `registry` (a StreamRegistry, shared with other sources; a new one by default), whose
    listeners are told when a stream is ready, closing or ended. on_stream_ready(LiveStream)
    and on_stream_end(LiveStream, reason) given here become one such listener."""

    def __init__(self, *, host: str = "0.0.0.0", port: int = 1935, vhost: str = "default",
                 apps: dict[str, tuple[str, str]] | Sequence[str] = ("app",),
                 limits: IngestLimits = IngestLimits(),
                 on_stream_ready: Callable[[LiveStream], None] | None = None,
                 on_stream_end: Callable[[LiveStream, str], None] | None = None,
                 resolver: Callable[[str, str], tuple[str, tuple[str, str]] | None] | None = None,
                 registry: StreamRegistry | None = None) -> None:
        """`resolver(app, tcurl)` -> (vhost, (video name, audio name)) or None to refuse;
        by default: `vhost` and the `apps` given."""
        self.vhost = vhost
        self.resolver = resolver
        if isinstance(apps, dict):
            self.apps = dict(apps)
        else:
            self.apps = {a: (DEFAULT_VIDEO_NAME, DEFAULT_AUDIO_NAME) for a in apps}
        self.registry = registry if registry is not None else StreamRegistry()
        if on_stream_ready is not None or on_stream_end is not None:
            self.registry.add_listener(on_ready=on_stream_ready, on_end=on_stream_end)
        self._lock = threading.RLock()
        self.streams: dict[int, LiveStream] = {}
        self._conns: dict[int, tuple[str, str, tuple[str, str]]] = {}  # conn -> (peer, vhost, names)
        self.core = _core.Server(
            self, host=host, port=port, max_connections=limits.max_connections,
            handshake_timeout_ms=limits.handshake_timeout_ms,
            idle_timeout_ms=limits.idle_timeout_ms, probe_ms=limits.probe_ms,
            max_message_size=limits.max_message_size,
            max_chunk_streams=limits.max_chunk_streams)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.core.port)

    def start(self) -> IngestServer:
        self._thread = threading.Thread(target=self.core.run, name="pyrec-ingest", daemon=True)
        self._thread.start()
        log.info("RTMP ingest listening on port %d", self.port)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, end every stream (files finished), join the loop thread."""
        self.core.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def find(self, app: str, name: str, vhost: str | None = None) -> LiveStream | None:
        st = self.registry.find(vhost or self.vhost, app, name)
        return st if isinstance(st, LiveStream) and st.server is self else None

    def live(self) -> list[LiveStream]:
        with self._lock:
            return list(self.streams.values())

    def stats(self) -> dict[str, Any]:
        return dict(self.core.stats())

    # ---- events from the loop thread -------------------------------------------------

    def on_connect(self, conn: int, app: str, tcurl: str, peer: str) -> int:
        if self.resolver is not None:
            found = self.resolver(app, tcurl)
        elif app in self.apps:
            found = (self.vhost, self.apps[app])
        else:
            found = None
        if found is None:
            return 1
        with self._lock:
            self._conns[conn] = (peer, found[0], found[1])
        return 0

    def on_publish(self, conn: int, key: int, app: str, name: str, query: str) -> int:
        with self._lock:
            peer, vhost, names = self._conns.pop(conn, ("?", self.vhost, (DEFAULT_VIDEO_NAME,
                                                                           DEFAULT_AUDIO_NAME)))
            st = LiveStream(self, key, vhost, app, name, query, peer)
            st.track_names = names
            if not self.registry.claim(st):
                return int(_core.RTMP_BADNAME)
            self.streams[key] = st
        return 0

    def on_stream_ready(self, key: int) -> None:
        st = self.streams.get(key)
        if st is None:
            return
        video_name, audio_name = st.track_names
        st.tracks = [StreamTrack(t["id"], video_name if t["kind"] == "video" else audio_name,
                                 t["kind"], t["codec"], t["unsupported"], t["sample_rate"],
                                 t["channels"]) for t in self.core.tracks(key)]
        st.ready = True
        desc = ", ".join(f"{t.id}:{t.name}={t.codec or t.unsupported}" for t in st.tracks)
        log.info("stream %s/%s ready: %s", st.app, st.name, desc)
        self.registry.ready(st)

    def on_stream_closing(self, key: int) -> None:
        st = self.streams.get(key)
        if st is not None:
            self.registry.closing(st)

    def on_stream_end(self, key: int, reason: str) -> None:
        with self._lock:
            st = self.streams.pop(key, None)
            if st is None:
                return
        self.registry.ended(st, reason)

    def on_log(self, level: int, msg: str) -> None:
        log.log(_LEVELS.get(level, logging.INFO), "%s", msg)

    def on_callback_error(self, exc: BaseException) -> None:
        log.error("ingest callback failed: %r", exc, exc_info=exc)
