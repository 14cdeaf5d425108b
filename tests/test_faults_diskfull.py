"""Disk full while recording (issue: reliability). One app records onto a tiny filesystem (a
size-limited tmpfs; where mounting is not allowed, an enforced file-size limit in a child
process would be the fallback — here we require the mount and say so). The task there goes to
`error` with the OS reason, what it wrote plays, another task on another disk records on, the
API keeps answering, and once space returns a new start works."""
from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import boxes
import media
import probe
from pyrec import repair as R
from pyrec.config import load_config
from pyrec.serve import Service

TOKEN = "user:pass"


def api(svc: Service, action: str, body: dict, app: str = "app") -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", svc.api_port, timeout=10)
    auth = base64.b64encode(TOKEN.encode()).decode()
    c.request("POST", f"/v1/vhosts/default/apps/{app}:{action}", body=json.dumps(body),
              headers={"Authorization": f"Basic {auth}"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    return r.status, data


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"this test needs to mount a tmpfs (root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def publish(port: int, name: str, flv: Path) -> subprocess.Popen:
    return subprocess.Popen(["ffmpeg", "-v", "error", "-re", "-i", str(flv), "-c", "copy", "-f",
                             "flv", f"rtmp://127.0.0.1:{port}/{name}"],
                            stdin=subprocess.DEVNULL)


def wait_for(pred, timeout: float = 20.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_disk_full_errors_one_task_others_carry_on(tmp_path, small_disk, clips):
    flv = clips.flv("diskfull", seconds=8.0, size="640x360", gop=25, fps=25).path
    big = tmp_path / "big"
    cfg_text = f"""
[server]
database = "{tmp_path / 'tasks.sqlite3'}"
[vhosts.default.apps.app]
root = "{small_disk}"
[vhosts.default.apps.app2]
root = "{big}"
"""
    (tmp_path / "pyrec.toml").write_text(cfg_text)
    cfg = load_config(tmp_path / "pyrec.toml", host="127.0.0.1", api_port=0, rtmp_port=0,
                      access_token=TOKEN, record_root=str(big))
    svc = Service(cfg).start()
    try:
        assert api(svc, "startRecord", {"id": "full", "stream": {"name": "s1"},
                                        "filePath": "full_${Sequence}.mp4"})[0] == 200
        assert api(svc, "startRecord", {"id": "ok", "stream": {"name": "s2"},
                                        "filePath": "ok_${Sequence}.mp4"}, app="app2")[0] == 200
        p1 = publish(svc.rtmp_port, "app/s1", flv)
        p2 = publish(svc.rtmp_port, "app2/s2", flv)

        def full_state():
            st, data = api(svc, "records", {"id": "full"})
            assert st == 200
            return data["response"][0] if data["response"][0]["state"] == "error" else None

        task = wait_for(full_state, 30, "the task on the full disk to fail")
        assert "No space left on device" in task["error"], task
        # The API keeps answering and the other task is still recording.
        st, data = api(svc, "records", {"id": "ok"}, app="app2")
        assert st == 200 and data["response"][0]["state"] == "recording"
        assert p2.wait(30) == 0
        p1.wait(30)
        wait_for(lambda: api(svc, "records", {"id": "ok"}, app="app2")[1]["response"][0]["state"]
                 == "ready", 10, "the other task's file to be finished")
        # What the failed task wrote (init segment + complete fragments) is finished as soon
        # as the disk has room for the index: the writer cut its failed write back, so a
        # hybrid moov fits now (the manager's tick retries until it does).
        written = small_disk / "full_0.mp4"
        wait_for(lambda: R.is_finalized(written), 20, "the cut-short file to be finished")
        mp4 = boxes.parse_mp4(written, allow_truncated=False)
        boxes.check_fragmented(mp4)  # a hybrid file: the fragments, then check_hybrid
        assert mp4.hybrid is not None and len(mp4.fragments) >= 1
        probe.assert_plays(written)
        # The other task's file is complete: every packet of the input.
        truth = media.read_truth(flv)
        ok_file = big / "ok_0.mp4"
        mp4ok = boxes.parse_mp4(ok_file)
        boxes.check_fragmented(mp4ok)
        assert [len(t.samples) for t in mp4ok.tracks.values()] == [len(s.packets) for s in truth.streams]
        # Space returns: a new start on the small disk works.
        written.unlink()
        assert api(svc, "stopRecord", {"id": "full"})[0] == 200
        assert api(svc, "startRecord", {"id": "again", "stream": {"name": "s1"},
                                        "filePath": "again_${Sequence}.mp4"})[0] == 200
        p3 = publish(svc.rtmp_port, "app/s1", clips.flv("diskfull-short", seconds=2.0).path)
        assert p3.wait(30) == 0
        wait_for(lambda: api(svc, "records", {"id": "again"})[1]["response"][0].get("files", 0) >= 1,
                 10, "the new task's file")
        again = small_disk / "again_0.mp4"
        boxes.check_fragmented(boxes.parse_mp4(again))
        probe.assert_plays(again)
    finally:
        svc.stop()
