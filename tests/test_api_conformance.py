"""Record API conformance (docs/record-api.md): table-driven through falcon's TestClient over the
real TaskManager, plus one real waitress server on loopback. Every response any test receives is
validated against the OpenAPI description the package ships (pyrec/openapi.json)."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import threading
from importlib import resources
from typing import Any

import falcon.testing
import pytest
import waitress

from pyrec.api import JSON_CONTENT_TYPE, MAX_BODY_BYTES, create_app
from pyrec.config import load_config
from pyrec.tasks import TaskManager

TOKEN = "user:pass"
BASE = "/v1/vhosts/default/apps/app"
START, STOP, RECORDS = f"{BASE}:startRecord", f"{BASE}:stopRecord", f"{BASE}:records"
OPENAPI_PATH = "/v1/openapi.json"


def basic(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return "Basic " + base64.b64encode(raw).decode()


AUTH = {"Authorization": basic(TOKEN)}
NO_AUTH: dict[str, str] = {}
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")


# --- a validator for the JSON-Schema subset pyrec/openapi.json uses ------------------------

OPENAPI: dict[str, Any] = json.loads(
    (resources.files("pyrec") / "openapi.json").read_text(encoding="utf-8"))

_ANNOTATIONS = {"description", "example", "format", "default", "deprecated", "title"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    # JSON Schema (draft 6 on) counts 60000.0 as an integer; the server accepts it too
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)
                          or isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = OPENAPI
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def schema_errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Errors of `value` against `schema` (type, required, properties, additionalProperties,
    items, enum, pattern, minimum, minLength, $ref). An unknown keyword is an error, so the
    document cannot grow constraints this validator silently ignores."""
    schema = resolve(schema)
    unknown = set(schema) - _ANNOTATIONS - {
        "type", "required", "properties", "additionalProperties", "items", "enum", "pattern",
        "minimum", "minLength"}
    if unknown:
        return [f"{where}: schema keywords not supported by the test validator: {unknown}"]
    if "type" in schema and not _TYPES[schema["type"]](value):
        return [f"{where}: expected {schema['type']}, got {value!r}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: {value!r} shorter than {schema['minLength']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        errors.append(f"{where}: {value!r} < {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{where}: missing required {k!r}" for k in schema.get("required", [])
                   if k not in value]
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                errors += schema_errors(v, props[k], f"{where}.{k}")
            elif extra is False:
                errors.append(f"{where}: unexpected key {k!r}")
            elif isinstance(extra, dict):
                errors += schema_errors(v, extra, f"{where}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += schema_errors(v, schema["items"], f"{where}[{i}]")
    return errors


def _template_re(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")


_OPERATIONS = [(_template_re(t), item) for t, item in OPENAPI["paths"].items()]


def check_response(method: str, path: str, status: int, headers: dict[str, str],
                   body: bytes) -> None:
    """Assert the response is one the OpenAPI document describes for this operation."""
    headers = {k.lower(): v for k, v in headers.items()}
    if method in ("OPTIONS", "HEAD"):  # no body: a preflight, or a HEAD (never routed: 404)
        assert (status, body) == (204 if method == "OPTIONS" else 404, b"")
        return
    op = next((item.get(method.lower()) for rx, item in _OPERATIONS if rx.match(path)), None)
    doc = json.loads(body)
    assert headers.get("content-type") == JSON_CONTENT_TYPE
    if op is None:  # not an operation: authentication, then "controller not found"
        assert status in (401, 404), (method, path, status)
        spec = resolve({"$ref": "#/components/responses/"
                                + ("Unauthorized" if status == 401 else "NotFound")})
    else:
        assert str(status) in op["responses"], f"{method} {path}: {status} is not documented"
        spec = resolve(op["responses"][str(status)])
    for name in spec.get("headers", {}):
        assert name.lower() in headers, f"{method} {path} {status}: header {name} missing"
    schema = spec["content"][JSON_CONTENT_TYPE]["schema"]
    errors = schema_errors(doc, schema)
    assert not errors, f"{method} {path} {status}: {errors}"
    if path != OPENAPI_PATH:
        assert doc["statusCode"] == status


# --- fixtures and helpers ------------------------------------------------------------------

class Api:
    """TestClient wrapper: every response is checked against the OpenAPI document."""

    def __init__(self, app: falcon.App) -> None:
        self.client = falcon.testing.TestClient(app)

    def request(self, method: str, path: str, body: Any = None, *, raw: str | bytes | None = None,
                headers: dict[str, str] = AUTH, **kw: Any) -> falcon.testing.Result:
        if body is not None:
            raw = json.dumps(body)
        r = self.client.simulate_request(method, path, headers=headers, body=raw, **kw)
        check_response(method, path, r.status_code, dict(r.headers), r.content)
        return r

    def post(self, path: str, body: Any = None, **kw: Any) -> falcon.testing.Result:
        return self.request("POST", path, body, **kw)

    def get(self, path: str, **kw: Any) -> falcon.testing.Result:
        return self.request("GET", path, **kw)

    def start(self, id: str, name: str = "stream", path: str = START, **fields: Any) -> dict:
        return ok(self.post(path, {"id": id, "stream": {"name": name}, **fields}))

    def records(self, path: str = RECORDS, **filt: Any) -> list[dict]:
        return ok(self.post(path, filt))


def ok(r: falcon.testing.Result) -> Any:
    assert r.status_code == 200, r.text
    assert r.json["statusCode"] == 200 and r.json["message"] == "OK"
    assert r.headers["content-type"] == JSON_CONTENT_TYPE
    return r.json["response"]


def err(r: falcon.testing.Result, status: int, text: str) -> None:
    assert (r.status_code, r.json) == (
        status, {"statusCode": status, "message": f"[HTTP] {text} ({status})"})


CONFIG_TOML = """
[vhosts.default.apps.app]
[vhosts.default.apps.app2]
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "pyrec.toml"
    path.write_text(CONFIG_TOML)
    return load_config(path, access_token=TOKEN, record_root=str(tmp_path / "records"))


@pytest.fixture
def manager(config):
    mgr = TaskManager(config)
    yield mgr
    mgr.close()


@pytest.fixture
def api(manager, config) -> Api:
    return Api(create_app(manager, config))


# --- authentication (spec section 2) -------------------------------------------------------

AUTH_FAILURES = [
    ("missing header", None, "Authorization header is required to call API"),
    ("empty header", "", "Authorization header is required to call API"),
    ("one part", "Basic", "Invalid authorization header"),
    ("three parts", "Basic dXNlcjpwYXNz extra", "Invalid authorization header"),
    ("double space", "Basic  dXNlcjpwYXNz", "Invalid authorization header"),
    ("bearer", "Bearer x", "Not supported credential type: Bearer"),
    ("digest", "Digest dXNlcjpwYXNz", "Not supported credential type: Digest"),
    ("not base64", "Basic !!!!", "Invalid credential format"),
    ("bad padding", "Basic dXNlcjpwYXM", "Invalid credential format"),
    ("non-ascii", "Basic dXNlcjpwYXNz\u00e9", "Invalid credential format"),
    ("wrong token", basic("user:nope"), "Invalid credential"),
    ("token prefix", basic("user:pas"), "Invalid credential"),
    ("token plus", basic("user:pass "), "Invalid credential"),
    # HTTP servers strip trailing whitespace from header values: "Basic " is one part
    ("empty credential", "Basic ", "Invalid authorization header"),
    ("empty base64", "Basic =", "Invalid credential format"),
]
# auth comes first: before routing, JSON parsing and the vhost/app checks
AUTH_TARGETS = [("POST", START), ("GET", RECORDS), ("POST", STOP), ("GET", OPENAPI_PATH),
                ("GET", "/no/such/path"), ("POST", "/v1/vhosts/nope/apps/nope:records")]


@pytest.mark.parametrize("method,path", AUTH_TARGETS)
@pytest.mark.parametrize("name,header,message", AUTH_FAILURES, ids=[c[0] for c in AUTH_FAILURES])
def test_auth_failures(api, method, path, name, header, message):
    headers = {} if header is None else {"Authorization": header}
    r = api.request(method, path, raw="{not json", headers=headers)
    err(r, 401, message)
    assert r.headers["www-authenticate"] == 'Basic realm="OvenMediaEngine"'
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("header", [basic(TOKEN), "basic " + basic(TOKEN)[6:],
                                    "BASIC " + basic(TOKEN)[6:]])
def test_auth_scheme_is_case_insensitive(api, header):
    assert ok(api.get(RECORDS, headers={"Authorization": header})) == []


def test_realm_is_configurable_and_quoted(manager, config):
    config.realm = 'my "rec" realm'
    r = Api(create_app(manager, config)).get(RECORDS, headers=NO_AUTH)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="my \\"rec\\" realm"'


def test_no_auth_mode_skips_authentication(tmp_path):
    cfg = load_config(None, no_auth=True, host="127.0.0.1", record_root=str(tmp_path))
    mgr = TaskManager(cfg)
    try:
        api = Api(create_app(mgr, cfg))
        assert ok(api.get(RECORDS, headers=NO_AUTH)) == []
        assert ok(api.get(RECORDS, headers={"Authorization": "Bearer whatever"})) == []
    finally:
        mgr.close()


# --- JSON body (spec section 3) ------------------------------------------------------------

def _json_message(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return str(e)
    raise AssertionError("valid JSON")


@pytest.mark.parametrize("raw", ["{", '{"id": }', "[1,", '{"id": "a",}', "{'id': 'a'}"])
def test_json_parse_error_message(api, raw):
    err(api.post(RECORDS, raw=raw), 400, f"[JSON] {_json_message(raw)}")


@pytest.mark.parametrize("raw,kind", [("[]", "an array"), ("[1, 2]", "an array"),
                                      ('"id"', "a string"), ("null", "null"),
                                      ("42", "a number"), ("true", "a boolean")])
def test_json_body_must_be_an_object(api, raw, kind):
    err(api.post(RECORDS, raw=raw), 400, f"[JSON] Request body must be a JSON object, not {kind}")


@pytest.mark.parametrize("raw", ["NaN",
                                 '{"id": "a", "stream": {"name": "s"}, "interval": Infinity}'])
def test_json_non_standard_numbers_are_refused(api, raw):
    r = api.post(START, raw=raw)
    assert r.status_code == 400 and r.json["message"].startswith("[HTTP] [JSON] Invalid number")


def test_json_invalid_utf8(api):
    r = api.post(RECORDS, raw=b'{"id": "\xff"}')
    err(r, 400, "[JSON] Invalid UTF-8 at byte 8")


@pytest.mark.parametrize("raw", ["", "  \r\n", None])
def test_empty_body_is_an_empty_object(api, raw):
    assert ok(api.post(RECORDS, raw=raw)) == []
    err(api.post(START, raw=raw), 400, "There is no required parameter [ id stream.name]")
    err(api.post(STOP, raw=raw), 400, "There is no required parameter [ id]")


def test_too_large_body(api):
    r = api.post(RECORDS, raw=b" " * (MAX_BODY_BYTES + 1))
    err(r, 413, f"Request body is larger than {MAX_BODY_BYTES} bytes")


def test_json_is_checked_before_vhost_and_app(api):
    err(api.post("/v1/vhosts/nope/apps/nope:startRecord", raw="{"), 400,
        f"[JSON] {_json_message('{')}")


# --- routing and 404s ----------------------------------------------------------------------

NOT_FOUND = [
    # (method, path, body, message)
    ("POST", "/v1/vhosts/nope/apps/app:startRecord", {}, "Could not find the virtual host: [nope]"),
    ("POST", "/v1/vhosts/nope/apps/nope:records", {}, "Could not find the virtual host: [nope]"),
    ("GET", "/v1/vhosts/nope/apps/app:records", None, "Could not find the virtual host: [nope]"),
    ("POST", "/v1/vhosts/default/apps/nope:startRecord", {},
     "Could not find the application: [default/nope]"),
    ("POST", "/v1/vhosts/default/apps/nope:stopRecord", {"id": "x"},
     "Could not find the application: [default/nope]"),
    ("GET", "/v1/vhosts/default/apps/nope:records", None,
     "Could not find the application: [default/nope]"),
    # the segment is split on its LAST colon
    ("POST", "/v1/vhosts/default/apps/app:x:records", {},
     "Could not find the application: [default/app:x]"),
    ("POST", f"{BASE}:stopRecords", {}, "Controller not found"),
    ("POST", f"{BASE}:startrecord", {}, "Controller not found"),
    ("POST", f"{BASE}:", {}, "Controller not found"),
    ("POST", BASE, {}, "Controller not found"),
    ("POST", "/v1/vhosts/default/apps/:records", {}, "Controller not found"),
    ("POST", f"{RECORDS}/", {}, "Controller not found"),
    ("POST", f"{RECORDS}/extra", {}, "Controller not found"),
    ("GET", START, None, "Controller not found"),
    ("GET", STOP, None, "Controller not found"),
    ("PUT", RECORDS, {}, "Controller not found"),
    ("DELETE", RECORDS, None, "Controller not found"),
    ("PATCH", START, {}, "Controller not found"),
    ("HEAD", RECORDS, None, "Controller not found"),
    ("POST", OPENAPI_PATH, {}, "Controller not found"),
    ("GET", "/", None, "Controller not found"),
    ("GET", "/v1", None, "Controller not found"),
    ("GET", "/v1/vhosts/default/apps", None, "Controller not found"),
    ("GET", "/v1/vhosts/default/apps/app", None, "Controller not found"),
]


@pytest.mark.parametrize("method,path,body,message", NOT_FOUND,
                         ids=[f"{c[0]} {c[1]}" for c in NOT_FOUND])
def test_not_found(api, method, path, body, message):
    r = api.request(method, path, body)
    if method == "HEAD":  # same status and headers as GET would have, no body
        assert r.status_code == 404 and r.content == b""
        return
    err(r, 404, message)
    assert r.headers["access-control-allow-origin"] == "*"


def test_unknown_app_is_checked_before_validation(api):
    err(api.post("/v1/vhosts/default/apps/nope:startRecord", {"interval": 1, "schedule": "x"}),
        404, "Could not find the application: [default/nope]")


def test_query_strings_are_ignored(api):
    api.start("a")
    api.start("b")
    assert [t["id"] for t in ok(api.get(RECORDS, query_string="id=a"))] == ["a", "b"]
    assert ok(api.post(START, {"id": "c", "stream": {"name": "s"}},
                       query_string="id=zzz&interval=5"))["id"] == "c"


# --- :startRecord validation (spec section 4, in order) ------------------------------------

S = {"name": "stream"}
START_ERRORS = [
    # (name, body, status, message)
    ("nothing", {}, 400, "There is no required parameter [ id stream.name]"),
    ("empty strings", {"id": "", "stream": {"name": ""}}, 400,
     "There is no required parameter [ id stream.name]"),
    ("only stream", {"stream": S}, 400, "There is no required parameter [ id]"),
    ("empty id", {"id": "", "stream": S}, 400, "There is no required parameter [ id]"),
    ("only id", {"id": "a"}, 400, "There is no required parameter [ stream.name]"),
    ("stream without name", {"id": "a", "stream": {"variantNames": []}}, 400,
     "There is no required parameter [ stream.name]"),
    ("interval and schedule", {"id": "a", "stream": S, "interval": 60000, "schedule": "0 */1 *"},
     400, "[Interval] and [Schedule] cannot be used at the same time"),
    ("bad schedule", {"id": "a", "stream": S, "schedule": "every minute"}, 400,
     "Invalid [schedule] parameter: 'every minute' must have 3 fields: seconds minutes hours"),
    ("schedule with two fields", {"id": "a", "stream": S, "schedule": "0 */1"}, 400,
     "Invalid [schedule] parameter: '0 */1' must have 3 fields: seconds minutes hours"),
    ("schedule step past the hours", {"id": "a", "stream": S, "schedule": "0 0 */25"}, 400,
     "Invalid [schedule] parameter: hours field '*/25': step 25 is outside 1-23"),
    ("schedule range backwards", {"id": "a", "stream": S, "schedule": "0 50-10 *"}, 400,
     "Invalid [schedule] parameter: minutes field '50-10': range 50-10 runs backwards"),
    ("negative interval", {"id": "a", "stream": S, "interval": -5}, 400,
     "Invalid [interval] parameter: must be >= 0 milliseconds (0: no interval split)"),
    ("schedule out of range", {"id": "a", "stream": S, "schedule": "61 * *"}, 400,
     "Invalid [schedule] parameter: seconds field '61': 61 is outside 0-59"),
    # precedence when several problems come at once
    ("missing beats interval+schedule", {"stream": S, "interval": 1000, "schedule": "bad"}, 400,
     "There is no required parameter [ id]"),
    ("interval+schedule beats bad schedule", {"id": "a", "stream": S, "interval": 1000,
                                              "schedule": "bad"}, 400,
     "[Interval] and [Schedule] cannot be used at the same time"),
    ("missing beats duplicate", {"id": "dup"}, 400,
     "There is no required parameter [ stream.name]"),
    ("bad schedule beats duplicate", {"id": "dup", "stream": S, "schedule": "bad"}, 400,
     "Invalid [schedule] parameter: 'bad' must have 3 fields: seconds minutes hours"),
    ("interval+schedule beats duplicate", {"id": "dup", "stream": S, "interval": 1000,
                                           "schedule": "0 */1 *"}, 400,
     "[Interval] and [Schedule] cannot be used at the same time"),
    ("duplicate", {"id": "dup", "stream": {"name": "other"}}, 409, "Duplicate ID already exists"),
]


@pytest.mark.parametrize("name,body,status,message", START_ERRORS,
                         ids=[c[0] for c in START_ERRORS])
def test_start_record_errors(api, name, body, status, message):
    api.start("dup")
    err(api.post(START, body), status, message)
    assert [t["id"] for t in api.records()] == ["dup"]  # nothing was created or changed


WRONG_TYPES = [
    # (body fields on top of a valid id/stream, a word the message must name)
    ({"interval": "abc"}, "interval"),
    ({"interval": 1.5}, "interval"),
    ({"interval": True}, "interval"),
    ({"interval": [60000]}, "interval"),
    ({"schedule": 5}, "schedule"),
    ({"segmentationRule": "sideways"}, "segmentationRule"),
    ({"segmentationRule": 1}, "segmentationRule"),
    ({"metadata": {"a": 1}}, "metadata"),
    ({"filePath": 7}, "filePath"),
    ({"infoPath": ["x.xml"]}, "infoPath"),
    ({"stream": {"name": "s", "variantNames": "bypass_video"}}, "variantNames"),
    ({"stream": {"name": "s", "tracks": ["x"]}}, "tracks"),
    ({"stream": {"name": "s", "variantNames": [1]}}, "variantNames"),
    ({"stream": {"name": "s", "trackIds": ["0"]}}, "trackIds"),
    ({"stream": {"name": "s", "trackIds": 0}}, "trackIds"),
    ({"stream": "s"}, "stream"),
    ({"stream": {"name": 5}}, "name"),
    ({"id": 5}, "id"),
]


@pytest.mark.parametrize("fields,word", WRONG_TYPES, ids=[json.dumps(c[0]) for c in WRONG_TYPES])
def test_start_record_wrong_types(api, fields, word):
    body = {"id": "a", "stream": {"name": "s"}, **fields}
    r = api.post(START, body)
    assert r.status_code == 400, r.text
    assert word in r.json["message"]
    assert schema_errors(body, {"$ref": "#/components/schemas/StartRecordRequest"}), \
        "the OpenAPI request schema must refuse what the server refuses"
    assert api.records() == []


# Boundary values of every constrained field: the server and the OpenAPI request schema give
# the same verdict on each (the fuzzer in test_api_fuzz.py checks the same on random bodies).
AGREEMENT = [
    # (fields, accepted)
    ({"interval": 0}, True), ({"interval": 1}, True), ({"interval": -1}, False),
    ({"interval": -5}, False), ({"interval": 60000.0}, True), ({"interval": 0.5}, False),
    ({"schedule": "0 0 0"}, True), ({"schedule": "59 59 23"}, True),
    ({"schedule": "60 0 0"}, False), ({"schedule": "0 60 0"}, False),
    ({"schedule": "0 0 24"}, False), ({"schedule": "0 0 */23"}, True),
    ({"schedule": "0 0 */24"}, False), ({"schedule": "0 0 */25"}, False),
    ({"schedule": "*/59 * *"}, True), ({"schedule": "*/60 * *"}, False),
    ({"schedule": "*/0 * *"}, False), ({"schedule": "0-59/15 0,30 9-17"}, True),
    ({"schedule": "0 0-60 *"}, False), ({"schedule": "0 0 1-24"}, False),
    ({"schedule": "0,61 * *"}, False), ({"schedule": " 0  */5  * "}, True),
    ({"schedule": "0 */5"}, False), ({"schedule": "0 0 0 0"}, False),
    ({"schedule": "\u0663 * *"}, False), ({"schedule": "-1 * *"}, False),
    ({"schedule": "1-2-3 * *"}, False), ({"schedule": ""}, False),
    ({"segmentationRule": "continuity"}, True), ({"segmentationRule": "Continuity"}, False),
    ({"filePath": "${Stream}.mp4"}, True), ({"filePath": "x.M4A"}, True),
    ({"filePath": "x.m4v"}, True), ({"filePath": ""}, True),
    ({"filePath": "x.ts"}, False), ({"filePath": "x.mp4/"}, False),
    ({"filePath": "${Stream}"}, False), ({"infoPath": "${Stream}.xml"}, True),
]


@pytest.mark.parametrize("fields,accepted", AGREEMENT,
                         ids=[json.dumps(c[0]) for c in AGREEMENT])
def test_openapi_schema_and_server_agree(api, fields, accepted):
    body = {"id": "a", "stream": {"name": "s"}, **fields}
    r = api.post(START, body)
    assert (r.status_code == 200) == accepted, r.text
    assert (not schema_errors(body, {"$ref": "#/components/schemas/StartRecordRequest"})) \
        == accepted


@pytest.mark.parametrize("fields", [{"filePath": "../escape.mp4"}, {"infoPath": "../../x.xml"},
                                    {"filePath": "a/../../escape.mp4"},
                                    {"filePath": "${Stream}.avi"}])
def test_start_record_bad_paths(api, fields):
    r = api.post(START, {"id": "a", "stream": {"name": "s"}, **fields})
    assert r.status_code == 400, r.text
    assert api.records() == []


# --- success: envelope, headers, task object (spec sections 3, 5) --------------------------

def test_start_record_success(api):
    body = {"id": "rec1", "stream": {"name": "stream"}}
    assert not schema_errors(body, {"$ref": "#/components/schemas/StartRecordRequest"})
    r = api.post(START, body)
    assert r.headers["content-type"] == "application/json;charset=UTF-8"
    assert r.headers["access-control-allow-origin"] == "*"
    assert list(r.json) == ["statusCode", "message", "response"]
    task = ok(r)
    assert {k: task[k] for k in ("id", "vhost", "app", "state", "isConfig", "stream")} == {
        "id": "rec1", "vhost": "default", "app": "app", "state": "ready", "isConfig": False,
        "stream": {"name": "stream", "trackIds": [], "variantNames": []}}
    assert TIME_RE.match(task["createdTime"]), task["createdTime"]
    assert task["segmentationRule"] == "discontinuity"  # OME's default, always answered
    for where in (ok(api.post(RECORDS, {"id": "rec1"}))[0],
                  ok(api.post(STOP, {"id": "rec1"}))):
        assert where["segmentationRule"] == "discontinuity"
    for absent in ("interval", "schedule", "metadata", "sequence", "startTime", "finishTime",
                   "recordBytes", "totalRecordBytes", "outputFilePath"):
        assert absent not in task  # empty/zero keys are omitted, as OME does


OPTIONS_ECHOED = [
    {"interval": 60000, "segmentationRule": "continuity"},
    {"interval": 60000.0},
    {"schedule": "0 */10 *", "segmentationRule": "discontinuity"},
    {"schedule": "0 0 0"},
    {"metadata": "camera 7 / \u00e9t\u00e9"},
    {"filePath": "${Stream}/${Id}_${Sequence}.mp4", "infoPath": "${Stream}/${Id}.xml"},
    {"stream": {"name": "stream", "variantNames": ["bypass_video"], "trackIds": [1]}},
]


@pytest.mark.parametrize("fields", OPTIONS_ECHOED, ids=[json.dumps(f) for f in OPTIONS_ECHOED])
def test_start_record_echoes_options(api, fields):
    body = {"id": "rec1", "stream": {"name": "stream"}, **fields}
    assert not schema_errors(body, {"$ref": "#/components/schemas/StartRecordRequest"})
    task = ok(api.post(START, body))
    for key, value in fields.items():
        assert task[key] == value
        assert type(task[key]) is (int if key == "interval" else type(value))
    assert ok(api.post(RECORDS, {"id": "rec1"})) == [task]


def test_legacy_tracks_alias(api):
    task = ok(api.post(START, {"id": "a", "stream": {"name": "s", "tracks": [0, 1]}}))
    assert task["stream"]["trackIds"] == [0, 1]


def test_ids_are_unique_per_application(api):
    api.start("same")
    app2 = "/v1/vhosts/default/apps/app2"
    task = api.start("same", path=f"{app2}:startRecord")
    assert task["app"] == "app2"
    assert [t["app"] for t in api.records()] == ["app"]
    assert [t["app"] for t in api.records(path=f"{app2}:records")] == ["app2"]


# --- :records (spec section 6) -------------------------------------------------------------

def test_records_sorted_filtered_and_get(api):
    assert api.records() == []
    for i in ["rec-c", "rec-a", "rec-d", "rec-b"]:
        api.start(i, name=f"s-{i}")
    listed = api.records()
    assert [t["id"] for t in listed] == ["rec-a", "rec-b", "rec-c", "rec-d"]
    assert all(t["state"] == "ready" and t["isConfig"] is False for t in listed)
    assert ok(api.get(RECORDS)) == listed
    assert ok(api.post(RECORDS, raw="")) == listed
    assert api.records(id="rec-b") == [listed[1]]
    assert api.records(id="nope") == []


# --- :stopRecord (spec section 6) ----------------------------------------------------------

def test_stop_record(api):
    started = api.start("rec1", metadata="m")
    api.start("rec2")
    err(api.post(STOP, {}), 400, "There is no required parameter [ id]")
    err(api.post(STOP, {"id": ""}), 400, "There is no required parameter [ id]")
    err(api.post(STOP, {"id": "nope"}), 404,
        "There is no record information related to the ID [nope]")
    stopped = ok(api.post(STOP, {"id": "rec1"}))
    assert {k: stopped[k] for k in ("id", "vhost", "app", "stream", "metadata", "createdTime")} \
        == {k: started[k] for k in ("id", "vhost", "app", "stream", "metadata", "createdTime")}
    assert stopped["state"] in ("stopping", "stopped")
    assert api.records(id="rec1") == []
    assert [t["id"] for t in api.records()] == ["rec2"]
    err(api.post(STOP, {"id": "rec1"}), 404,
        "There is no record information related to the ID [rec1]")
    assert api.start("rec1")["state"] == "ready"  # the id is free again


# --- CORS ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [START, STOP, RECORDS, OPENAPI_PATH, "/anything/at/all"])
@pytest.mark.parametrize("origin", [None, "https://console.example"])
def test_options_preflight_without_auth(api, path, origin):
    headers = {"Access-Control-Request-Method": "POST"}
    if origin:
        headers["Origin"] = origin
    r = api.request("OPTIONS", path, headers=headers)
    assert r.status_code == 204 and r.content == b""
    assert r.headers["access-control-allow-origin"] == (origin or "*")
    assert r.headers["access-control-allow-methods"] == "GET, POST, DELETE, OPTIONS"
    assert r.headers["access-control-allow-headers"] == "Authorization, Content-Type"
    assert int(r.headers["access-control-max-age"]) > 0
    assert "www-authenticate" not in r.headers


def test_cors_origin_on_normal_and_error_responses(api):
    origin = {"Origin": "https://console.example"}
    r = api.get(RECORDS, headers={**AUTH, **origin})
    assert r.headers["access-control-allow-origin"] == "https://console.example"
    assert "Origin" in r.headers["vary"]
    r = api.get(RECORDS, headers=origin)
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == "https://console.example"


# --- unexpected errors ---------------------------------------------------------------------

def test_unexpected_exception_is_a_500_without_details(manager, config, caplog):
    class Broken:
        def __getattr__(self, name):
            return getattr(manager, name)

        def records(self, vhost, app, body):
            raise RuntimeError("secret internal detail")

    api = Api(create_app(Broken(), config))
    with caplog.at_level(logging.ERROR, logger="pyrec.api"):
        r = api.get(RECORDS)
    err(r, 500, "Internal server error")
    assert "secret" not in r.text
    assert any(rec.exc_info and "secret internal detail" in str(rec.exc_info[1])
               for rec in caplog.records)


# --- the OpenAPI document ------------------------------------------------------------------

def test_openapi_document_served(api):
    r = api.get(OPENAPI_PATH)
    assert r.status_code == 200
    doc = json.loads(r.content)
    assert doc == OPENAPI
    assert doc["openapi"].startswith("3.")
    for action in ("startRecord", "stopRecord", "records"):
        assert "post" in doc["paths"][f"/v1/vhosts/{{vhost}}/apps/{{app}}:{action}"]
    assert "get" in doc["paths"]["/v1/vhosts/{vhost}/apps/{app}:records"]
    assert doc["components"]["securitySchemes"]["basicAuth"] == {
        **doc["components"]["securitySchemes"]["basicAuth"], "type": "http", "scheme": "basic"}
    err(api.get(OPENAPI_PATH, headers=NO_AUTH), 401, "Authorization header is required to call API")


def test_openapi_refs_resolve_and_schemas_are_supported():
    """Every $ref points somewhere, and every schema uses only what the validator checks."""
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(OPENAPI)
    for name, schema in OPENAPI["components"]["schemas"].items():
        assert not [e for e in schema_errors(None, schema) if "not supported" in e], name
    task = {"id": "a", "vhost": "v", "app": "p", "state": "ready", "isConfig": False,
            "createdTime": "2023-03-15T21:15:20.113+09:00",
            "stream": {"name": "s", "trackIds": [], "variantNames": []}}
    assert not schema_errors(task, {"$ref": "#/components/schemas/Task"})
    assert schema_errors({**task, "createdTime": "2023-03-15T12:15:20.113Z"},
                         {"$ref": "#/components/schemas/Task"})
    assert schema_errors({**task, "state": "Started"}, {"$ref": "#/components/schemas/Task"})


# --- a real server on loopback -------------------------------------------------------------

@pytest.mark.timeout(60)
def test_real_waitress_server(manager, config):
    server = waitress.create_server(create_app(manager, config), host="127.0.0.1", port=0,
                                    threads=2)
    thread = threading.Thread(target=server.run, name="waitress-test", daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)

    def call(method, path, body=None, headers=AUTH):
        raw = None if body is None else json.dumps(body).encode()
        hdrs = dict(headers)
        if raw is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=raw, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        check_response(method, path, resp.status, dict(resp.getheaders()), data)
        return resp, (json.loads(data) if data else None)

    try:
        resp, doc = call("GET", RECORDS, headers=NO_AUTH)
        assert resp.status == 401
        assert resp.getheader("WWW-Authenticate") == 'Basic realm="OvenMediaEngine"'
        assert doc["message"] == "[HTTP] Authorization header is required to call API (401)"
        resp, doc = call("GET", RECORDS, headers={"Authorization": basic("user:wrong")})
        assert (resp.status, doc["message"]) == (401, "[HTTP] Invalid credential (401)")

        resp, doc = call("POST", START, {"id": "live1", "stream": {"name": "cam"},
                                         "interval": 60000})
        assert resp.status == 200
        assert resp.getheader("Content-Type") == JSON_CONTENT_TYPE
        assert doc["response"]["state"] == "ready" and doc["response"]["interval"] == 60000
        resp, doc = call("POST", START, {"id": "live1", "stream": {"name": "cam"}})
        assert (resp.status, doc["message"]) == (409, "[HTTP] Duplicate ID already exists (409)")
        resp, doc = call("GET", RECORDS)
        assert [t["id"] for t in doc["response"]] == ["live1"]
        resp, doc = call("POST", STOP, {"id": "live1"})
        assert resp.status == 200 and doc["response"]["id"] == "live1"
        resp, doc = call("POST", RECORDS, {})
        assert doc["response"] == []
        resp, doc = call("GET", "/nowhere")
        assert (resp.status, doc["message"]) == (404, "[HTTP] Controller not found (404)")
        resp, doc = call("OPTIONS", START, headers={"Origin": "http://localhost:3000"})
        assert resp.status == 204
        assert resp.getheader("Access-Control-Allow-Origin") == "http://localhost:3000"
    finally:
        conn.close()
        server.close()
        thread.join(10)
        server.task_dispatcher.shutdown()
    assert not thread.is_alive()
