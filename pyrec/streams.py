"""The stream registry: every live stream of every source (RTMP push today; SRT, pulled RTSP
later) by (vhost, app, name), and the listeners told when one becomes ready, is closing or has
ended. Sources call claim/ready/closing/ended; consumers (the task manager, the stream API)
add a listener and never reach into a source.

Listeners run on the source's thread (the ingest loop for RTMP): they must be quick (attach or
park recordings). Everything slower subscribes to the `stream.published` / `stream.ended`
events the registry publishes on the event bus.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pyrec.events import EventSource, StreamEnded, StreamPublished

__all__ = ["StreamRegistry", "StreamListener", "LiveSource"]

log = logging.getLogger("pyrec.streams")


class LiveSource(Protocol):
    """What the registry and its listeners need of a live stream, whatever its source."""

    vhost: str
    app: str
    name: str
    peer: str
    ready: bool
    ended: bool

    @property
    def tracks(self) -> Sequence[Any]: ...


class StreamListener(Protocol):
    def on_ready(self, stream: Any) -> None: ...
    def on_closing(self, stream: Any) -> None: ...
    def on_end(self, stream: Any, reason: str) -> None: ...


class _Callbacks:
    """A listener made of plain functions (any of them None)."""

    def __init__(self, on_ready: Callable[[Any], None] | None = None,
                 on_end: Callable[[Any, str], None] | None = None,
                 on_closing: Callable[[Any], None] | None = None) -> None:
        self._ready, self._end, self._closing = on_ready, on_end, on_closing

    def on_ready(self, stream: Any) -> None:
        if self._ready is not None:
            self._ready(stream)

    def on_closing(self, stream: Any) -> None:
        if self._closing is not None:
            self._closing(stream)

    def on_end(self, stream: Any, reason: str) -> None:
        if self._end is not None:
            self._end(stream, reason)


def _track_json(t: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": t.id, "name": t.name, "kind": t.kind, "codec": t.codec}
    if getattr(t, "unsupported", None):
        out["unsupported"] = t.unsupported
    if t.kind == "audio":
        out["sampleRate"] = getattr(t, "sample_rate", 0)
        out["channels"] = getattr(t, "channels", 0)
    return out


class StreamRegistry:
    """Live streams by (vhost, app, name). `events`: where stream.published / stream.ended go
    (None: nowhere)."""

    def __init__(self, events: EventSource | None = None) -> None:
        self.events = events if events is not None else EventSource(None)
        self._lock = threading.Lock()
        self._by_name: dict[tuple[str, str, str], Any] = {}
        self._listeners: tuple[StreamListener, ...] = ()

    # ---- consumers -------------------------------------------------------------------

    def add_listener(self, listener: StreamListener | None = None, *,
                     on_ready: Callable[[Any], None] | None = None,
                     on_end: Callable[[Any, str], None] | None = None,
                     on_closing: Callable[[Any], None] | None = None) -> StreamListener:
        """Add `listener` (an object with on_ready/on_closing/on_end) or one made of the
        functions given. Returns it (for remove_listener)."""
        lst: StreamListener = listener if listener is not None else _Callbacks(
            on_ready, on_end, on_closing)
        with self._lock:
            self._listeners = (*self._listeners, lst)
        return lst

    def remove_listener(self, listener: StreamListener) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    def find(self, vhost: str, app: str, name: str) -> Any | None:
        with self._lock:
            return self._by_name.get((vhost, app, name))

    def live(self) -> list[Any]:
        with self._lock:
            return list(self._by_name.values())

    # ---- sources ---------------------------------------------------------------------

    def claim(self, stream: LiveSource) -> bool:
        """Register a publish under its name; False when the name is live already."""
        key = (stream.vhost, stream.app, stream.name)
        with self._lock:
            if key in self._by_name:
                return False
            self._by_name[key] = stream
        return True

    def ready(self, stream: LiveSource) -> None:
        """The stream's tracks are known: stream.published, then the listeners."""
        self.events.emit(StreamPublished, vhost=stream.vhost, app=stream.app,
                         stream=stream.name, tracks=tuple(_track_json(t) for t in stream.tracks),
                         remote=stream.peer)
        for lst in self._listeners:
            self._call(lst.on_ready, stream)

    def closing(self, stream: LiveSource) -> None:
        """The stream is about to end (its recordings may still be parked)."""
        for lst in self._listeners:
            self._call(lst.on_closing, stream)

    def ended(self, stream: LiveSource, reason: str) -> None:
        """The stream is gone: forgotten, the listeners told, stream.ended (only for a stream
        that was published: one that never became ready ends silently)."""
        key = (stream.vhost, stream.app, stream.name)
        with self._lock:
            if self._by_name.get(key) is stream:
                del self._by_name[key]
        stream.ended = True
        for lst in self._listeners:
            self._call(lst.on_end, stream, reason)
        if stream.ready:
            self.events.emit(StreamEnded, vhost=stream.vhost, app=stream.app,
                             stream=stream.name, reason=reason)

    @staticmethod
    def _call(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # one listener's failure must not stop the others or the source
            log.exception("stream listener %s failed", getattr(fn, "__qualname__", fn))
