"""The recordings catalog and its API (lifecycle spec section 3), with real ffmpeg pushes
driven through the Record API: rows match the files (bytes, sha256, durations), filters and
cursor paging, byte-range downloads, delete (file.deleted, 409 while recording), bad query
values, and the start-up reconcile (a file added by hand appears, a vanished one is missing).
Every JSON answer is checked against pyrec/openapi.json."""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import media
from pyrec.api_recordings import parse_range
from pyrec.catalog import SCHEMA_VERSION
from pyrec.config import load_config
from pyrec.events import Event
from pyrec.repair import is_finalized
from test_api_conformance import check_response
from test_crash import _run_and_kill
from test_service_e2e import (TIME_RE, TOKEN, clip4, publish, read_rec,  # noqa: F401
                              service)

pytestmark = pytest.mark.timeout(120)

AUTH = "Basic " + base64.b64encode(TOKEN.encode()).decode()
BASE = "/v1/vhosts/default/apps/app/recordings"
KEYS = {"id", "vhost", "app", "stream", "taskId", "sequence", "path", "startTime",
        "durationMs", "bytes", "state", "recovered", "tracks", "local"}


def _config(tmp_path):
    return load_config(None, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN,
                       record_root=str(tmp_path / "rec"))


def call(port: int, method: str, path: str, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers={"Authorization": AUTH, **(headers or {})})
        r = conn.getresponse()
        body = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if hdrs.get("content-type", "").startswith("application/json"):
            check_response(method, path.split("?")[0], r.status, hdrs, body)
        return r.status, hdrs, body
    finally:
        conn.close()


def ok(port: int, method: str, path: str) -> Any:
    status, _h, body = call(port, method, path)
    assert status == 200, body
    return json.loads(body)["response"]


def err(port: int, method: str, path: str, status: int) -> str:
    got, _h, body = call(port, method, path)
    assert got == status, body
    return json.loads(body)["message"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_hashed(run, ids: list[str], timeout: float = 20) -> list[dict]:
    """The rows of `ids` once every one has its sha256 (computed after file.finished)."""
    end = time.monotonic() + timeout
    while True:
        rows = [ok(run.svc.api_port, "GET", f"{BASE}/{i}") for i in ids]
        if all("sha256" in r for r in rows):
            return rows
        assert time.monotonic() < end, f"no sha256 after {timeout}s: {rows}"
        time.sleep(0.05)


def list_all(port: int, query: str = "") -> list[dict]:
    return ok(port, "GET", f"{BASE}?{query}")["recordings"]


class Deleted:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, ev: Event) -> None:
        self.events.append(ev.to_dict())


@pytest.fixture
def split_run(service, publish, clip4, tmp_path):
    """A 4 s push recorded by task "cat" with 1 s splits, stopped: several finished files."""
    run = service(_config(tmp_path))
    run.api.start("cat", "cam", interval=1000)
    p = publish(clip4, run.url("cam"))
    run.api.wait("cat", lambda t: t.get("sequence", 0) >= 2, "past two splits", timeout=20)
    run.api.stop("cat")
    media.rtmp_wait(p)
    run.svc.bus.flush()
    assert run.api.records() == []  # the stopped task is gone from the Record API
    return run


def test_rows_match_files_and_survive_the_stop(split_run, clip4):
    run = split_run
    port = run.svc.api_port
    rows = list_all(port)
    assert len(rows) >= 3, rows
    rows = wait_hashed(run, [r["id"] for r in rows])
    assert [r["startTime"] for r in rows] == sorted(r["startTime"] for r in rows)
    # the task is gone (split_run): its rows remain; together they are every file it wrote
    assert sorted(r["path"] for r in rows) == sorted(
        str(p.relative_to(run.root)) for p in run.root.rglob("*.mp4"))
    for i, r in enumerate(rows):
        assert set(r) == KEYS | {"finishTime", "sha256"}, r
        assert (r["vhost"], r["app"], r["stream"], r["taskId"], r["state"], r["recovered"],
                r["local"]) == ("default", "app", "cam", "cat", "finished", False, True)
        assert r["sequence"] == i
        assert TIME_RE.match(r["startTime"]) and TIME_RE.match(r["finishTime"])
        path = run.root / r["path"]
        assert not os.path.isabs(r["path"]) and path.is_file()
        assert r["bytes"] == path.stat().st_size
        assert r["sha256"] == sha(path)
        rec = read_rec(path, clip4)  # a real recording: its content as the clip's
        assert abs(float(rec.span_ms()) - r["durationMs"]) <= 100, (rec.span_ms(), r)
        assert {(t["kind"], t["codec"]) for t in r["tracks"]} >= {("video", "h264")}, r
    # the same row by id; the stop did not remove anything
    assert ok(port, "GET", f"{BASE}/{rows[0]['id']}") == rows[0]


def test_filters_and_cursor_paging(split_run):
    run = split_run
    port = run.svc.api_port
    rows = list_all(port)
    n = len(rows)
    # paging with limit=1 and the cursor gives every row once, in startTime order
    seen, cursor = [], None
    while True:
        page = ok(port, "GET", f"{BASE}?limit=1" + (f"&cursor={cursor}" if cursor else ""))
        seen += page["recordings"]
        assert len(page["recordings"]) <= 1
        cursor = page["next"]
        if cursor is None:
            break
    assert [r["id"] for r in seen] == [r["id"] for r in rows]
    assert ok(port, "GET", f"{BASE}?limit={n}")["next"] is None
    assert ok(port, "GET", f"{BASE}?limit={n - 1}")["next"] is not None
    # equality filters
    assert len(list_all(port, "stream=cam")) == n
    assert list_all(port, "stream=other") == []
    assert len(list_all(port, "taskId=cat")) == n
    assert list_all(port, "taskId=nope") == []
    assert len(list_all(port, "state=finished")) == n
    assert list_all(port, "state=recording") == []
    # time overlap: [from, to] around the second file's span holds it (and its neighbours
    # only where they touch it)
    mid = rows[1]
    got = list_all(port, f"from={mid['startTime'].replace('+', '%2B')}"
                         f"&to={mid['finishTime'].replace('+', '%2B')}")
    assert mid["id"] in [r["id"] for r in got]
    assert rows[0]["id"] not in [r["id"] for r in got] or \
        rows[0]["finishTime"] >= mid["startTime"]
    after_all = rows[-1]["finishTime"].replace("+", "%2B")
    # `from` = the last file's end: the files ending then or later (a split's previous file
    # can end as late as its short successor)
    late = [r["id"] for r in rows if r["finishTime"] >= rows[-1]["finishTime"]]
    assert rows[-1]["id"] in late and len(late) < n
    assert [r["id"] for r in list_all(port, f"from={after_all}")] == late
    # an offset's "+" sent unencoded (a space to the server) means the same time
    assert list_all(port, f"from={rows[-1]['finishTime']}") == \
        list_all(port, f"from={after_all}")
    before = rows[0]["startTime"].replace("+", "%2B")
    early = [r["id"] for r in rows if r["startTime"] <= rows[0]["startTime"]]
    assert [r["id"] for r in list_all(port, f"to={before}")] == early == [rows[0]["id"]]


@pytest.mark.parametrize("query,field", [
    ("from=yesterday", "from"), ("from=2026-12-01T06:00:00+0x", "from"),
    ("to=2026-13-01T00:00:00", "to"), ("limit=0", "limit"),
    ("limit=1001", "limit"), ("limit=ten", "limit"), ("state=gone", "state"),
    ("cursor=%21%21", "cursor"),
])
def test_bad_query_values_name_the_field(service, tmp_path, query, field):
    run = service(_config(tmp_path))
    msg = err(run.svc.api_port, "GET", f"{BASE}?{query}", 400)
    assert f"[{field}]" in msg, msg


def test_unknown_app_recording_and_route_coexistence(service, tmp_path):
    run = service(_config(tmp_path))
    port = run.svc.api_port
    assert "default/nope" in err(port, "GET", "/v1/vhosts/default/apps/nope/recordings", 404)
    assert "[r-1]" in err(port, "GET", f"{BASE}/r-1", 404)
    assert "[r-1]" in err(port, "GET", f"{BASE}/r-1/file", 404)
    assert "[r-1]" in err(port, "DELETE", f"{BASE}/r-1", 404)
    # the Record API's {app}:{action} routes still answer beside /recordings
    assert run.api.records() == []
    assert ok(port, "GET", BASE) == {"recordings": [], "next": None}
    status, _h, _b = call(port, "GET", BASE, headers={"Authorization": "Basic eDp5"})
    assert status == 401


RANGES = [  # (Range header, first, last) against a file of `size` bytes; None: 416
    ("bytes=0-99", 0, 99), ("bytes=100-", 100, -1), ("bytes=-500", -500, -1),
    ("bytes=10-10", 10, 10), ("bytes=0-99999999", 0, -1),
]


def test_parse_range_table():
    for header, want in [("bytes=0-9", (0, 9)), ("bytes=5-", (5, 99)), ("bytes=-10", (90, 99)),
                         ("bytes=-1000", (0, 99)), ("bytes=95-200", (95, 99)),
                         ("bytes=100-", None), ("bytes=9-3", None), ("bytes=-0", None),
                         ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=-", None)]:
        assert parse_range(header, 100) == want, header


def test_download_full_and_ranges(split_run):
    run = split_run
    port = run.svc.api_port
    r = list_all(port)[0]
    path = run.root / r["path"]
    data = path.read_bytes()
    size = len(data)
    status, h, body = call(port, "GET", f"{BASE}/{r['id']}/file")
    assert (status, h["content-type"], h["accept-ranges"]) == (200, "video/mp4", "bytes")
    assert body == data and int(h["content-length"]) == size
    for header, first, last in RANGES:
        a = first if first >= 0 else size + first
        b = min(size - 1, last if last >= 0 else size + last)
        status, h, body = call(port, "GET", f"{BASE}/{r['id']}/file", {"Range": header})
        assert status == 206, header
        assert h["content-range"] == f"bytes {a}-{b}/{size}", header
        assert body == data[a:b + 1], header
    status, h, body = call(port, "GET", f"{BASE}/{r['id']}/file", {"Range": f"bytes={size}-"})
    assert status == 416 and h["content-range"] == f"bytes */{size}"
    assert json.loads(body)["statusCode"] == 416


def test_delete_removes_file_and_emits_file_deleted(split_run):
    run = split_run
    port = run.svc.api_port
    seen = Deleted()
    run.svc.bus.subscribe(seen, ["file.deleted"])
    r = list_all(port)[0]
    path = run.root / r["path"]
    assert path.exists()
    out = ok(port, "DELETE", f"{BASE}/{r['id']}")
    assert (out["id"], out["state"], out["local"]) == (r["id"], "deleted", False)
    assert not path.exists()
    run.svc.bus.flush()
    assert len(seen.events) == 1
    ev = seen.events[0]
    assert (ev["type"], ev["stream"], ev["data"]["reason"]) == ("file.deleted", "cam", "api")
    assert ev["data"]["recording"]["id"] == r["id"]
    assert ok(port, "GET", f"{BASE}/{r['id']}")["state"] == "deleted"
    assert "not on local disk" in err(port, "GET", f"{BASE}/{r['id']}/file", 404)
    assert [x["id"] for x in list_all(port, "state=deleted")] == [r["id"]]
    # deleting it again answers the row and tells nobody twice
    assert ok(port, "DELETE", f"{BASE}/{r['id']}")["state"] == "deleted"
    run.svc.bus.flush()
    assert len(seen.events) == 1


def test_delete_while_recording_is_409(service, publish, clip4, tmp_path):
    run = service(_config(tmp_path))
    port = run.svc.api_port
    # the catalog is subscribed before the webhook outbox, so a receiver told of file.finished
    # finds the row finished; a subscriber added now (after both) sees the same
    subs = [fn for _types, fn in run.svc.bus._subs]
    assert subs.index(run.svc.catalog) < subs.index(run.svc.webhooks)
    at_finish: list[dict | None] = []
    run.svc.bus.subscribe(lambda ev: at_finish.append(run.svc.catalog.get(
        "default", "app", ev.recording.id)), ["file.finished"])
    run.api.start("live", "cam")
    p = publish(clip4, run.url("cam"))
    run.api.wait("live", lambda t: "sequence" in t, "recording a file", timeout=20)
    run.svc.bus.flush()
    rows = list_all(port, "state=recording")
    assert len(rows) == 1 and "finishTime" not in rows[0] and "sha256" not in rows[0]
    rid = rows[0]["id"]
    assert "still being written" in err(port, "DELETE", f"{BASE}/{rid}", 409)
    assert (run.root / rows[0]["path"]).exists()
    run.api.stop("live")
    media.rtmp_wait(p)
    run.svc.bus.flush()
    row = wait_hashed(run, [rid])[0]
    assert row["state"] == "finished" and row["sha256"] == sha(run.root / row["path"])
    assert len(at_finish) == 1 and at_finish[0] is not None
    assert (at_finish[0]["id"], at_finish[0]["state"]) == (rid, "finished")


def test_restart_reconcile(split_run, service, tmp_path):
    run = split_run
    port = run.svc.api_port
    rows = wait_hashed(run, [r["id"] for r in list_all(port)])
    run.stop()
    gone = run.root / rows[0]["path"]
    gone.unlink()
    extra = run.root / "by-hand" / "copy.mp4"
    extra.parent.mkdir()
    shutil.copyfile(run.root / rows[1]["path"], extra)
    (run.root / "notes.txt").write_text("not a recording")
    # a row the server left "recording" (it died; no task claimed the file): the restart
    # finds the finalised file and finishes the row from what the disk holds
    db = sqlite3.connect(run.svc.catalog.path)
    with db:
        db.execute("UPDATE recordings SET state='recording', finish_time=NULL, "
                   "finish_us=NULL, sha256=NULL WHERE id=?", (rows[2]["id"],))
        # and one whose hash the last run did not get to: hashed at the start
        db.execute("UPDATE recordings SET sha256=NULL WHERE id=?", (rows[1]["id"],))
    db.close()

    run2 = service(_config(tmp_path))
    port2 = run2.svc.api_port
    after = {r["id"]: r for r in list_all(port2)}
    assert after[rows[0]["id"]]["state"] == "missing"
    assert after[rows[0]["id"]]["local"] is False
    for r in rows[1:]:
        assert after[r["id"]]["state"] == "finished", after[r["id"]]
    reopened = wait_hashed(run2, [rows[2]["id"]])[0]
    assert {k: reopened[k] for k in ("sha256", "bytes", "startTime", "stream", "taskId",
                                     "sequence", "tracks")} == \
        {k: rows[2][k] for k in ("sha256", "bytes", "startTime", "stream", "taskId",
                                 "sequence", "tracks")}
    assert "finishTime" in reopened
    assert wait_hashed(run2, [rows[1]["id"]])[0]["sha256"] == rows[1]["sha256"]
    for r in rows[1:]:
        assert after[r["id"]].get("sha256", r["sha256"]) == r["sha256"]
    added = [r for r in after.values() if r["path"] == "by-hand/copy.mp4"]
    assert len(added) == 1, after
    new = wait_hashed(run2, [added[0]["id"]])[0]
    assert (new["state"], new["recovered"], new["bytes"]) == (
        "finished", False, extra.stat().st_size)
    assert new["sha256"] == rows[1]["sha256"]
    assert abs(new["durationMs"] - rows[1]["durationMs"]) <= 50
    assert len(after) == len(rows) + 1  # notes.txt is no recording
    # the schema version is recorded in the catalog's own database
    db = sqlite3.connect(run2.svc.catalog.path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()
    # a second start adds nothing more (ids are stable)
    run2.stop()
    run3 = service(_config(tmp_path))
    assert {r["id"] for r in list_all(run3.svc.api_port)} == set(after)


def test_file_left_by_a_crash_appears_recovered(service, clip4, tmp_path):
    """A file a killed recorder left open under the root: the start-up scan finalises it and
    the catalog lists it as recovered, with its bytes and sha256 after the repair."""
    rec_root = tmp_path / "rec"
    rec_root.mkdir()
    out = rec_root / "crashed.mp4"
    _run_and_kill(tmp_path, clip4.path, str(out), part_ms=500, interval_ms=0, stop_s=2)
    assert not is_finalized(out)
    run = service(_config(tmp_path))
    assert is_finalized(out)
    rows = list_all(run.svc.api_port)
    assert len(rows) == 1, rows
    row = wait_hashed(run, [rows[0]["id"]])[0]
    assert (row["path"], row["state"], row["recovered"], row["local"]) == (
        "crashed.mp4", "recovered", True, True)
    assert row["bytes"] == out.stat().st_size and row["sha256"] == sha(out)
    rec = read_rec(out, clip4)  # what it plays: the fragments written before the kill
    assert rec.count("video") > 0
    assert abs(float(rec.span_ms()) - row["durationMs"]) <= 100, (rec.span_ms(), row)
    assert [r["id"] for r in list_all(run.svc.api_port, "state=recovered")] == [row["id"]]
