"""The info XML file of a recording task (spec section 9): one <file> element per finished
file, appended by rewriting the whole file atomically (temp file + rename) under a lock, so
tasks sharing one info file lose nothing."""
from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["InfoEntry", "append_entry", "InfoXmlWriter"]

log = logging.getLogger("pyrec.infoxml")

_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<files>\n'
_TAIL = "</files>\n"
MODE = 0o644  # as the media files (FileSink), less the process umask
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class InfoEntry:
    transaction_id: str
    id: str
    metadata: str
    vhost: str
    app: str
    stream: str
    file_path: str  # relative to the root
    record_bytes: int
    record_time: int
    sequence: int
    last_sequence: bool
    created_time: str
    start_time: str
    finish_time: str

    def to_xml(self) -> str:
        path = self.file_path.replace("]]>", "]]]]><![CDATA[>")
        return (
            "  <file>\n"
            f"    <transactionId>{escape(self.transaction_id)}</transactionId>\n"
            f"    <id>{escape(self.id)}</id>\n"
            f"    <metadata>{escape(self.metadata)}</metadata>\n"
            f"    <vhost>{escape(self.vhost)}</vhost>\n"
            f"    <app>{escape(self.app)}</app>\n"
            f"    <stream>{escape(self.stream)}</stream>\n"
            f"    <filePath><![CDATA[{path}]]></filePath>\n"
            f"    <recordBytes>{self.record_bytes}</recordBytes>\n"
            f"    <recordTime>{self.record_time}</recordTime>\n"
            f"    <sequence>{self.sequence}</sequence>\n"
            f"    <lastSequence>{'true' if self.last_sequence else 'false'}</lastSequence>\n"
            f"    <createdTime>{self.created_time}</createdTime>\n"
            f"    <startTime>{self.start_time}</startTime>\n"
            f"    <finishTime>{self.finish_time}</finishTime>\n"
            "  </file>\n")


def _lock_for(path: str) -> threading.Lock:
    with _locks_guard:
        lk = _locks.get(path)
        if lk is None:
            lk = _locks[path] = threading.Lock()
        return lk


def append_entry(path: str, entry: InfoEntry) -> None:
    """Append one <file> to the info file at `path` (created with its directory if needed)."""
    path = os.path.abspath(path)
    with _lock_for(path):
        body = ""
        mode: int | None = None  # a new file: MODE less the umask, like the media files
        try:
            with open(path, encoding="utf-8") as f:
                mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)  # an operator's chmod stays
                old = f.read()
            start = old.find("<files>")
            end = old.rfind("</files>")
            if start >= 0 and end > start:
                body = old[start + len("<files>"):end].lstrip("\n")
        except FileNotFoundError:
            pass
        text = _HEAD + body + entry.to_xml() + _TAIL
        d = os.path.dirname(path)
        os.makedirs(d, exist_ok=True)
        tmp = os.path.join(d, f".pyrec-info-{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, MODE)
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


class InfoXmlWriter:
    """The info XML as a subscriber of file.finished / file.recovered: appends the event's
    entry to its task's info file. Subscribe it first, so that every later subscriber of a
    file.finished sees the info XML already updated (the contract's order)."""

    TYPES = ("file.finished", "file.recovered")

    def subscribe(self, bus: Any) -> None:
        bus.subscribe(self, self.TYPES)

    def __call__(self, event: Any) -> None:
        path, entry = getattr(event, "info_path", None), getattr(event, "info", None)
        if path is None or entry is None:
            return
        try:
            append_entry(path, entry)
        except OSError as e:
            log.error("task %s: cannot write the info file: %s", entry.id, e)
