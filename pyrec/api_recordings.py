"""The recordings API (lifecycle spec section 3) on the Record API's app: list, get, download
(with single byte ranges) and delete the catalog's recordings. Auth, envelope and error
messages are the Record API's (pyrec.api); errors are raised as ApiError / TaskError and turned
into the envelope by its handlers.

The routes are `/v1/vhosts/{vhost}/apps/{app}/recordings[/{id}[/file]]`: one segment more than
the Record API's `{app}:{action}` route, so the two never clash (the app's path field keeps
that route's name, `app_action`, which falcon requires at one level); an app segment holding a
colon is refused here (404), as it can only be the action route's.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import falcon

from pyrec.api import TaskManagerLike, _ok
from pyrec.catalog import STATES, Catalog, CatalogQuery, RecordingBusy
from pyrec.errors import ApiError

__all__ = ["add_recording_routes", "parse_range", "MAX_LIMIT"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
READ_CHUNK = 256 * 1024
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _bad(name: str, why: str) -> ApiError:
    return ApiError(400, f"Invalid [{name}] parameter: {why}")


def _time(req: falcon.Request, name: str) -> datetime | None:
    raw = req.get_param(name)
    if raw is None:
        return None
    try:
        # an unencoded "+" of the offset arrives as a space: take it as meant
        t = datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError:
        raise _bad(name, f"not an ISO-8601 time: {raw!r}") from None
    return t if t.tzinfo is not None else t.astimezone()


def _cursor(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    try:
        v = json.loads(base64.urlsafe_b64decode(raw.encode("ascii") + b"=="))
        if (isinstance(v, list) and len(v) == 2 and isinstance(v[0], int)
                and isinstance(v[1], str)):
            return v[0], v[1]
    except (binascii.Error, ValueError, UnicodeError):
        pass
    raise _bad("cursor", "not a cursor this server gave")


def _encode_cursor(c: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(c)).encode()).decode().rstrip("=")


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single `bytes=` range as (first, last) inclusive; None when unsatisfiable or not a
    single range we serve (the caller answers 416)."""
    m = _RANGE_RE.match(header.strip())
    if m is None:
        return None
    first, last = m.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return None
        return max(0, size - n), size - 1
    a = int(first)
    b = int(last) if last else size - 1
    if a >= size or b < a:
        return None
    return a, min(b, size - 1)


def _file_iter(path: str, first: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(first)
        left = length
        while left > 0:
            chunk = f.read(min(READ_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


class _Base:
    def __init__(self, catalog: Catalog, manager: TaskManagerLike) -> None:
        self.catalog = catalog
        self.manager = manager

    def _app(self, vhost: str, app: str) -> None:
        if ":" in app:
            raise falcon.HTTPRouteNotFound()
        self.manager.check_app(vhost, app)

    def _row(self, vhost: str, app: str, rid: str) -> dict[str, Any]:
        self._app(vhost, app)
        row = self.catalog.get(vhost, app, rid)
        if row is None:
            raise ApiError(404, f"Could not find the recording: [{rid}]")
        return row


class RecordingsResource(_Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response, vhost: str,
               app_action: str) -> None:
        app = app_action
        self._app(vhost, app)
        raw_limit = req.get_param("limit")
        limit = DEFAULT_LIMIT
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                raise _bad("limit", f"not an integer: {raw_limit!r}") from None
            if not 1 <= limit <= MAX_LIMIT:
                raise _bad("limit", f"must be 1 to {MAX_LIMIT}")
        state = req.get_param("state")
        if state is not None and state not in STATES:
            raise _bad("state", f"must be one of {', '.join(STATES)}")
        q = CatalogQuery(vhost=vhost, app=app, stream=req.get_param("stream"),
                         task_id=req.get_param("taskId"), start=_time(req, "from"),
                         end=_time(req, "to"), state=state, limit=limit,
                         after=_cursor(req.get_param("cursor")))
        rows, nxt = self.catalog.list(q)
        _ok(resp, {"recordings": rows, "next": _encode_cursor(nxt) if nxt else None})


class RecordingResource(_Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response, vhost: str,
               app_action: str, rid: str) -> None:
        _ok(resp, self._row(vhost, app_action, rid))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, vhost: str,
                  app_action: str, rid: str) -> None:
        app = app_action
        self._row(vhost, app, rid)
        try:
            out = self.catalog.delete(vhost, app, rid, "api")
        except RecordingBusy:
            raise ApiError(409, f"The recording is still being written: [{rid}]") from None
        except OSError as e:
            raise ApiError(500, f"Cannot delete the file: {e.strerror}") from None
        if out is None:
            raise ApiError(404, f"Could not find the recording: [{rid}]")
        _ok(resp, out)


class RecordingFileResource(_Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response, vhost: str,
               app_action: str, rid: str) -> None:
        app = app_action
        self._row(vhost, app, rid)
        found = self.catalog.file_path(vhost, app, rid)
        if found is None:
            raise ApiError(404, f"Could not find the recording: [{rid}]")
        row, path = found
        if not row["local"]:
            raise ApiError(404, f"The recording's file is not on local disk: [{rid}]")
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise ApiError(404, f"The recording's file is not on local disk: [{rid}]") from None
        resp.set_header("Accept-Ranges", "bytes")
        ext = os.path.splitext(path)[1].lower()
        resp.content_type = "video/mp2t" if ext == ".ts" else "video/mp4"
        rng = req.get_header("Range")
        first, length = 0, size
        if rng is not None:
            r = parse_range(rng, size)
            if r is None:
                resp.set_header("Content-Range", f"bytes */{size}")
                raise ApiError(416, f"Range not satisfiable: {rng}")
            first, length = r[0], r[1] - r[0] + 1
            resp.status = 206
            resp.set_header("Content-Range", f"bytes {r[0]}-{r[1]}/{size}")
        else:
            resp.status = 200
        resp.content_length = length
        resp.stream = _file_iter(path, first, length)


def add_recording_routes(app: falcon.App, catalog: Catalog, manager: TaskManagerLike) -> None:
    # The field is named as in the Record API's `{app_action}` route: falcon refuses two
    # field names at one level of the path.
    base = "/v1/vhosts/{vhost}/apps/{app_action}/recordings"
    app.add_route(base, RecordingsResource(catalog, manager))
    app.add_route(base + "/{rid}", RecordingResource(catalog, manager))
    app.add_route(base + "/{rid}/file", RecordingFileResource(catalog, manager))
