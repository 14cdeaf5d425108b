"""Each :startRecord parameter at and just past the edge of what the contract accepts (a table:
the value, and the parameter the 400 must name), and concurrent :stopRecord calls on one
recording task: exactly one answers 200 with the finished file, the others 404."""
from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from typing import Any

import pytest

from test_api_conformance import Api  # the OpenAPI-checked test client

import media
from pyrec.api import create_app
from pyrec.config import load_config
from pyrec.tasks import TaskManager

BASE = "/v1/vhosts/default/apps/app"
TOKEN = "user:pass"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    cfg = load_config(None, access_token=TOKEN, record_root=str(tmp_path_factory.mktemp("v")))
    mgr = TaskManager(cfg)
    yield Api(create_app(mgr, cfg))
    mgr.close()


REFUSED = [
    # (field, value, the parameter named in the message)
    ("interval", -1, "interval"),
    ("interval", -5, "interval"),
    ("interval", 1.5, "interval"),
    ("interval", "1000", "interval"),
    ("interval", True, "interval"),
    ("schedule", "60 * *", "schedule"),
    ("schedule", "* 60 *", "schedule"),
    ("schedule", "* * 24", "schedule"),
    ("schedule", "0 0", "schedule"),
    ("schedule", "0 0 0 0", "schedule"),
    ("schedule", "*/0 * *", "schedule"),
    ("schedule", 5, "schedule"),
    ("segmentationRule", "Continuity", "segmentationRule"),
    ("segmentationRule", 1, "segmentationRule"),
    ("filePath", 5, "filePath"),
    ("infoPath", ["a"], "infoPath"),
    ("metadata", {"a": 1}, "metadata"),
    ("id", 5, "id"),
    ("variantNames", "bypass_video", "stream.variantNames"),
    ("variantNames", [1], "stream.variantNames"),
    ("trackIds", ["0"], "stream.trackIds"),
    ("trackIds", [1.5], "stream.trackIds"),
    ("trackIds", 0, "stream.trackIds"),
]
ACCEPTED = [
    ("interval", 0), ("interval", 1), ("interval", 3_600_000), ("interval", 2000.0),
    ("schedule", "59 59 23"), ("schedule", "0 0 0"), ("schedule", "*/30 * *"),
    ("segmentationRule", "continuity"), ("segmentationRule", "discontinuity"),
    ("trackIds", [0, 1]), ("variantNames", ["bypass_video"]),
]


def body_with(field: str, value: Any, rid: str) -> dict:
    body: dict[str, Any] = {"id": rid, "stream": {"name": "s"}}
    if field in ("variantNames", "trackIds"):
        body["stream"][field] = value
    else:
        body[field] = value
    return body


@pytest.mark.parametrize("field, value, named", REFUSED)
def test_refused_values_name_their_parameter(api, field, value, named):
    r = api.post(f"{BASE}:startRecord", body_with(field, value, f"r-{field}"))
    assert r.status_code == 400, (field, value, r.json)
    assert f"[{named}]".lower() in r.json["message"].lower(), r.json["message"]
    assert api.post(f"{BASE}:records", {}).json["response"] == []  # nothing was created


@pytest.mark.parametrize("field, value", ACCEPTED)
def test_edge_values_are_accepted(api, field, value):
    rid = f"a-{field}-{value}"
    r = api.post(f"{BASE}:startRecord", body_with(field, value, rid))
    assert r.status_code == 200, (field, value, r.json)
    assert api.post(f"{BASE}:stopRecord", {"id": rid}).status_code == 200


def test_concurrent_stops_finish_once(clips, tmp_path):
    """Six :stopRecord calls at once on a task that is recording: one 200 (after the file is
    finished), five 404 ("no record information"): a task is never stopped twice."""
    from pyrec.serve import Service

    clip = clips.flv("stops", seconds=6.0)
    cfg = load_config(None, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN,
                      record_root=str(tmp_path / "rec"))
    svc = Service(cfg)
    svc.start()
    p = None
    try:
        def call(action: str, body: dict) -> tuple[int, dict]:
            c = http.client.HTTPConnection("127.0.0.1", svc.api_port, timeout=30)
            auth = base64.b64encode(TOKEN.encode()).decode()
            c.request("POST", f"{BASE}:{action}", body=json.dumps(body),
                      headers={"Authorization": f"Basic {auth}"})
            r = c.getresponse()
            doc = json.loads(r.read())
            c.close()
            return r.status, doc

        assert call("startRecord", {"id": "t", "stream": {"name": "cam"}})[0] == 200
        p = media.rtmp_publish(clip.path, f"rtmp://127.0.0.1:{svc.rtmp_port}/app/cam")
        deadline = time.monotonic() + 20
        while True:
            t = call("records", {"id": "t"})[1]["response"][0]
            if t["state"] == "recording" and t.get("recordTime", 0) >= 1000:
                break
            assert time.monotonic() < deadline, t
            time.sleep(0.05)
        results: list[tuple[int, dict]] = []
        go = threading.Barrier(6)

        def stop() -> None:
            go.wait()
            results.append(call("stopRecord", {"id": "t"}))

        threads = [threading.Thread(target=stop) for _ in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        codes = sorted(s for s, _ in results)
        assert codes == [200, 404, 404, 404, 404, 404], [(s, d.get("message")) for s, d in results]
        done = next(d["response"] for s, d in results if s == 200)
        assert done["state"] in ("stopped", "stopping") and done["totalRecordBytes"] > 0, done
        assert call("records", {})[1]["response"] == []
    finally:
        if p is not None:
            p.kill()
            p.communicate()
        svc.stop()
