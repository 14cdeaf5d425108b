"""`pyrec serve`: RTMP ingest + task manager + Record API (Falcon app on waitress), with
embedded defaults: vhost `default`, app `app`, root `./records`, SQLite task store."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from urllib.parse import urlparse

from pyrec.catalog import Catalog
from pyrec.config import Config
from pyrec.events import EventBus, EventSource
from pyrec.ingest import IngestServer
from pyrec.retention import Retention
from pyrec.store import TaskStore
from pyrec.streams import StreamRegistry
from pyrec.tasks import TaskManager
from pyrec.webhooks import WebhookOutbox

__all__ = ["Service"]

log = logging.getLogger("pyrec.serve")


class Service:
    """Everything `pyrec serve` runs, startable and stoppable in-process (tests use it)."""

    def __init__(self, config: Config, *, clock=None, tick_seconds: float = 0.2) -> None:
        from waitress.server import create_server

        from pyrec.api import create_app

        self.config = config
        config.record_root.mkdir(parents=True, exist_ok=True)
        # Events: subscribers (the info XML writer first, the task store, later webhooks,
        # the catalog...) run on the bus's dispatcher thread, never on the ingest loop.
        self.bus = EventBus(config.node_name or None).start()
        self.registry = StreamRegistry(EventSource(self.bus))
        # Webhooks must follow the info XML writer (a file.finished is sent once its entry is
        # written) but the task manager subscribes that writer and emits start-up recovery
        # events in one go: a stand-in takes those, then, on the dispatcher between two
        # events, the outbox itself takes its place at the end of the subscribers.
        self.webhooks = WebhookOutbox(config.webhooks, config.webhook_database
                                      if config.webhooks else None)
        # The catalog before the webhooks: a receiver told of a file finds its row.
        self.catalog = Catalog(config)
        self.catalog.subscribe(self.bus)
        early = self.webhooks.__call__
        self.bus.subscribe(early)
        self.store = TaskStore(config.database)
        kw = {"clock": clock} if clock is not None else {}
        self.manager = TaskManager(config, store=self.store, bus=self.bus, **kw)
        self.recovered = self.manager.recovered  # files left open by a crash, finalised

        def webhooks_last() -> None:
            self.bus.unsubscribe(early)
            self.bus.subscribe(self.webhooks)

        self.bus.call(webhooks_last)
        self.bus.flush()  # their info XML entries are written before we serve
        self.catalog.reconcile(self.recovered)
        # Retention: its own worker thread deletes through the catalog (file.deleted) and
        # refuses new recordings while the disk is critically full.
        self.retention = Retention(config, self.catalog, self.bus)
        self.manager.admission = self.retention.refusal
        self.ingest = IngestServer(host=config.host, port=config.rtmp_port,
                                   limits=config.limits, resolver=self._resolve,
                                   registry=self.registry)
        self.manager.attach_ingest(self.ingest)
        self.metrics, self.app = self._metrics_app(create_app)
        self.http = create_server(self.app, host=config.host, port=config.api_port, threads=8,
                                  ident="pyrec", clear_untrusted_proxy_headers=True)
        self.tick_seconds = tick_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _metrics_app(self, create_app):  # type: ignore[no-untyped-def]
        """Health, readiness and metrics (pyrec.health) on the API's app."""
        from pyrec import health
        from pyrec.metrics import Metrics

        metrics = Metrics(self.config.record_root)
        metrics.attach(ingest=self.ingest, manager=self.manager)
        metrics.subscribe(self.bus)
        if getattr(self, "webhooks", None) is not None:  # the outbox (pyrec.webhooks)
            metrics.feed_webhooks(self.webhooks)
        if getattr(self, "retention", None) is not None:
            metrics.feed("pyrec_retention_deleted_files_total", self.retention.counts)
        counter = health.RequestCounter(metrics)
        public = set(health.HEALTH_PATHS)
        if not self.config.metrics_auth:
            public.add(health.METRICS_PATH)
        app = create_app(self.manager, self.config, self.registry, self.catalog,
                         public=frozenset(public), middleware=[counter])
        counter.app = app
        health.add_routes(app, metrics, [
            ("rtmp", self._rtmp_ready),
            ("task store", self._store_ready),
            ("record root", lambda: health.check_writable(self.config.record_root))])
        return metrics, app

    def _rtmp_ready(self) -> str | None:
        t = getattr(self.ingest, "_thread", None)
        if t is None or not t.is_alive():
            return "RTMP listener is not running"
        return None

    def _store_ready(self) -> str | None:
        self.store.schema_version  # a query on the database; raises when it cannot answer
        return None

    @property
    def api_port(self) -> int:
        return int(self.http.effective_port)  # type: ignore[union-attr]

    @property
    def rtmp_port(self) -> int:
        return self.ingest.port

    def _resolve(self, app: str, tcurl: str) -> tuple[str, tuple[str, str]] | None:
        host = urlparse(tcurl).hostname or ""
        v = self.config.vhost_for_host(host)
        a = v.apps.get(app)
        return (v.name, (a.video_name, a.audio_name)) if a is not None else None

    def start(self) -> Service:
        self.webhooks.start()
        self.retention.start()
        self.ingest.start()
        t = threading.Thread(target=self._serve_http, name="pyrec-api", daemon=True)
        t.start()
        ticker = threading.Thread(target=self._tick, name="pyrec-tick", daemon=True)
        ticker.start()
        self._threads = [t, ticker]
        cfg = self.config
        log.info("configuration: %s", cfg.source or "(none: embedded defaults)")
        log.info("Record API on http://%s:%d, RTMP on port %d, records under %s, tasks in %s",
                 cfg.host, self.api_port, self.rtmp_port, os.path.abspath(cfg.record_root),
                 os.path.abspath(cfg.database))
        for v in cfg.vhosts.values():
            for a in v.apps.values():
                log.info("app %s/%s: files under %s", v.name, a.name, os.path.abspath(a.root))
        return self

    def _serve_http(self) -> None:
        try:
            self.http.run()
        except (OSError, ValueError):
            if not self._stop.is_set():  # closing the listener interrupts the loop: expected
                raise

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.manager.tick()
            except Exception:  # keep ticking; log loudly
                log.exception("schedule tick failed")

    def stop(self) -> None:
        self._stop.set()
        # Requests in flight finish first: a worker thread wakes the server loop through the
        # trigger when it is done, and close() destroys the trigger (EBADF in waitress).
        self.http.task_dispatcher.shutdown()
        self.http.close()
        self.retention.close()
        self.ingest.stop()  # every stream ends: files finished, tasks wait (stored)
        self.manager.close()  # the work this caused (fsync, info XML, store) is done
        self.bus.close()
        self.catalog.close()
        self.webhooks.close()  # what is undelivered stays queued for the next start
        for t in self._threads:
            t.join(5)
        # The loop has ended: a connection it had not yet seen close is closed here, not
        # left to the garbage collector (a ResourceWarning at some later moment).
        for channel in list(getattr(self.http, "_map", {}).values()):
            try:
                channel.close()
            except OSError:
                pass


def keep_generated_token(config: Config) -> bool:
    """A generated token is kept beside the task database (mode 0600) so that clients keep
    working after a restart. Returns True when it was generated now (to be printed once)."""
    if not config.token_generated:
        return False
    path = config.database.parent / "access_token"
    try:
        config.access_token = path.read_text(encoding="utf-8").strip() or config.access_token
        config.token_generated = False
        return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(config.access_token + "\n")
    return True


def run(config: Config) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    generated = keep_generated_token(config)
    svc = Service(config)
    if generated:
        # Printed once, on stdout only (never logged); kept in <database dir>/access_token.
        print(f"pyrec: generated access token (use HTTP Basic auth): {config.access_token}",
              flush=True)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    svc.start()
    while not done.wait(1.0):
        pass
    log.info("stopping: finishing open files")
    svc.stop()
    return 0


