"""Retention (lifecycle spec section 4): delete recordings by age and by disk limits.

The policy runs on its own worker thread every `interval` (never on the ingest loop, never on
the event dispatcher). Each run, for every app with a retention policy:

- age: a finished (or recovered) file whose finishTime is older than `max_age` is deleted
  (reason `max_age`);
- disk: when the app root's filesystem is fuller than `max_disk_percent` or has less than
  `min_free_bytes` free, files are deleted oldest-first (by finishTime) until it is at most
  `target_disk_percent` full and has `min_free_bytes` free (reason `disk`). Apps that share a
  filesystem are handled one after the other, each deleting only its own files.

Deletion goes through the catalog (`Catalog.delete`): the row becomes `deleted` and
file.deleted is emitted, so webhooks and metrics see it. A file being written (catalog state
`recording`) is never deleted. Folders left empty are removed up to the app root.

`keep_unuploaded`: no upload target exists yet, so every file counts as uploaded-or-no-target
and the key changes nothing today.

disk.pressure is emitted once per transition of an app root's state (`ok`, `high`: past a
limit, `critical`: fuller than `critical_disk_percent`). While an app's filesystem stays
critical after the deletions (nothing more may be deleted), new recordings of that app are
refused: `refusal(vhost, app)` gives "disk full", which the task manager turns into the task's
error; recordings already running go on until a write fails.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyrec.events import DiskPressure, EventSource

if TYPE_CHECKING:
    from pyrec.catalog import Catalog
    from pyrec.config import Config

__all__ = ["RetentionPolicy", "Retention", "parse_duration", "parse_size", "DISK_FULL"]

log = logging.getLogger("pyrec.retention")

DISK_FULL = "disk full"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def parse_duration(v: Any) -> float:
    """Seconds of "30s", "30m", "12h", "7d" (ValueError otherwise)."""
    m = _DURATION.match(v) if isinstance(v, str) else None
    if m is None:
        raise ValueError(f'expected a duration such as "30s", "30m", "12h" or "7d", got {v!r}')
    secs = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if secs <= 0:
        raise ValueError(f"must be more than 0, got {v!r}")
    return secs


def parse_size(v: Any) -> int:
    """Bytes of an integer or "512MiB", "2GiB", "10GB"... (ValueError otherwise)."""
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 0:
            raise ValueError(f"must be >= 0, got {v}")
        return v
    m = _SIZE.match(v) if isinstance(v, str) else None
    if m is None:
        raise ValueError(f'expected bytes or a size such as "512MiB" or "2GiB", got {v!r}')
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


@dataclass(frozen=True)
class RetentionPolicy:
    """One app's retention (the server's [retention] with the app's overrides)."""

    max_age_s: float | None = None
    max_disk_percent: float | None = None
    target_disk_percent: float | None = None  # default: max_disk_percent - 5
    min_free_bytes: int | None = None
    keep_unuploaded: bool = True
    interval_s: float = 30.0
    critical_disk_percent: float = 98.0
    configured: bool = False  # some retention key was set (else the app is left alone)

    @property
    def target(self) -> float | None:
        if self.target_disk_percent is not None:
            return self.target_disk_percent
        if self.max_disk_percent is not None:
            return max(0.0, self.max_disk_percent - 5)
        return None


@dataclass(frozen=True)
class DiskUsage:
    used_percent: float
    free_bytes: int


def disk_usage(path: Path) -> DiskUsage:
    """What df shows: used / (used + available to us), free = available to us."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    total = used + avail
    return DiskUsage(round(100.0 * used / total, 2) if total else 100.0, avail)


class Retention:
    """The retention worker. `run_once()` is one policy run (tests call it directly)."""

    def __init__(self, config: Config, catalog: Catalog, bus: Any = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.catalog = catalog
        self.events = EventSource(bus) if bus is not None else None
        self.clock = clock
        self.deleted: dict[str, int] = {"max_age": 0, "disk": 0}
        self._state: dict[tuple[str, str], str] = {}   # last disk.pressure state per app
        self._refuse: set[tuple[str, str]] = set()
        self._last_run: dict[tuple[str, str], float] = {}  # monotonic time of an app's run
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- wiring -----------------------------------------------------------------------

    def apps(self) -> list[tuple[str, str, Path, RetentionPolicy]]:
        out = []
        for v in self.config.vhosts.values():
            for a in v.apps.values():
                pol: RetentionPolicy = a.retention
                if pol.configured:
                    out.append((v.name, a.name, Path(a.root).resolve(), pol))
        return out

    @property
    def interval(self) -> float:
        return min((p.interval_s for *_x, p in self.apps()), default=0.0)

    def start(self) -> Retention:
        if not self.apps():
            return self
        self._thread = threading.Thread(target=self._loop, name="pyrec-retention", daemon=True)
        self._thread.start()
        log.info("retention: policy runs every %gs", self.interval)
        return self

    def kick(self) -> None:
        """Run the policy now (from any thread) instead of at the next interval."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)

    def refusal(self, vhost: str, app: str) -> str | None:
        """"disk full" while the app's filesystem is critical and nothing may be deleted."""
        with self._lock:
            return DISK_FULL if (vhost, app) in self._refuse else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.deleted)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once(due_only=True)
            except Exception:  # keep running; log loudly
                log.exception("retention run failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    # ---- one run (worker thread) --------------------------------------------------------

    def run_once(self, due_only: bool = False) -> None:
        """One policy run over every app (`due_only`: the apps whose `interval` has passed
        since their last run; the worker wakes at the shortest interval)."""
        with self._run_lock:
            for vhost, app, root, pol in self.apps():
                if self._stop.is_set():
                    return
                now = time.monotonic()
                last = self._last_run.get((vhost, app))
                if due_only and last is not None and now - last < pol.interval_s - 0.05:
                    continue
                self._last_run[(vhost, app)] = now
                if pol.max_age_s is not None:
                    self._by_age(vhost, app, root, pol)
                if root.exists():
                    self._by_disk(vhost, app, root, pol)

    def _candidates(self, vhost: str, app: str, older_than_us: int | None = None
                    ) -> list[tuple[str, str, int]]:
        """(id, abs_path, finish_us) of the app's deletable files, oldest first. A file being
        written (`recording`) is never one."""
        return self.catalog.deletable(vhost, app, older_than_us)

    def _delete(self, vhost: str, app: str, root: Path, rid: str, path: str,
                reason: str) -> bool:
        from pyrec.catalog import RecordingBusy

        try:
            row = self.catalog.delete(vhost, app, rid, reason=reason)
        except RecordingBusy:
            return False
        except OSError as e:
            log.error("retention: cannot delete %s: %s", path, e)
            return False
        if row is None:
            return False
        with self._lock:
            self.deleted[reason] = self.deleted.get(reason, 0) + 1
        log.info("retention: deleted %s (%s/%s, finished %s, reason %s)", row["path"], vhost,
                 app, row.get("finishTime", "?"), reason)
        self._prune(Path(path).parent, root)
        return True

    @staticmethod
    def _prune(folder: Path, root: Path) -> None:
        """Remove empty folders from `folder` up to (not including) the app root."""
        try:
            folder.resolve().relative_to(root)
        except ValueError:
            return
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): stop here
                return
            log.info("retention: removed empty folder %s", folder)
            folder = folder.parent

    def _by_age(self, vhost: str, app: str, root: Path, pol: RetentionPolicy) -> None:
        assert pol.max_age_s is not None
        cutoff = int((self.clock() - pol.max_age_s) * 1_000_000)
        for rid, path, _fin in self._candidates(vhost, app, cutoff):
            self._delete(vhost, app, root, rid, path, "max_age")

    @staticmethod
    def _over(u: DiskUsage, pol: RetentionPolicy) -> bool:
        return ((pol.max_disk_percent is not None and u.used_percent > pol.max_disk_percent)
                or (pol.min_free_bytes is not None and u.free_bytes < pol.min_free_bytes))

    @staticmethod
    def _done(u: DiskUsage, pol: RetentionPolicy) -> bool:
        target = pol.target
        return ((target is None or u.used_percent <= target)
                and (pol.min_free_bytes is None or u.free_bytes >= pol.min_free_bytes))

    def _state_of(self, u: DiskUsage, pol: RetentionPolicy) -> str:
        if u.used_percent > pol.critical_disk_percent:
            return "critical"
        return "high" if self._over(u, pol) else "ok"

    def _by_disk(self, vhost: str, app: str, root: Path, pol: RetentionPolicy) -> None:
        u = disk_usage(root)
        self._pressure(vhost, app, u, pol)
        if self._over(u, pol) or u.used_percent > pol.critical_disk_percent:
            for rid, path, _fin in self._candidates(vhost, app):
                if self._done(u, pol) and u.used_percent <= pol.critical_disk_percent:
                    break
                if self._delete(vhost, app, root, rid, path, "disk"):
                    u = disk_usage(root)
            self._pressure(vhost, app, u, pol)
        critical = u.used_percent > pol.critical_disk_percent
        with self._lock:
            was = (vhost, app) in self._refuse
            if critical:
                self._refuse.add((vhost, app))
            else:
                self._refuse.discard((vhost, app))
        if critical and not was:
            log.error("retention: %s/%s: disk %.1f%% full (critical %g%%) and nothing more "
                      "may be deleted: new recordings are refused (disk full)", vhost, app,
                      u.used_percent, pol.critical_disk_percent)
        elif was and not critical:
            log.warning("retention: %s/%s: disk %.1f%% full: new recordings accepted again",
                        vhost, app, u.used_percent)

    def _pressure(self, vhost: str, app: str, u: DiskUsage, pol: RetentionPolicy) -> None:
        state = self._state_of(u, pol)
        last = self._state.get((vhost, app), "ok")
        if state == last:
            return
        self._state[(vhost, app)] = state
        (log.info if state == "ok" else log.warning)(
            "retention: %s/%s: disk pressure %s (%.1f%% used, %d bytes free)", vhost, app,
            state, u.used_percent, u.free_bytes)
        if self.events is not None:
            self.events.emit(DiskPressure, vhost=vhost, app=app, stream=None,
                             used_percent=u.used_percent, free_bytes=u.free_bytes, state=state)
