"""Task persistence in SQLite (embedded, no setup): every task survives a restart.

A task is stored as one `TaskRecord` (a dataclass: its fields are the persisted fields, listed
once) serialised to JSON, keyed by (vhost, app, id). The database carries its schema version
in `PRAGMA user_version`; opening an older database migrates it in one transaction; a newer
one is refused (an older pyrec must not rewrite what it does not know)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TaskStore", "TaskRecord", "SCHEMA_VERSION", "StoreError"]

log = logging.getLogger("pyrec.store")

# 1: pyrec <= 0.1 before versioning (user_version 0): data = {"spec": {...}, <task fields>}
# 2: data = TaskRecord's fields, flat
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
  vhost TEXT NOT NULL,
  app TEXT NOT NULL,
  id TEXT NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (vhost, app, id)
)
"""


class StoreError(RuntimeError):
    pass


@dataclass
class TaskRecord:
    """What survives a restart of a task. Times are ISO-8601 strings (None when unset)."""

    vhost: str
    app: str
    id: str
    stream_name: str
    created: str
    transaction_id: str
    variant_names: list[str] = field(default_factory=list)
    track_ids: list[int] = field(default_factory=list)
    interval: int | None = None
    schedule: str | None = None
    segmentation_rule: str | None = None
    file_path: str | None = None
    info_path: str | None = None
    metadata: str | None = None
    is_config: bool = False
    state: str = "ready"
    error: str | None = None
    next_sequence: int = 0
    sequence: int | None = None
    output_file: str | None = None
    output_info: str | None = None
    open_path: str | None = None
    start_time: str | None = None
    finish_time: str | None = None
    record_bytes: int = 0
    record_time: int = 0
    total_bytes: int = 0
    total_time: int = 0
    files: int = 0
    skipped_tracks: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskRecord:
        """Unknown keys are ignored (a field dropped later); missing ones take defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _migrate_v1(vhost: str, app: str, rid: str, d: dict[str, Any]) -> dict[str, Any]:
    """Version 1 rows: the spec nested under "spec", the key columns not in the data."""
    out = {k: v for k, v in d.items() if k != "spec"}
    out.update(d.get("spec", {}))
    out.update(vhost=vhost, app=app, id=rid)
    return out


_MIGRATIONS = {1: _migrate_v1}  # from version -> row converter to version + 1


class TaskStore:
    """TaskRecords by (vhost, app, id). `path` None = in memory."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path) if path is not None else ":memory:"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            fresh = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tasks'"
                               ).fetchone()[0] == 0
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if fresh:
                db.execute(_SCHEMA)
                version = SCHEMA_VERSION
            elif version == 0:
                version = 1  # made before the version was kept
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: task database schema {version} is newer than "
                                 f"this pyrec's ({SCHEMA_VERSION}); refusing to change it")
            start = version
            if version < SCHEMA_VERSION:
                rows = db.execute("SELECT vhost, app, id, data FROM tasks").fetchall()
                for v, a, i, text in rows:
                    data = json.loads(text)
                    for step in range(start, SCHEMA_VERSION):
                        data = _MIGRATIONS[step](v, a, i, data)
                    rec = TaskRecord.from_dict({**data, "vhost": v, "app": a, "id": i})
                    db.execute("UPDATE tasks SET data = ? WHERE vhost = ? AND app = ? AND id = ?",
                               (rec.to_json(), v, a, i))
                version = SCHEMA_VERSION
            db.execute(f"PRAGMA user_version = {int(version)}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if start != version:
            log.info("task database %s migrated from schema %d to %d", self.path, start, version)

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def load(self) -> list[TaskRecord | tuple[str, str, str, Exception]]:
        """Every stored task; a row that cannot be read is (vhost, app, id, the error)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT vhost, app, id, data FROM tasks ORDER BY vhost, app, id").fetchall()
        out: list[TaskRecord | tuple[str, str, str, Exception]] = []
        for v, a, i, text in rows:
            try:
                out.append(TaskRecord.from_dict({**json.loads(text), "vhost": v, "app": a,
                                                 "id": i}))
            except (TypeError, ValueError) as e:
                out.append((v, a, i, e))
        return out

    def save(self, rec: TaskRecord) -> None:
        text = rec.to_json()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO tasks (vhost, app, id, data) VALUES (?, ?, ?, ?)",
                (rec.vhost, rec.app, rec.id, text))

    def delete(self, vhost: str, app: str, id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tasks WHERE vhost = ? AND app = ? AND id = ?",
                             (vhost, app, id))

    def close(self) -> None:
        with self._lock:
            self._db.close()
