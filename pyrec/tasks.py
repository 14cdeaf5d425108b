"""Recording tasks (the Record API's model, spec sections 4-10) and the TaskManager that runs
them against live streams: reservations, several tasks per stream, track selection, interval
and schedule splits, path templates under the app root, info XML, persistence and recovery.

Locking: the manager's lock protects Python state only. It is never held while calling into
the ingest server from a thread other than the server's loop thread (the loop thread calls
us with the server's lock held; taking ours inside it is the one allowed order)."""
from __future__ import annotations

import errno
import logging
import os
import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pyrec import _core
from pyrec.config import AppConfig, Config
from pyrec.errors import ApiError
from pyrec.infoxml import InfoEntry, append_entry
from pyrec.ingest import IngestServer, LiveRecording, LiveStream
from pyrec.paths import PathContext, PathEscapeError, expand, resolve_under
from pyrec.recorder import FileSink, RecordedFile, rename_no_replace
from pyrec.schedule import Schedule, ScheduleError
from pyrec.store import TaskStore

__all__ = ["TaskManager", "Task", "TaskSpec", "iso_time"]

log = logging.getLogger("pyrec.tasks")
_FINISH_RETRY_S = 2.0  # how often a file cut short by a full disk is tried again

Clock = Callable[[], datetime]
_EXTENSIONS = (".mp4", ".m4v", ".m4a")
_TXN_ALPHABET = string.ascii_letters + string.digits


def _now() -> datetime:
    return datetime.now().astimezone()


def iso_time(t: datetime | None) -> str | None:
    """2023-03-15T21:15:20.113+09:00 (milliseconds, numeric offset, never Z)."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.astimezone()
    return t.isoformat(timespec="milliseconds")


@dataclass
class TaskSpec:
    """A validated :startRecord request."""

    id: str
    stream_name: str
    variant_names: list[str] = field(default_factory=list)
    track_ids: list[int] = field(default_factory=list)
    interval: int | None = None
    schedule: str | None = None
    segmentation_rule: str | None = None
    file_path: str | None = None
    info_path: str | None = None
    metadata: str | None = None
    is_config: bool = False

    @property
    def continuity(self) -> bool:
        return self.segmentation_rule == "continuity"


def _bad(field_name: str, why: str) -> ApiError:
    return ApiError(400, f"Invalid [{field_name}] parameter: {why}")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, "expected integer milliseconds")
    if isinstance(value, float) and not value.is_integer():
        raise _bad(name, "expected integer milliseconds")
    return int(value)


def parse_spec(body: dict[str, Any], *, is_config: bool = False) -> TaskSpec:
    """Validate a :startRecord body in the contract's order (spec section 4): required fields,
    interval+schedule, schedule syntax, then types and values. Duplicates are the manager's."""
    rid = body.get("id")
    stream = body.get("stream")
    name = stream.get("name") if isinstance(stream, dict) else None
    missing = []
    if rid is None or rid == "":
        missing.append(" id")
    if name is None or name == "":
        missing.append(" stream.name")
    if missing:
        raise ApiError(400, f"There is no required parameter [{''.join(missing)}]")
    if not isinstance(rid, str):
        raise _bad("id", "expected a string")
    if not isinstance(stream, dict):
        raise _bad("stream", "expected an object")
    if not isinstance(name, str):
        raise _bad("stream.name", "expected a string")
    interval, schedule = body.get("interval"), body.get("schedule")
    if interval is not None and schedule is not None:
        raise ApiError(400, "[Interval] and [Schedule] cannot be used at the same time")
    if schedule is not None:
        try:
            Schedule(schedule)
        except ScheduleError as e:
            # OME's message, then what is wrong (the field and the number)
            raise ApiError(400, f"Invalid [schedule] parameter: {e}") from None
    spec = TaskSpec(id=rid, stream_name=name, is_config=is_config, schedule=schedule)
    if interval is not None:
        spec.interval = _int(interval, "interval")
        if spec.interval < 0:
            raise _bad("interval", "must be >= 0 milliseconds (0: no interval split)")
        if spec.interval == 0:
            spec.interval = None
    variants = stream.get("variantNames")
    if variants is not None:
        if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
            raise _bad("stream.variantNames", "expected an array of strings")
        spec.variant_names = list(variants)
    for key in ("trackIds", "tracks"):
        ids = stream.get(key)
        if ids is None:
            continue
        if not isinstance(ids, list) or not all(
                isinstance(i, (int, float)) and not isinstance(i, bool)
                and float(i).is_integer() for i in ids):
            raise _bad(f"stream.{key}", "expected an array of integers")
        spec.track_ids.extend(int(i) for i in ids if int(i) not in spec.track_ids)
    rule = body.get("segmentationRule")
    if rule is not None:
        if rule not in ("continuity", "discontinuity"):
            raise _bad("segmentationRule", "expected \"continuity\" or \"discontinuity\"")
        spec.segmentation_rule = rule
    for key, attr in (("filePath", "file_path"), ("infoPath", "info_path"),
                      ("metadata", "metadata")):
        v = body.get(key)
        if v is None:
            continue
        if not isinstance(v, str):
            raise _bad(key, "expected a string")
        setattr(spec, attr, v)
    return spec


@dataclass
class Task:
    spec: TaskSpec
    vhost: str
    app: str
    created: datetime
    transaction_id: str
    state: str = "ready"
    error: str | None = None
    next_sequence: int = 0
    # the file being written (or the last one)
    sequence: int | None = None
    output_file: str | None = None       # relative to the root
    output_info: str | None = None
    open_path: str | None = None          # absolute path while a file is open (crash recovery)
    start_time: datetime | None = None
    finish_time: datetime | None = None
    record_bytes: int = 0
    record_time: int = 0
    total_bytes: int = 0
    total_time: int = 0
    files: int = 0
    skipped_tracks: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    # live binding
    recording: LiveRecording | None = None
    stream: LiveStream | None = None
    attaching: bool = False
    open_failed: bool = False  # the recording being attached could not create its file
    stopping: bool = False
    next_boundary: datetime | None = None
    parked_until: datetime | None = None  # reconnect grace: file kept open until then

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.vhost, self.app, self.spec.id)

    def to_json(self, live: dict[str, Any] | None = None) -> dict[str, Any]:
        s = self.spec
        out: dict[str, Any] = {
            "id": s.id, "vhost": self.vhost, "app": self.app, "state": self.state,
            "createdTime": iso_time(self.created),
            "stream": {"name": s.stream_name, "trackIds": list(s.track_ids),
                       "variantNames": list(s.variant_names)},
            "isConfig": s.is_config,
        }
        # OME answers segmentationRule for every API task ("discontinuity" when the request
        # had none); a task of an auto-record rule shows it when the rule sets it.
        rule = s.segmentation_rule or (None if s.is_config else "discontinuity")
        for key, val in (("interval", s.interval), ("schedule", s.schedule),
                         ("segmentationRule", rule), ("metadata", s.metadata),
                         ("filePath", s.file_path), ("infoPath", s.info_path)):
            if val:
                out[key] = val
        if self.output_file:
            out["outputFilePath"] = self.output_file
        if self.output_info:
            out["outputInfoPath"] = self.output_info
        rec_bytes, rec_time = self.record_bytes, self.record_time
        if live is not None:
            rec_bytes, rec_time = live["bytes"], live["time"]
        if self.sequence is not None:
            out["sequence"] = self.sequence
            out["startTime"] = iso_time(self.start_time)
            out["recordBytes"] = rec_bytes
            out["recordTime"] = rec_time
            out["totalRecordBytes"] = self.total_bytes + (rec_bytes if live else 0)
            out["totalRecordTime"] = self.total_time + (rec_time if live else 0)
        if self.state in ("stopped", "error") and self.finish_time is not None:
            out["finishTime"] = iso_time(self.finish_time)
        if self.error:
            out["error"] = self.error
        if self.skipped_tracks:
            out["skippedTracks"] = list(self.skipped_tracks)
        if self.recovered:
            out["recoveredFiles"] = list(self.recovered)
        out["files"] = self.files
        return out

    def persist(self) -> dict[str, Any]:
        s = self.spec
        return {"spec": {"id": s.id, "stream_name": s.stream_name,
                         "variant_names": s.variant_names, "track_ids": s.track_ids,
                         "interval": s.interval, "schedule": s.schedule,
                         "segmentation_rule": s.segmentation_rule, "file_path": s.file_path,
                         "info_path": s.info_path, "metadata": s.metadata,
                         "is_config": s.is_config},
                "created": iso_time(self.created), "transaction_id": self.transaction_id,
                "state": self.state, "error": self.error, "next_sequence": self.next_sequence,
                "sequence": self.sequence, "output_file": self.output_file,
                "output_info": self.output_info, "open_path": self.open_path,
                "start_time": iso_time(self.start_time),
                "finish_time": iso_time(self.finish_time), "record_bytes": self.record_bytes,
                "record_time": self.record_time, "total_bytes": self.total_bytes,
                "total_time": self.total_time, "files": self.files,
                "recovered": self.recovered}

    @classmethod
    def restore(cls, vhost: str, app: str, d: dict[str, Any]) -> Task:
        t = cls(TaskSpec(**d["spec"]), vhost, app, datetime.fromisoformat(d["created"]),
                d["transaction_id"])
        for k in ("state", "error", "next_sequence", "sequence", "output_file", "output_info",
                  "open_path", "record_bytes", "record_time", "total_bytes", "total_time",
                  "files", "recovered"):
            setattr(t, k, d.get(k, getattr(t, k)))
        for k in ("start_time", "finish_time"):
            if d.get(k):
                setattr(t, k, datetime.fromisoformat(d[k]))
        return t


class TaskManager:
    """Runs the Record API's tasks. `ingest` may be None (no live streams: every task is a
    reservation). `clock` is injected so schedules are driven without sleeping."""

    def __init__(self, config: Config, *, store: TaskStore | None = None,
                 ingest: IngestServer | None = None, clock: Clock = _now) -> None:
        self.config = config
        self.store = store if store is not None else TaskStore(None)
        self.clock = clock
        self.ingest: IngestServer | None = None
        self._lock = threading.RLock()
        self._tasks: dict[tuple[str, str], dict[str, Task]] = {}
        # files cut short by a write error (a full disk): path -> (finish, next try, task id,
        # (st_dev, st_ino)); finished by tick() as soon as the disk has room, else at the next
        # start-up; a path that names another file by then (removed, made anew) is dropped
        self._unfinished: dict[str, tuple[str, float, str, tuple[int, int]]] = {}
        self._finishing = threading.Lock()  # one finisher at a time (tick thread, close)
        for vhost, app, _id, data in self.store.load():
            try:
                task = Task.restore(vhost, app, data)
            except (KeyError, TypeError, ValueError) as e:
                log.error("task %s/%s/%s in the store is unreadable: %s", vhost, app, _id, e)
                continue
            if task.state in ("recording", "stopping"):
                task.state = "ready"  # interrupted: resumes when its stream is published
            self._tasks.setdefault((vhost, app), {})[task.spec.id] = task
        self._recover()
        if ingest is not None:
            self.attach_ingest(ingest)

    # ---- set-up ----------------------------------------------------------------------

    def attach_ingest(self, ingest: IngestServer) -> None:
        self.ingest = ingest
        ingest._ready_listener = self.on_stream_ready
        ingest._end_listener = self.on_stream_end
        ingest._closing_listener = self.on_stream_closing

    def _recover(self) -> None:
        """Files left open by a crash: finalise them and report them (log + task info)."""
        try:
            from pyrec import repair
        except ImportError:  # pragma: no cover - repair ships with the package
            return
        for task in self.all_tasks():
            if not task.open_path:
                continue
            path = task.open_path
            task.open_path = None
            if os.path.exists(path):
                appcfg = self.config.app(task.vhost, task.app)
                try:
                    rep = repair.repair(path, finish=appcfg.finish if appcfg else "hybrid")
                except OSError as e:
                    log.error("task %s: cannot finalise %s: %s", task.spec.id, path, e)
                    continue
                if rep.status == repair.UNRECOVERABLE and rep.fragments == 0:
                    os.unlink(path)  # opened just before the crash: no media reached it
                    log.warning("task %s: removed %s: opened just before a crash, it holds no "
                                "media", task.spec.id, path)
                else:
                    path = self._final_name(task, path, rep.duration_ms)
                    log.warning("task %s: recovered %s after a crash: %s (%s)", task.spec.id,
                                path, rep.status, rep.message)
                    self._recovered_file(task, path, rep.duration_ms)
            self._save(task)

    def _recovered_file(self, task: Task, path: str, duration_ms: int) -> None:
        """A file finalised after a crash counts like any finished file: the task's totals,
        its current-file keys and a <file> entry in the info XML (its end = start + what it
        holds; it was not closed by :stopRecord, so lastSequence is false)."""
        size = os.path.getsize(path)
        start = task.start_time
        end = start + timedelta(milliseconds=duration_ms) if start is not None else None
        task.recovered.append(self._relative(task, path))
        task.files += 1
        task.output_file = self._relative(task, path)
        task.record_bytes, task.record_time = size, duration_ms
        task.total_bytes += size
        task.total_time += duration_ms
        if end is not None:
            task.finish_time = end
        self._append_info(task, path, size, duration_ms, task.sequence or 0, False, start, end)

    def _final_name(self, task: Task, path: str, duration_ms: int) -> str:
        """A recovered file still under its temporary name (a ${EndTime} template) gets its
        final name, the end time being its start plus what it holds."""
        if not os.path.basename(path).startswith(".pyrec-") or task.start_time is None:
            return path
        appcfg = self.config.app(task.vhost, task.app)
        template = task.spec.file_path or (appcfg.file_path if appcfg else None)
        if not template or appcfg is None:
            return path
        ctx = PathContext(vhost=task.vhost, app=task.app, stream=task.spec.stream_name,
                          id=task.spec.id, transaction_id=task.transaction_id,
                          sequence=task.sequence or 0, start_time=task.start_time,
                          end_time=task.start_time + timedelta(milliseconds=duration_ms))
        try:
            final = str(resolve_under(appcfg.root, expand(template, ctx)))
            return rename_no_replace(path, final)
        except (OSError, PathEscapeError) as e:
            log.error("task %s: cannot rename %s: %s", task.spec.id, path, e)
            return path

    def all_tasks(self) -> list[Task]:
        with self._lock:
            return [t for d in self._tasks.values() for t in d.values()]

    def close(self) -> None:
        """Stop recording (files finished; tasks stay stored and resume after a restart)."""
        for task in self.all_tasks():
            rec = task.recording
            if rec is not None:
                task.stopping = False
                try:
                    rec.stop()
                except (_core.PyrecError, OSError, ValueError) as e:
                    log.warning("task %s: %s", task.spec.id, e)
        self._finish_unfinished(force=True)
        self.store.close()

    def _finish_unfinished(self, *, force: bool = False) -> None:
        """Finish the files a write error cut short (whole fragments, no index) once the disk
        has room; a file that still cannot be finished is retried every few seconds, and the
        start-up scan finishes whatever is left."""
        import time

        with self._finishing:
            now = time.monotonic()
            with self._lock:
                due = [(p, v) for p, v in self._unfinished.items() if force or now >= v[1]]
            if due:
                self._finish_files(due, now)

    def _finish_files(self, due: list[tuple[str, tuple[str, float, str, tuple[int, int]]]],
                      now: float) -> None:
        from pyrec import repair

        for path, (finish, _, tid, ident) in due:
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) != ident:
                    raise FileNotFoundError(path)  # not the file that was cut short
                rep = repair.repair(path, finish=finish)
            except FileNotFoundError:
                rep = None
            except OSError as e:  # still no room (or another write error): later
                with self._lock:
                    self._unfinished[path] = (finish, now + _FINISH_RETRY_S, tid, ident)
                log.debug("task %s: %s not finished yet: %s", tid, path, e)
                continue
            with self._lock:
                self._unfinished.pop(path, None)
            if rep is not None and rep.status == repair.REPAIRED:
                log.warning("task %s: finished %s, cut short by a write error: %s", tid, path,
                            rep.message)

    # ---- the Record API --------------------------------------------------------------

    def check_app(self, vhost: str, app: str) -> AppConfig:
        v = self.config.vhosts.get(vhost)
        if v is None:
            raise ApiError(404, f"Could not find the virtual host: [{vhost}]")
        a = v.apps.get(app)
        if a is None:
            raise ApiError(404, f"Could not find the application: [{vhost}/{app}]")
        return a

    def start_record(self, vhost: str, app: str, body: dict[str, Any], *,
                     is_config: bool = False) -> dict[str, Any]:
        appcfg = self.check_app(vhost, app)
        spec = parse_spec(body, is_config=is_config)
        self._check_paths(appcfg, spec)
        with self._lock:
            tasks = self._tasks.setdefault((vhost, app), {})
            if spec.id in tasks:
                raise ApiError(409, "Duplicate ID already exists")
            if sum(len(d) for d in self._tasks.values()) >= self.config.max_tasks:
                raise ApiError(400, f"Too many recording tasks (limit {self.config.max_tasks})")
            task = Task(spec, vhost, app, self.clock(),
                        "".join(secrets.choice(_TXN_ALPHABET) for _ in range(16)))
            tasks[spec.id] = task
            self._save(task)
            live = self._live_stream(vhost, app, spec.stream_name)
            go = live is not None and live.ready and not task.attaching
            if go:
                task.attaching = True
        if go:
            assert live is not None
            self._start_recording(task, live)
        return self._snapshot(task)

    def stop_record(self, vhost: str, app: str, body: dict[str, Any]) -> dict[str, Any]:
        self.check_app(vhost, app)
        rid = body.get("id")
        if rid is None or rid == "":
            raise ApiError(400, "There is no required parameter [ id]")
        if not isinstance(rid, str):
            raise _bad("id", "expected a string")
        with self._lock:
            task = self._tasks.get((vhost, app), {}).get(rid)
            if task is None or task.stopping:
                raise ApiError(404, f"There is no record information related to the ID [{rid}]")
            task.stopping = True
            rec = task.recording
        if rec is not None:
            try:
                rec.stop()  # the file is finished (info XML written) before we answer
            except (_core.PyrecError, OSError, ValueError) as e:
                if task.state != "error":
                    self._fail(task, f"{e}")
        with self._lock:
            self._tasks.get((vhost, app), {}).pop(rid, None)
            self.store.delete(vhost, app, rid)
            task.recording = None
            if task.state != "error":
                task.state = "stopped"
            if task.finish_time is None:  # never recorded; else: end of the last file (spec 5)
                task.finish_time = self.clock()
            return task.to_json()

    def records(self, vhost: str, app: str, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.check_app(vhost, app)
        rid = (body or {}).get("id")
        with self._lock:
            tasks = sorted(self._tasks.get((vhost, app), {}).values(), key=lambda t: t.spec.id)
        if rid is not None and rid != "":
            tasks = [t for t in tasks if t.spec.id == rid]
        return [self._snapshot(t) for t in tasks]

    def get(self, vhost: str, app: str, rid: str) -> Task | None:
        with self._lock:
            return self._tasks.get((vhost, app), {}).get(rid)

    # ---- live streams ----------------------------------------------------------------

    def _live_stream(self, vhost: str, app: str, name: str) -> LiveStream | None:
        if self.ingest is None:
            return None
        return self.ingest.find(app, name, vhost)

    def on_stream_closing(self, live: LiveStream) -> None:
        """Loop thread: with a reconnect grace, recordings of the ending stream keep their
        file open (parked) instead of finishing it."""
        grace = self.config.reconnect_grace_ms
        if grace <= 0:
            return
        with self._lock:
            for t in self._tasks.get((live.vhost, live.app), {}).values():
                rec = t.recording
                if t.stream is live and rec is not None and t.state == "recording":
                    try:
                        rec.park()
                    except _core.PyrecError as e:
                        log.warning("task %s: cannot keep the file open: %s", t.spec.id, e)
                        continue
                    t.stream = None
                    t.parked_until = self.clock() + timedelta(milliseconds=grace)

    def _adopt_parked(self, live: LiveStream) -> None:
        with self._lock:
            parked = [t for t in self._tasks.get((live.vhost, live.app), {}).values()
                      if t.parked_until is not None and t.spec.stream_name == live.name
                      and t.recording is not None]
        for t in parked:
            rec = t.recording
            assert rec is not None
            try:
                live.adopt(rec)
            except _core.PyrecError as e:
                log.warning("task %s: the returning stream cannot continue the file (%s); "
                            "starting a new one", t.spec.id, e.message)
                self._discard_parked(t)
                continue
            with self._lock:
                t.parked_until = None
                t.stream = live
            log.info("task %s/%s/%s: %s returned within the grace period: same file",
                     t.vhost, t.app, t.spec.id, live.name)

    def _discard_parked(self, t: Task) -> None:
        rec = t.recording
        with self._lock:
            t.parked_until = None
        if rec is not None:
            try:
                rec.stop()  # finishes the file (close callbacks run)
            except (_core.PyrecError, OSError, ValueError) as e:
                log.warning("task %s: %s", t.spec.id, e)
        with self._lock:
            t.recording = None
            if t.state == "recording":
                t.state = "ready"
            self._save(t)

    def on_stream_ready(self, live: LiveStream) -> None:
        """Loop thread: every task waiting for this stream starts now (first keyframe on)."""
        self._adopt_parked(live)
        appcfg = self.config.app(live.vhost, live.app)
        if appcfg is not None:
            for rule in appcfg.auto_record:
                if rule.matches(live.name):
                    self._auto_task(live, rule.options)
        with self._lock:
            waiting = [t for t in self._tasks.get((live.vhost, live.app), {}).values()
                       if t.spec.stream_name == live.name and t.state in ("ready", "error")
                       and t.recording is None and not t.attaching and not t.stopping]
            for t in waiting:
                t.attaching = True
        for t in waiting:
            self._start_recording(t, live)

    def _auto_task(self, live: LiveStream, options: dict[str, Any]) -> None:
        ctx = PathContext(vhost=live.vhost, app=live.app, stream=live.name, id=live.name)
        rid = expand(str(options.get("id", "${Stream}")), ctx)
        body = {k: v for k, v in options.items() if k != "id"}
        body.update({"id": rid, "stream": {"name": live.name,
                                           "variantNames": options.get("variantNames", []),
                                           "trackIds": options.get("trackIds", [])}})
        with self._lock:
            if rid in self._tasks.get((live.vhost, live.app), {}):
                return
        try:
            self.start_record(live.vhost, live.app, body, is_config=True)
        except ApiError as e:
            log.error("auto-record rule for %s/%s: %s", live.app, live.name, e.message)

    def on_stream_end(self, live: LiveStream, reason: str) -> None:
        """Loop thread: files are already finished; tasks wait for the stream's return."""
        with self._lock:
            for t in self._tasks.get((live.vhost, live.app), {}).values():
                if t.stream is live:
                    t.recording = None
                    t.stream = None
                    if t.state == "recording":
                        t.state = "ready"
                    self._save(t)

    def _select_tracks(self, task: Task, live: LiveStream) -> list[int] | None:
        s = task.spec
        if not s.variant_names and not s.track_ids:
            ids = [t.id for t in live.tracks if t.codec is not None]
            task.skipped_tracks = [f"{t.id}:{t.name} ({t.unsupported})" for t in live.tracks
                                   if t.codec is None]
        else:
            picked = [t for t in live.tracks
                      if t.name in s.variant_names or t.id in s.track_ids]
            bad = [t for t in picked if t.codec is None]
            if bad:
                self._fail(task, "selected track " + ", ".join(
                    f"{t.id}:{t.name}" for t in bad) + " has a codec pyrec cannot record ("
                    + ", ".join(str(t.unsupported) for t in bad) + ")")
                return None
            ids = [t.id for t in picked]
        if not ids:
            have = ", ".join(f"{t.id}:{t.name} ({t.codec or t.unsupported})" for t in live.tracks)
            self._fail(task, f"no recordable track selected; the stream has: {have or 'none'}")
            return None
        return ids

    def _start_recording(self, task: Task, live: LiveStream) -> None:
        """Attach a recording for `task` (task.attaching was set under the lock)."""
        try:
            ids = self._select_tracks(task, live)
            if ids is None:
                return
            appcfg = self.check_app(task.vhost, task.app)
            template = task.spec.file_path or appcfg.file_path
            ctx = PathContext(vhost=task.vhost, app=task.app, stream=live.name,
                              id=task.spec.id, transaction_id=task.transaction_id)
            base = task.next_sequence  # ${Sequence} continues across reconnects

            def on_open(sequence: int, path: str, start: datetime) -> None:
                self._file_opened(task, sequence, path, start)

            def on_file(f: RecordedFile) -> None:
                self._file_closed(task, f)

            def on_error(sequence: int, e: BaseException) -> None:
                self._open_failed(task, sequence, e)

            def path_of(seq: int, start_ms: int) -> str:
                c = PathContext(vhost=ctx.vhost, app=ctx.app, stream=ctx.stream, id=ctx.id,
                                transaction_id=ctx.transaction_id, sequence=seq,
                                start_time=self.clock())
                return str(self._resolve(task, expand(template, c)))

            end_named = "${EndTime" in template
            sink = FileSink(template if end_named else path_of, context=ctx, clock=self.clock,
                            live=True, on_open=on_open, on_file=on_file, keep_files=False,
                            resolve=(lambda p: str(self._resolve(task, p))) if end_named else None,
                            sequence_offset=base, unique=True, on_error=on_error)
            with self._lock:
                task.open_failed = False
            rec = live.record(sink=sink, track_ids=ids,
                              interval_ms=task.spec.interval or 0,
                              continuity=task.spec.continuity,
                              part_duration_ms=self.config.part_duration_ms,
                              finish=appcfg.finish)
        except (_core.PyrecError, ApiError, OSError, ValueError) as e:
            with self._lock:
                task.attaching = False
            msg = e.message if isinstance(e, (_core.PyrecError, ApiError)) else str(e)
            if isinstance(e, _core.PyrecError) and e.name == "NOTRACK" and live.ended:
                return  # the stream ended meanwhile: the task keeps waiting
            self._fail(task, f"cannot record: {msg}")
            return
        with self._lock:
            task.attaching = False
            task.recording = rec
            task.stream = live
            failed = task.open_failed  # the loop thread may have tried to create the file
            if not failed:
                task.state = "recording"
                task.error = None
            self._save(task)
        if failed:
            return
        log.info("task %s/%s/%s: recording %s (tracks %s)", task.vhost, task.app,
                 task.spec.id, live.name, ids)

    # ---- files -----------------------------------------------------------------------

    def _resolve(self, task: Task, path: str) -> Path:
        appcfg = self.check_app(task.vhost, task.app)
        return resolve_under(appcfg.root, path)

    def _relative(self, task: Task, path: str) -> str:
        appcfg = self.config.app(task.vhost, task.app)
        root = Path(appcfg.root if appcfg else self.config.record_root).resolve()
        try:
            return str(Path(path).resolve().relative_to(root))
        except ValueError:
            return path

    def _info_path(self, task: Task, ctx_time: datetime | None) -> Path:
        appcfg = self.check_app(task.vhost, task.app)
        ctx = PathContext(vhost=task.vhost, app=task.app, stream=task.spec.stream_name,
                          id=task.spec.id, transaction_id=task.transaction_id,
                          sequence=task.sequence or 0, start_time=ctx_time)
        return resolve_under(appcfg.root, expand(task.spec.info_path or appcfg.info_path, ctx))

    def _file_opened(self, task: Task, sequence: int, path: str, start: datetime) -> None:
        with self._lock:
            task.sequence = sequence
            task.next_sequence = sequence + 1
            task.open_path = path
            task.output_file = self._relative(task, path)
            task.output_info = self._relative(task, str(self._info_path(task, start)))
            task.start_time = start
            task.record_bytes = task.record_time = 0
            if task.spec.schedule:
                task.next_boundary = Schedule(task.spec.schedule).next_after(self.clock())
            self._save(task)

    def _file_closed(self, task: Task, f: RecordedFile) -> None:
        with self._lock:
            current = f.sequence == task.sequence  # no newer file opened yet (not a split)
            if current:
                task.open_path = None
                task.output_file = self._relative(task, f.path)
                task.record_bytes = f.bytes
                task.record_time = max(0, f.end_ms - f.start_ms)
            task.total_bytes += f.bytes
            task.total_time += max(0, f.end_ms - f.start_ms)
            task.finish_time = f.end_time
            task.files += 1
            # only the file closed by :stopRecord is the last one; a split's previous file
            # can finish after its successor opened, even while the stop is under way
            last = task.stopping and current
            if f.error:
                task.state = "error"
                task.error = f"{f.error}: {f.error_message or 'write failed'}"
                log.error("task %s/%s/%s: %s", task.vhost, task.app, task.spec.id, task.error)
                if f.bytes:  # whole fragments, no index: finish it when the disk has room
                    appcfg = self.config.app(task.vhost, task.app)
                    try:
                        st = os.stat(f.path)
                        self._unfinished[f.path] = (appcfg.finish if appcfg else "hybrid", 0.0,
                                                    task.spec.id, (st.st_dev, st.st_ino))
                    except OSError:
                        pass  # gone already: nothing to finish
            self._save(task)
        self._append_info(task, f.path, f.bytes, max(0, f.end_ms - f.start_ms), f.sequence, last,
                          f.start_time, f.end_time)

    def _append_info(self, task: Task, path: str, size: int, duration_ms: int, sequence: int,
                     last: bool, start: datetime | None, end: datetime | None) -> None:
        try:
            info = self._info_path(task, start)
            append_entry(str(info), InfoEntry(
                transaction_id=task.transaction_id, id=task.spec.id,
                metadata=task.spec.metadata or "", vhost=task.vhost, app=task.app,
                stream=task.spec.stream_name, file_path=self._relative(task, path),
                record_bytes=size, record_time=duration_ms, sequence=sequence,
                last_sequence=last, created_time=iso_time(task.created) or "",
                start_time=iso_time(start) or "", finish_time=iso_time(end) or ""))
        except (OSError, ApiError, PathEscapeError) as e:
            msg = e.message if isinstance(e, ApiError) else str(e)
            log.error("task %s: cannot write the info file: %s", task.spec.id, msg)

    def _open_failed(self, task: Task, sequence: int, e: BaseException) -> None:
        """A file of the task could not be created: the task is in error with the reason (as
        for a write failure); its recording writes nothing more, other tasks go on. The task
        tries again when its stream is next published."""
        if isinstance(e, OSError) and e.errno:
            name = errno.errorcode.get(e.errno, f"errno {e.errno}")
            where = (self._relative(task, os.fsdecode(e.filename)) if e.filename
                     else f"file {sequence}")
            reason = f"cannot create {where}: {e.strerror} ({name})"
        else:
            reason = f"cannot create file {sequence}: {e}"
        with self._lock:
            task.open_failed = True
        self._fail(task, reason)

    def _fail(self, task: Task, reason: str) -> None:
        with self._lock:
            task.state = "error"
            task.error = reason
            task.finish_time = self.clock()
            self._save(task)
        log.error("task %s/%s/%s: %s", task.vhost, task.app, task.spec.id, reason)

    def _save(self, task: Task) -> None:
        if not task.stopping:
            self.store.save(task.vhost, task.app, task.spec.id, task.persist())

    def _snapshot(self, task: Task) -> dict[str, Any]:
        rec = task.recording
        live = None
        if rec is not None and task.state == "recording":
            try:
                stats, exc = rec.stats()
            except (KeyError, _core.PyrecError):
                stats, exc = None, None
            if exc is not None and task.state != "error":  # the recording failed
                self._fail(task, f"{exc}")
            if stats and stats.get("file"):
                f = stats["file"]
                live = {"bytes": f["bytes"], "time": max(0, stats["media_ms"] - f["start_ms"])}
        with self._lock:
            return task.to_json(live)

    def _check_paths(self, appcfg: AppConfig, spec: TaskSpec) -> None:
        ctx = PathContext(vhost="v", app="a", stream=spec.stream_name, id=spec.id,
                          transaction_id="t" * 16, start_time=self.clock())
        for key, tmpl in (("filePath", spec.file_path), ("infoPath", spec.info_path)):
            if not tmpl:
                continue
            try:
                resolve_under(appcfg.root, expand(tmpl, ctx))
            except PathEscapeError:
                raise _bad(key, "the path leaves the application's root directory") from None
        if spec.file_path:
            ext = os.path.splitext(spec.file_path)[1].lower()
            if ext not in _EXTENSIONS:
                raise _bad("filePath", f"unsupported container extension {ext or '(none)'!r}; "
                                       f"pyrec writes fragmented MP4 ({', '.join(_EXTENSIONS)})")

    # ---- time --------------------------------------------------------------------------

    def tick(self) -> None:
        """Evaluate schedules against the clock: a task past its boundary splits at the next
        keyframe. Called by a timer in the server; tests call it with an injected clock."""
        now = self.clock()
        due: list[Task] = []
        with self._lock:
            for t in (t for d in self._tasks.values() for t in d.values()):
                if (t.recording is not None and t.spec.schedule and t.next_boundary is not None
                        and now >= t.next_boundary):
                    t.next_boundary = Schedule(t.spec.schedule).next_after(now)
                    due.append(t)
            expired = [t for t in (t for d in self._tasks.values() for t in d.values())
                       if t.parked_until is not None and now >= t.parked_until]
        for t in due:
            rec = t.recording
            if rec is not None and rec.parked is None:
                try:
                    rec.split()
                except _core.PyrecError:
                    pass
        for t in expired:
            log.info("task %s/%s/%s: %s did not return within the grace period", t.vhost, t.app,
                     t.spec.id, t.spec.stream_name)
            self._discard_parked(t)
        if self._unfinished:
            self._finish_unfinished()
