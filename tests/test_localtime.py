"""Local time, under zones that are not UTC and across their DST changes: the machines that run
CI are in UTC, where a recorder that used UTC (or a fixed offset) instead of the server's local
time would pass every other test. Each test sets TZ (and time.tzset()) in this process and
gives TZ to the processes it starts; each one fails if UTC, or the offset in effect when the
task started, were used where the local time is due: ${StartTime}/${EndTime} in names,
"S M H" schedules, createdTime/startTime/finishTime in the API and the info XML."""
from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import media
import pyrec
from pyrec.paths import PathContext, expand
from pyrec.schedule import Schedule

ZONES = ["Europe/Berlin", "America/New_York"]
# the spring-forward day of each zone: 02:00 local does not exist on it
SPRING = {"Europe/Berlin": (2025, 3, 30), "America/New_York": (2025, 3, 9)}
FALL = {"Europe/Berlin": (2025, 10, 26), "America/New_York": (2025, 11, 2)}
STD = {"Europe/Berlin": 1, "America/New_York": -5}  # standard offset, hours (DST: +1)
TOKEN = "user:pass"


@pytest.fixture(params=ZONES)
def zone(request):
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    if time.localtime(1735732800).tm_gmtoff == 0:  # 2025-01-01 12:00 UTC
        pytest.fail(f"TZ={request.param} gives UTC here: the zone database (tzdata) is missing")
    try:
        yield request.param
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def local(*fields: int) -> datetime:
    """Naive local wall time -> aware, with the offset in effect then (as the server's clock
    datetime.now().astimezone() gives it: a fixed offset)."""
    return datetime(*fields).astimezone()


def offset_h(t: datetime) -> float:
    off = t.utcoffset()
    assert off is not None
    return off / timedelta(hours=1)


def local_offset_now() -> timedelta:
    return timedelta(seconds=time.localtime().tm_gmtoff)


# ---- "S M H" schedules ---------------------------------------------------------------------

@pytest.mark.parametrize("text, day, start, want, dst", [
    # (schedule, which day, local start h:m the day before/at, local boundary, DST at boundary)
    ("0 0 3", "spring-1", (12, 0), ("spring", 3, 0), True),   # daily 03:00: the first after DST
    ("0 0 0", "spring-1", (12, 0), ("spring", 0, 0), False),  # midnight before the change
    ("0 0 *", "spring", (1, 30), ("spring", 3, 0), True),     # 02:00 does not exist: 03:00
    ("0 0 4", "fall-1", (12, 0), ("fall", 4, 0), False),      # daily 04:00 after the change back
    ("0 0 12", "fall", (0, 30), ("fall", 12, 0), False),
    ("0 30 1", "fall", (0, 45), ("fall", 1, 30), True),       # before the repeated hour
])
def test_schedule_boundaries_are_local_across_dst(zone, text, day, start, want, dst):
    def date(tag: str) -> tuple[int, int, int]:
        base = SPRING[zone] if tag.startswith("spring") else FALL[zone]
        d = datetime(*base) - timedelta(days=1 if tag.endswith("-1") else 0)
        return d.year, d.month, d.day

    t = local(*date(day), *start)
    expect = local(*date(want[0]), want[1], want[2])
    for given in (t, t.astimezone(timezone.utc)):  # the same instant in any zone: same answer
        got = Schedule(text).next_after(given)
        assert got == expect, (text, given, got, expect)
        assert (got.hour, got.minute) == (want[1], want[2]), got
        assert offset_h(got) == STD[zone] + (1 if dst else 0), got


def test_schedule_naive_time_is_local(zone):
    """A naive time (a clock= the caller wrote without a zone) is local time, answered naive."""
    got = Schedule("0 0 3").next_after(datetime(*SPRING[zone], 1, 0))
    assert got == datetime(*SPRING[zone], 3, 0) and got.tzinfo is None


def test_schedule_midnight_is_local_midnight(zone):
    """Evaluated in server local time: UTC midnight would be 01:00/02:00 (Berlin) or
    19:00/20:00 (New York) local."""
    noon_utc = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
    got = Schedule("0 0 0").next_after(noon_utc)
    assert (got.hour, got.minute) == (0, 0)
    assert got.astimezone() == got
    assert got - noon_utc < timedelta(days=1)


# ---- ${StartTime} / ${EndTime} ---------------------------------------------------------------

def test_start_time_macro_defaults_to_local_now(zone):
    before = time.strftime("%Y%m%d%H%M")
    got = expand("${StartTime:YYYYMMDDhhmm}", PathContext())
    after = time.strftime("%Y%m%d%H%M")
    assert got in (before, after), (got, before, after)


def test_file_names_and_splits_follow_local_time_across_dst(zone, clips, out_dir):
    """A file recorded from 01:59:58 local on the spring-forward day, split every 2 s: the
    second file starts at 03:00:00 local (not 02:00:00, which does not exist)."""
    clip = clips.get(".mp4", video="h264", audio="aac", seconds=6, gop=30, fps=30)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    t0 = local(*SPRING[zone], 1, 59, 58)
    tmpl = str(out_dir / "i_${Sequence}_${StartTime:YYYYMMDDhhmmss}-${EndTime:hhmmss}.mp4")
    rec = pyrec.Recorder(specs, tmpl, interval_ms=2000, clock=lambda: t0)
    media.feed(rec, clip)
    files = rec.close()
    day = "%04d%02d%02d" % SPRING[zone]
    assert [Path(f.path).name for f in files] == [
        f"i_0_{day}015958-030000.mp4", f"i_1_{day}030000-030002.mp4",
        f"i_2_{day}030002-030004.mp4"]
    assert [f.start_ms for f in files] == [0, 2000, 4000]


def test_schedule_split_at_local_hour_after_dst(zone, clips, out_dir):
    """"0 0 3" (daily at 03:00 local) recording from 01:59:58 on the spring-forward day: the
    boundary is 2 s of media later (a fixed offset would put it an hour later, UTC hours
    away), so the second file starts at media 2 s."""
    clip = clips.get(".mp4", video="h264", audio="aac", seconds=6, gop=30, fps=30)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    t0 = local(*SPRING[zone], 1, 59, 58)
    rec = pyrec.Recorder(specs, str(out_dir / "s_${Sequence}_${StartTime:hhmmss}.mp4"),
                         schedule="0 0 3", clock=lambda: t0)
    media.feed(rec, clip)
    files = rec.close()
    assert [f.start_ms for f in files] == [0, 2000]
    assert [Path(f.path).name for f in files] == ["s_0_015958.mp4", "s_1_030000.mp4"]


def test_cli_names_use_the_local_time_of_its_environment(zone, clips, tmp_path):
    """`pyrec record` in a subprocess with TZ in its environment."""
    clip = clips.flv("lt2", seconds=2.0)
    before = time.strftime("%Y%m%d%H")
    env = dict(os.environ, TZ=zone)
    r = subprocess.run([sys.executable, "-m", "pyrec", "record", str(clip.path), "-o",
                        str(tmp_path / "c_${StartTime:YYYYMMDDhh}.mp4")],
                       env=env, capture_output=True, text=True, timeout=60)
    after = time.strftime("%Y%m%d%H")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in tmp_path.glob("c_*.mp4"))
    assert names in ([f"c_{before}.mp4"], [f"c_{after}.mp4"]), (names, before, after)


# ---- the server: API times, file names and the info XML --------------------------------------

def _api(port: int, action: str, body: dict) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    auth = base64.b64encode(TOKEN.encode()).decode()
    c.request("POST", f"/v1/vhosts/default/apps/app:{action}", body=json.dumps(body),
              headers={"Authorization": f"Basic {auth}"})
    r = c.getresponse()
    doc = json.loads(r.read())
    c.close()
    assert r.status == 200, doc
    return doc


def _task(port: int, rid: str) -> dict:
    return next(t for t in _api(port, "records", {})["response"] if t["id"] == rid)


def test_server_times_and_names_are_local(zone, clips, tmp_path):
    from pyrec.config import load_config
    from pyrec.serve import Service

    clip = clips.flv("lt3", seconds=2.0)
    cfg = load_config(None, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN,
                      record_root=str(tmp_path / "rec"))
    svc = Service(cfg)
    svc.start()
    try:
        hour_before = time.strftime("%Y%m%d%H")
        created = _api(svc.api_port, "startRecord", {
            "id": "lt", "stream": {"name": "cam"},
            "filePath": "${Id}_${StartTime:YYYYMMDDhh}-${EndTime:hh}.mp4",
            "infoPath": "${Id}.xml"})["response"]["createdTime"]
        p = media.rtmp_publish(clip.path, f"rtmp://127.0.0.1:{svc.rtmp_port}/app/cam",
                               realtime=False)
        media.rtmp_wait(p)
        deadline = time.monotonic() + 30
        while True:
            t = _task(svc.api_port, "lt")
            if t["state"] == "ready" and t.get("sequence", -1) >= 0 and (tmp_path / "rec/lt.xml").exists():
                break
            assert time.monotonic() < deadline, t
            time.sleep(0.1)
        hour_after = time.strftime("%Y%m%d%H")
    finally:
        svc.stop()
    want = local_offset_now()
    for value in (created, t["startTime"]):  # (a task back in "ready" has no finishTime)
        got = datetime.fromisoformat(value)
        assert got.utcoffset() == want, (value, want)
        assert abs(got - datetime.now(timezone.utc)) < timedelta(minutes=5), value
    names = [p.name for p in (tmp_path / "rec").glob("lt_*.mp4")]
    assert len(names) == 1, names
    assert any(names[0].startswith(f"lt_{h}-") for h in (hour_before, hour_after)), (
        names, hour_before, hour_after)
    info = ET.parse(tmp_path / "rec/lt.xml").getroot()
    for f in info.iter("file"):
        for k in ("createdTime", "startTime", "finishTime"):
            got = datetime.fromisoformat(f.findtext(k))
            assert got.utcoffset() == want, (k, f.findtext(k))
