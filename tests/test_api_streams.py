"""The OME-compatible stream and stats APIs (lifecycle.md section 7, ome-api.md) end to end: an
in-process `pyrec.serve.Service`, a real ffmpeg publisher over RTMP (320x240 H.264 + AAC
44.1 kHz stereo, pushed with -c copy), every route called over loopback with http.client and
each response validated against pyrec/openapi.json (tests/test_api_conformance.py)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
from typing import Any

import pytest

import media
from test_api_conformance import check_response
from pyrec.config import load_config
from pyrec.serve import Service

TOKEN = "user:pass"
AUTH = {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()}
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")
STATS_KEYS = {"createdTime", "lastUpdatedTime", "lastRecvTime", "lastSentTime", "totalBytesIn",
              "totalBytesOut", "avgThroughputIn", "avgThroughputOut", "maxThroughputIn",
              "maxThroughputOut", "lastThroughputIn", "lastThroughputOut", "totalConnections",
              "maxTotalConnections", "maxTotalConnectionTime", "connections"}

pytestmark = pytest.mark.timeout(120)


def call(port: int, method: str, path: str, headers: dict[str, str] | None = None,
         body: Any = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        raw = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=raw, headers=AUTH if headers is None else headers)
        r = conn.getresponse()
        data = r.read()
        check_response(method, path, r.status, dict(r.getheaders()), data)
        return r.status, json.loads(data)
    finally:
        conn.close()


def ok(port: int, path: str, method: str = "GET") -> Any:
    status, doc = call(port, method, path)
    assert status == 200 and doc["statusCode"] == 200 and doc["message"] == "OK", doc
    return doc.get("response")


@pytest.fixture
def svc(tmp_path):
    cfg = load_config(None, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN,
                      record_root=str(tmp_path / "rec"))
    s = Service(cfg).start()
    yield s
    s.stop()


def wait_for(pred, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_stream_and_stats_routes_with_a_live_publisher(svc, clips, tmp_path):
    clip = clips.flv("omeapi10", seconds=10, gop=30)  # 320x240, 30 fps, AAC 44.1 kHz stereo
    port = svc.api_port
    base = "/v1/vhosts/default/apps/app"

    # nothing live yet
    assert ok(port, "/v1/vhosts") == ["default"]
    vh = ok(port, "/v1/vhosts/default")
    assert vh["name"] == "default" and vh["host"]["names"] == ["*"]
    assert ok(port, "/v1/vhosts/default/apps") == ["app"]
    assert ok(port, base) == {"name": "app", "type": "live", "dynamic": False}
    assert ok(port, base + "/streams") == []
    idle = ok(port, "/v1/stats/current")
    assert set(idle) == STATS_KEYS and idle["totalBytesIn"] == 0

    # a recording task waiting for the stream, then the publisher
    status, doc = call(port, "POST", base + ":startRecord", body={"id": "r1", "stream": {"name": "s1"}})
    assert status == 200, doc
    pub = media.rtmp_publish(clip.path, f"rtmp://127.0.0.1:{svc.rtmp_port}/app/s1")
    try:
        wait_for(lambda: ok(port, base + "/streams") == ["s1"], "the stream listed")
        info = ok(port, base + "/streams/s1")
        assert info["name"] == "s1" and info["outputs"] == []
        inp = info["input"]
        assert inp["sourceType"] == "Rtmp" and TIME_RE.match(inp["createdTime"])
        live = svc.registry.find("default", "app", "s1")
        assert live is not None
        # the publisher's own address: its ephemeral port is the peer of our listener
        m = re.fullmatch(r"TCP://127\.0\.0\.1:(\d+)", inp["sourceUrl"])
        assert m and inp["sourceUrl"] == f"TCP://{live.peer}", inp["sourceUrl"]
        assert int(m.group(1)) != svc.rtmp_port
        tracks = {t["type"]: t for t in inp["tracks"]}
        assert set(tracks) == {"Video", "Audio"}
        v, a = tracks["Video"], tracks["Audio"]
        assert v["name"] == "bypass_video" and a["name"] == "bypass_audio"
        assert v["video"]["codec"] == "H264" and v["video"]["bypass"] is True
        src_v = next(s for s in clip.streams if s.kind == "video")
        assert (v["video"]["width"], v["video"]["height"]) == (320, 240) == (
            src_v.width, src_v.height)
        assert v["video"]["timebase"] == {"num": 1, "den": 1000}
        assert a["audio"]["codec"] == "AAC"
        assert (a["audio"]["samplerate"], a["audio"]["channel"]) == (44100, 2)
        # measured from the C per-track counters once two keyframes went through
        v = wait_for(lambda: next((t for t in ok(port, base + "/streams/s1")["input"]["tracks"]
                                  if t["type"] == "Video" and t["video"]["keyFrameInterval"]), None),
                     "a measured GOP")["video"]
        assert v["keyFrameInterval"] == 30  # the clip's -g 30
        assert abs(v["framerate"] - 30) < 0.5, v["framerate"]
        assert v["hasBframes"] == any(p.pts != p.dts for p in src_v.packets)
        src_a = next(s for s in clip.streams if s.kind == "audio")
        for got, truth in ((v["bitrate"], src_v), (
                next(t for t in ok(port, base + "/streams/s1")["input"]["tracks"]
                     if t["type"] == "Audio")["audio"]["bitrate"], src_a)):
            span = float(truth.seconds(truth.packets[-1].dts - truth.packets[0].dts))
            avg = sum(p.size for p in truth.packets) * 8 / span
            assert 0.5 * avg < got < 2 * avg, (truth.kind, got, avg)

        # stats at every scope; bytes grow while the publisher sends
        scopes = ["/v1/stats/current", "/v1/stats/current/vhosts/default",
                  "/v1/stats/current/vhosts/default/apps/app",
                  "/v1/stats/current/vhosts/default/apps/app/streams/s1"]
        first = [ok(port, p) for p in scopes]
        for st in first:
            assert set(st) == STATS_KEYS, st
            for k in ("createdTime", "lastUpdatedTime", "lastRecvTime", "lastSentTime",
                      "maxTotalConnectionTime"):
                assert TIME_RE.match(st[k]), (k, st[k])
            assert st["totalBytesIn"] > 0 and st["totalBytesOut"] == 0
            assert st["connections"]["file"] == 1 == st["totalConnections"]
            assert st["maxTotalConnections"] >= 1
        wait_for(lambda: ok(port, scopes[3])["totalBytesIn"] > first[3]["totalBytesIn"],
                 "the byte counter to grow")
        later = ok(port, scopes[3])
        assert later["avgThroughputIn"] > 0 and later["maxThroughputIn"] > 0

        # unknown names: the Record API's 404 texts
        for path, text in [
                ("/v1/vhosts/nope", "Could not find the virtual host: [nope]"),
                ("/v1/vhosts/nope/apps", "Could not find the virtual host: [nope]"),
                ("/v1/vhosts/default/apps/nope", "Could not find the application: [default/nope]"),
                ("/v1/vhosts/default/apps/nope/streams",
                 "Could not find the application: [default/nope]"),
                (base + "/streams/nope", "Could not find the stream: [default/app/nope]"),
                ("/v1/stats/current/vhosts/nope", "Could not find the virtual host: [nope]"),
                ("/v1/stats/current/vhosts/default/apps/nope",
                 "Could not find the application: [default/nope]"),
                ("/v1/stats/current/vhosts/default/apps/app/streams/nope",
                 "Could not find the stream: [default/app/nope]")]:
            assert call(port, "GET", path) == (404, {
                "statusCode": 404, "message": f"[HTTP] {text} (404)"}), path
        # no auth: 401 on every route
        for path in ["/v1/vhosts", base + "/streams/s1", scopes[0]]:
            status, doc = call(port, "GET", path, headers={})
            assert status == 401, (path, doc)
        # pulled streams are a later issue: POST is an unknown route
        assert call(port, "POST", base + "/streams", body={"name": "x", "urls": ["rtsp://x"]}) == (
            404, {"statusCode": 404, "message": "[HTTP] Controller not found (404)"})

        # DELETE disconnects the publisher: gone from the list, the task's file finished
        status, doc = call(port, "DELETE", base + "/streams/s1")
        assert (status, doc) == (200, {"message": "OK", "statusCode": 200})
        assert ok(port, base + "/streams") == []
        assert call(port, "DELETE", base + "/streams/s1")[0] == 404
        pub.wait(30)
        assert pub.returncode != 0  # ffmpeg saw its connection closed before the clip ended
    finally:
        if pub.poll() is None:
            pub.kill()
        pub.communicate()
    recs = ok(port, base + ":records", method="POST")
    assert len(recs) == 1 and recs[0]["state"] == "ready", recs  # waits for the stream again
    files = sorted((tmp_path / "rec").rglob("*.mp4"))
    assert files, "no file recorded"
    probed = media.probe_duration(files[0]) if hasattr(media, "probe_duration") else None
    import av
    with av.open(str(files[0])) as f:
        kinds = sorted(s.type for s in f.streams)
        assert kinds == ["audio", "video"]
        vs = f.streams.video[0]
        assert (vs.codec_context.width, vs.codec_context.height) == (320, 240)
        n = sum(1 for p in f.demux(vs) if p.size)
    assert n > 0, probed
    st = ok(port, "/v1/stats/current/vhosts/default/apps/app")
    assert st["connections"]["file"] == 0 and st["maxTotalConnections"] >= 1


@pytest.mark.parametrize("peer,url", [
    ("127.0.0.1:53312", "TCP://127.0.0.1:53312"),
    ("::1:40000", "TCP://[::1]:40000"),
    ("[2001:db8::7]:1935", "TCP://[2001:db8::7]:1935"),
    ("?", "TCP://?"),  # a peer the server could not name
])
def test_source_url(peer, url):
    from pyrec.api_streams import _source_url
    assert _source_url(peer) == url


@pytest.mark.parametrize("counters,expect", [
    (None, {"framerate": 0.0, "bitrate": 0, "gop": 0, "reordered": False}),
    # one frame: no span yet
    ({"frames": 1, "bytes": 900, "keyframes": 1, "gop_frames": 0, "first_ts": 0,
      "last_ts": 0, "reordered": False},
     {"framerate": 0.0, "bitrate": 0, "gop": 0, "reordered": False}),
    # 31 frames over 1000 ms, 125 000 bytes, one GOP of 30 seen, B-frames
    ({"frames": 31, "bytes": 125_000, "keyframes": 2, "gop_frames": 30, "first_ts": 500,
      "last_ts": 1500, "reordered": True},
     {"framerate": 30.0, "bitrate": 1_000_000, "gop": 30, "reordered": True}),
    # timestamps going backwards (a publisher's reset) give no rate rather than a negative one
    ({"frames": 5, "bytes": 10, "keyframes": 5, "gop_frames": 1, "first_ts": 900,
      "last_ts": 100, "reordered": False},
     {"framerate": 0.0, "bitrate": 0, "gop": 0, "reordered": False}),
])
def test_measures_from_counters(counters, expect):
    from pyrec.api_streams import _measures
    assert _measures(counters) == expect
