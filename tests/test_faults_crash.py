"""kill -9 of the whole server while 8 streams record with splitting on, then a restart:
every file decodes, each task lost at most about one part duration before the kill, files
left open are finalised and reported, every task is back and resumes (next ${Sequence})
when its publisher reconnects. The server runs as a real `pyrec serve` process."""
from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import boxes
import probe

TOKEN = "user:pass"
N = 8
PART_MS = 500


def free_ports(n: int) -> list[int]:
    """n distinct free ports (held together while chosen, so never the same twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def api(port: int, action: str, body: dict) -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    auth = base64.b64encode(TOKEN.encode()).decode()
    c.request("POST", f"/v1/vhosts/default/apps/app:{action}", body=json.dumps(body),
              headers={"Authorization": f"Basic {auth}"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    return r.status, data


def start_server(root: Path, api_port: int, rtmp_port: int, log: Path) -> subprocess.Popen:
    cfg = root.parent / "pyrec.toml"
    cfg.write_text(f'[server]\npart_duration_ms = {PART_MS}\n')
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyrec", "serve", "--config", str(cfg), "--host", "127.0.0.1",
             "--api-port", str(api_port), "--rtmp-port", str(rtmp_port), "--access-token",
             TOKEN, "--record-root", str(root)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try:
            if api(api_port, "records", {})[0] == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start:\n" + log.read_text())


def publish(rtmp_port: int, name: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i",
         f"testsrc2=size=320x240:rate=25:duration={seconds}", "-f", "lavfi", "-i",
         f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
         "-g", "25", "-c:a", "aac", "-f", "flv", f"rtmp://127.0.0.1:{rtmp_port}/app/{name}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def media_seconds(path: Path) -> float:
    mp4 = boxes.parse_mp4(path)
    boxes.check_fragmented(mp4, finalized=True)
    probe.assert_plays(path)
    return mp4.mvhd_duration / mp4.movie_timescale


def test_kill_9_while_recording_then_restart(tmp_path):
    root = tmp_path / "records"
    log = tmp_path / "server.log"
    api_port, rtmp_port = free_ports(2)
    server = start_server(root, api_port, rtmp_port, log)
    pubs = []
    try:
        for i in range(N):
            st, _ = api(api_port, "startRecord", {
                "id": f"t{i}", "stream": {"name": f"s{i}"}, "interval": 2000,
                "filePath": "${Stream}/${Id}_${Sequence}.mp4"})
            assert st == 200
        pubs = [publish(rtmp_port, f"s{i}", 30) for i in range(N)]
        # Wait until every task has written a couple of files, then kill the server.
        end = time.monotonic() + 40
        while time.monotonic() < end:
            tasks = api(api_port, "records", {})[1]["response"]
            # past a split, and the open file already has fragments on disk
            if all(t["state"] == "recording" and t.get("sequence", 0) >= 1
                   and t.get("recordBytes", 0) > 0 for t in tasks):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"tasks did not all record: {tasks}\n{log.read_text()}")
        before = {t["id"]: t for t in api(api_port, "records", {})[1]["response"]}
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        killed_at = time.monotonic()
    finally:
        for p in pubs:
            p.kill()
            p.wait()
    # Every file on disk: closed files are finished; the open ones are not (yet).
    files = sorted(root.rglob("*.mp4"))
    assert len(files) >= 2 * N

    server = start_server(root, api_port, rtmp_port, log)
    try:
        tasks = {t["id"]: t for t in api(api_port, "records", {})[1]["response"]}
        assert sorted(tasks) == sorted(f"t{i}" for i in range(N))
        for tid, t in tasks.items():
            assert t["state"] == "ready", t
            assert t["stream"]["name"] == before[tid]["stream"]["name"]
        # The file each task had open at the kill was finalised at start-up and reported
        # (or, when the kill came right after a split before its first fragment, removed:
        # it held no media).
        text = log.read_text()
        for i in range(N):
            assert f"/s{i}/t{i}_" in text, text
            assert tasks[f"t{i}"].get("recoveredFiles") == [
                f"s{i}/t{i}_{before[f't{i}']['sequence']}.mp4"], tasks[f"t{i}"]
        assert "left open by a crash" in text
        # Every file decodes, finished and finalised; per task no gap beyond a part.
        for i in range(N):
            paths = sorted((root / f"s{i}").glob(f"t{i}_*.mp4"),
                           key=lambda p: int(p.stem.rsplit("_", 1)[1]))
            seqs = [int(p.stem.rsplit("_", 1)[1]) for p in paths]
            assert seqs[:-1] == list(range(len(seqs) - 1)), seqs
            total = sum(media_seconds(p) for p in paths)
            # the last file holds everything up to at most one part (+ one GOP that was
            # still being received) before the kill
            seen = before[f"t{i}"].get("totalRecordTime", 0) / 1000
            assert total >= seen - PART_MS / 1000 - 0.2, (i, total, seen)
            # Every file on disk, the recovered one too, is in the info XML and the totals.
            info = ET.parse(root / "default" / "app" / f"s{i}" / f"t{i}.xml").getroot()
            listed = sorted(e.findtext("filePath") for e in info.iter("file"))
            assert listed == sorted(f"s{i}/{p.name}" for p in paths), (listed, paths)
            assert tasks[f"t{i}"]["totalRecordBytes"] == sum(p.stat().st_size for p in paths)
            assert tasks[f"t{i}"]["files"] == len(paths)
        # Publishers reconnect: tasks resume with the next sequence.
        p = publish(rtmp_port, "s0", 2)
        assert p.wait(30) == 0
        end = time.monotonic() + 10
        while time.monotonic() < end:
            t0 = api(api_port, "records", {"id": "t0"})[1]["response"][0]
            if t0["state"] == "ready" and t0.get("sequence", 0) > before["t0"]["sequence"]:
                break
            time.sleep(0.2)
        resumed = sorted((root / "s0").glob("t0_*.mp4"), key=lambda q: int(q.stem.rsplit("_", 1)[1]))
        assert int(resumed[-1].stem.rsplit("_", 1)[1]) > before["t0"]["sequence"]
        media_seconds(resumed[-1])
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    assert killed_at > 0
    assert os.path.exists(root)


def test_kill_9_with_end_time_template_gets_final_name(tmp_path):
    """A file named with ${EndTime} lives under a temporary name while open; after a crash the
    restart finalises it and gives it its final name (end = start + what it holds)."""
    root = tmp_path / "records"
    log = tmp_path / "server.log"
    api_port, rtmp_port = free_ports(2)
    server = start_server(root, api_port, rtmp_port, log)
    pub = None
    try:
        st, _ = api(api_port, "startRecord", {
            "id": "e", "stream": {"name": "cam"},
            "filePath": "${Id}_${StartTime:hhmmss}-${EndTime:hhmmss}.mp4"})
        assert st == 200
        pub = publish(rtmp_port, "cam", 30)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            t = api(api_port, "records", {"id": "e"})[1]["response"][0]
            if t["state"] == "recording" and t.get("recordBytes", 0) > 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no fragments: {t}")
        assert t["outputFilePath"].endswith(".part")
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    finally:
        if pub is not None:
            pub.kill()
            pub.wait()
    assert list(root.rglob("*.mp4")) == []  # only the temporary name exists
    server = start_server(root, api_port, rtmp_port, log)
    try:
        t = api(api_port, "records", {"id": "e"})[1]["response"][0]
        files = list(root.rglob("*.mp4"))
        assert len(files) == 1 and not list(root.rglob("*.part")), files
        name = files[0].name
        assert name.startswith("e_") and t["recoveredFiles"] == [name]
        start, stop = name[2:-4].split("-")
        assert stop >= start
        seconds = media_seconds(files[0])
        # The recovered file counts like any finished file: the task's totals and current
        # file, and a <file> entry in the info XML (created like the media files: 0644).
        size = files[0].stat().st_size
        assert (t["totalRecordBytes"], t["recordBytes"], t["outputFilePath"]) == (size, size, name)
        assert abs(t["totalRecordTime"] - seconds * 1000) <= 1 and t["files"] == 1, t
        info = root / "default" / "app" / "cam" / "e.xml"
        assert stat.S_IMODE(info.stat().st_mode) == stat.S_IMODE(files[0].stat().st_mode)
        [entry] = ET.parse(info).getroot().iter("file")
        assert entry.findtext("filePath") == name
        assert int(entry.findtext("recordBytes")) == size
        assert int(entry.findtext("recordTime")) == t["totalRecordTime"]
        assert (entry.findtext("sequence"), entry.findtext("lastSequence")) == ("0", "false")
        assert entry.findtext("startTime") == t["startTime"]
        took = (datetime.fromisoformat(entry.findtext("finishTime"))
                - datetime.fromisoformat(t["startTime"]))
        assert abs(took.total_seconds() * 1000 - t["totalRecordTime"]) <= 1
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
