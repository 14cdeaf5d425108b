"""Task persistence in SQLite (embedded, no setup): every task survives a restart."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["TaskStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
  vhost TEXT NOT NULL,
  app TEXT NOT NULL,
  id TEXT NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (vhost, app, id)
)
"""


class TaskStore:
    """A task is a JSON document keyed by (vhost, app, id). `path` None = in memory."""

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
            self._db.execute(_SCHEMA)

    def load(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT vhost, app, id, data FROM tasks ORDER BY vhost, app, id").fetchall()
        return [(v, a, i, json.loads(d)) for v, a, i, d in rows]

    def save(self, vhost: str, app: str, id: str, data: dict[str, Any]) -> None:
        text = json.dumps(data, separators=(",", ":"), default=str)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO tasks (vhost, app, id, data) VALUES (?, ?, ?, ?)",
                             (vhost, app, id, text))

    def delete(self, vhost: str, app: str, id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tasks WHERE vhost = ? AND app = ? AND id = ?", (vhost, app, id))

    def close(self) -> None:
        with self._lock:
            self._db.close()
