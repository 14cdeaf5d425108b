"""Output naming of recording tasks: file and info paths from the templates (record-api
macros) under the app's root, names relative to the root for the API, templates checked when
a task is created, and the final name of a file recovered under its temporary name."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from pyrec.config import AppConfig, Config
from pyrec.paths import PathContext, PathEscapeError, expand, resolve_under
from pyrec.recorder import rename_no_replace
from pyrec.task import Task, TaskSpec
from pyrec.task_errors import InvalidTaskSpec, UnknownApp

__all__ = ["Naming", "EXTENSIONS"]

log = logging.getLogger("pyrec.naming")

EXTENSIONS = (".mp4", ".m4v", ".m4a")


class Naming:
    def __init__(self, config: Config, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.clock = clock

    def app(self, task: Task) -> AppConfig:
        a = self.config.app(task.vhost, task.app)
        if a is None:
            raise UnknownApp(task.vhost, task.app)
        return a

    def template(self, task: Task) -> str:
        return task.spec.file_path or self.app(task).file_path

    def context(self, task: Task, stream: str, sequence: int = 0,
                start: datetime | None = None, end: datetime | None = None) -> PathContext:
        return PathContext(vhost=task.vhost, app=task.app, stream=stream, id=task.spec.id,
                           transaction_id=task.transaction_id, sequence=sequence,
                           start_time=start, end_time=end)

    def resolve(self, task: Task, path: str) -> Path:
        """`path` (a template's expansion) under the app's root; PathEscapeError otherwise."""
        return resolve_under(self.app(task).root, path)

    def file_path(self, task: Task, stream: str, sequence: int) -> str:
        """The file of `sequence`, named now (the live clock)."""
        c = self.context(task, stream, sequence, self.clock())
        return str(self.resolve(task, expand(self.template(task), c)))

    def relative(self, task: Task, path: str) -> str:
        appcfg = self.config.app(task.vhost, task.app)
        root = Path(appcfg.root if appcfg else self.config.record_root).resolve()
        try:
            return str(Path(path).resolve().relative_to(root))
        except ValueError:
            return path

    def info_path(self, task: Task, start: datetime | None) -> Path:
        appcfg = self.app(task)
        ctx = self.context(task, task.spec.stream_name, task.sequence or 0, start)
        return resolve_under(appcfg.root, expand(task.spec.info_path or appcfg.info_path, ctx))

    def check(self, appcfg: AppConfig, spec: TaskSpec) -> None:
        """The task's templates stay under the root and name a container pyrec writes."""
        ctx = PathContext(vhost="v", app="a", stream=spec.stream_name, id=spec.id,
                          transaction_id="t" * 16, start_time=self.clock())
        for key, tmpl in (("filePath", spec.file_path), ("infoPath", spec.info_path)):
            if not tmpl:
                continue
            try:
                resolve_under(appcfg.root, expand(tmpl, ctx))
            except PathEscapeError:
                raise InvalidTaskSpec.field(
                    key, "the path leaves the application's root directory") from None
        if spec.file_path:
            ext = os.path.splitext(spec.file_path)[1].lower()
            if ext not in EXTENSIONS:
                raise InvalidTaskSpec.field(
                    "filePath", f"unsupported container extension {ext or '(none)'!r}; "
                                f"pyrec writes fragmented MP4 ({', '.join(EXTENSIONS)})")

    def final_name(self, task: Task, path: str, duration_ms: int) -> str:
        """A recovered file still under its temporary name (a ${EndTime} template) gets its
        final name, the end time being its start plus what it holds."""
        if not os.path.basename(path).startswith(".pyrec-") or task.start_time is None:
            return path
        appcfg = self.config.app(task.vhost, task.app)
        template = task.spec.file_path or (appcfg.file_path if appcfg else None)
        if not template or appcfg is None:
            return path
        ctx = self.context(task, task.spec.stream_name, task.sequence or 0, task.start_time,
                           task.start_time + timedelta(milliseconds=duration_ms))
        try:
            final = str(resolve_under(appcfg.root, expand(template, ctx)))
            return rename_no_replace(path, final)
        except (OSError, PathEscapeError) as e:
            log.error("task %s: cannot rename %s: %s", task.spec.id, path, e)
            return path
