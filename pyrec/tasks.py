"""The TaskManager: the lifecycle of recording tasks (create, bind to a live stream, files,
splits, stop, restore after a restart).

Threads. The ingest loop calls in (stream listeners, file opened/closed) with the server's
lock held: there the manager only changes Python state under its own lock and enqueues work
on the event dispatcher -- persisting a task (SQLite), fsyncing a finished file, the info XML
(a subscriber of file.finished) -- never waiting on the disk. API threads may wait: an API
call returns after the dispatcher has done the work it caused (`_sync`), so an answer still
means "stored" and, for :stopRecord, "info XML written".

Requests are validated by the API layer (pyrec.schemas); the domain raises
pyrec.task_errors; output naming is pyrec.naming; binding a task to a live stream is
pyrec.binding; crash recovery is pyrec.recovery."""
from __future__ import annotations

import errno
import logging
import os
import secrets
import string
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pyrec import _core, repair
from pyrec.binding import Binder
from pyrec.config import AppConfig, Config
from pyrec.events import (EventBus, EventSource, FileFinished, FileOpened, FileRecovered,
                          Recording, TaskState, iso_time)
from pyrec.infoxml import InfoEntry, InfoXmlWriter
from pyrec.ingest import IngestServer
from pyrec.naming import Naming
from pyrec.paths import PathEscapeError
from pyrec.recorder import RecordedFile
from pyrec.recovery import record_roots, repair_one, scan_roots
from pyrec.schedule import Schedule
from pyrec.schemas import parse_start
from pyrec.store import TaskStore
from pyrec.streams import StreamRegistry
from pyrec.task import Task, TaskSpec
from pyrec.task_errors import (DuplicateTask, TaskError, TaskNotFound, TooManyTasks, UnknownApp,
                               UnknownVhost)

__all__ = ["TaskManager", "Task", "TaskSpec", "iso_time"]

log = logging.getLogger("pyrec.tasks")
_FINISH_RETRY_S = 2.0  # how often a file cut short by a full disk is tried again

Clock = Callable[[], datetime]
_TXN_ALPHABET = string.ascii_letters + string.digits


def _now() -> datetime:
    return datetime.now().astimezone()


def _fsync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as e:  # the writer already reported write errors; say it, go on
        log.error("fsync of a finished file failed: %s", e)
    finally:
        os.close(fd)


class TaskManager:
    """Runs the Record API's tasks. `ingest` may be None (no live streams: every task is a
    reservation). `clock` is injected so schedules are driven without sleeping. `bus`: the
    event bus (a private one, started here, by default)."""

    def __init__(self, config: Config, *, store: TaskStore | None = None,
                 ingest: IngestServer | None = None, clock: Clock = _now,
                 bus: EventBus | None = None) -> None:
        self.config = config
        self.store = store if store is not None else TaskStore(None)
        self.clock = clock
        self._own_bus = bus is None
        self.bus = bus if bus is not None else EventBus(config.node_name or None).start()
        self.events = EventSource(self.bus)
        self.naming = Naming(config, clock)
        self.info_writer = InfoXmlWriter()
        self.info_writer.subscribe(self.bus)  # first: later subscribers see the XML written
        self.binder = Binder(self)
        # (vhost, app) -> the reason new recordings are refused, or None (retention: "disk full")
        self.admission: Callable[[str, str], str | None] | None = None
        self.registry: StreamRegistry | None = None
        self.ingest: IngestServer | None = None
        self.lock = threading.RLock()
        self._tasks: dict[tuple[str, str], dict[str, Task]] = {}
        # files cut short by a write error (a full disk): path -> (finish, next try, task id,
        # (st_dev, st_ino)); finished by tick() as soon as the disk has room, else at the next
        # start-up; a path that names another file by then (removed, made anew) is dropped
        self._unfinished: dict[str, tuple[str, float, str, tuple[int, int]]] = {}
        self._finishing = threading.Lock()  # one finisher at a time (tick thread, close)
        for rec in self.store.load():
            if isinstance(rec, tuple):
                log.error("task %s/%s/%s in the store is unreadable: %s", *rec)
                continue
            try:
                task = Task.from_record(rec)
            except (KeyError, TypeError, ValueError) as e:
                log.error("task %s/%s/%s in the store is unreadable: %s", rec.vhost, rec.app,
                          rec.id, e)
                continue
            if task.state in ("recording", "stopping"):
                task.state = "ready"  # interrupted: resumes when its stream is published
            self._tasks.setdefault((task.vhost, task.app), {})[task.spec.id] = task
        self.recovered = self._recover()
        if ingest is not None:
            self.attach_ingest(ingest)

    # ---- set-up ----------------------------------------------------------------------

    def attach_ingest(self, ingest: IngestServer) -> None:
        """Record the streams of `ingest` (through its stream registry)."""
        self.ingest = ingest
        self.attach_registry(ingest.registry)

    def attach_registry(self, registry: StreamRegistry) -> None:
        self.registry = registry
        registry.add_listener(self.binder)

    def _recover(self) -> list[str]:
        """Files left open by a crash (recovery.py): a task's own file counts for the task."""
        by_path: dict[str, Task] = {}
        for task in self.all_tasks():
            if task.open_path:
                by_path[os.path.realpath(task.open_path)] = task
                task.open_path = None
                self.persist(task)

        def claim(path: str, rep: repair.RepairReport) -> None:
            task = by_path.pop(os.path.realpath(path), None)
            if task is not None:
                self._recovered_file(task, path, rep)

        found = scan_roots(record_roots(self.config), claim)
        for path, task in by_path.items():  # not under a root, or already finalised
            if os.path.exists(path):
                appcfg = self.config.app(task.vhost, task.app)
                rep = repair_one(path, appcfg.finish if appcfg else "hybrid")
                if rep is not None:
                    self._recovered_file(task, path, rep)
        return found

    def _recovered_file(self, task: Task, path: str, rep: repair.RepairReport) -> None:
        """A file finalised after a crash counts like any finished file: the task's totals,
        its current-file keys and a <file> entry in the info XML (its end = start + what it
        holds; it was not closed by :stopRecord, so lastSequence is false)."""
        duration_ms = rep.duration_ms
        path = self.naming.final_name(task, path, duration_ms)
        log.warning("task %s: recovered %s after a crash: %s (%s)", task.spec.id, path,
                    rep.status, rep.message)
        size = os.path.getsize(path)
        start = task.start_time
        end = start + timedelta(milliseconds=duration_ms) if start is not None else None
        rel = self.naming.relative(task, path)
        task.recovered.append(rel)
        task.files += 1
        task.output_file = rel
        task.record_bytes, task.record_time = size, duration_ms
        task.total_bytes += size
        task.total_time += duration_ms
        if end is not None:
            task.finish_time = end
        seq = task.sequence or 0
        info, entry = self._info(task, rel, size, duration_ms, seq, False, start, end)
        self.events.emit(FileRecovered, vhost=task.vhost, app=task.app,
                         stream=task.spec.stream_name,
                         recording=self._recording(task, seq, rel, start, "recovered", end,
                                                   duration_ms, size, recovered=True),
                         info_path=info, info=entry)
        self.persist(task)

    def all_tasks(self) -> list[Task]:
        with self.lock:
            return [t for d in self._tasks.values() for t in d.values()]

    def close(self) -> None:
        """Stop recording (files finished; tasks stay stored and resume after a restart);
        the work this caused is done before the store closes."""
        for task in self.all_tasks():
            rec = task.recording
            if rec is not None:
                task.stopping = False
                try:
                    rec.stop()
                except (_core.PyrecError, OSError, ValueError) as e:
                    log.warning("task %s: %s", task.spec.id, e)
        self.bus.flush()  # their files are synced and stored first
        self._finish_unfinished(force=True)
        if self._own_bus:
            self.bus.close()
        else:
            self.bus.flush()
        self.store.close()

    def _finish_unfinished(self, *, force: bool = False) -> None:
        """Finish the files a write error cut short (whole fragments, no index) once the disk
        has room; a file that still cannot be finished is retried every few seconds, and the
        start-up scan finishes whatever is left."""
        import time

        with self._finishing:
            now = time.monotonic()
            with self.lock:
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
                with self.lock:
                    self._unfinished[path] = (finish, now + _FINISH_RETRY_S, tid, ident)
                log.debug("task %s: %s not finished yet: %s", tid, path, e)
                continue
            with self.lock:
                self._unfinished.pop(path, None)
            if rep is not None and rep.status == repair.REPAIRED:
                log.warning("task %s: finished %s, cut short by a write error: %s", tid, path,
                            rep.message)

    # ---- the Record API --------------------------------------------------------------

    def check_app(self, vhost: str, app: str) -> AppConfig:
        v = self.config.vhosts.get(vhost)
        if v is None:
            raise UnknownVhost(vhost)
        a = v.apps.get(app)
        if a is None:
            raise UnknownApp(vhost, app)
        return a

    def start_record(self, vhost: str, app: str, spec: TaskSpec) -> dict[str, Any]:
        """Create the task (it records at once when its stream is live); returns its JSON
        once it is stored."""
        task = self._create(vhost, app, spec)
        self._sync()
        return self.snapshot(task)

    def _create(self, vhost: str, app: str, spec: TaskSpec) -> Task:
        appcfg = self.check_app(vhost, app)
        self.naming.check(appcfg, spec)
        with self.lock:
            tasks = self._tasks.setdefault((vhost, app), {})
            if spec.id in tasks:
                raise DuplicateTask(spec.id)
            if sum(len(d) for d in self._tasks.values()) >= self.config.max_tasks:
                raise TooManyTasks(self.config.max_tasks)
            task = Task(spec, vhost, app, self.clock(),
                        "".join(secrets.choice(_TXN_ALPHABET) for _ in range(16)))
            tasks[spec.id] = task
            self._emit_state(task, None)
            self.persist(task)
            live = self.registry.find(vhost, app, spec.stream_name) if self.registry else None
            go = live is not None and live.ready and not task.attaching
            if go:
                task.attaching = True
        if go:
            self.binder.start_recording(task, live)
        return task

    def start_auto(self, vhost: str, app: str, body: dict[str, Any]) -> None:
        """A task of an auto-record rule (loop thread: nothing here waits)."""
        try:
            spec = parse_start(body, is_config=True)
            with self.lock:
                if spec.id in self._tasks.get((vhost, app), {}):
                    return
            self._create(vhost, app, spec)
        except TaskError as e:
            log.error("auto-record rule for %s/%s: %s", app, body.get("id"), e.message)

    def stop_record(self, vhost: str, app: str, rid: str) -> dict[str, Any]:
        self.check_app(vhost, app)
        with self.lock:
            task = self._tasks.get((vhost, app), {}).get(rid)
            if task is None or task.stopping:
                raise TaskNotFound(rid)
            task.stopping = True
            rec = task.recording
        if rec is not None:
            try:
                rec.stop()  # the file is finished here; its fsync and info XML are queued
            except (_core.PyrecError, OSError, ValueError) as e:
                if task.state != "error":
                    self.fail(task, f"{e}")
        with self.lock:
            self._tasks.get((vhost, app), {}).pop(rid, None)
            task.removed = True
            task.recording = None
            if task.state != "error":
                self.set_state(task, "stopped")
            if task.finish_time is None:  # never recorded; else: end of the last file (spec 5)
                task.finish_time = self.clock()
        self.events.call(lambda: self.store.delete(vhost, app, rid))
        self._sync()  # the last file's info XML is written before we answer
        with self.lock:
            return task.to_json()

    def records(self, vhost: str, app: str, rid: Any = None) -> list[dict[str, Any]]:
        self.check_app(vhost, app)
        with self.lock:
            tasks = sorted(self._tasks.get((vhost, app), {}).values(), key=lambda t: t.spec.id)
        if rid is not None:
            tasks = [t for t in tasks if t.spec.id == rid]
        return [self.snapshot(t) for t in tasks]

    def get(self, vhost: str, app: str, rid: str) -> Task | None:
        with self.lock:
            return self._tasks.get((vhost, app), {}).get(rid)

    def tasks_of(self, vhost: str, app: str) -> list[Task]:
        with self.lock:
            return list(self._tasks.get((vhost, app), {}).values())

    def snapshot(self, task: Task) -> dict[str, Any]:
        rec = task.recording
        live = None
        if rec is not None and task.state == "recording":
            try:
                stats, exc = rec.stats()
            except (KeyError, _core.PyrecError):
                stats, exc = None, None
            if exc is not None and task.state != "error":  # the recording failed
                self.fail(task, f"{exc}")
            if stats and stats.get("file"):
                f = stats["file"]
                live = {"bytes": f["bytes"], "time": max(0, stats["media_ms"] - f["start_ms"])}
        with self.lock:
            return task.to_json(live)

    # ---- state -------------------------------------------------------------------------

    def set_state(self, task: Task, state: str, error: str | None = None) -> None:
        """Under the lock: the new state (and error), task.state emitted when it changed."""
        prev = task.state
        task.state = state
        if error is not None or state != "error":
            task.error = error
        if prev != state:
            self._emit_state(task, prev)

    def _emit_state(self, task: Task, prev: str | None) -> None:
        self.events.emit(TaskState, vhost=task.vhost, app=task.app,
                         stream=task.spec.stream_name, task_id=task.spec.id, state=task.state,
                         previous_state=prev, error=task.error)

    def fail(self, task: Task, reason: str) -> None:
        with self.lock:
            self.set_state(task, "error", reason)
            task.finish_time = self.clock()
            self.persist(task)
        log.error("task %s/%s/%s: %s", task.vhost, task.app, task.spec.id, reason)

    def persist(self, task: Task) -> None:
        """Store the task (on the dispatcher: its state when the write runs)."""
        self.events.call(lambda: self._write(task))

    def _write(self, task: Task) -> None:
        with self.lock:
            if task.stopping or task.removed:
                return
            rec = task.to_record()
        self.store.save(rec)

    def _sync(self) -> None:
        """API threads: wait until the dispatcher did the work queued so far."""
        if not self.bus.flush():
            log.warning("the event dispatcher is behind: an answer goes out before its work")

    # ---- files (the loop thread calls these) -----------------------------------------

    def _recording(self, task: Task, sequence: int, rel: str, start: datetime | None,
                   state: str, end: datetime | None = None, duration_ms: int = 0,
                   size: int = 0, recovered: bool = False) -> Recording:
        return Recording(id=task.recording_id(sequence), vhost=task.vhost, app=task.app,
                         stream=task.spec.stream_name, task_id=task.spec.id, sequence=sequence,
                         path=rel, start_time=start, state=state, finish_time=end,
                         duration_ms=duration_ms, bytes=size, recovered=recovered,
                         tracks=task.tracks)

    def file_opened(self, task: Task, sequence: int, path: str, start: datetime) -> None:
        """Loop thread, the file just created: the task's current file (names are string and
        path work on names the open just resolved); storing it and file.opened are queued."""
        rel = self.naming.relative(task, path)
        with self.lock:
            task.sequence = sequence
            task.next_sequence = sequence + 1
            task.open_path = path
            task.start_time = start
            task.record_bytes = task.record_time = 0
            task.output_file = rel
            try:
                task.output_info = self.naming.relative(
                    task, str(self.naming.info_path(task, start)))
            except (PathEscapeError, TaskError):
                task.output_info = None
            if task.spec.schedule:
                task.next_boundary = Schedule(task.spec.schedule).next_after(self.clock())
        self.events.call(lambda: self._after_open(task, sequence, rel, start))

    def _after_open(self, task: Task, sequence: int, rel: str, start: datetime) -> None:
        """Dispatcher: the task stored, file.opened."""
        self._write(task)
        self.events.emit(FileOpened, vhost=task.vhost, app=task.app,
                         stream=task.spec.stream_name,
                         recording=self._recording(task, sequence, rel, start, "recording"))

    def file_synced(self, fd: int) -> None:
        """A finished live file's descriptor: fsynced and closed on the dispatcher, before
        the file's file.finished (queued right after by file_closed)."""
        self.events.call(lambda: _fsync_close(fd))

    def file_closed(self, task: Task, f: RecordedFile) -> None:
        """Loop thread (or the thread stopping the recording), the file finished: totals and
        state; its fsync (queued by file_synced just before), storing the task, the info XML
        and file.finished are queued."""
        duration = max(0, f.end_ms - f.start_ms)
        rel = self.naming.relative(task, f.path)
        with self.lock:
            current = f.sequence == task.sequence  # no newer file opened yet (not a split)
            if current:
                task.open_path = None
                task.output_file = rel
                task.record_bytes = f.bytes
                task.record_time = duration
            task.total_bytes += f.bytes
            task.total_time += duration
            task.finish_time = f.end_time
            task.files += 1
            # only the file closed by :stopRecord is the last one; a split's previous file
            # can finish after its successor opened, even while the stop is under way
            last = task.stopping and current
            if f.error:
                self.set_state(task, "error", f"{f.error}: {f.error_message or 'write failed'}")
                log.error("task %s/%s/%s: %s", task.vhost, task.app, task.spec.id, task.error)
                if f.bytes:  # whole fragments, no index: finish it when the disk has room
                    appcfg = self.config.app(task.vhost, task.app)
                    try:
                        st = os.stat(f.path)
                        self._unfinished[f.path] = (appcfg.finish if appcfg else "hybrid", 0.0,
                                                    task.spec.id, (st.st_dev, st.st_ino))
                    except OSError:
                        pass  # gone already: nothing to finish
        self.events.call(lambda: self._after_close(task, f, rel, duration, last))

    def _after_close(self, task: Task, f: RecordedFile, rel: str, duration: int,
                     last: bool) -> None:
        """Dispatcher (after the file's fsync): the task stored, file.finished (whose first
        subscriber writes the info XML)."""
        self._write(task)
        info, entry = self._info(task, rel, f.bytes, duration, f.sequence, last, f.start_time,
                                 f.end_time)
        self.events.emit(FileFinished, vhost=task.vhost, app=task.app,
                         stream=task.spec.stream_name,
                         recording=self._recording(task, f.sequence, rel, f.start_time,
                                                   "finished", f.end_time, duration, f.bytes),
                         last=last, info_path=info, info=entry)

    def _info(self, task: Task, rel: str, size: int, duration_ms: int, sequence: int,
              last: bool, start: datetime | None, end: datetime | None
              ) -> tuple[str | None, InfoEntry | None]:
        """The info file of the task and the <file> entry of one of its files."""
        try:
            path = str(self.naming.info_path(task, start))
        except (PathEscapeError, TaskError) as e:
            msg = e.message if isinstance(e, TaskError) else str(e)
            log.error("task %s: cannot write the info file: %s", task.spec.id, msg)
            return None, None
        return path, InfoEntry(
            transaction_id=task.transaction_id, id=task.spec.id,
            metadata=task.spec.metadata or "", vhost=task.vhost, app=task.app,
            stream=task.spec.stream_name, file_path=rel, record_bytes=size,
            record_time=duration_ms, sequence=sequence, last_sequence=last,
            created_time=iso_time(task.created) or "", start_time=iso_time(start) or "",
            finish_time=iso_time(end) or "")

    def open_failed(self, task: Task, sequence: int, e: BaseException) -> None:
        """A file of the task could not be created: the task is in error with the reason (as
        for a write failure); its recording writes nothing more, other tasks go on. The task
        tries again when its stream is next published."""
        if isinstance(e, OSError) and e.errno:
            name = errno.errorcode.get(e.errno, f"errno {e.errno}")
            where = (self.naming.relative(task, os.fsdecode(e.filename)) if e.filename
                     else f"file {sequence}")
            reason = f"cannot create {where}: {e.strerror} ({name})"
        else:
            reason = f"cannot create file {sequence}: {e}"
        with self.lock:
            task.open_failed = True
        self.fail(task, reason)

    # ---- time --------------------------------------------------------------------------

    def tick(self) -> None:
        """Evaluate schedules against the clock: a task past its boundary splits at the next
        keyframe. Called by a timer in the server; tests call it with an injected clock."""
        now = self.clock()
        due: list[Task] = []
        with self.lock:
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
            self.binder.discard_parked(t)
        if self._unfinished:
            self._finish_unfinished()
