"""Binding recording tasks to live streams: a listener of the stream registry. When a stream
is ready, the tasks waiting for it (and its auto-record rules) start recording from its first
keyframe; when it is closing, a reconnect grace parks their files; when it has ended, they wait
for its return. Track selection and the file sink of a task are made here.

These run on the source's thread (the ingest loop): they change task state under the
manager's lock and attach recordings; everything that touches the disk is the manager's work
on the event dispatcher."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pyrec import _core
from pyrec.ingest import LiveStream
from pyrec.paths import PathContext, expand
from pyrec.recorder import FileSink, RecordedFile
from pyrec.task import Task
from pyrec.task_errors import TaskError

if TYPE_CHECKING:
    from pyrec.tasks import TaskManager

__all__ = ["Binder"]

log = logging.getLogger("pyrec.binding")


class Binder:
    """The task manager's stream listener (StreamRegistry.add_listener)."""

    def __init__(self, manager: TaskManager) -> None:
        self.m = manager

    # ---- registry listener -------------------------------------------------------------

    def on_ready(self, live: LiveStream) -> None:
        """Every task waiting for this stream starts now (first keyframe on)."""
        m = self.m
        self._adopt_parked(live)
        appcfg = m.config.app(live.vhost, live.app)
        if appcfg is not None:
            for rule in appcfg.auto_record:
                if rule.matches(live.name):
                    self._auto_task(live, rule.options)
        with m.lock:
            waiting = [t for t in m.tasks_of(live.vhost, live.app)
                       if t.spec.stream_name == live.name and t.state in ("ready", "error")
                       and t.recording is None and not t.attaching and not t.stopping]
            for t in waiting:
                t.attaching = True
        for t in waiting:
            self.start_recording(t, live)

    def on_closing(self, live: LiveStream) -> None:
        """With a reconnect grace, recordings of the ending stream keep their file open
        (parked) instead of finishing it."""
        m = self.m
        grace = m.config.reconnect_grace_ms
        if grace <= 0:
            return
        with m.lock:
            for t in m.tasks_of(live.vhost, live.app):
                rec = t.recording
                if t.stream is live and rec is not None and t.state == "recording":
                    try:
                        rec.park()
                    except _core.PyrecError as e:
                        log.warning("task %s: cannot keep the file open: %s", t.spec.id, e)
                        continue
                    t.stream = None
                    t.parked_until = m.clock() + timedelta(milliseconds=grace)

    def on_end(self, live: LiveStream, reason: str) -> None:
        """Files are already finished; tasks wait for the stream's return."""
        m = self.m
        with m.lock:
            for t in m.tasks_of(live.vhost, live.app):
                if t.stream is live:
                    t.recording = None
                    t.stream = None
                    if t.state == "recording":
                        m.set_state(t, "ready")
                    m.persist(t)

    # ---- parking -----------------------------------------------------------------------

    def _adopt_parked(self, live: LiveStream) -> None:
        m = self.m
        with m.lock:
            parked = [t for t in m.tasks_of(live.vhost, live.app)
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
                self.discard_parked(t)
                continue
            with m.lock:
                t.parked_until = None
                t.stream = live
            log.info("task %s/%s/%s: %s returned within the grace period: same file",
                     t.vhost, t.app, t.spec.id, live.name)

    def discard_parked(self, t: Task) -> None:
        m = self.m
        rec = t.recording
        with m.lock:
            t.parked_until = None
        if rec is not None:
            try:
                rec.stop()  # finishes the file (close callbacks run)
            except (_core.PyrecError, OSError, ValueError) as e:
                log.warning("task %s: %s", t.spec.id, e)
        with m.lock:
            t.recording = None
            if t.state == "recording":
                m.set_state(t, "ready")
            m.persist(t)

    # ---- starting ------------------------------------------------------------------------

    def _auto_task(self, live: LiveStream, options: dict[str, Any]) -> None:
        ctx = PathContext(vhost=live.vhost, app=live.app, stream=live.name, id=live.name)
        rid = expand(str(options.get("id", "${Stream}")), ctx)
        body = {k: v for k, v in options.items() if k != "id"}
        body.update({"id": rid, "stream": {"name": live.name,
                                           "variantNames": options.get("variantNames", []),
                                           "trackIds": options.get("trackIds", [])}})
        self.m.start_auto(live.vhost, live.app, body)

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
                self.m.fail(task, "selected track " + ", ".join(
                    f"{t.id}:{t.name}" for t in bad) + " has a codec pyrec cannot record ("
                    + ", ".join(str(t.unsupported) for t in bad) + ")")
                return None
            ids = [t.id for t in picked]
        if not ids:
            have = ", ".join(f"{t.id}:{t.name} ({t.codec or t.unsupported})" for t in live.tracks)
            self.m.fail(task, f"no recordable track selected; the stream has: {have or 'none'}")
            return None
        task.tracks = tuple({"id": t.id, "kind": t.kind, "codec": t.codec}
                            for t in live.tracks if t.id in ids)
        return ids

    def _sink(self, task: Task, live: LiveStream) -> FileSink:
        m = self.m
        naming = m.naming
        template = naming.template(task)
        ctx = naming.context(task, live.name)

        def on_open(sequence: int, path: str, start: datetime) -> None:
            m.file_opened(task, sequence, path, start)

        def on_file(f: RecordedFile) -> None:
            m.file_closed(task, f)

        def on_error(sequence: int, e: BaseException) -> None:
            m.open_failed(task, sequence, e)

        def path_of(seq: int, start_ms: int) -> str:
            return naming.file_path(task, live.name, seq)

        end_named = "${EndTime" in template
        return FileSink(template if end_named else path_of, context=ctx, clock=m.clock,
                        live=True, on_open=on_open, on_file=on_file, keep_files=False,
                        resolve=(lambda p: str(naming.resolve(task, p))) if end_named else None,
                        sequence_offset=task.next_sequence,  # ${Sequence} goes on after a
                        unique=True, on_error=on_error,      # reconnect
                        sync=m.file_synced)

    def start_recording(self, task: Task, live: LiveStream) -> None:
        """Attach a recording for `task` (task.attaching was set under the lock)."""
        m = self.m
        try:
            ids = self._select_tracks(task, live)
            if ids is None:
                with m.lock:
                    task.attaching = False
                return
            appcfg = m.check_app(task.vhost, task.app)
            refused = m.admission(task.vhost, task.app) if m.admission is not None else None
            if refused:
                with m.lock:
                    task.attaching = False
                m.fail(task, refused)
                return
            sink = self._sink(task, live)
            with m.lock:
                task.open_failed = False
            rec = live.record(sink=sink, track_ids=ids,
                              interval_ms=task.spec.interval or 0,
                              continuity=task.spec.continuity,
                              part_duration_ms=m.config.part_duration_ms,
                              finish=appcfg.finish)
        except (_core.PyrecError, TaskError, OSError, ValueError) as e:
            with m.lock:
                task.attaching = False
            msg = e.message if isinstance(e, (_core.PyrecError, TaskError)) else str(e)
            if (isinstance(e, _core.PyrecError) and e.code == _core.Err.NOTRACK
                    and live.ended):
                return  # the stream ended meanwhile: the task keeps waiting
            m.fail(task, f"cannot record: {msg}")
            return
        with m.lock:
            task.attaching = False
            task.recording = rec
            task.stream = live
            failed = task.open_failed  # the loop thread may have tried to create the file
            if not failed:
                m.set_state(task, "recording")
            m.persist(task)
        if failed:
            return
        log.info("task %s/%s/%s: recording %s (tracks %s)", task.vhost, task.app,
                 task.spec.id, live.name, ids)
