"""Health and metrics endpoints (spec lifecycle.md section 8): `GET /healthz`, `GET /readyz`
(no auth) and `GET /metrics` (Prometheus text, behind Basic auth unless
`server.metrics_auth = false`), and the middleware that counts API requests."""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon

from pyrec.metrics import CONTENT_TYPE_LATEST, Metrics

__all__ = ["HEALTH_PATHS", "METRICS_PATH", "add_routes", "RequestCounter", "readiness"]

HEALTH_PATHS = ("/healthz", "/readyz")
METRICS_PATH = "/metrics"
TEXT = "text/plain; charset=utf-8"


def check_writable(root: Path) -> str | None:
    """None when a file can be created (and removed) in `root`, else why not."""
    probe = os.path.join(root, f".pyrec-ready-{uuid.uuid4().hex}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return f"record root {root} is not writable: {e.strerror or e}"
    try:
        os.write(fd, b"ok")
    except OSError as e:
        return f"record root {root} is not writable: {e.strerror or e}"
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass
    return None


def readiness(checks: list[tuple[str, Callable[[], str | None]]]) -> list[str]:
    """The reasons of the failing checks (a check returns None when fine, or raises)."""
    reasons = []
    for name, check in checks:
        try:
            why = check()
        except Exception as e:  # a check that raises is a failing check, named
            why = f"{name}: {type(e).__name__}: {e}"
        if why:
            reasons.append(why)
    return reasons


class _Healthz:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = TEXT
        resp.text = "ok\n"


class _Readyz:
    def __init__(self, checks: list[tuple[str, Callable[[], str | None]]]) -> None:
        self.checks = checks

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        reasons = readiness(self.checks)
        resp.content_type = TEXT
        resp.status = 503 if reasons else 200
        resp.text = ("not ready: " + "; ".join(reasons) + "\n") if reasons else "ready\n"


class _Metrics:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self.metrics.render()


def add_routes(app: falcon.App, metrics: Metrics,
               checks: list[tuple[str, Callable[[], str | None]]]) -> None:
    app.add_route("/healthz", _Healthz())
    app.add_route("/readyz", _Readyz(checks))
    app.add_route(METRICS_PATH, _Metrics(metrics))


class RequestCounter:
    """Falcon middleware: pyrec_api_requests_total{route, code}. The route is the matched URI
    template (`/v1/vhosts/{vhost}/apps/{app_action}`), `unmatched` for a path with no route
    (including requests refused by auth before routing); never the raw path, so the label's
    values stay few."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.app: falcon.App | None = None  # set once the app exists (for its router)

    def _route(self, req: falcon.Request) -> str:
        tpl = req.uri_template
        if tpl:
            return str(tpl)
        try:  # refused before routing (401, OPTIONS): the route the path would take
            found: Any = self.app._router.find(req.path) if self.app is not None else None
        except Exception:
            found = None
        return str(found[3]) if found else "unmatched"

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, req_succeeded: bool) -> None:
        code = int(str(resp.status).split(" ", 1)[0]) if resp.status else 200
        self.metrics.count_request(self._route(req), code)
