"""Publisher reconnect grace (off by default): with `reconnect_grace_ms`, a stream that comes
back within the grace keeps writing the same file, timestamps continuing without a gap;
after the grace, the file is finished and the next publish starts the next ${Sequence}."""
from __future__ import annotations

import base64
import http.client
import json
import subprocess
import time

import pytest

import boxes
import media
import probe
from pyrec.config import load_config
from pyrec.serve import Service

TOKEN = "user:pass"


def api(svc: Service, action: str, body: dict) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", svc.api_port, timeout=10)
    auth = base64.b64encode(TOKEN.encode()).decode()
    c.request("POST", f"/v1/vhosts/default/apps/app:{action}", body=json.dumps(body),
              headers={"Authorization": f"Basic {auth}"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    assert r.status == 200, data
    return data["response"]


def push(svc: Service, flv) -> None:
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(flv), "-c", "copy", "-f", "flv",
                        f"rtmp://127.0.0.1:{svc.rtmp_port}/app/cam"], timeout=60)
    assert r.returncode == 0


def wait_state(svc: Service, rid: str, state: str, timeout: float = 15) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t = api(svc, "records", {"id": rid})[0]
        if t["state"] == state:
            return t
        time.sleep(0.1)
    raise AssertionError(f"task {rid} never reached {state}: {t}")


@pytest.fixture
def make_service(tmp_path):
    services = []

    def make(grace_ms: int) -> Service:
        root = tmp_path / f"rec{grace_ms}"
        (tmp_path / "c.toml").write_text(f"[server]\nreconnect_grace_ms = {grace_ms}\n")
        cfg = load_config(tmp_path / "c.toml", host="127.0.0.1", api_port=0, rtmp_port=0,
                          access_token=TOKEN, record_root=str(root))
        svc = Service(cfg, tick_seconds=0.05).start()
        services.append(svc)
        return svc

    yield make
    for s in services:
        s.stop()


def video_samples(path):
    mp4 = boxes.parse_mp4(path)
    boxes.check_fragmented(mp4)
    return mp4, mp4.tracks[1].samples


def test_reconnect_within_grace_keeps_one_file(make_service, clips):
    clip = clips.flv("reconnect", seconds=2.0, gop=25, fps=25)
    nvideo = len(clip.video.packets)
    naudio = len(clip.audio.packets)
    svc = make_service(3000)
    api(svc, "startRecord", {"id": "r", "stream": {"name": "cam"},
                             "segmentationRule": "continuity", "filePath": "r_${Sequence}.mp4"})
    push(svc, clip.path)
    t = api(svc, "records", {"id": "r"})[0]
    assert t["state"] == "recording"  # the file stays open during the grace
    push(svc, clip.path)              # the publisher returns at once
    time.sleep(0.3)
    assert api(svc, "records", {"id": "r"})[0]["sequence"] == 0
    # No third session: after the grace the file is finished, the task waits.
    t = wait_state(svc, "r", "ready", timeout=10)
    assert t["sequence"] == 0 and t["files"] == 1
    root = svc.config.record_root
    files = sorted(root.glob("r_*.mp4"))
    assert [f.name for f in files] == ["r_0.mp4"]
    mp4, v = video_samples(files[0])
    assert len(v) == 2 * nvideo
    assert len(mp4.tracks[2].samples) == 2 * naudio
    # Timestamps continue without a gap: the join step equals the usual frame step.
    steps = [b.dts - a.dts for a, b in zip(v, v[1:])]
    assert all(s > 0 for s in steps)
    assert steps[nvideo - 1] == steps[nvideo - 2], steps[nvideo - 3:nvideo + 2]
    assert max(steps) <= 41
    probe.assert_plays(files[0])
    # A later publish after the grace: the next sequence, a new file.
    push(svc, clip.path)
    wait_state(svc, "r", "ready", timeout=10)
    t = api(svc, "records", {"id": "r"})[0]
    assert t["sequence"] == 1


def test_reconnect_without_grace_starts_a_new_file(make_service, clips):
    clip = clips.flv("reconnect", seconds=2.0, gop=25, fps=25)
    svc = make_service(0)
    api(svc, "startRecord", {"id": "r", "stream": {"name": "cam"},
                             "filePath": "r_${Sequence}.mp4"})
    push(svc, clip.path)
    wait_state(svc, "r", "ready")
    push(svc, clip.path)
    t = wait_state(svc, "r", "ready")
    assert t["sequence"] == 1
    files = sorted(svc.config.record_root.glob("r_*.mp4"))
    assert [f.name for f in files] == ["r_0.mp4", "r_1.mp4"]
    for f in files:
        _, v = video_samples(f)
        assert len(v) == len(clip.video.packets)
    assert media.read_truth(files[1]).video is not None
