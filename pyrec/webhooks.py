"""Webhooks (lifecycle spec section 2): every event of the configured types is POSTed, signed,
to each `[[webhooks]]` URL, at least once, in order per stream, surviving restarts.

The outbox is an event bus subscriber. On the dispatcher thread (never the ingest loop) it
inserts one row per (webhook, event) into SQLite beside the task store
(`<record root>/.pyrec/webhooks.sqlite3`), so a restart -- even after `kill -9` -- loses no
undelivered event; a delivered row is deleted. Worker threads (a few per webhook) do the
HTTP with the standard library, one attempt at a time with the webhook's `timeout_ms`, so a
hanging receiver holds up only its own workers, never the dispatcher, the API or recording.

Order: per webhook, the events of one stream form a queue; only its head is ever in flight,
and a later event is sent only once the earlier one is delivered (or given up). Other streams'
queues go on while one stream's head waits for its retry.

Retries: any non-2xx answer (a redirect included: never followed), a timeout or a connection
error is a failed attempt; the next is scheduled after 1 s doubling per failed attempt, +-20 %
jitter, capped at 5 min. `max_attempts` > 0 gives up after that many attempts: the row moves
to the `given_up` table (kept, with the last error) and one ERROR line is logged; the stream's
next event then goes. `max_attempts = 0` retries until delivered.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import os
import random
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pyrec.events import Event

__all__ = ["WebhookConfig", "WebhookOutbox", "backoff_seconds", "sign"]

log = logging.getLogger("pyrec.webhooks")

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
JITTER = 0.2
WORKERS_PER_WEBHOOK = 4
MAX_RESPONSE_BYTES = 64 * 1024  # read (and drop) at most this much of a receiver's answer


@dataclass(frozen=True)
class WebhookConfig:
    """One `[[webhooks]]` table. `events` None = every type."""

    url: str
    events: frozenset[str] | None = None
    secret: str = ""
    timeout_ms: int = 5000
    max_attempts: int = 0


def sign(secret: str, t: int, body: bytes) -> str:
    """The X-Pyrec-Signature value: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _backoff_params() -> tuple[float, float]:
    # For tests only (undocumented for operators): PYREC_WEBHOOK_BACKOFF_MS="BASE[:CAP]" in
    # milliseconds shortens the retry schedule so a test's receiver outage lasts seconds.
    raw = os.environ.get("PYREC_WEBHOOK_BACKOFF_MS", "")
    if not raw:
        return BACKOFF_BASE_S, BACKOFF_CAP_S
    base, _, cap = raw.partition(":")
    return float(base) / 1000, (float(cap) / 1000 if cap else BACKOFF_CAP_S)


def backoff_seconds(failed_attempts: int, rng: random.Random | None = None) -> float:
    """Delay before the next attempt after `failed_attempts` (>= 1) failures: base * 2^(n-1),
    +-20 % jitter, never more than the cap (5 min)."""
    base, cap = _backoff_params()
    d = min(base * 2.0 ** min(failed_attempts - 1, 60), cap)
    d *= 1.0 + (rng or random).uniform(-JITTER, JITTER)
    return min(d, cap)


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      hook TEXT NOT NULL,          -- the webhook's URL (its identity across restarts)
      stream TEXT NOT NULL,        -- vhost/app/stream: the order key
      event_id TEXT NOT NULL,
      type TEXT NOT NULL,
      body BLOB NOT NULL,          -- the exact bytes sent (and signed)
      attempts INTEGER NOT NULL DEFAULT 0,
      last_error TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS given_up (
      seq INTEGER PRIMARY KEY,
      hook TEXT NOT NULL,
      stream TEXT NOT NULL,
      event_id TEXT NOT NULL,
      type TEXT NOT NULL,
      body BLOB NOT NULL,
      attempts INTEGER NOT NULL,
      last_error TEXT,
      given_up_time REAL NOT NULL
    )""",
)


@dataclass
class _Item:
    seq: int
    event_id: str
    type: str
    attempts: int = 0
    not_before: float = 0.0  # time.monotonic() of the next attempt


class _Hook:
    """One webhook's queues: stream key -> its pending items, oldest first."""

    def __init__(self, cfg: WebhookConfig) -> None:
        self.cfg = cfg
        self.queues: dict[str, deque[_Item]] = {}
        self.busy: set[str] = set()  # streams whose head is in flight
        self.delivered = 0
        self.failed_attempts = 0
        self.given_up = 0

    def depth(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def next_ready(self, now: float) -> tuple[str | None, float | None]:
        """(stream whose head may go now, None) or (None, seconds until the earliest is due)."""
        wait: float | None = None
        for key, q in self.queues.items():
            if key in self.busy or not q:
                continue
            due = q[0].not_before - now
            if due <= 0:
                return key, None
            wait = due if wait is None else min(wait, due)
        return None, wait


def _stream_key(ev: Event) -> str:
    return f"{ev.vhost}/{ev.app}/{ev.stream if ev.stream is not None else ''}"


class WebhookOutbox:
    """The persistent outbox and its delivery workers. Subscribe it to a bus with
    `bus.subscribe(outbox)`; `start()` the workers; `close()` stops them (what is undelivered
    stays in the database for the next start).

    Counters for metrics: `delivered`, `failed_attempts`, `given_up` (totals since start) and
    `depth()` (events waiting, all webhooks); `stats()` has them per webhook."""

    def __init__(self, hooks: Sequence[WebhookConfig], path: str | os.PathLike[str] | None,
                 *, workers_per_hook: int = WORKERS_PER_WEBHOOK) -> None:
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path) if path is not None else ":memory:"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db_lock = threading.Lock()
        self._cond = threading.Condition()
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._workers_per_hook = workers_per_hook
        self.hooks: dict[str, _Hook] = {}
        for cfg in hooks:
            if cfg.url in self.hooks:
                raise ValueError(f"webhook {cfg.url} is configured twice")
            self.hooks[cfg.url] = _Hook(cfg)
        with self._db_lock:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: safe from a process kill
            for stmt in _SCHEMA:
                self._db.execute(stmt)
            rows = self._db.execute("SELECT seq, hook, stream, event_id, type, attempts "
                                    "FROM outbox ORDER BY seq").fetchall()
        orphans = 0
        for seq, hook, stream, eid, typ, attempts in rows:
            h = self.hooks.get(hook)
            if h is None:
                orphans += 1  # kept: delivered if that URL is configured again
                continue
            h.queues.setdefault(stream, deque()).append(_Item(seq, eid, typ, attempts))
        if rows:
            log.info("webhook outbox %s: %d undelivered event(s) from before the restart",
                     self.path, len(rows) - orphans)
        if orphans:
            log.warning("webhook outbox %s: %d event(s) kept for webhook URL(s) no longer "
                        "configured", self.path, orphans)

    # ---- counters ------------------------------------------------------------------------

    @property
    def delivered(self) -> int:
        return sum(h.delivered for h in self.hooks.values())

    @property
    def failed_attempts(self) -> int:
        return sum(h.failed_attempts for h in self.hooks.values())

    @property
    def given_up(self) -> int:
        return sum(h.given_up for h in self.hooks.values())

    def depth(self) -> int:
        with self._cond:
            return sum(h.depth() for h in self.hooks.values())

    def stats(self) -> dict[str, dict[str, int]]:
        with self._cond:
            return {url: {"delivered": h.delivered, "failed_attempts": h.failed_attempts,
                          "given_up": h.given_up, "depth": h.depth()}
                    for url, h in self.hooks.items()}

    # ---- the subscriber (dispatcher thread) ----------------------------------------------

    def __call__(self, ev: Event) -> None:
        targets = [h for h in self.hooks.values()
                   if h.cfg.events is None or ev.type in h.cfg.events]
        if not targets:
            return
        body = ev.to_json().encode()  # the bytes sent and signed, on every attempt
        key = _stream_key(ev)
        with self._db_lock:
            if self._closed:
                log.error("webhook outbox closed: event %s %s not queued", ev.type, ev.id)
                return
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                seqs = [db.execute("INSERT INTO outbox (hook, stream, event_id, type, body) "
                                   "VALUES (?, ?, ?, ?, ?)",
                                   (h.cfg.url, key, ev.id, ev.type, body)).lastrowid
                        for h in targets]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        with self._cond:
            for h, seq in zip(targets, seqs):
                h.queues.setdefault(key, deque()).append(_Item(int(seq or 0), ev.id, ev.type))
            self._cond.notify_all()

    # ---- delivery (worker threads) -------------------------------------------------------

    def start(self) -> WebhookOutbox:
        for url, h in self.hooks.items():
            for i in range(self._workers_per_hook):
                t = threading.Thread(target=self._work, args=(h,), daemon=True,
                                     name=f"pyrec-webhook-{i}")
                t.start()
                self._threads.append(t)
        return self

    def _drainable(self) -> bool:
        """Some event may still go out without waiting for a retry: an attempt in flight, or
        a stream whose next event has not failed yet (under self._cond)."""
        return any(key in h.busy or q[0].attempts == 0
                   for h in self.hooks.values() for key, q in h.queues.items())

    def close(self, timeout: float = 5.0) -> None:
        """Send what can be sent at once (the last events of a graceful stop: the final
        file.finished...), for at most `timeout`, without waiting out retry delays; then stop
        the workers and close the database. What is left (an attempt still in flight is
        abandoned) stays in the database and goes at the next start."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._threads and self._drainable():
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._closed = True
            self._cond.notify_all()
        end = max(end, time.monotonic() + 0.5)
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        self._threads = []
        with self._db_lock:
            self._db.close()

    def _work(self, h: _Hook) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    key, wait = h.next_ready(time.monotonic())
                    if key is not None:
                        break
                    self._cond.wait(wait)
                h.busy.add(key)
                item = h.queues[key][0]
            try:
                body = self._body(item)
                if body is None:
                    return  # closed: the row stays for the next start
                ok, error = self._attempt(h.cfg, item, body)
            except Exception as e:  # a bug here must not kill the worker
                log.exception("webhook %s: delivering %s failed", h.cfg.url, item.event_id)
                ok, error = False, repr(e)
            self._settle(h, key, item, ok, error)

    def _body(self, item: _Item) -> bytes | None:
        """The bytes to send (kept only in the database: a long outage costs no memory)."""
        with self._db_lock:
            if self._closed:
                return None
            row = self._db.execute("SELECT body FROM outbox WHERE seq = ?",
                                   (item.seq,)).fetchone()
        if row is None:
            raise RuntimeError(f"outbox row {item.seq} vanished")
        return bytes(row[0])

    def _attempt(self, cfg: WebhookConfig, item: _Item, body: bytes) -> tuple[bool, str]:
        """One POST. `timeout_ms` bounds the whole attempt: the connect, then everything
        after it (a receiver trickling its answer a byte at a time is cut off at the
        deadline, not only one that is silent)."""
        u = urlsplit(cfg.url)
        timeout = cfg.timeout_ms / 1000
        conn_cls = (http.client.HTTPSConnection if u.scheme == "https"
                    else http.client.HTTPConnection)
        conn = conn_cls(u.hostname or "", u.port, timeout=timeout)
        headers = {"Content-Type": "application/json", "X-Pyrec-Event": item.type,
                   "X-Pyrec-Delivery": item.event_id, "User-Agent": "pyrec-webhook",
                   "Connection": "close"}
        if cfg.secret:
            headers["X-Pyrec-Signature"] = sign(cfg.secret, int(time.time()), body)
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        watchdog: threading.Timer | None = None
        expired = threading.Event()
        deadline = time.monotonic() + timeout
        try:
            conn.connect()
            sock = conn.sock

            def cut() -> None:
                expired.set()
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked send/recv
                except OSError:
                    pass

            watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), cut)
            watchdog.daemon = True
            watchdog.start()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read(MAX_RESPONSE_BYTES)
            if expired.is_set():
                return False, f"timed out after {cfg.timeout_ms} ms"
            if 200 <= resp.status < 300:
                return True, ""
            return False, f"HTTP {resp.status} {resp.reason}"
        except (OSError, http.client.HTTPException) as e:
            if expired.is_set():
                return False, f"timed out after {cfg.timeout_ms} ms"
            return False, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        finally:
            if watchdog is not None:
                watchdog.cancel()
            conn.close()

    def _settle(self, h: _Hook, key: str, item: _Item, ok: bool, error: str) -> None:
        attempts = item.attempts + 1
        give_up = not ok and 0 < h.cfg.max_attempts <= attempts
        with self._db_lock:
            if not self._closed:
                db = self._db
                if ok:
                    db.execute("DELETE FROM outbox WHERE seq = ?", (item.seq,))
                elif give_up:
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("INSERT OR REPLACE INTO given_up SELECT seq, hook, stream, "
                               "event_id, type, body, ?, ?, ? FROM outbox WHERE seq = ?",
                               (attempts, error, time.time(), item.seq))
                    db.execute("DELETE FROM outbox WHERE seq = ?", (item.seq,))
                    db.execute("COMMIT")
                else:
                    db.execute("UPDATE outbox SET attempts = ?, last_error = ? WHERE seq = ?",
                               (attempts, error, item.seq))
        with self._cond:
            h.busy.discard(key)
            q = h.queues.pop(key)  # back in at the end: streams take turns (round robin)
            if ok or give_up:
                q.popleft()
            if q:
                h.queues[key] = q
            if ok:
                h.delivered += 1
            else:
                h.failed_attempts += 1
                if give_up:
                    h.given_up += 1
                else:
                    item.attempts = attempts
                    item.not_before = time.monotonic() + backoff_seconds(attempts)
            self._cond.notify_all()
        if give_up:
            log.error("webhook %s: gave up on %s %s (stream %s) after %d attempts: %s; kept "
                      "in %s (table given_up)", h.cfg.url, item.type, item.event_id, key,
                      attempts, error, self.path)
        elif not ok:
            log.warning("webhook %s: %s %s attempt %d failed: %s; retrying", h.cfg.url,
                        item.type, item.event_id, attempts, error)
