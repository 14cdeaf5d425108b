"""A file that cannot be created (spec section 6: "a write failure -> error with a reason").

Every way the creation of a recording's file can fail reaches its task exactly as a write
failure does: state `error` with the reason (the OS's words and errno name), an ERROR log line
naming the task, nothing written anywhere, and the other task on the same stream records every
packet. Causes, each made real (root ignores permission bits, so read-only means a read-only
mount, and EACCES a server without CAP_DAC_OVERRIDE):

- ENOTDIR: a regular file stands where the task's folder goes (at the leaf and higher up);
- a path that now leaves the root: the folder became a symlink to outside after the task
  was created;
- EROFS: the folder is a read-only tmpfs;
- ENOSPC: the folder is a full tmpfs (no inode left to create a file);
- EMFILE: the server (a real `pyrec serve` process) has no file descriptor left;
- EACCES: a folder without write permission, the server running without CAP_DAC_OVERRIDE.
"""
from __future__ import annotations

import base64
import errno
import http.client
import json
import logging
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

import boxes
import media
import probe
from pyrec.config import load_config
from pyrec.serve import Service
from test_faults_crash import free_ports

TOKEN = "user:pass"


def call(port: int, action: str, body: dict) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    auth = base64.b64encode(TOKEN.encode()).decode()
    c.request("POST", f"/v1/vhosts/default/apps/app:{action}", body=json.dumps(body),
              headers={"Authorization": f"Basic {auth}"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    assert r.status == 200, data
    return data["response"]


def task(port: int, rid: str) -> dict:
    [t] = call(port, "records", {"id": rid})
    return t


def wait_for(pred: Callable[[], object], timeout: float, what: str) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def mount(args: list[str], where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", *args, str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(args)}): {r.stderr.strip()}; this case needs "
                    "root with permission to mount a tmpfs")


@pytest.fixture
def mounts():
    done: list[Path] = []
    yield done
    for m in reversed(done):
        subprocess.run(["umount", "-l", str(m)], check=False)


# --- the causes: each prepares the root and returns the failing task's filePath ------------

def blocked_leaf(root: Path, outside: Path, mounts: list[Path]) -> str:
    (root / "blocked").write_text("a file where the folder should be")
    return "blocked/${Id}_${Sequence}.mp4"


def blocked_parent(root: Path, outside: Path, mounts: list[Path]) -> str:
    (root / "blocked").write_text("a file where a folder should be")
    return "blocked/deeper/${Id}_${Sequence}.mp4"


def read_only(root: Path, outside: Path, mounts: list[Path]) -> str:
    mount(["-t", "tmpfs", "-o", "ro,size=256k", "tmpfs"], root / "ro")
    mounts.append(root / "ro")
    return "ro/${Id}_${Sequence}.mp4"


def read_only_bind(root: Path, outside: Path, mounts: list[Path]) -> str:
    src = outside / "bind-source"
    src.mkdir()
    mount(["--bind", str(src)], root / "bound")
    mounts.append(root / "bound")
    r = subprocess.run(["mount", "-o", "remount,bind,ro", str(root / "bound")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount a bind mount read-only: {r.stderr.strip()}")
    return "bound/${Id}_${Sequence}.mp4"


def full_disk(root: Path, outside: Path, mounts: list[Path]) -> str:
    full = root / "full"
    mount(["-t", "tmpfs", "-o", "size=64k,nr_inodes=16", "tmpfs"], full)
    mounts.append(full)
    (full / "rec").mkdir()
    for i in range(64):  # take every inode left
        try:
            (full / "rec" / f"filler{i}").touch()
        except OSError as e:
            assert e.errno == errno.ENOSPC
            break
    else:
        raise AssertionError("the small tmpfs never filled up")
    return "full/rec/${Id}_${Sequence}.mp4"


def symlink_out(root: Path, outside: Path, mounts: list[Path]) -> str:
    (root / "linked").mkdir()  # a plain folder when the task is created...
    return "linked/${Id}_${Sequence}.mp4"


def symlink_swap(root: Path, outside: Path) -> None:
    (root / "linked").rmdir()  # ...that became a symlink leading outside the root since
    (root / "linked").symlink_to(outside, target_is_directory=True)


CAUSES = [
    # (name, prepare, after the task was created, what the task's error says)
    ("ENOTDIR at the leaf", blocked_leaf, None, "Not a directory (ENOTDIR)"),
    ("ENOTDIR higher up", blocked_parent, None, "Not a directory (ENOTDIR)"),
    ("EROFS tmpfs", read_only, None, "Read-only file system (EROFS)"),
    ("EROFS bind mount", read_only_bind, None, "Read-only file system (EROFS)"),
    ("ENOSPC", full_disk, None, "No space left on device (ENOSPC)"),
    ("symlink out of the root", symlink_out, symlink_swap, "leaves the root directory"),
]


@pytest.fixture
def service(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    cfg = load_config(None, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN,
                      record_root=str(root), db_path=str(tmp_path / "tasks.sqlite3"))
    svc = Service(cfg, tick_seconds=0.05).start()
    try:
        yield svc, root
    finally:
        svc.stop()


def files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("filler"))


def check_complete(path: Path, clip: media.Clip) -> None:
    """Every packet from the first keyframe on, and it plays."""
    mp4 = boxes.parse_mp4(path)
    boxes.check_fragmented(mp4)
    want = media.expected_packets(clip)
    assert [len(t.samples) for t in mp4.tracks.values()] == [len(v) for v in want.values()]
    probe.assert_plays(path)


@pytest.mark.parametrize("name,prepare,later,reason", CAUSES, ids=[c[0] for c in CAUSES])
def test_file_that_cannot_be_created_errors_its_task(service, clips, tmp_path, mounts, caplog,
                                                    name, prepare, later, reason):
    svc, root = service
    outside = tmp_path / "outside"
    outside.mkdir()
    clip = clips.flv("openfail", seconds=2.0, gop=15)
    bad_path = prepare(root, outside, mounts)
    port = svc.api_port
    bad = call(port, "startRecord", {"id": "bad", "stream": {"name": "s1"}, "filePath": bad_path})
    call(port, "startRecord", {"id": "good", "stream": {"name": "s1"},
                               "filePath": "good/${Id}_${Sequence}.mp4"})
    assert bad["state"] == "ready"
    if later is not None:
        later(root, outside)
    before = files_under(root)
    with caplog.at_level(logging.INFO, logger="pyrec"):
        pub = media.rtmp_publish(clip.path, f"rtmp://127.0.0.1:{svc.rtmp_port}/app/s1",
                                 realtime=False)
        media.rtmp_wait(pub)
        wait_for(lambda: task(port, "good")["files"] == 1, 20, "the good task's file")
    t = task(port, "bad")
    assert t["state"] == "error", t
    assert reason in t["error"], t
    assert t["error"].startswith("cannot create "), t
    assert t["files"] == 0 and "outputFilePath" not in t, t
    # One ERROR line names the task and the reason (also after further :records calls).
    task(port, "bad")
    lines = [r.getMessage() for r in caplog.records
             if r.levelno == logging.ERROR and "/bad:" in r.getMessage()]
    assert len(lines) == 1 and reason in lines[0], lines
    # Nothing written for the failed task, inside or outside the root (the good task's info
    # XML is written on the event dispatcher: wait for it, so no temporary of it is listed).
    svc.bus.flush()
    assert [p for p in files_under(root) if p not in before and "good" not in p.parts
            and p.name != "good.xml"] == []
    assert files_under(outside) == []
    # The other task on the same stream recorded everything.
    g = task(port, "good")
    assert g["state"] == "ready" and "error" not in g, g
    [good_file] = files_under(root / "good")
    check_complete(good_file, clip)


def test_task_retries_when_its_stream_returns(service, clips):
    """The cause removed, the failed task records on the stream's next publish (it waits in
    `error` like after a write failure)."""
    svc, root = service
    clip = clips.flv("openfail", seconds=2.0, gop=15)
    (root / "blocked").write_text("x")
    port = svc.api_port
    call(port, "startRecord", {"id": "bad", "stream": {"name": "s1"},
                               "filePath": "blocked/${Id}_${Sequence}.mp4"})
    url = f"rtmp://127.0.0.1:{svc.rtmp_port}/app/s1"
    media.rtmp_wait(media.rtmp_publish(clip.path, url, realtime=False))
    wait_for(lambda: task(port, "bad")["state"] == "error", 10, "the task to fail")
    (root / "blocked").unlink()
    media.rtmp_wait(media.rtmp_publish(clip.path, url, realtime=False))
    wait_for(lambda: task(port, "bad")["files"] == 1, 20, "the file of the second publish")
    t = task(port, "bad")
    assert t["state"] == "ready" and "error" not in t, t
    [f] = files_under(root / "blocked")
    assert f.name == "bad_0.mp4"
    check_complete(f, clip)


def test_next_file_of_a_split_cannot_be_created(service, clips):
    """File 0 is written; file 1's folder is blocked by a file: the task goes to `error` at
    the split, file 0 is complete, plays and is in the info XML and the totals."""
    svc, root = service
    clip = clips.flv("openfail-split", seconds=3.0, gop=15)
    (root / "1").write_text("a file where the folder of file 1 goes")
    port = svc.api_port
    call(port, "startRecord", {"id": "sp", "stream": {"name": "s2"}, "interval": 1000,
                               "filePath": "${Sequence}/${Id}.mp4", "infoPath": "sp.xml"})
    media.rtmp_wait(media.rtmp_publish(clip.path, f"rtmp://127.0.0.1:{svc.rtmp_port}/app/s2",
                                       realtime=False))
    t = wait_for(lambda: (lambda t: t if t["state"] == "error" and t["files"] == 1 else None)(
        task(port, "sp")), 20, "the failed split")
    assert t["error"] == "cannot create 1: Not a directory (ENOTDIR)", t
    first = root / "0" / "sp.mp4"
    mp4 = boxes.parse_mp4(first)
    boxes.check_fragmented(mp4)
    probe.assert_plays(first)
    # finished whole: every frame up to the split's keyframe (30 fps, keyframes every 15)
    assert len(mp4.tracks[1].samples) == 30
    assert t["totalRecordBytes"] == first.stat().st_size
    [entry] = ET.parse(root / "sp.xml").getroot().iter("file")
    assert entry.findtext("filePath") == "0/sp.mp4"
    assert int(entry.findtext("recordBytes")) == first.stat().st_size


# --- a real `pyrec serve` process: EMFILE (prlimit) and EACCES (no CAP_DAC_OVERRIDE) ---------

def serve(tmp_path: Path, root: Path, prefix: list[str] = ()) -> tuple[subprocess.Popen, int, int,
                                                                        Path]:
    api_port, rtmp_port = free_ports(2)
    log = tmp_path / "server.log"
    out = open(log, "ab")
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "pyrec", "serve", "--host", "127.0.0.1", "--api-port",
         str(api_port), "--rtmp-port", str(rtmp_port), "--access-token", TOKEN,
         "--record-root", str(root)],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try:
            call(api_port, "records", {})
            return proc, api_port, rtmp_port, log
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError("server did not start:\n" + log.read_text())


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stable_fds(pid: int) -> bool:
    before = sorted(os.listdir(f"/proc/{pid}/fd"))
    time.sleep(0.3)
    return sorted(os.listdir(f"/proc/{pid}/fd")) == before


def free_fd_numbers(pid: int, n: int) -> list[int]:
    used = {int(x) for x in os.listdir(f"/proc/{pid}/fd")}
    out, fd = [], 0
    while len(out) < n:
        if fd not in used:
            out.append(fd)
        fd += 1
    return out


def test_no_file_descriptor_left(tmp_path, clips):
    """RLIMIT_NOFILE lowered on the running server so that the publisher's connection takes
    the last descriptor: the file cannot be created (EMFILE)."""
    clip = clips.flv("openfail", seconds=2.0, gop=15)
    root = tmp_path / "root"
    proc, port, rtmp, log = serve(tmp_path, root)
    try:
        call(port, "startRecord", {"id": "t", "stream": {"name": "s1"}})
        # the API connection's descriptor is closed again on the server: wait until the
        # server's descriptors stay the same for a while
        wait_for(lambda: stable_fds(proc.pid), 10, "the server's descriptors to settle")
        _, second = free_fd_numbers(proc.pid, 2)
        soft = subprocess.run(["prlimit", f"--pid={proc.pid}", "--nofile", "--raw", "-o", "SOFT",
                               "--noheadings"], capture_output=True, text=True, check=True)
        subprocess.run(["prlimit", f"--pid={proc.pid}", f"--nofile={second}:"], check=True)
        try:
            pub = media.rtmp_publish(clip.path, f"rtmp://127.0.0.1:{rtmp}/app/s1",
                                     realtime=False)
            wait_for(lambda: "cannot create" in log.read_text(), 20, "the error in the log")
            pub.communicate(timeout=30)
        finally:
            subprocess.run(["prlimit", f"--pid={proc.pid}", f"--nofile={soft.stdout.strip()}:"],
                           check=True)
        t = task(port, "t")
        assert t["state"] == "error", t
        assert "Too many open files (EMFILE)" in t["error"], t
        assert t["files"] == 0, t
        text = log.read_text()
        assert "ERROR pyrec.tasks: task default/app/t: cannot create" in text, text
        assert [p for p in root.rglob("*.mp4")] == []
    finally:
        stop(proc)


def test_permission_denied(tmp_path, clips):
    """A folder without write permission, the server without CAP_DAC_OVERRIDE (as root
    otherwise ignores permission bits): EACCES, and the other task records on."""
    probe_run = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                                "true"], capture_output=True, text=True)
    if probe_run.returncode != 0:
        pytest.skip(f"cannot drop capabilities with setpriv: {probe_run.stderr.strip()}")
    clip = clips.flv("openfail", seconds=2.0, gop=15)
    root = tmp_path / "root"
    (root / "locked").mkdir(parents=True)
    (root / "locked").chmod(0o555)
    proc, port, rtmp, log = serve(tmp_path, root,
                                  ["setpriv", "--bounding-set=-dac_override,-dac_read_search"])
    try:
        call(port, "startRecord", {"id": "bad", "stream": {"name": "s1"},
                                   "filePath": "locked/${Id}.mp4"})
        call(port, "startRecord", {"id": "good", "stream": {"name": "s1"},
                                   "filePath": "good/${Id}.mp4"})
        media.rtmp_wait(media.rtmp_publish(clip.path, f"rtmp://127.0.0.1:{rtmp}/app/s1",
                                           realtime=False))
        wait_for(lambda: task(port, "good")["files"] == 1, 20, "the good task's file")
        t = task(port, "bad")
        assert t["state"] == "error", t
        assert "cannot create locked/bad.mp4: Permission denied (EACCES)" == t["error"], t
        assert "ERROR pyrec.tasks: task default/app/bad: cannot create" in log.read_text()
        assert list((root / "locked").iterdir()) == []
        check_complete(root / "good" / "good.mp4", clip)
    finally:
        stop(proc)
