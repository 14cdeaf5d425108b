"""The recordings catalog (lifecycle spec section 3): every file the server writes or recovers
is a row that outlives its task.

The catalog is an event bus subscriber (file.opened / file.finished / file.recovered /
file.deleted), so it runs on the dispatcher thread, never on the ingest loop. Rows live in
their own SQLite file beside the task store (`<db dir>/catalog.sqlite3`): the catalog has its
own schema version (`PRAGMA user_version`) and its own lock, so it migrates and grows
(uploads, retention) without touching the task store's schema, and the API's reads never wait
on task writes.

sha256: a finished or recovered file is hashed by one catalog worker thread (reading 1 MiB at
a time), not on the dispatcher, so a large file never holds up events or API answers that
wait for the dispatcher. The row therefore gets its `sha256` shortly *after* file.finished: a
webhook receiver that fetches the row on file.finished may see it without `sha256` and sees it
once the worker is done (`wait_idle()` waits for that).

Start-up reconcile (`reconcile()`): a file under an app's root that the catalog lacks is added
(`finished`, or `recovered` when the start-up scan finalised it), with a stable id made from
its place (`f-<sha1 of vhost/app/path>`, 16 hex digits); a row whose local file vanished
becomes `missing`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pyrec import repair
from pyrec.config import Config
from pyrec.events import (Event, EventSource, FileDeleted, FileFinished, FileOpened,
                          FileRecovered, Recording, iso_time)
from pyrec.naming import EXTENSIONS

__all__ = ["Catalog", "CatalogQuery", "SCHEMA_VERSION", "STATES", "RecordingBusy"]

log = logging.getLogger("pyrec.catalog")

SCHEMA_VERSION = 1
STATES = ("recording", "finished", "recovered", "deleted", "missing")
HASH_CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    vhost TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    task_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    path TEXT NOT NULL,          -- relative to the app's record root
    abs_path TEXT NOT NULL,      -- where the file is (not in the API)
    start_time TEXT,             -- ISO-8601 as the API shows it
    start_us INTEGER NOT NULL,   -- start, microseconds since the epoch (ordering, filters)
    finish_time TEXT,
    finish_us INTEGER,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    recovered INTEGER NOT NULL DEFAULT 0,
    tracks TEXT NOT NULL DEFAULT '[]',
    sha256 TEXT,
    object_key TEXT,
    etag TEXT,
    uploaded_time TEXT,
    local INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS recordings_app_start ON recordings (vhost, app, start_us, id);
CREATE INDEX IF NOT EXISTS recordings_abs_path ON recordings (abs_path);
"""

_COLUMNS = ("id, vhost, app, stream, task_id, sequence, path, abs_path, start_time, start_us, "
            "finish_time, finish_us, duration_ms, bytes, state, recovered, tracks, sha256, "
            "object_key, etag, uploaded_time, local")


class RecordingBusy(Exception):
    """The file is still being recorded."""


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _us(t: datetime | None, *, ms: bool = False) -> int | None:
    """Microseconds since the epoch; `ms`: cut to the millisecond the API shows, so a time
    copied from a row into `from`/`to` matches that row."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.astimezone()
    us = (t - _EPOCH) // timedelta(microseconds=1)
    return us - us % 1000 if ms else us


@dataclass(frozen=True)
class CatalogQuery:
    vhost: str
    app: str
    stream: str | None = None
    task_id: str | None = None
    start: datetime | None = None     # `from`
    end: datetime | None = None       # `to`
    state: str | None = None
    limit: int = 100
    after: tuple[int, str] | None = None  # the cursor: (start_us, id) of the last row shown


def row_to_dict(row: sqlite3.Row) -> dict[str, Any]:
    """The spec's `recording` object."""
    out: dict[str, Any] = {
        "id": row["id"], "vhost": row["vhost"], "app": row["app"], "stream": row["stream"],
        "taskId": row["task_id"], "sequence": row["sequence"], "path": row["path"],
        "startTime": row["start_time"]}
    if row["finish_time"] is not None:
        out["finishTime"] = row["finish_time"]
    out.update({"durationMs": row["duration_ms"], "bytes": row["bytes"], "state": row["state"],
                "recovered": bool(row["recovered"]), "tracks": json.loads(row["tracks"])})
    if row["sha256"]:
        out["sha256"] = row["sha256"]
    for key, col in (("objectKey", "object_key"), ("etag", "etag"),
                     ("uploadedTime", "uploaded_time")):
        if row[col] is not None:
            out[key] = row[col]
    out["local"] = bool(row["local"])
    return out


def sha256_file(path: str, stop: threading.Event | None = None) -> str | None:
    """The file's hex SHA-256; None when `stop` was set meanwhile."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            if stop is not None and stop.is_set():
                return None
            h.update(chunk)
    return h.hexdigest()


class Catalog:
    """The catalog database and its subscriber. `subscribe(bus)` before the webhook outbox so
    a receiver told of a file finds its row."""

    TYPES = (FileOpened.type, FileFinished.type, FileRecovered.type, FileDeleted.type)

    def __init__(self, config: Config, path: Path | None = None) -> None:
        self.config = config
        self.path = path or config.database.parent / "catalog.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                   isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: catalog schema {version} is newer than this "
                                   f"pyrec's ({SCHEMA_VERSION})")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.events: EventSource | None = None
        self._hashq: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._pending = 0
        self._idle = threading.Condition()
        self._closing = threading.Event()
        self._worker = threading.Thread(target=self._hash_loop, name="pyrec-catalog-hash",
                                        daemon=True)
        self._worker.start()

    # ---- wiring -----------------------------------------------------------------------

    def subscribe(self, bus: Any) -> None:
        self.events = EventSource(bus)
        bus.subscribe(self, self.TYPES)

    def close(self) -> None:
        """Stop hashing (a row left without sha256 is hashed at the next start) and close."""
        self._closing.set()
        self._hashq.put(None)
        self._worker.join(30)
        with self._lock:
            self._db.close()

    def root(self, vhost: str, app: str) -> Path:
        appcfg = self.config.app(vhost, app)
        return Path(appcfg.root if appcfg else self.config.record_root).resolve()

    # ---- the subscriber (dispatcher thread) -------------------------------------------

    def __call__(self, ev: Event) -> None:
        rec: Recording = ev.recording  # type: ignore[attr-defined]
        if isinstance(ev, FileDeleted):
            with self._lock:
                self._db.execute("UPDATE recordings SET state='deleted', local=0 WHERE id=?",
                                 (rec.id,))
            return
        state = "recovered" if isinstance(ev, FileRecovered) else rec.state
        abs_path = str(self.root(rec.vhost, rec.app) / rec.path)
        self._upsert(rec, state, abs_path, recovered=rec.recovered or state == "recovered")
        if state in ("finished", "recovered"):
            self._queue_hash(rec.id, abs_path)

    def _upsert(self, rec: Recording, state: str, abs_path: str, *, recovered: bool) -> None:
        start_us = _us(rec.start_time, ms=True) or 0
        vals = (rec.id, rec.vhost, rec.app, rec.stream, rec.task_id, rec.sequence, rec.path,
                abs_path, iso_time(rec.start_time), start_us, iso_time(rec.finish_time),
                _us(rec.finish_time, ms=True), rec.duration_ms, rec.bytes, state, int(recovered),
                json.dumps([dict(t) for t in rec.tracks]), None, None, None, None,
                int(rec.local))
        with self._lock:
            self._db.execute(
                f"INSERT INTO recordings ({_COLUMNS}) VALUES ({', '.join('?' * 22)}) "
                "ON CONFLICT(id) DO UPDATE SET path=excluded.path, abs_path=excluded.abs_path, "
                "start_time=COALESCE(excluded.start_time, start_time), "
                "start_us=CASE WHEN excluded.start_time IS NULL THEN start_us "
                "ELSE excluded.start_us END, "
                "finish_time=excluded.finish_time, finish_us=excluded.finish_us, "
                "duration_ms=excluded.duration_ms, bytes=excluded.bytes, state=excluded.state, "
                "recovered=MAX(recovered, excluded.recovered), tracks=excluded.tracks, "
                "local=excluded.local", vals)

    # ---- sha256 (worker thread) -------------------------------------------------------

    def _queue_hash(self, rid: str, abs_path: str) -> None:
        with self._idle:
            self._pending += 1
        self._hashq.put((rid, abs_path))

    def _hash_loop(self) -> None:
        while True:
            item = self._hashq.get()
            if item is None:
                return
            rid, path = item
            try:
                before = os.stat(path)
                digest = sha256_file(path, self._closing)
                after = os.stat(path)
                if digest is None:
                    pass  # closing: the next start hashes it
                elif (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
                    with self._lock:
                        self._db.execute(
                            "UPDATE recordings SET sha256=?, bytes=? WHERE id=? AND abs_path=?",
                            (digest, after.st_size, rid, path))
                else:
                    log.warning("%s changed while it was hashed; sha256 left unset", path)
            except FileNotFoundError:
                pass  # deleted meanwhile: the row says so
            except (OSError, sqlite3.Error) as e:
                log.error("catalog: cannot hash %s: %s", path, e)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every queued sha256 is computed (tests, shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # ---- reads (API threads) ----------------------------------------------------------

    def get(self, vhost: str, app: str, rid: str) -> dict[str, Any] | None:
        row = self._row(vhost, app, rid)
        return row_to_dict(row) if row is not None else None

    def _row(self, vhost: str, app: str, rid: str) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(
                f"SELECT {_COLUMNS} FROM recordings WHERE id=? AND vhost=? AND app=?",
                (rid, vhost, app)).fetchone()

    def file_path(self, vhost: str, app: str, rid: str) -> tuple[dict[str, Any], str] | None:
        """The row and its local file's path (None: no such row)."""
        row = self._row(vhost, app, rid)
        return (row_to_dict(row), row["abs_path"]) if row is not None else None

    def list(self, q: CatalogQuery) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
        """Rows ordered by (startTime, id) and the cursor of the next page (None: last)."""
        where = ["vhost=?", "app=?"]
        args: list[Any] = [q.vhost, q.app]
        for col, val in (("stream", q.stream), ("task_id", q.task_id), ("state", q.state)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        if q.start is not None:  # overlap: the file ends at or after `from` (or is open)
            where.append("(finish_us IS NULL OR finish_us >= ?)")
            args.append(_us(q.start))
        if q.end is not None:    # and starts at or before `to`
            where.append("start_us <= ?")
            args.append(_us(q.end))
        if q.after is not None:
            where.append("(start_us > ? OR (start_us = ? AND id > ?))")
            args += [q.after[0], q.after[0], q.after[1]]
        sql = (f"SELECT {_COLUMNS} FROM recordings WHERE {' AND '.join(where)} "
               "ORDER BY start_us, id LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, q.limit + 1)).fetchall()
        more = len(rows) > q.limit
        rows = rows[:q.limit]
        nxt = (rows[-1]["start_us"], rows[-1]["id"]) if more and rows else None
        return [row_to_dict(r) for r in rows], nxt

    def deletable(self, vhost: str, app: str, finished_before_us: int | None = None
                  ) -> list[tuple[str, str, int]]:
        """(id, abs_path, finish_us) of the app's local finished/recovered files (never one
        being recorded), oldest finishTime first; `finished_before_us`: only those older."""
        sql = ("SELECT id, abs_path, finish_us FROM recordings WHERE vhost=? AND app=? "
               "AND state IN ('finished', 'recovered') AND local=1 AND finish_us IS NOT NULL")
        args: list[Any] = [vhost, app]
        if finished_before_us is not None:
            sql += " AND finish_us < ?"
            args.append(finished_before_us)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY finish_us, id", args).fetchall()
        return [(r["id"], r["abs_path"], r["finish_us"]) for r in rows]

    # ---- delete (API threads) ---------------------------------------------------------

    def delete(self, vhost: str, app: str, rid: str, reason: str = "api"
               ) -> dict[str, Any] | None:
        """Delete the local file, mark the row `deleted` and emit file.deleted. None: no such
        row; RecordingBusy: still recording."""
        row = self._row(vhost, app, rid)
        if row is None:
            return None
        if row["state"] == "recording":
            raise RecordingBusy(rid)
        if row["state"] == "deleted":
            return row_to_dict(row)  # already: no second file.deleted
        try:
            os.unlink(row["abs_path"])
        except FileNotFoundError:
            pass
        with self._lock:  # one of two concurrent deletes (API, retention) wins the row
            won = self._db.execute(
                "UPDATE recordings SET state='deleted', local=0 WHERE id=? "
                "AND state NOT IN ('deleted', 'recording')", (rid,)).rowcount == 1
        row = self._row(vhost, app, rid)
        assert row is not None
        out = row_to_dict(row)
        if won and self.events is not None:
            self.events.emit(FileDeleted, vhost=vhost, app=app, stream=row["stream"],
                             recording=self._recording(row), reason=reason)
        return out

    @staticmethod
    def _recording(row: sqlite3.Row) -> Recording:
        def t(s: str | None) -> datetime | None:
            return datetime.fromisoformat(s) if s else None
        return Recording(
            id=row["id"], vhost=row["vhost"], app=row["app"], stream=row["stream"],
            task_id=row["task_id"], sequence=row["sequence"], path=row["path"],
            start_time=t(row["start_time"]), state=row["state"],
            finish_time=t(row["finish_time"]), duration_ms=row["duration_ms"],
            bytes=row["bytes"], recovered=bool(row["recovered"]),
            tracks=tuple(json.loads(row["tracks"])), local=bool(row["local"]))

    # ---- start-up reconcile -----------------------------------------------------------

    def reconcile(self, recovered: Iterable[str] = ()) -> tuple[int, int]:
        """Add the files under the app roots the catalog lacks (recovered when their path is
        in `recovered`, the start-up scan's list) and mark rows whose file vanished
        `missing`. Returns (added, missing)."""
        recovered_set = {os.path.realpath(p) for p in recovered}
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM recordings").fetchall()
        known = {os.path.realpath(r["abs_path"]) for r in rows}
        missing = 0
        for r in rows:
            if r["state"] in ("deleted", "missing"):
                continue
            exists = os.path.exists(r["abs_path"])
            if exists and r["state"] == "recording":
                # open when the server died, finalised by the start-up scan, and no task
                # claimed it (no file.recovered): what the disk now holds
                real = os.path.realpath(r["abs_path"])
                self._add_found(r["vhost"], r["app"], self.root(r["vhost"], r["app"]),
                                r["abs_path"], real in recovered_set, like=r)
            elif not exists:
                with self._lock:
                    self._db.execute(
                        "UPDATE recordings SET state='missing', local=0 WHERE id=?", (r["id"],))
                missing += 1
                log.warning("catalog: %s is gone; recording %s is now missing",
                            r["abs_path"], r["id"])
            elif r["sha256"] is None and r["state"] in ("finished", "recovered"):
                self._queue_hash(r["id"], r["abs_path"])  # the last run stopped before it
        added = 0
        for vhost, app, root in self._app_roots():
            for path in self._media_files(root):
                real = os.path.realpath(path)
                if real in known:
                    continue
                known.add(real)
                self._add_found(vhost, app, root, path, real in recovered_set)
                added += 1
        return added, missing

    def _app_roots(self) -> list[tuple[str, str, Path]]:
        """(vhost, app, root), deepest roots first so a file belongs to its closest app."""
        out = [(v.name, a.name, Path(a.root).resolve()) for v in self.config.vhosts.values()
               for a in v.apps.values()]
        out.sort(key=lambda x: -len(x[2].parts))
        seen: set[Path] = set()
        uniq = []
        for v, a, r in out:
            if r not in seen:
                seen.add(r)
                uniq.append((v, a, r))
        return uniq

    def _media_files(self, root: Path) -> list[str]:
        if not root.exists():
            return []
        others = {r for _v, _a, r in self._app_roots() if r != root and root in r.parents}
        out = []
        for d, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if not x.startswith(".")
                       and Path(d, x).resolve() not in others]
            for name in files:
                if name.startswith(".") or os.path.splitext(name)[1].lower() not in EXTENSIONS:
                    continue
                p = os.path.join(d, name)
                if os.path.isfile(p) and not os.path.islink(p):
                    out.append(p)
        return sorted(out)

    def _add_found(self, vhost: str, app: str, root: Path, path: str, recovered: bool,
                   like: sqlite3.Row | None = None) -> None:
        """A row for a file found on disk (`like`: the row it already has, kept by id)."""
        try:
            rel = str(Path(path).resolve().relative_to(root))
        except ValueError:
            rel = like["path"] if like is not None else path
        st = os.stat(path)
        try:
            duration = repair.repair(path, dry_run=True).duration_ms
        except Exception:  # not a pyrec fMP4 we can read: listed with what the disk says
            duration = 0
        end = datetime.fromtimestamp(st.st_mtime).astimezone()
        start = end - timedelta(milliseconds=duration)
        rid = "f-" + hashlib.sha1(f"{vhost}/{app}/{rel}".encode()).hexdigest()[:16]
        stream, task_id, seq, tracks = "", "", 0, ()
        if like is not None:
            rid, stream, task_id, seq = (like["id"], like["stream"], like["task_id"],
                                         like["sequence"])
            tracks = tuple(json.loads(like["tracks"]))
            if like["start_time"]:
                start = datetime.fromisoformat(like["start_time"])
                end = start + timedelta(milliseconds=duration)
        rec = Recording(id=rid, vhost=vhost, app=app, stream=stream, task_id=task_id,
                        sequence=seq, path=rel, start_time=start, state="recovered" if recovered
                        else "finished", finish_time=end, duration_ms=duration, bytes=st.st_size,
                        recovered=recovered, tracks=tracks)
        self._upsert(rec, rec.state, path, recovered=recovered)
        self._queue_hash(rid, path)
        log.info("catalog: added %s found under %s (%s)", rel, root, rec.state)
