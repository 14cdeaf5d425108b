"""Prometheus metrics of one service (spec lifecycle.md section 8), in a private registry.

Two sources, never Python per packet:
- events (EventBus subscriber on the dispatcher thread): files finished, tasks entering the
  error state;
- stats read at scrape time (a custom Collector): the C ingest server's counters and loop-lag
  histogram, the live recordings' counters, the tasks' states, the record root's free space.

Counters of live recordings (packets, timestamp repairs) live in C only as long as the
recording does: the collector keeps the last values it read of every recording and folds them
into a base when the recording is gone, so these counters never go down (what a recording did
between the last scrape and its end is not counted).

Features that feed metrics from elsewhere (the webhook outbox, uploads, retention) register a
callable with `Metrics.feed(name, fn)`: `fn()` returns `{label value: number}` for a metric
with one label, or a number for one without. Until something is registered the metric is
exported at 0 for its labels' usual values.
"""
from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pyrec.events import Event, FileFinished, TaskState
from pyrec.task import STATES

__all__ = ["Metrics", "CONTENT_TYPE_LATEST", "FEEDS", "REPAIR_KINDS", "PACKET_KINDS"]

# The timestamp repairs counted by the C recorder (stats()["tracks"][i]).
REPAIR_KINDS = ("wrap", "equal", "backward", "jump_forward", "jump_backward", "pts_fixed")
PACKET_KINDS = ("video", "audio")
ERROR_NAMES = ("ingest", "task", "api")

# Metrics fed by registered callables: name -> (help, label or None, usual label values, kind).
FEEDS: dict[str, tuple[str, str | None, tuple[str, ...], str]] = {
    "pyrec_webhook_deliveries_total": (
        "Webhook deliveries by result", "result", ("delivered", "failed", "given_up"),
        "counter"),
    "pyrec_webhook_outbox_events": (
        "Events waiting in the webhook outbox", None, (), "gauge"),
    "pyrec_upload_queue_files": ("Files waiting to be uploaded", None, (), "gauge"),
    "pyrec_uploads_total": ("Uploads by result", "result", ("uploaded", "failed"), "counter"),
    "pyrec_retention_deleted_files_total": (
        "Files deleted by retention, by reason", "reason", ("max_age", "disk"), "counter"),
}

Feed = Callable[[], "Mapping[str, float] | float"]


class _Ingest(Protocol):
    def stats(self) -> dict[str, Any]: ...
    def live(self) -> list[Any]: ...


class _Manager(Protocol):
    def all_tasks(self) -> list[Any]: ...


def _counter_name(name: str) -> str:
    return name[:-len("_total")] if name.endswith("_total") else name


class Metrics:
    """The registry of one service; `render()` is the /metrics body."""

    def __init__(self, record_root: Path) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.record_root = Path(record_root)
        self.ingest: _Ingest | None = None
        self.manager: _Manager | None = None
        self._lock = threading.Lock()
        self._feeds: dict[str, Feed] = {}
        self._finished_files = 0
        self._finished_bytes = 0
        self._written_seen = 0       # the counter never goes down (see written_bytes)
        self._task_errors = 0
        # live recording counters: id(rec) -> (rec, {(metric, label): value}); ended: base
        self._live: dict[int, tuple[Any, dict[tuple[str, str], int]]] = {}
        self._base: dict[tuple[str, str], int] = {}
        self.api_requests = Counter("pyrec_api_requests", "HTTP API requests by route and code",
                                    ("route", "code"), registry=self.registry)
        self.api_errors = 0
        self.registry.register(_Collector(self))

    # ---- wiring ------------------------------------------------------------------------

    def attach(self, *, ingest: _Ingest | None = None, manager: _Manager | None = None) -> None:
        if ingest is not None:
            self.ingest = ingest
        if manager is not None:
            self.manager = manager

    def subscribe(self, bus: Any) -> None:
        bus.subscribe(self._on_event, ("file.finished", "task.state"))

    def feed(self, name: str, fn: Feed) -> None:
        """Let `fn()` supply the value(s) of a FEEDS metric (webhooks, uploads, retention)."""
        if name not in FEEDS:
            raise KeyError(f"{name} is not a fed metric; known: {', '.join(FEEDS)}")
        with self._lock:
            self._feeds[name] = fn

    def feed_webhooks(self, outbox: Any) -> None:
        """The webhook outbox's counters (pyrec.webhooks.WebhookOutbox: `delivered`,
        `failed_attempts`, `given_up`, `depth()`) as pyrec_webhook_deliveries_total{result}
        and pyrec_webhook_outbox_events."""
        self.feed("pyrec_webhook_deliveries_total", lambda: {
            "delivered": outbox.delivered, "failed": outbox.failed_attempts,
            "given_up": outbox.given_up})
        self.feed("pyrec_webhook_outbox_events", outbox.depth)

    def count_request(self, route: str, code: int) -> None:
        self.api_requests.labels(route, str(code)).inc()
        if code >= 500:
            with self._lock:
                self.api_errors += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ---- events (dispatcher thread) ----------------------------------------------------

    def _on_event(self, ev: Event) -> None:
        with self._lock:
            if isinstance(ev, FileFinished):
                self._finished_files += 1
                self._finished_bytes += ev.recording.bytes
            elif isinstance(ev, TaskState) and ev.state == "error":
                self._task_errors += 1

    # ---- scrape-time reads -------------------------------------------------------------

    def _recordings(self) -> list[tuple[Any, Any]]:
        """(task, live recording) of every recording task."""
        if self.manager is None:
            return []
        return [(t, t.recording) for t in self.manager.all_tasks()
                if t.state == "recording" and t.recording is not None]

    @staticmethod
    def _rec_counters(rec: Any, stats: dict[str, Any]) -> dict[tuple[str, str], int]:
        kinds = {t.id: t.kind for t in getattr(rec.stream, "tracks", ())}
        ids = list(getattr(rec, "track_ids", ()))
        out: dict[tuple[str, str], int] = {}
        for i, t in enumerate(stats.get("tracks", ())):
            kind = kinds.get(ids[i], "other") if i < len(ids) else "other"
            key = ("packets", kind)
            out[key] = out.get(key, 0) + int(t["written"])
            for r in REPAIR_KINDS:
                out[("repairs", r)] = out.get(("repairs", r), 0) + int(t[r])
        return out

    def _scrape_recordings(self) -> tuple[dict[tuple[str, str], int], int]:
        """Monotonic recording counters and the bytes of the files open now."""
        open_bytes = 0
        current: dict[int, tuple[Any, dict[tuple[str, str], int]]] = {}
        for _task, rec in self._recordings():
            try:
                stats, _exc = rec.stats()
            except Exception:  # the recording ended between the listing and the read
                continue
            if stats.get("file"):
                open_bytes += int(stats["file"]["bytes"])
            current[id(rec)] = (rec, self._rec_counters(rec, stats))
        with self._lock:
            for key, (_rec, last) in self._live.items():
                if key not in current:
                    for k, v in last.items():
                        self._base[k] = self._base.get(k, 0) + v
            self._live = current
            totals = dict(self._base)
            for _rec, vals in current.values():
                for k, v in vals.items():
                    totals[k] = totals.get(k, 0) + v
        return totals, open_bytes

    def written_bytes(self, open_bytes: int) -> int:
        """Bytes of finished files (file.finished) plus those of the files open now; a file
        between its close and its file.finished is in neither, so the value is held at its
        maximum (a counter never goes down)."""
        with self._lock:
            self._written_seen = max(self._written_seen, self._finished_bytes + open_bytes)
            return self._written_seen

    def feed_values(self, name: str) -> Mapping[str, float] | float:
        _help, label, usual, _kind = FEEDS[name]
        with self._lock:
            fn = self._feeds.get(name)
        if fn is None:
            return {v: 0 for v in usual} if label else 0
        return fn()


def _samples(fam: Any, values: Mapping[str, float], usual: Iterable[str]) -> Any:
    for v in usual:
        fam.add_metric([v], values.get(v, 0))
    for k, v in values.items():
        if k not in usual:
            fam.add_metric([k], v)
    return fam


class _Collector:
    """Reads everything that is not an event at scrape time."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterable[Any]:
        m = self.m
        st = m.ingest.stats() if m.ingest is not None else {}
        live = len(m.ingest.live()) if m.ingest is not None else 0
        yield GaugeMetricFamily("pyrec_streams_live", "Streams being published", value=live)

        states = {s: 0 for s in STATES}
        if m.manager is not None:
            for t in m.manager.all_tasks():
                states[t.state] = states.get(t.state, 0) + 1
        yield _samples(GaugeMetricFamily("pyrec_tasks", "Record tasks by state",
                                         labels=["state"]), states, STATES)

        yield CounterMetricFamily("pyrec_received_bytes", "Bytes received by the RTMP ingest",
                                  value=st.get("bytes_in", 0))
        totals, open_bytes = m._scrape_recordings()
        yield CounterMetricFamily("pyrec_written_bytes",
                                  "Bytes of recording files (finished and open)",
                                  value=m.written_bytes(open_bytes))
        yield _samples(CounterMetricFamily(
            "pyrec_packets", "Packets written to recordings, by track kind", labels=["kind"]),
            {k: v for (what, k), v in totals.items() if what == "packets"}, PACKET_KINDS)
        with m._lock:
            finished, task_errors, api_errors = m._finished_files, m._task_errors, m.api_errors
        yield CounterMetricFamily("pyrec_files_finished", "Recording files finished",
                                  value=finished)
        yield _samples(CounterMetricFamily(
            "pyrec_timestamp_repairs", "Timestamps repaired by the recorders, by kind",
            labels=["kind"]),
            {k: v for (what, k), v in totals.items() if what == "repairs"}, REPAIR_KINDS)
        yield _samples(CounterMetricFamily(
            "pyrec_errors", "Errors: ingest connections, tasks failed, API 5xx", labels=["name"]),
            {"ingest": st.get("errors", 0), "task": task_errors, "api": api_errors}, ERROR_NAMES)

        for name, (help_, label, usual, kind) in FEEDS.items():
            vals = m.feed_values(name)
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            base = _counter_name(name) if kind == "counter" else name
            if label is None:
                yield cls(base, help_, value=float(vals))  # type: ignore[arg-type]
            else:
                yield _samples(cls(base, help_, labels=[label]),
                               vals if isinstance(vals, Mapping) else {}, usual)

        try:
            free = shutil.disk_usage(m.record_root).free
        except OSError:
            free = 0
        yield GaugeMetricFamily("pyrec_disk_free_bytes", "Free bytes under the record root",
                                value=free)
        yield _lag_histogram(st)


def _lag_histogram(st: dict[str, Any]) -> HistogramMetricFamily:
    """The C loop-lag histogram (bucket i counts lags <= bounds[i] us, the last is +Inf) as
    cumulative Prometheus buckets in seconds."""
    hist = list(st.get("lag_hist", ()))
    bounds = list(st.get("lag_bounds_us", ()))
    buckets: list[tuple[str, float]] = []
    acc = 0
    for i, n in enumerate(hist):
        acc += n
        le = repr(bounds[i] / 1e6) if i < len(bounds) else "+Inf"
        buckets.append((le, acc))
    if not buckets or buckets[-1][0] != "+Inf":
        buckets.append(("+Inf", acc))
    return HistogramMetricFamily("pyrec_ingest_loop_lag_seconds",
                                 "Delay of the ingest event loop's periodic probe",
                                 buckets=buckets, sum_value=st.get("lag_sum_us", 0) / 1e6)
