"""Property-based fuzzing of the Record API against its OpenAPI description (our equivalent of
schemathesis, with hypothesis): arbitrary JSON bodies — right keys with wrong types, nested
junk, huge numbers, unicode — on every operation, and arbitrary paths and methods. Properties:
no 500 ever, every response is one the OpenAPI document describes (status, headers, schema),
and state stays consistent (a started id is listed; a stopped one is gone)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_api_conformance import AUTH, Api, check_response, schema_errors  # the OpenAPI checker

from pyrec.api import create_app
from pyrec.config import load_config
from pyrec.tasks import TaskManager

BASE = "/v1/vhosts/default/apps/app"
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
junk = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
templates = st.sampled_from(["${Stream}/${Sequence}.mp4", "../x.mp4", "a.ts", "/abs/${Id}.mp4",
                             "${EndTime:YYYY}/${StartTime:hh-mm}.mp4", "", "x" * 300 + ".mp4",
                             "${Unknown}.m4v", "a/./b/../c.mp4"])
stream_obj = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.text(max_size=20), junk),
    "variantNames": st.one_of(st.lists(st.text(max_size=12), max_size=3), junk),
    "trackIds": st.one_of(st.lists(st.integers(-3, 40), max_size=3), junk),
    "tracks": st.one_of(st.lists(st.integers(-3, 40), max_size=3), junk)})
start_body = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.text(max_size=20), junk),
    "stream": st.one_of(stream_obj, junk),
    "interval": st.one_of(st.integers(-10, 10**12), st.floats(allow_nan=False), junk),
    "schedule": st.one_of(st.sampled_from(["0 */1 *", "*/5 * *", "0 0 0", "61 * *", "a b c",
                                           "0 0", "1-5,7 */2 *", "0 0 */25", "0 0 */23",
                                           "59 59 23", "0 60 0", "*/60 * *", "0-59/59 * *"]),
                          junk),
    "segmentationRule": st.one_of(st.sampled_from(["continuity", "discontinuity", "x"]), junk),
    "filePath": st.one_of(templates, junk),
    "infoPath": st.one_of(templates, junk),
    "metadata": st.one_of(st.text(max_size=30), junk),
    "extra": junk})


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    cfg = load_config(None, access_token="user:pass",
                      record_root=str(tmp_path_factory.mktemp("fuzz")))
    mgr = TaskManager(cfg)
    yield Api(create_app(mgr, cfg))
    mgr.close()


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


KNOWN_BAD_SCHEDULES = {"61 * *", "a b c", "0 0"}


def _nonfinite(v: Any) -> bool:
    if isinstance(v, float):
        return v != v or v in (float("inf"), float("-inf"))
    if isinstance(v, dict):
        return any(_nonfinite(x) for x in v.values())
    if isinstance(v, list):
        return any(_nonfinite(x) for x in v)
    return False


def start_must_fail(body: Any) -> str | None:
    """What a :startRecord body is refused for (a part of the 400 message), or None when it
    may be accepted (200), be a duplicate (409) or still fail on its path templates (400).
    An independent oracle: the API must not accept what the contract refuses."""
    if not isinstance(body, dict) or _nonfinite(body):  # json.dumps writes Infinity: not JSON
        return "[JSON]"
    rid, stream = body.get("id"), body.get("stream")
    name = stream.get("name") if isinstance(stream, dict) else None
    if rid in (None, "") or name in (None, ""):
        return "There is no required parameter"
    if not isinstance(rid, str):
        return "[id]"
    if not isinstance(name, str):
        return "[stream.name]"
    if body.get("interval") is not None and body.get("schedule") is not None:
        return "[Interval] and [Schedule]"
    sch = body.get("schedule")
    if sch is not None and (not isinstance(sch, str) or sch in KNOWN_BAD_SCHEDULES):
        return "[schedule]"
    iv = body.get("interval")
    if iv is not None and (isinstance(iv, bool) or not isinstance(iv, (int, float))
                           or (isinstance(iv, float) and not iv.is_integer()) or iv < 0):
        return "[interval]"
    rule = body.get("segmentationRule")
    if rule is not None and rule not in ("continuity", "discontinuity"):
        return "[segmentationRule]"
    for key in ("filePath", "infoPath", "metadata"):
        if body.get(key) is not None and not isinstance(body[key], str):
            return f"[{key}]"
    vn = stream.get("variantNames")
    if vn is not None and (not isinstance(vn, list) or not all(isinstance(v, str) for v in vn)):
        return "[stream.variantNames]"
    return None


def check_verdict(r: Any, body: Any) -> None:
    why = start_must_fail(body)
    if why is None:
        assert r.status_code in (200, 400, 409), (r.status_code, r.json)
    else:
        assert r.status_code == 400, (why, body, r.status_code, r.json)
        msg = r.json["message"]
        if why in ("[JSON]", "There is no required parameter", "[Interval] and [Schedule]"):
            assert why in msg, (why, msg)  # the contract's first checks, in its order
        else:  # "then types and values": which one is named first is the API's choice
            assert "Invalid [" in msg, (why, msg)


@FUZZ
@given(body=start_body)
def test_start_record_bodies(api, body):
    r = api.post(f"{BASE}:startRecord", body)  # checks status/schema against OpenAPI
    check_verdict(r, body)
    if r.status_code == 200:
        task = r.json["response"]
        listed = api.post(f"{BASE}:records", {"id": task["id"]}).json["response"]
        assert [t["id"] for t in listed] == [task["id"]]
        assert api.post(f"{BASE}:stopRecord", {"id": task["id"]}).status_code == 200
        assert api.post(f"{BASE}:records", {"id": task["id"]}).json["response"] == []


@FUZZ
@given(body=start_body)
def test_schema_and_server_agree(api, body):
    """The OpenAPI request schema accepts exactly what the server accepts. The one check a
    schema cannot express is a macro-expanded path leaving the root; it is told apart by its
    message."""
    r = api.post(f"{BASE}:startRecord", body)
    refused = r.status_code != 200
    if refused and "leaves the application's root" in r.json["message"]:
        return
    problems = schema_errors(body, {"$ref": "#/components/schemas/StartRecordRequest"})
    assert refused == bool(problems), (r.json, problems)
    if not refused:
        assert api.post(f"{BASE}:stopRecord", {"id": body["id"]}).status_code == 200


@FUZZ
@given(action=st.sampled_from(["stopRecord", "records"]), body=st.one_of(junk, start_body))
def test_other_actions_any_body(api, action, body):
    r = api.post(f"{BASE}:{action}", body)
    if body is None:  # sent as an empty body, which is {}
        body = {}
    if not isinstance(body, dict) or _nonfinite(body):
        assert r.status_code == 400 and "[JSON]" in r.json["message"], r.json
    elif action == "records":  # any object filters (an unknown id lists nothing)
        assert r.status_code == 200, r.json
    elif body.get("id") in (None, "") or not isinstance(body["id"], str):
        assert r.status_code == 400, r.json
    else:  # nobody started that id (the fuzzers stop what they start)
        assert r.status_code in (200, 404), r.json


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_raw_bytes_as_body(api, raw):
    r = api.request("POST", f"{BASE}:startRecord", raw=raw)
    try:  # an empty body is {}; NaN/Infinity are not JSON
        body = json.loads(raw.decode("utf-8-sig"), parse_constant=float.fromhex) \
            if raw.strip() else {}
    except ValueError:  # not JSON at all (or not UTF-8): refused as such, never accepted
        assert r.status_code == 400 and "[JSON]" in r.json["message"], r.json
        return
    check_verdict(r, body)
    if r.status_code == 200:
        api.post(f"{BASE}:stopRecord", {"id": body["id"]})


segment = st.text(st.characters(codec="ascii", exclude_characters="/?#%\\\x00"), max_size=12)


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       parts=st.lists(segment, max_size=6))
def test_any_path_and_method(api, method, parts):
    path = "/" + "/".join(parts)
    r = api.client.simulate_request(method, path, headers=AUTH, body=json.dumps({}))
    check_response(method, path, r.status_code, dict(r.headers), r.content)
    assert r.status_code in (200, 204, 400, 404)


def test_examples_run(api):
    """The fuzzers above ran against a working app (a sanity anchor for the properties)."""
    ok: Any = api.post(f"{BASE}:records", {}).json
    assert ok["statusCode"] == 200
