"""The Record REST API (docs/record-api.md): an OvenMediaEngine-compatible Falcon WSGI app.

`create_app(manager, config)` receives its collaborators. The pipeline of every request is the
contract's order: CORS preflight (OPTIONS, no auth) -> Basic auth (401) -> route (404 controller
not found) -> JSON body (400) -> vhost/app exist (404) -> the action in the task manager. Resources
are thin: they validate the body (pyrec.schemas) and call the task manager. Errors are turned
into the `{"statusCode", "message"}` envelope by one handler per exception family: ApiError
(the HTTP layer's own), the domain's TaskError (its status from TASK_ERROR_STATUS, the one
place the domain meets HTTP), falcon.HTTPError, anything else = 500.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from importlib import resources
from typing import Any, Callable, Protocol

import falcon

from pyrec import schemas
from pyrec.config import Config
from pyrec.errors import ApiError
from pyrec.task import TaskSpec
from pyrec.task_errors import (DuplicateTask, InvalidTaskSpec, TaskError, TaskNotFound,
                               TooManyTasks, UnknownApp, UnknownVhost)

__all__ = ["create_app", "TaskManagerLike", "JSON_CONTENT_TYPE", "MAX_BODY_BYTES"]

log = logging.getLogger("pyrec.api")

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
MAX_BODY_BYTES = 1 << 20  # a Record API body is a few hundred bytes; refuse absurd ones
CORS_ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_ALLOW_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE = "86400"

MSG_NOT_FOUND = "Controller not found"
MSG_INTERNAL = "Internal server error"


class TaskManagerLike(Protocol):
    def check_app(self, vhost: str, app: str) -> Any: ...
    def start_record(self, vhost: str, app: str, spec: TaskSpec) -> dict[str, Any]: ...
    def stop_record(self, vhost: str, app: str, rid: str) -> dict[str, Any]: ...
    def records(self, vhost: str, app: str, rid: Any) -> list[dict[str, Any]]: ...


# The domain's errors as HTTP statuses (their messages are the contract's).
TASK_ERROR_STATUS: dict[type[TaskError], int] = {
    InvalidTaskSpec: 400, TooManyTasks: 400, UnknownVhost: 404, UnknownApp: 404,
    TaskNotFound: 404, DuplicateTask: 409,
}


# --- envelope ------------------------------------------------------------------------------

def _send(resp: falcon.Response, status: int, doc: dict[str, Any]) -> None:
    resp.status = status
    resp.content_type = JSON_CONTENT_TYPE
    resp.text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _ok(resp: falcon.Response, payload: Any) -> None:
    _send(resp, 200, {"statusCode": 200, "message": "OK", "response": payload})


def _error(resp: falcon.Response, status: int, text: str) -> None:
    _send(resp, status, {"statusCode": status, "message": f"[HTTP] {text} ({status})"})


# --- authentication (spec section 2, checks in the listed order) ---------------------------

def check_basic_auth(header: str | None, token: bytes) -> None:
    """Raise ApiError(401, ...) unless `header` carries `Basic base64(token)`."""
    header = (header or "").strip()
    if not header:
        raise ApiError(401, "Authorization header is required to call API")
    parts = header.split(" ")
    if len(parts) != 2:
        raise ApiError(401, "Invalid authorization header")
    scheme, credential = parts
    if scheme.lower() != "basic":
        raise ApiError(401, f"Not supported credential type: {scheme}")
    try:
        decoded = base64.b64decode(credential.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ApiError(401, "Invalid credential format") from None
    if not hmac.compare_digest(decoded, token):
        raise ApiError(401, "Invalid credential")


class _CorsAuthMiddleware:
    """OPTIONS preflight answered here (no auth, no routing); every other request is
    authenticated before routing, so an unknown path without credentials is a 401 like in OME;
    every response carries Access-Control-Allow-Origin."""

    def __init__(self, config: Config, public: frozenset[str] = frozenset()) -> None:
        self._no_auth = config.no_auth
        self._token = config.access_token.encode("utf-8")
        self._public = public  # paths served without auth (health, metrics if configured)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.method == "OPTIONS":
            resp.status = 204
            resp.set_header("Access-Control-Allow-Methods", CORS_ALLOW_METHODS)
            resp.set_header("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS)
            resp.set_header("Access-Control-Max-Age", CORS_MAX_AGE)
            resp.complete = True  # skip routing and responders
            return
        if not self._no_auth and req.path not in self._public:
            check_basic_auth(req.get_header("Authorization"), self._token)

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, req_succeeded: bool) -> None:
        origin = req.get_header("Origin")
        resp.set_header("Access-Control-Allow-Origin", origin or "*")
        if origin:
            resp.append_header("Vary", "Origin")


# --- request body (spec section 3) ---------------------------------------------------------

def _reject_constant(name: str) -> Any:
    raise ValueError(f"Invalid number: {name}")


def read_json_object(req: falcon.Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}`. Errors are 400 `[JSON] <message>`."""
    length = req.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise ApiError(413, f"Request body is larger than {MAX_BODY_BYTES} bytes")
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"Request body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"[JSON] Invalid UTF-8 at byte {e.start}") from None
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:  # json.JSONDecodeError is a ValueError, so is _reject_constant's
        raise ApiError(400, f"[JSON] {e}") from None
    except RecursionError:
        raise ApiError(400, "[JSON] Nesting too deep") from None
    if not isinstance(body, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(body), "a number")
        raise ApiError(400, f"[JSON] Request body must be a JSON object, not {kind}")
    return body


# --- resources -----------------------------------------------------------------------------

class AppActionResource:
    """`/v1/vhosts/{vhost}/apps/{app}:{action}`: the colon makes app and action one path
    segment, split here on its last colon."""

    def __init__(self, manager: TaskManagerLike) -> None:
        Action = Callable[[str, str, dict[str, Any]], Any]
        self._manager = manager
        self._post: dict[str, Action] = {
            "startRecord": self._start, "stopRecord": self._stop, "records": self._records}
        self._get: dict[str, Action] = {"records": self._records}  # OME keeps it (deprecated)

    def _start(self, vhost: str, app: str, body: dict[str, Any]) -> Any:
        return self._manager.start_record(vhost, app, schemas.parse_start(body))

    def _stop(self, vhost: str, app: str, body: dict[str, Any]) -> Any:
        return self._manager.stop_record(vhost, app, schemas.parse_stop(body))

    def _records(self, vhost: str, app: str, body: dict[str, Any]) -> Any:
        return self._manager.records(vhost, app, schemas.parse_records(body))

    @staticmethod
    def _split(app_action: str, table: dict[str, Any]) -> tuple[str, Any]:
        app, sep, action = app_action.rpartition(":")
        if not sep or not app or action not in table:
            raise falcon.HTTPRouteNotFound()
        return app, table[action]

    def on_post(self, req: falcon.Request, resp: falcon.Response, vhost: str,
                app_action: str) -> None:
        app, action = self._split(app_action, self._post)
        body = read_json_object(req)
        self._manager.check_app(vhost, app)
        _ok(resp, action(vhost, app, body))

    def on_get(self, req: falcon.Request, resp: falcon.Response, vhost: str,
               app_action: str) -> None:
        app, action = self._split(app_action, self._get)
        self._manager.check_app(vhost, app)
        _ok(resp, action(vhost, app, {}))


class OpenApiResource:
    """`GET /v1/openapi.json`: the API description shipped as package data."""

    def __init__(self) -> None:
        self._doc = (resources.files("pyrec") / "openapi.json").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = JSON_CONTENT_TYPE
        resp.data = self._doc


# --- error handlers: one per exception family ----------------------------------------------

def _api_error_handler(www_authenticate: str) -> Callable[..., None]:
    def handle_api_error(req: falcon.Request, resp: falcon.Response, ex: ApiError,
                         params: dict[str, Any]) -> None:
        _error(resp, ex.status, ex.message)
        if ex.status == 401:
            resp.set_header("WWW-Authenticate", www_authenticate)
    return handle_api_error


def _handle_task_error(req: falcon.Request, resp: falcon.Response, ex: TaskError,
                       params: dict[str, Any]) -> None:
    status = next((code for cls, code in TASK_ERROR_STATUS.items() if isinstance(ex, cls)), 500)
    if status == 500:
        log.error("unmapped domain error in %s %s", req.method, req.path, exc_info=ex)
        _error(resp, 500, MSG_INTERNAL)
        return
    _error(resp, status, ex.message)


def _handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError,
                       params: dict[str, Any]) -> None:
    """Falcon's own errors (no route, no responder for the method, bad header...) in the
    envelope; no falcon default body ever leaks."""
    status = ex.status_code
    if status in (404, 405):
        _error(resp, 404, MSG_NOT_FOUND)
    else:
        _error(resp, status, ex.title or falcon.get_http_status(status)[4:])


def _handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                       params: dict[str, Any]) -> None:
    log.error("unhandled error in %s %s", req.method, req.path, exc_info=ex)
    _error(resp, 500, MSG_INTERNAL)


def create_app(manager: TaskManagerLike, config: Config, registry: Any = None,
               catalog: Any = None, *, public: frozenset[str] = frozenset(),
               middleware: list[Any] | None = None) -> falcon.App:
    """The WSGI application of the Record API (with `registry`, a StreamRegistry: also the
    stream and stats APIs of pyrec.api_streams; with `catalog`, a pyrec.catalog.Catalog: the
    recordings API); `public` paths skip auth, `middleware` runs before it (pyrec.health's
    request counter sees every request)."""
    realm = config.realm.replace("\\", "\\\\").replace('"', '\\"')
    app = falcon.App(middleware=[*(middleware or ()), _CorsAuthMiddleware(config, public)])
    app.req_options.strip_url_path_trailing_slash = False
    app.add_route("/v1/vhosts/{vhost}/apps/{app_action}", AppActionResource(manager))
    app.add_route("/v1/openapi.json", OpenApiResource())
    if registry is not None:
        from pyrec.api_streams import add_stream_routes
        add_stream_routes(app, config, registry, manager)
    if catalog is not None:
        from pyrec.api_recordings import add_recording_routes
        add_recording_routes(app, catalog, manager)
    # Exception first: falcon resolves the most specific registered family for each error.
    app.add_error_handler(Exception, _handle_unexpected)
    app.add_error_handler(falcon.HTTPError, _handle_http_error)
    app.add_error_handler(ApiError, _api_error_handler(f'Basic realm="{realm}"'))
    app.add_error_handler(TaskError, _handle_task_error)
    return app
