"""End to end through `pyrec.serve.Service` with real peers only: ffmpeg publishes over RTMP to
the in-process service, the Record API is called over loopback sockets with http.client and
Basic auth, and every written file is read back by our box walker (tests/boxes.py), ffprobe,
PyAV and `ffmpeg -f null`.

Clips are FLVs made by the ffmpeg CLI (testsrc2 + sine, 320x240, 30 fps, a keyframe every
second) and pushed with `-c copy`, so the payloads pyrec receives are the clip's packets byte for
byte and their timestamps are the clip's (milliseconds): a recorded sample is identified in
the clip's ground truth by its decode time and checked by its sha1."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import pytest

import boxes
import checks
import media
import probe
from pyrec.config import load_config
from pyrec.serve import Service

TOKEN = "user:pass"
AUTH = "Basic " + base64.b64encode(TOKEN.encode()).decode()
JSON_CT = "application/json;charset=UTF-8"
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")
STATES = {"ready", "recording", "stopping", "stopped", "error"}
KIND_HANDLER = {"video": "vide", "audio": "soun"}

pytestmark = pytest.mark.timeout(120)


# ---- clips ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip4(clips) -> media.Clip:
    """4 s, for real-time (-re) pushes."""
    return clips.flv("svc4", seconds=4, gop=30)


@pytest.fixture(scope="module")
def clip3(clips) -> media.Clip:
    """3 s, pushed unpaced or in real time."""
    return clips.flv("svc3", seconds=3, gop=30)


@pytest.fixture(scope="module")
def clip2(clips) -> media.Clip:
    return clips.flv("svc2", seconds=2, gop=30)


@pytest.fixture(scope="module")
def clip10(clips) -> media.Clip:
    return clips.flv("svc10", seconds=10, gop=30)


# ---- the Record API over a real socket -------------------------------------------------------

class ApiError(AssertionError):
    pass


def check_envelope(status: int, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    """Every response: JSON envelope, the right content type, statusCode == HTTP status."""
    ct = {k.lower(): v for k, v in headers.items()}.get("content-type")
    assert ct == JSON_CT, f"Content-Type {ct!r} (status {status}, body {raw[:200]!r})"
    doc = json.loads(raw)
    assert isinstance(doc, dict) and doc.get("statusCode") == status, f"envelope {doc!r}"
    if status == 200:
        assert doc["message"] == "OK" and "response" in doc, f"envelope {doc!r}"
    else:
        m = re.fullmatch(r"\[HTTP\] (.*) \((\d+)\)", doc.get("message", ""))
        assert m and int(m.group(2)) == status, f"error message {doc.get('message')!r}"
        assert "response" not in doc
    return doc


def check_task(t: dict[str, Any]) -> dict[str, Any]:
    """A task object (spec section 5): always-present keys, types, time formats."""
    for k in ("id", "vhost", "app", "state", "createdTime", "stream", "isConfig"):
        assert k in t, f"task without {k}: {t}"
    assert t["state"] in STATES, t
    assert isinstance(t["isConfig"], bool)
    assert set(t["stream"]) >= {"name", "trackIds", "variantNames"}, t["stream"]
    assert isinstance(t["stream"]["trackIds"], list)
    assert isinstance(t["stream"]["variantNames"], list)
    for k in ("createdTime", "startTime", "finishTime"):
        if k in t:
            assert TIME_RE.match(t[k]), f"{k} {t[k]!r} is not ISO-8601 with ms and an offset"
    for k in ("sequence", "recordBytes", "recordTime", "totalRecordBytes", "totalRecordTime"):
        if k in t:
            assert isinstance(t[k], int) and not isinstance(t[k], bool) and t[k] >= 0, (k, t)
    if "sequence" in t:
        assert "startTime" in t and "outputFilePath" in t, t
    for k in ("outputFilePath", "outputInfoPath"):
        if k in t:
            assert not os.path.isabs(t[k]) and ".." not in Path(t[k]).parts, t[k]
    return t


class Api:
    def __init__(self, port: int, vhost: str = "default", app: str = "app") -> None:
        self.port = port
        self.base = f"/v1/vhosts/{vhost}/apps/{app}"

    def request(self, method: str, action: str, body: Any = None,
                timeout: float = 30) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            hdrs = {"Authorization": AUTH}
            raw = None
            if body is not None:
                raw = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            conn.request(method, f"{self.base}:{action}", body=raw, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, check_envelope(resp.status, dict(resp.getheaders()), data)
        finally:
            conn.close()

    def ok(self, action: str, body: Any = None, method: str = "POST") -> Any:
        status, doc = self.request(method, action, body)
        if status != 200:
            raise ApiError(f"{action} {body}: {status} {doc['message']}")
        r = doc["response"]
        for t in r if isinstance(r, list) else [r]:
            check_task(t)
        return r

    def start(self, rid: str, stream: str, **fields: Any) -> dict[str, Any]:
        s = {"name": stream}
        for k in ("variantNames", "trackIds"):
            if k in fields:
                s[k] = fields.pop(k)
        return self.ok("startRecord", {"id": rid, "stream": s, **fields})

    def stop(self, rid: str) -> dict[str, Any]:
        return self.ok("stopRecord", {"id": rid})

    def records(self, rid: str | None = None) -> list[dict[str, Any]]:
        r = self.ok("records", {} if rid is None else {"id": rid})
        assert isinstance(r, list) and [t["id"] for t in r] == sorted(t["id"] for t in r)
        return r

    def task(self, rid: str) -> dict[str, Any]:
        r = self.records(rid)
        assert len(r) == 1, f"records({rid}) -> {r}"
        return r[0]

    def wait(self, rid: str, pred: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = 15, poll: float = 0.02) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            t = self.task(rid)
            if pred(t):
                return t
            if time.monotonic() > end:
                raise AssertionError(f"task {rid}: not {what} after {timeout}s: {t}")
            time.sleep(poll)

    def wait_state(self, rid: str, state: str, timeout: float = 15) -> dict[str, Any]:
        return self.wait(rid, lambda t: t["state"] == state, state, timeout)


# ---- the service and its publishers ---------------------------------------------------------

class FakeClock:
    """The service's wall clock, moved by the test."""

    def __init__(self, t: datetime) -> None:
        self._t = t
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._t

    def set(self, t: datetime) -> None:
        with self._lock:
            self._t = t


@dataclass
class Running:
    svc: Service
    api: Api
    root: Path
    stopped: bool = False

    def url(self, stream: str, app: str = "app") -> str:
        return f"rtmp://127.0.0.1:{self.svc.rtmp_port}/{app}/{stream}"

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.svc.stop()

    def wait_live(self, stream: str, timeout: float = 10) -> None:
        end = time.monotonic() + timeout
        while True:
            live = self.svc.ingest.find("app", stream, "default")
            if live is not None and live.ready:
                return
            assert time.monotonic() < end, f"stream {stream} not live after {timeout}s"
            time.sleep(0.01)


def _internal_errors(records) -> list[str]:
    """Log records that mean a bug rather than bad input: exceptions in waitress's request
    threads, 500s, exceptions in ingest callbacks or in the schedule ticker."""
    out = []
    for r in records:
        if r.levelno < logging.ERROR:
            continue
        if (r.name.startswith("waitress") or r.name in ("pyrec.api", "pyrec.serve")
                or (r.name == "pyrec.ingest" and "callback failed" in r.getMessage())):
            out.append(f"{r.name}: {r.getMessage()}")
    return out


@pytest.fixture
def service(tmp_path, caplog):
    """start(config=None, clock=None, tick_seconds=0.2) -> Running; all stopped at teardown,
    which also fails on internal errors logged meanwhile (see _internal_errors)."""
    started: list[Running] = []

    def start(config=None, *, clock=None, tick_seconds: float = 0.2) -> Running:
        cfg = config or load_config(None, host="127.0.0.1", api_port=0, rtmp_port=0,
                                    access_token=TOKEN, record_root=str(tmp_path / "rec"))
        svc = Service(cfg, clock=clock, tick_seconds=tick_seconds)
        run = Running(svc, Api(0), cfg.record_root)
        started.append(run)
        svc.start()
        run.api = Api(svc.api_port)
        return run

    yield start
    for run in started:
        run.stop()
    errors = _internal_errors(caplog.records)
    assert not errors, errors


@pytest.fixture
def publish():
    """publish(clip, url, realtime=True) -> Popen; publishers still running at teardown are
    killed (by their own handle)."""
    procs = []

    def start(clip: media.Clip, url: str, *, realtime: bool = True):
        p = media.rtmp_publish(clip.path, url, realtime=realtime)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


# ---- reading recordings back against the clip's ground truth --------------------------------

@dataclass
class Rec:
    path: Path
    mp4: boxes.Mp4
    tracks: dict[str, boxes.Track]   # kind -> track
    first: dict[str, int]            # kind -> index in the clip's packets of the first sample
    offset: Fraction                 # clip seconds - file seconds (one origin for all tracks)

    def count(self, kind: str) -> int:
        return len(self.tracks[kind].samples)

    def end(self, kind: str) -> int:
        return self.first[kind] + self.count(kind)

    def span_ms(self) -> Fraction:
        v = self.tracks.get("video") or next(iter(self.tracks.values()))
        t0 = Fraction(v.samples[0].dts, v.timescale)
        return max(Fraction(t.end_dts, t.timescale) for t in self.tracks.values()) * 1000 - t0 * 1000


def read_rec(path: str | os.PathLike, clip: media.Clip,
             kinds: tuple[str, ...] = ("video", "audio")) -> Rec:
    """Parse a finished recording, check its structure and that every sample is, in order, a
    packet of the clip: same bytes, same keyframe flag, same decode time (up to one constant
    shift shared by all tracks) and composition offset."""
    path = Path(path)
    mp4 = boxes.parse_mp4(path)
    boxes.check_fragmented(mp4, finalized=True)  # finished (hybrid moov): closed cleanly
    ids = mp4.track_ids()
    assert [mp4.tracks[i].handler for i in ids] == [KIND_HANDLER[k] for k in kinds], (
        f"{path.name}: tracks {[mp4.tracks[i].handler for i in ids]}, expected {kinds}")
    tracks = {k: mp4.tracks[i] for k, i in zip(kinds, ids)}
    truth = {"video": clip.video, "audio": clip.audio}
    for k, trk in tracks.items():
        assert trk.samples, f"{path.name}: {k} track is empty"
    # anchor: the first video sample (a keyframe), or the first audio sample of an audio file
    anchor = "video" if "video" in tracks else "audio"
    st, s0 = truth[anchor], tracks[anchor].samples[0]
    data0 = media.sha1(mp4.payload(s0))
    cand = [i for i, p in enumerate(st.packets) if p.sha1 == data0]
    assert cand, f"{path.name}: first {anchor} sample is not a packet of the clip"
    if len(cand) > 1:  # repeated audio frames: the run that matches further on
        def fits(i):
            return all(i + j < len(st.packets)
                       and st.packets[i + j].sha1 == media.sha1(mp4.payload(s))
                       for j, s in enumerate(tracks[anchor].samples[:8]))
        cand = [i for i in cand if fits(i)]
        assert len(cand) == 1, f"{path.name}: ambiguous start of the {anchor} track"
    offset = st.seconds(st.packets[cand[0]].dts) - Fraction(s0.dts, tracks[anchor].timescale)
    first: dict[str, int] = {}
    for k, trk in tracks.items():
        st = truth[k]
        # audio is timed at its sample rate: on the sample grid, within 1 ms of the clip's ms
        tol = Fraction(0) if trk.timescale == st.timescale else (
            Fraction(1, 1000) + Fraction(1, trk.timescale))
        want0 = Fraction(trk.samples[0].dts, trk.timescale) + offset
        idx = [i for i, p in enumerate(st.packets) if abs(st.seconds(p.dts) - want0) <= tol]
        assert idx, (f"{path.name}: first {k} sample at {float(want0):.3f}s of the clip: no "
                     "such packet (tracks lost their common origin?)")
        i0 = first[k] = idx[0]
        assert i0 + len(trk.samples) <= len(st.packets), f"{path.name}: {k}: too many samples"
        for j, s in enumerate(trk.samples):
            p = st.packets[i0 + j]
            where = f"{path.name} {k} sample {j} (clip packet {i0 + j})"
            assert abs(Fraction(s.dts, trk.timescale) + offset - st.seconds(p.dts)) <= tol, (
                f"{where}: dts {s.dts}/{trk.timescale} + offset != clip dts {p.dts}")
            assert Fraction(s.cto, trk.timescale) == st.seconds(p.pts - p.dts), f"{where}: cto"
            assert s.size == p.size and media.sha1(mp4.payload(s)) == p.sha1, f"{where}: bytes"
            if k == "video":
                assert s.sync == p.key, f"{where}: sync {s.sync}, clip key {p.key}"
    if "video" in tracks:
        assert tracks["video"].samples[0].sync, f"{path.name}: does not start on a keyframe"
    checks.assert_durations(mp4, list(tracks.values()))
    return Rec(path, mp4, tracks, first, offset)


def first_audio_at(clip: media.Clip, t: Fraction) -> int:
    a = clip.audio
    return next(i for i, p in enumerate(a.packets) if a.seconds(p.dts) >= t)


def check_series(recs: list[Rec], clip: media.Clip, *, start_video: int | None = 0,
                 complete: bool = True, continuity: bool = False) -> None:
    """Files of one task, in order: each starts on a keyframe with audio aligned to it, they
    join without losing or doubling a packet, and (complete) the last ends with the clip.
    `start_video`: index of the keyframe the first file must start on (None: any)."""
    assert recs
    kinds = list(recs[0].tracks)
    v = clip.video
    for n, r in enumerate(recs):
        if "video" in r.tracks:
            k0 = r.first["video"]
            assert v.packets[k0].key
            if "audio" in r.tracks:
                assert r.first["audio"] == first_audio_at(clip, v.seconds(v.packets[k0].dts)), (
                    f"{r.path.name}: audio does not start with the first packet at/after the "
                    "video start")
        if n == 0:
            if start_video is not None and "video" in r.tracks:
                assert r.first["video"] == start_video, (
                    f"{r.path.name}: starts at clip video packet {r.first['video']}, "
                    f"expected {start_video}")
            elif start_video == 0:
                assert r.first["audio"] == 0, f"{r.path.name}: audio starts at {r.first['audio']}"
        else:
            prev = recs[n - 1]
            for k in kinds:
                assert r.first[k] == prev.end(k), (
                    f"{k}: {prev.path.name} ends at clip packet {prev.end(k)}, {r.path.name} "
                    f"starts at {r.first[k]}: packets lost or doubled across the split")
                if continuity:
                    tid = next(i for i, t in r.mp4.tracks.items() if t is r.tracks[k])
                    tfdt = r.mp4.fragments[0].tfdt[tid]
                    # exact in presentation time: edit lists included (the first file's
                    # B-frame edit; the next ones continue its timeline)
                    start = tfdt - r.tracks[k].presentation_offset()
                    end = prev.tracks[k].end_dts - prev.tracks[k].presentation_offset()
                    assert start == end, (
                        f"{k}: {r.path.name} starts at {start}, {prev.path.name} ended at "
                        f"{end}")
        if not continuity and "video" in r.tracks:
            assert r.tracks["video"].samples[0].dts == 0, f"{r.path.name}: video starts at " \
                f"{r.tracks['video'].samples[0].dts}, not 0 (discontinuity)"
    if continuity:  # one presentation timeline: clip time - presented file time is constant
        k0 = kinds[0]
        assert len({r.offset + Fraction(r.tracks[k0].presentation_offset(),
                                        r.tracks[k0].timescale) for r in recs}) == 1, (
            "continuity: timestamps do not continue")
    if complete:
        truth = {"video": clip.video, "audio": clip.audio}
        for k in kinds:
            assert recs[-1].end(k) == len(truth[k].packets), (
                f"{k}: recording ends at clip packet {recs[-1].end(k)} of {len(truth[k].packets)}")


def assert_record_time(ms: int, *recs: Rec) -> None:
    """recordTime is media duration (spec 5). Accepted: anything between the decode-time span
    (first video sample to the last sample's end over all tracks) and the presentation
    duration the file declares (mvhd, after edit lists), summed over `recs`, +-2 ms."""
    span = sum(r.span_ms() for r in recs)
    plays = sum(Fraction(r.mp4.mvhd_duration * 1000, r.mp4.movie_timescale) for r in recs)
    lo, hi = min(span, plays) - 2 * len(recs), max(span, plays) + 2 * len(recs)
    assert lo <= ms <= hi, (f"recordTime {ms} ms; the file(s) span {float(span):.0f} ms and "
                            f"declare {float(plays):.0f} ms")


def assert_plays(rec: Rec) -> None:
    """ffprobe sees exactly the samples, PyAV and `ffmpeg -f null` decode all without error."""
    fp = probe.ffprobe(rec.path)
    assert [len(s.packets) for _, s in sorted(fp.items())] == [
        rec.count(k) for k in rec.tracks], f"{rec.path.name}: ffprobe packet counts"
    probe.assert_plays(rec.path)


def mp4_files(root: Path, sub: str = "") -> list[Path]:
    return sorted((root / sub).rglob("*.mp4"))


def by_sequence(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: int(re.search(r"_(\d+)\.mp4$", p.name).group(1)))


# ---- 1. reservations, start while live, stop mid-stream ---------------------------------------

def test_reserve_then_publish_records_every_packet(service, publish, clip3):
    run = service()
    t = run.api.start("r1", "cam1")
    assert t["state"] == "ready" and "sequence" not in t and "outputFilePath" not in t
    p = publish(clip3, run.url("cam1"))
    t = run.api.wait_state("r1", "recording")
    assert t["sequence"] == 0 and t["outputFilePath"].startswith("default/app/cam1/r1_")
    media.rtmp_wait(p)
    t = run.api.wait_state("r1", "ready")  # the stream ended: the file is finished, task waits
    files = mp4_files(run.root, "default/app/cam1")
    assert [f.relative_to(run.root).as_posix() for f in files] == [t["outputFilePath"]]
    rec = read_rec(files[0], clip3)
    check_series([rec], clip3)  # every packet from the first keyframe, nothing else
    assert_plays(rec)
    size = files[0].stat().st_size
    assert t["recordBytes"] == t["totalRecordBytes"] == size
    assert_record_time(t["recordTime"], rec)
    time.sleep(0.1)
    s = run.api.stop("r1")
    assert s["state"] == "stopped" and s["totalRecordBytes"] == size
    assert run.api.records() == []
    # stopped while waiting: finishTime is still the end of the last finished file (spec 5)
    info = ET.parse(run.root / "default/app/cam1/r1.xml").getroot().findall("file")
    assert len(info) == 1 and info[0].findtext("lastSequence") == "false"
    assert s["finishTime"] == info[0].findtext("finishTime")


def test_start_while_live_records_from_the_next_keyframe(service, publish, clip4):
    run = service()
    p = publish(clip4, run.url("cam2"))
    run.wait_live("cam2")
    time.sleep(0.3)  # past the first keyframe
    t = run.api.start("live", "cam2")
    assert t["state"] == "recording", t
    media.rtmp_wait(p)
    run.api.wait_state("live", "ready")
    files = mp4_files(run.root, "default/app/cam2")
    assert len(files) == 1
    rec = read_rec(files[0], clip4)
    # starts on a keyframe after the first one (the request came mid-GOP), runs to the end
    assert rec.first["video"] > 0
    check_series([rec], clip4, start_video=None)
    assert_plays(rec)
    s = run.api.stop("live")
    assert s["state"] == "stopped" and s["totalRecordBytes"] == files[0].stat().st_size


def test_stop_mid_stream_returns_a_finished_file(service, publish, clip4):
    run = service()
    run.api.start("mid", "cam3")
    p = publish(clip4, run.url("cam3"))
    run.api.wait("mid", lambda t: t.get("recordTime", 0) >= 1500, "1.5 s recorded")
    s = run.api.stop("mid")
    assert p.poll() is None, "the publisher should still be pushing"
    # the response has arrived: the file must already be complete, before anything else runs
    path = run.root / s["outputFilePath"]
    rec = read_rec(path, clip4)  # finished, durations patched (assert_durations)
    check_series([rec], clip4, complete=False)
    assert_plays(rec)
    assert rec.count("video") < len(clip4.video.packets)  # really stopped mid-stream
    size = path.stat().st_size
    assert s["state"] == "stopped"
    assert s["recordBytes"] == s["totalRecordBytes"] == size, (s, size)
    assert_record_time(s["recordTime"], rec)
    assert s["totalRecordTime"] == s["recordTime"]
    assert s["sequence"] == 0 and TIME_RE.match(s["finishTime"])
    assert run.api.records() == []
    assert mp4_files(run.root) == [path]
    p.kill()


# ---- 2. interval splits ----------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["discontinuity", "continuity"])
def test_interval_splits_on_keyframes(service, publish, clip10, rule):
    run = service()
    fields = {"interval": 2000}
    if rule == "continuity":
        fields["segmentationRule"] = "continuity"
    run.api.start("iv", "cam4", **fields)
    media.rtmp_wait(publish(clip10, run.url("cam4"), realtime=False), timeout=60)
    t = run.api.wait_state("iv", "ready")
    files = by_sequence(mp4_files(run.root, "default/app/cam4"))
    assert len(files) == 5, [f.name for f in files]
    assert [int(f.stem.rsplit("_", 1)[1]) for f in files] == list(range(5))
    recs = [read_rec(f, clip10) for f in files]
    check_series(recs, clip10, continuity=rule == "continuity")
    for r in recs:
        v = r.tracks["video"]
        assert Fraction(v.media_duration(), v.timescale) == 2, (
            f"{r.path.name}: {v.media_duration()} video ticks, expected 2 s")
        assert_plays(r)
    assert t["sequence"] == 4 and t["totalRecordBytes"] == sum(f.stat().st_size for f in files)
    assert_record_time(t["totalRecordTime"], *recs)


# ---- 3. schedule driven by the injected clock --------------------------------------------------

def test_schedule_with_injected_clock(service, publish, clip4):
    t0 = datetime(2030, 1, 1, 10, 0, 58, 250000).astimezone()
    clock = FakeClock(t0)
    run = service(clock=clock, tick_seconds=3600)  # only our tick() evaluates the schedule
    created = run.api.start("sch", "cam5", schedule="0 */1 *")["createdTime"]
    assert created == t0.isoformat(timespec="milliseconds")
    p = publish(clip4, run.url("cam5"))
    t = run.api.wait("sch", lambda t: t.get("recordTime", 0) >= 300, "recording")
    assert t["outputFilePath"] == "default/app/cam5/sch_20300101100058_0.mp4"
    assert t["startTime"] == t0.isoformat(timespec="milliseconds")
    run.svc.manager.tick()  # before the boundary (10:01:00): nothing happens
    time.sleep(1.2)  # a keyframe goes by
    t = run.api.task("sch")
    assert t["sequence"] == 0, "split before the schedule's boundary"
    clock.set(t0 + timedelta(seconds=2, milliseconds=100))  # 10:01:00.350
    before = run.api.task("sch")["recordTime"]
    run.svc.manager.tick()
    t = run.api.wait("sch", lambda t: t.get("sequence") == 1, "split")
    assert t["outputFilePath"] == "default/app/cam5/sch_20300101100100_1.mp4"
    media.rtmp_wait(p)
    run.api.wait_state("sch", "ready")
    files = by_sequence(mp4_files(run.root, "default/app/cam5"))
    assert [f.name for f in files] == ["sch_20300101100058_0.mp4", "sch_20300101100100_1.mp4"]
    recs = [read_rec(f, clip4) for f in files]
    check_series(recs, clip4)
    # the split landed on the first keyframe after the tick: file 0 holds what had arrived
    # when the clock moved and at most one more GOP (1 s) of media
    d0 = recs[0].tracks["video"].media_duration()
    assert before <= d0 <= before + 1000 + 300, (before, d0)
    for r in recs:
        assert_plays(r)
    # times in the info XML come from the injected clock
    info = ET.parse(run.root / "default/app/cam5/sch.xml").getroot()
    starts = [f.findtext("startTime") for f in info.iter("file")]
    assert starts == [t0.isoformat(timespec="milliseconds"),
                      (t0 + timedelta(seconds=2, milliseconds=100)).isoformat(
                          timespec="milliseconds")]


# ---- 4. track selection ------------------------------------------------------------------------

def test_variant_names_and_track_ids(service, publish, clip3):
    run = service()
    api = run.api
    api.start("vid", "cam6", variantNames=["bypass_video"],
              filePath="sel/${Id}.mp4", infoPath="sel/${Id}.xml")
    api.start("aud", "cam6", variantNames=["bypass_audio"], filePath="sel/${Id}.mp4")
    api.start("tid0", "cam6", trackIds=[0], filePath="sel/${Id}.mp4")
    api.start("tid1", "cam6", trackIds=[1], filePath="sel/${Id}.mp4")
    api.start("both", "cam6", trackIds=[0], variantNames=["bypass_audio"],
              filePath="sel/${Id}.mp4")
    api.start("nope", "cam6", variantNames=["no_such_track"], filePath="sel/${Id}.mp4")
    media.rtmp_wait(publish(clip3, run.url("cam6"), realtime=False))
    for rid in ("vid", "aud", "tid0", "tid1", "both"):
        api.wait_state(rid, "ready")
    bad = api.task("nope")
    assert bad["state"] == "error", bad
    reason = bad.get("error", "")
    assert "bypass_video" in reason and "bypass_audio" in reason, reason
    layouts = {"vid": ("video",), "tid0": ("video",), "aud": ("audio",), "tid1": ("audio",),
               "both": ("video", "audio")}
    sel = run.root / "sel"
    assert sorted(p.name for p in sel.glob("*.mp4")) == sorted(f"{r}.mp4" for r in layouts)
    for rid, kinds in layouts.items():
        rec = read_rec(sel / f"{rid}.mp4", clip3, kinds)
        if kinds == ("audio",):
            # audio-only: every audio packet of the stream
            assert rec.first["audio"] == 0 and rec.end("audio") == len(clip3.audio.packets)
        else:
            check_series([rec], clip3)
        assert_plays(rec)
    for rid in layouts:
        assert api.stop(rid)["state"] == "stopped"
    assert api.stop("nope")["state"] == "error"


# ---- 5. publisher reconnect ----------------------------------------------------------------------

def test_reconnect_continues_the_sequence(service, publish, clip2):
    run = service()
    api = run.api
    api.start("rc", "cam7")
    for n in range(2):
        p = publish(clip2, run.url("cam7"))
        t = api.wait_state("rc", "recording")
        assert t["sequence"] == n
        media.rtmp_wait(p)
        t = api.wait_state("rc", "ready")
        assert t["sequence"] == n and t["outputFilePath"].endswith(f"_{n}.mp4")
    files = by_sequence(mp4_files(run.root, "default/app/cam7"))
    assert [int(f.stem.rsplit("_", 1)[1]) for f in files] == [0, 1]
    for f in files:
        rec = read_rec(f, clip2)
        check_series([rec], clip2)  # each publish recorded whole, from its first keyframe
        assert_plays(rec)
    s = api.stop("rc")
    assert s["totalRecordBytes"] == sum(f.stat().st_size for f in files)
    info = ET.parse(run.root / "default/app/cam7/rc.xml").getroot()
    assert [f.findtext("sequence") for f in info.iter("file")] == ["0", "1"]


# ---- 6. info XML ----------------------------------------------------------------------------

INFO_FIELDS = ["transactionId", "id", "metadata", "vhost", "app", "stream", "filePath",
               "recordBytes", "recordTime", "sequence", "lastSequence", "createdTime",
               "startTime", "finishTime"]


def test_info_xml_content(service, publish, clip4):
    run = service()
    api = run.api
    meta = 'camera <7> & "door"'
    created = api.start("inf", "cam8", interval=1000, metadata=meta,
                        filePath="${Application}/${TransactionId}/${SourceStream}_${Sequence}.mp4",
                        infoPath="info/${Stream}-${Id}.xml")["createdTime"]
    p = publish(clip4, run.url("cam8"))
    # stop right after the second split: the previous file may still be finishing (it closes
    # after its successor opened); only the file closed by the stop is lastSequence
    api.wait("inf", lambda t: t.get("sequence", 0) >= 2, "two splits", poll=0)
    s = api.stop("inf")
    assert s["outputInfoPath"] == "info/cam8-inf.xml"
    doc = ET.parse(run.root / "info/cam8-inf.xml").getroot()
    assert doc.tag == "files"
    entries = list(doc)
    assert all(e.tag == "file" for e in entries) and len(entries) == s["sequence"] + 1 >= 3
    txn = entries[0].findtext("transactionId")
    assert re.fullmatch(r"[A-Za-z0-9]{16}", txn)
    total = 0
    for n, e in enumerate(entries):
        assert [c.tag for c in e] == INFO_FIELDS
        f = {c.tag: c.text or "" for c in e}
        assert (f["transactionId"], f["id"], f["metadata"]) == (txn, "inf", meta)
        assert (f["vhost"], f["app"], f["stream"]) == ("default", "app", "cam8")
        assert int(f["sequence"]) == n
        assert f["lastSequence"] == ("true" if n == len(entries) - 1 else "false")
        assert f["filePath"] == f"app/{txn}/cam8_{n}.mp4"
        path = run.root / f["filePath"]
        assert path.is_file(), f["filePath"]
        assert int(f["recordBytes"]) == path.stat().st_size
        total += path.stat().st_size
        rec = read_rec(path, clip4)
        assert_record_time(int(f["recordTime"]), rec)
        for k in ("createdTime", "startTime", "finishTime"):
            assert TIME_RE.match(f[k]), (k, f[k])
        assert f["createdTime"] == created
        assert f["startTime"] <= f["finishTime"]
        if n:
            assert f["startTime"] >= entries[n - 1].findtext("startTime")
    assert s["totalRecordBytes"] == total
    assert entries[-1].findtext("filePath") == s["outputFilePath"]
    assert entries[-1].findtext("finishTime") == s["finishTime"]
    p.kill()


# ---- 7. restart ---------------------------------------------------------------------------------

def test_restart_keeps_tasks_and_resumes_the_sequence(service, publish, clip2):
    run = service()
    run.api.start("keep", "cam9", metadata="m")
    run.api.start("later", "never")
    media.rtmp_wait(publish(clip2, run.url("cam9"), realtime=False))
    run.api.wait_state("keep", "ready")
    before = run.api.records()
    run.stop()

    run2 = service(run.svc.config)
    assert run2.svc.recovered == []
    after = run2.api.records()
    assert [t["id"] for t in after] == ["keep", "later"]
    assert all(t["state"] == "ready" for t in after)
    for a, b in zip(before, after):
        for k in ("createdTime", "stream", "metadata", "sequence", "outputFilePath",
                  "totalRecordBytes"):
            assert a.get(k) == b.get(k), (k, a.get(k), b.get(k))
    p = publish(clip2, run2.url("cam9"))
    run2.api.wait_state("keep", "recording")
    media.rtmp_wait(p)
    t = run2.api.wait_state("keep", "ready")
    files = by_sequence(mp4_files(run2.root, "default/app/cam9"))
    assert [int(f.stem.rsplit("_", 1)[1]) for f in files] == [0, 1]
    assert t["outputFilePath"] == files[1].relative_to(run2.root).as_posix()
    for f in files:
        rec = read_rec(f, clip2)
        check_series([rec], clip2)
        assert_plays(rec)
    info = ET.parse(run2.root / "default/app/cam9/keep.xml").getroot()
    assert [f.findtext("sequence") for f in info.iter("file")] == ["0", "1"]
    assert len({f.findtext("transactionId") for f in info.iter("file")}) == 1
    s = run2.api.stop("keep")
    assert s["totalRecordBytes"] == sum(f.stat().st_size for f in files)


def test_service_stop_while_recording_finishes_the_file(service, publish, clip4, clip2):
    run = service()
    run.api.start("cut", "cam11")
    p = publish(clip4, run.url("cam11"))
    run.api.wait("cut", lambda t: t.get("recordTime", 0) >= 1000, "1 s recorded")
    run.stop()  # every stream ends: the open file is finished, the task is kept
    p.kill()
    files = mp4_files(run.root, "default/app/cam11")
    assert len(files) == 1
    rec = read_rec(files[0], clip4)  # finalised (hybrid moov, durations), not left for crash repair
    check_series([rec], clip4, complete=False)
    assert_plays(rec)

    run2 = service(run.svc.config)
    assert run2.svc.recovered == []
    t = run2.api.task("cut")
    assert t["state"] == "ready" and t["sequence"] == 0 and "recoveredFiles" not in t
    assert t["totalRecordBytes"] == files[0].stat().st_size
    media.rtmp_wait(publish(clip2, run2.url("cam11"), realtime=False))
    t = run2.api.wait("cut", lambda t: t["state"] == "ready" and t.get("sequence") == 1,
                      "the second file")
    files = by_sequence(mp4_files(run2.root, "default/app/cam11"))
    assert len(files) == 2
    check_series([read_rec(files[1], clip2)], clip2)
    assert t["totalRecordBytes"] == sum(f.stat().st_size for f in files)


# ---- 8. paths ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"filePath": "../escape/${Id}.mp4"},
    {"filePath": "a/../../escape.mp4"},
    {"filePath": "/../../escape.mp4"},
    {"filePath": "${Stream}/x.mp4", "stream": "../.."},
    {"infoPath": "../escape.xml"},
], ids=["parent", "nested", "absolute", "macro", "info"])
def test_path_escaping_the_root_is_refused(service, fields):
    run = service()
    fields = dict(fields)
    stream = fields.pop("stream", "cam")
    status, doc = run.api.request("POST", "startRecord",
                                  {"id": "esc", "stream": {"name": stream}, **fields})
    assert status == 400, doc
    key = "infoPath" if "infoPath" in fields else "filePath"
    assert f"[{key}]" in doc["message"], doc["message"]
    assert run.api.records() == []


def test_end_time_name_appears_at_close_and_never_overwrites(service, publish, clip4):
    t0 = datetime(2031, 5, 6, 7, 8, 9).astimezone()
    clock = FakeClock(t0)
    run = service(clock=clock)
    tmpl = "end/${Id}_${StartTime:hhmmss}-${EndTime:hhmmss}.mp4"
    run.api.start("e1", "cam10", filePath=tmpl)
    run.api.start("e2", "cam10", filePath=tmpl)
    end_dir = run.root / "end"
    end_dir.mkdir(parents=True)
    taken = end_dir / "e2_070809-070819.mp4"
    taken.write_bytes(b"not yours")
    p = publish(clip4, run.url("cam10"))
    for rid in ("e1", "e2"):
        run.api.wait(rid, lambda t: t.get("recordTime", 0) >= 500, "recording")
    # while open: temporary names only, in the final directory
    names = sorted(x.name for x in end_dir.iterdir())
    assert [n for n in names if n != taken.name and not n.endswith(".part")] == [], names
    assert len([n for n in names if n.endswith(".part")]) == 2, names
    for rid in ("e1", "e2"):
        assert run.api.task(rid)["outputFilePath"].endswith(".part")
    clock.set(t0 + timedelta(seconds=10))
    s1, s2 = run.api.stop("e1"), run.api.stop("e2")
    assert s1["outputFilePath"] == "end/e1_070809-070819.mp4"
    assert s2["outputFilePath"] == "end/e2_070809-070819-1.mp4"  # never replaces a file
    assert taken.read_bytes() == b"not yours"
    assert sorted(x.name for x in end_dir.iterdir()) == [
        "e1_070809-070819.mp4", "e2_070809-070819-1.mp4", "e2_070809-070819.mp4"]
    for s in (s1, s2):
        path = run.root / s["outputFilePath"]
        assert s["totalRecordBytes"] == path.stat().st_size
        rec = read_rec(path, clip4)
        check_series([rec], clip4, complete=False)
        assert_plays(rec)
    info = ET.parse(run.root / "default/app/cam10/e2.xml").getroot()
    assert [f.findtext("filePath") for f in info.iter("file")] == [s2["outputFilePath"]]
    p.kill()


def test_taken_file_name_is_not_a_silent_loss(service, publish, clip2):
    """A new recording whose file name is taken records under name-1.mp4 (never overwrites,
    never loses the recording)."""
    t0 = datetime(2032, 2, 3, 4, 5, 6).astimezone()
    run = service(clock=FakeClock(t0))
    taken = run.root / "default/app/cam12/dup_20320203040506_0.mp4"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"an earlier recording")
    run.api.start("dup", "cam12")
    media.rtmp_wait(publish(clip2, run.url("cam12"), realtime=False))
    time.sleep(0.5)
    t = run.api.task("dup")
    assert taken.read_bytes() == b"an earlier recording"
    # either a clear error naming the file, or the stream recorded under another name
    if t["state"] == "error":
        assert taken.name in t.get("error", ""), t
    else:
        assert t.get("outputFilePath") and t["outputFilePath"] != taken.relative_to(
            run.root).as_posix(), t
        check_series([read_rec(run.root / t["outputFilePath"], clip2)], clip2)


# ---- 9. ten streams and concurrent API calls -----------------------------------------------------

@pytest.mark.timeout(150)
def test_ten_streams_with_concurrent_api_calls(service, publish, clip4):
    run = service()
    api = run.api
    n_streams = 10
    for i in range(n_streams):  # one info file shared by all: concurrent appends lose nothing
        api.start(f"m{i}", f"multi{i}", infoPath="shared/all.xml")
    procs = [publish(clip4, run.url(f"multi{i}")) for i in range(n_streams)]
    done = threading.Event()
    errors: list[str] = []
    ops = [0] * 4

    def worker(w: int) -> None:
        a = Api(api.port)
        n = 0
        try:
            while not done.is_set():
                rid = f"w{w}-{n}"
                t = a.start(rid, f"ghost{w}-{n}", interval=1000, metadata=f"worker {w}")
                assert t["state"] == "ready" and t["id"] == rid
                status, doc = a.request("POST", "startRecord",
                                        {"id": rid, "stream": {"name": "x"}})
                assert status == 409, doc
                assert [x["id"] for x in a.records(rid)] == [rid]
                listed = a.records()
                assert {f"m{i}" for i in range(n_streams)} <= {x["id"] for x in listed}
                live = a.task(f"m{n % n_streams}")
                assert live["state"] in ("ready", "recording")
                s = a.stop(rid)
                assert s["state"] == "stopped" and s["id"] == rid
                status, doc = a.request("POST", "stopRecord", {"id": rid})
                assert status == 404, doc
                n += 1
                ops[w] += 6
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(f"worker {w}: {e!r}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for th in threads:
        th.start()
    try:
        for i in range(n_streams):
            api.wait_state(f"m{i}", "recording", timeout=20)
        for p in procs:
            media.rtmp_wait(p, timeout=60)
    finally:
        done.set()
        for th in threads:
            th.join(30)
    assert not errors, errors
    assert min(ops) > 0, ops
    for i in range(n_streams):
        t = api.wait_state(f"m{i}", "ready")
        files = mp4_files(run.root, f"default/app/multi{i}")
        assert len(files) == 1 and t["outputFilePath"] == files[0].relative_to(
            run.root).as_posix()
        rec = read_rec(files[0], clip4)
        check_series([rec], clip4)
        assert_plays(rec)
        assert api.stop(f"m{i}")["totalRecordBytes"] == files[0].stat().st_size
    assert api.records() == []
    entries = ET.parse(run.root / "shared/all.xml").getroot().findall("file")
    assert sorted(e.findtext("id") for e in entries) == sorted(f"m{i}" for i in range(n_streams))
    for e in entries:
        assert int(e.findtext("recordBytes")) == (run.root / e.findtext("filePath")).stat().st_size


# ---- 10. auto-record rules from the configuration ------------------------------------------------

def test_auto_record_rule_from_toml(service, publish, clip3, tmp_path):
    toml = tmp_path / "pyrec.toml"
    toml.write_text(
        '[server]\n'
        f'access_token = "{TOKEN}"\n'
        '[vhosts.default.apps.app]\n'
        'auto_record = [{stream = "auto*", interval = 1000}]\n')
    cfg = load_config(toml, host="127.0.0.1", api_port=0, rtmp_port=0,
                      record_root=str(tmp_path / "rec"))
    run = service(cfg)
    assert run.api.records() == []
    procs = [publish(clip3, run.url("auto1"), realtime=False),
             publish(clip3, run.url("manual1"), realtime=False)]
    for p in procs:
        media.rtmp_wait(p)
    t = run.api.wait_state("auto1", "ready")
    assert [x["id"] for x in run.api.records()] == ["auto1"]  # "manual1" matches no rule
    assert t["isConfig"] is True and t["interval"] == 1000
    assert "segmentationRule" not in t  # a rule's task shows it only when the rule sets it
    assert t["stream"]["name"] == "auto1"
    files = by_sequence(mp4_files(run.root, "default/app/auto1"))
    assert len(files) == 3, [f.name for f in files]
    recs = [read_rec(f, clip3) for f in files]
    check_series(recs, clip3)
    for r in recs:
        assert_plays(r)
    assert not (run.root / "default/app/manual1").exists()
    assert run.api.stop("auto1")["isConfig"] is True
