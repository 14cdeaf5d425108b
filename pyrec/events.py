"""Events of the lifecycle contract (spec lifecycle.md section 1) and the bus that delivers
them.

An event is a frozen record: the common fields (`id`, `type`, `time`, `node`, `vhost`, `app`,
`stream`) and the fields of its type; `to_dict()` is the contract's JSON object. The bus has
one rule for the thread that publishes (the ingest loop): `publish()` only puts the event on a
queue -- no I/O, no SQLite, no lock but the queue's. One dispatcher thread takes events in
publish order and hands each to every subscriber of its type in subscription order, so the
events of one stream reach each subscriber in the order they happened. A subscriber that raises
is logged and the others still get the event; a slow subscriber delays only the dispatcher.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

__all__ = ["Event", "StreamPublished", "StreamEnded", "TaskState", "FileOpened", "FileFinished",
           "FileRecovered", "FileUploaded", "FileDeleted", "DiskPressure", "Recording",
           "EventBus", "EventSource", "EVENT_TYPES", "iso_time", "default_node_name"]

log = logging.getLogger("pyrec.events")


def iso_time(t: datetime | None) -> str | None:
    """2023-03-15T21:15:20.113+09:00 (milliseconds, numeric offset, never Z)."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.astimezone()
    return t.isoformat(timespec="milliseconds")


def default_node_name() -> str:
    return socket.gethostname() or "pyrec"


# Event ids: unique across restarts (the process start in ms and the pid) and ordered within
# one process (a counter), e.g. "e-18c2f3a41b2-4d2-17". Made once per event, so a retried
# delivery carries the same id.
_ID_PREFIX = f"e-{int(time.time() * 1000):x}-{os.getpid():x}-"
_ids = itertools.count(1)


def _new_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):x}"  # itertools.count: atomic under the GIL


def _now() -> datetime:
    return datetime.now().astimezone()


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording file as the events carry it (spec section 3's `recording` object; the
    catalog adds `sha256` and the upload fields)."""

    id: str
    vhost: str
    app: str
    stream: str
    task_id: str
    sequence: int
    path: str                      # relative to the record root
    start_time: datetime | None
    state: str                     # recording, finished, recovered, deleted, missing
    finish_time: datetime | None = None
    duration_ms: int = 0
    bytes: int = 0
    recovered: bool = False
    tracks: tuple[Mapping[str, Any], ...] = ()
    local: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "vhost": self.vhost, "app": self.app, "stream": self.stream,
            "taskId": self.task_id, "sequence": self.sequence, "path": self.path,
            "startTime": iso_time(self.start_time)}
        if self.finish_time is not None:
            out["finishTime"] = iso_time(self.finish_time)
        out.update({"durationMs": self.duration_ms, "bytes": self.bytes, "state": self.state,
                    "recovered": self.recovered, "tracks": [dict(t) for t in self.tracks],
                    "local": self.local})
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Common fields; `type` is the class's. `stream` is None only for disk.pressure."""

    type: ClassVar[str] = ""
    vhost: str
    app: str
    stream: str | None
    node: str = ""
    id: str = field(default_factory=_new_id)
    time: datetime = field(default_factory=_now)

    def data(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type, "time": iso_time(self.time),
                               "node": self.node, "vhost": self.vhost, "app": self.app}
        if self.stream is not None:
            out["stream"] = self.stream
        out["data"] = self.data()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamPublished(Event):
    type: ClassVar[str] = "stream.published"
    tracks: tuple[Mapping[str, Any], ...] = ()
    remote: str = ""

    def data(self) -> dict[str, Any]:
        return {"tracks": [dict(t) for t in self.tracks], "remote": self.remote}


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded(Event):
    type: ClassVar[str] = "stream.ended"
    reason: str = ""

    def data(self) -> dict[str, Any]:
        return {"reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskState(Event):
    type: ClassVar[str] = "task.state"
    task_id: str
    state: str
    previous_state: str | None
    error: str | None = None

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"taskId": self.task_id, "state": self.state,
                               "previousState": self.previous_state}
        if self.state == "error" and self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class _FileEvent(Event):
    recording: Recording
    # For the info XML writer (not in the JSON): the task's info file and its <file> entry.
    info_path: str | None = field(default=None, compare=False)
    info: Any = field(default=None, compare=False)

    def data(self) -> dict[str, Any]:
        return {"recording": self.recording.to_dict()}


@dataclass(frozen=True, slots=True, kw_only=True)
class FileOpened(_FileEvent):
    type: ClassVar[str] = "file.opened"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFinished(_FileEvent):
    """The file is finished and durable: published by the info XML writer once it has
    fsynced the file and updated the info XML (spec: "fsynced, info XML updated")."""

    type: ClassVar[str] = "file.finished"
    last: bool = False  # closed by :stopRecord (the info XML's lastSequence)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRecovered(_FileEvent):
    type: ClassVar[str] = "file.recovered"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileUploaded(_FileEvent):
    type: ClassVar[str] = "file.uploaded"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileDeleted(_FileEvent):
    type: ClassVar[str] = "file.deleted"
    reason: str = "api"

    def data(self) -> dict[str, Any]:
        return {"recording": self.recording.to_dict(), "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskPressure(Event):
    type: ClassVar[str] = "disk.pressure"
    used_percent: float
    free_bytes: int
    state: str

    def data(self) -> dict[str, Any]:
        return {"usedPercent": self.used_percent, "freeBytes": self.free_bytes,
                "state": self.state}


EVENT_TYPES: tuple[type[Event], ...] = (StreamPublished, StreamEnded, TaskState, FileOpened,
                                        FileFinished, FileRecovered, FileUploaded, FileDeleted,
                                        DiskPressure)

Subscriber = Callable[[Event], None]
_STOP = object()


class _Barrier:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class EventBus:
    """One queue, one dispatcher thread. `node` is stamped on events made by `EventSource`s
    of this bus. Start it with start(); close() delivers what is queued, then stops."""

    def __init__(self, node: str | None = None) -> None:
        self.node = node or default_node_name()
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._subs: tuple[tuple[frozenset[str] | None, Subscriber], ...] = ()
        self._sub_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._local: list[Event] = []  # published on the dispatcher while handling an item
        self.delivered = 0  # events handed to the subscribers (dispatcher thread only)
        self.failures = 0   # subscriber calls that raised

    def subscribe(self, fn: Subscriber, types: Iterable[str] | None = None) -> None:
        """`fn(event)` for every event (of `types` when given), on the dispatcher thread."""
        want = frozenset(types) if types is not None else None
        if want is not None:
            unknown = want - {t.type for t in EVENT_TYPES}
            if unknown:
                raise ValueError(f"unknown event type(s): {', '.join(sorted(unknown))}")
        with self._sub_lock:
            self._subs = (*self._subs, (want, fn))

    def unsubscribe(self, fn: Subscriber) -> None:
        with self._sub_lock:
            self._subs = tuple(s for s in self._subs if s[1] is not fn)

    def start(self) -> EventBus:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pyrec-events", daemon=True)
            self._thread.start()
        return self

    def publish(self, event: Event) -> None:
        """Any thread, the ingest loop included: enqueue, nothing else. On the dispatcher
        itself (work run by call(), a subscriber), the event is delivered right after the
        item being handled, before anything queued later: what it follows comes first."""
        if threading.current_thread() is self._thread:
            self._local.append(event)
        else:
            self._q.put(event)

    def call(self, fn: Callable[[], None]) -> None:
        """Run `fn()` on the dispatcher, in order with the events (work that must follow the
        events published before it, off the publishing thread)."""
        self._q.put(fn)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything published before this call was delivered. Never call it from
        a subscriber (or the ingest loop). True when done within `timeout`."""
        if self._thread is None or threading.current_thread() is self._thread:
            return True
        b = _Barrier()
        self._q.put(b)
        return b.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued, then stop the dispatcher."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            self._drain()
            return
        self._q.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def _drain(self) -> None:
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._handle(item)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                self._drain()  # published meanwhile by a subscriber: still delivered
                return
            self._handle(item)

    def _handle(self, item: Any) -> None:
        self._handle_one(item)
        while self._local:
            self._handle_one(self._local.pop(0))

    def _handle_one(self, item: Any) -> None:
        if isinstance(item, _Barrier):
            item.done.set()
            return
        if not isinstance(item, Event):
            try:
                item()
            except Exception:
                self.failures += 1
                log.exception("control work on the event dispatcher failed")
            return
        for want, fn in self._subs:
            if want is not None and item.type not in want:
                continue
            try:
                fn(item)
            except Exception:
                self.failures += 1
                log.exception("event subscriber %s failed on %s %s",
                              getattr(fn, "__qualname__", fn), item.type, item.id)
        self.delivered += 1


class EventSource:
    """What producers hold: makes events stamped with the bus's node and publishes them.
    `None` bus: events are dropped (a component used without a server)."""

    def __init__(self, bus: EventBus | None) -> None:
        self.bus = bus
        self.node = bus.node if bus is not None else default_node_name()

    def emit(self, cls: type[Event], **fields: Any) -> None:
        if self.bus is not None:
            self.bus.publish(cls(node=self.node, **fields))

    def call(self, fn: Callable[[], None]) -> None:
        """`fn()` on the dispatcher (in order with the events), or now without a bus."""
        if self.bus is not None:
            self.bus.call(fn)
        else:
            fn()
