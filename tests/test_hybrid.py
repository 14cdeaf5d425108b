"""Hybrid finish (issue 8, section 4): a finished file is also an ordinary progressive MP4.

While recording the file is fragmented (ftyp, an 8-byte free box, moov with mvex, moof+mdat
pairs); at close a complete moov is appended and the free box becomes the header of one mdat
covering the initial moov and every fragment. Checked here with independent readers: the box
walker (boxes.py, both views of the file), ffprobe, PyAV (every packet equal to the
fragmented finish's), GStreamer's qtdemux (gst-discoverer-1.0, gst-launch-1.0) and a headless
Chromium <video> fetching the file over HTTP with Range requests (duration, a seek to the
middle). Crash safety: every state the finish can be cut in (before, during and after the moov
append, before the header rewrite; a power loss that kept the header but not the moov; a full
disk) is a file that plays and that repair finishes into exactly the clean close's bytes.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import threading
from fractions import Fraction
from pathlib import Path

import pytest

import pyrec
from pyrec import repair as R

import boxes
import checks
import media
import probe

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture(scope="module")
def pair(clips, tmp_path_factory):
    """The same 4 s clip (H.264 with B-frames, GOP 1 s, + AAC) recorded with both finishes."""
    clip = clips.get(video="h264", audio="aac", seconds=4.0)
    d = tmp_path_factory.mktemp("hybrid")
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    out = {}
    for finish in ("hybrid", "fragmented"):
        rec = pyrec.Recorder(specs, str(d / f"{finish}.mp4"), part_duration_ms=500,
                             finish=finish)
        media.feed(rec, clip)
        files = rec.close()
        assert len(files) == 1 and files[0].error is None
        out[finish] = files[0].path
    return clip, out["hybrid"], out["fragmented"]


def _true_duration(clip: media.Clip) -> float:
    """What a player should show: from the first presented frame to the end of the last one,
    over all streams (the source's timestamps)."""
    starts = [s.seconds(min(p.pts for p in s.packets)) for s in clip.streams]
    ends = [s.seconds(max(p.pts + p.duration for p in s.packets)) for s in clip.streams]
    v = clip.video
    start = v.seconds(min(p.pts for p in v.packets)) if v else min(starts)
    return float(max(ends) - start)


def _inner(data: bytes, mp4: boxes.Mp4) -> bytes:
    """The fragmented file the hybrid one holds: everything before the final moov with the
    mdat header turned back into the reserved free box (what the writer had before its last
    two writes)."""
    return mp4._data


# --------------------------------------------------------------------------------------------
# Structure


def test_structure_is_one_mdat_then_a_complete_moov(pair):
    clip, hyb, frag = pair
    mp4 = boxes.parse_mp4(hyb)
    boxes.check_fragmented(mp4, finalized=True)  # the fragments inside, then check_hybrid
    h = mp4.hybrid
    assert h is not None, "not a hybrid file"
    assert [b.type for b in h.boxes] == [b"ftyp", b"mdat", b"moov"]
    ftyp, mdat, moov = h.boxes
    assert mdat.offset == ftyp.end and moov.offset == mdat.end and moov.end == os.path.getsize(hyb)
    assert mdat.header == 8  # a 32-bit size where it fits
    assert not h.has_mvex
    # every sample of the source is in the progressive sample table
    for trk, st in zip(checks.tracks_in_order(mp4, clip.streams), clip.streams):
        prog = h.tracks[trk.track_id]
        assert len(prog.samples) == len(st.packets)
        for name in ("stts", "stsc", "stsz"):
            assert prog.stbl_counts[name] > 0
        assert "stco" in prog.stbl_counts and "co64" not in prog.stbl_counts
        if st.kind == "video":
            assert prog.stbl_counts["stss"] == sum(p.key for p in st.packets)
            assert prog.stbl_counts.get("ctts", 0) > 0  # B-frames
        else:
            assert "stss" not in prog.stbl_counts  # every audio sample is sync
    # the mdat holds exactly the fragmented finish's file before its mfra
    fm = boxes.parse_mp4(frag)
    mfra = fm.top(b"mfra")[0]
    assert _inner(_read(hyb), mp4) == _read(frag)[:mfra.offset]
    assert R.is_finalized(hyb)
    assert R.repair(hyb).status == R.FINALIZED


def test_ffprobe_and_pyav_see_what_the_fragmented_file_holds(pair):
    clip, hyb, frag = pair
    fh, ff = probe.ffprobe(hyb), probe.ffprobe(frag)
    for i, st in enumerate(clip.streams):
        assert len(fh[i].packets) == len(st.packets), f"ffprobe stream {i}"
        assert [(p.pts, p.dts, p.key, p.size) for p in fh[i].packets] == \
            [(p.pts, p.dts, p.key, p.size) for p in ff[i].packets], f"ffprobe stream {i}"
    # duration: the container's, within 0.1 s of the source's
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                          "json", str(hyb)], capture_output=True, text=True, timeout=60)
    assert out.stderr == ""
    duration = float(json.loads(out.stdout)["format"]["duration"])
    assert abs(duration - _true_duration(clip)) <= 0.1, (duration, _true_duration(clip))
    # PyAV: every packet, its timestamps, flags and bytes equal to the fragmented version's
    a, b = probe.pyav_read(hyb), probe.pyav_read(frag)
    for i in range(len(clip.streams)):
        pa, pb = a.streams[i].packets, b.streams[i].packets
        assert [(p.pts, p.dts, p.key, p.sha1) for p in pa] == \
            [(p.pts, p.dts, p.key, p.sha1) for p in pb], f"PyAV stream {i}"
        # every frame decodes (FFmpeg drops, in the fragmented reading only, the audio frames
        # that end before the presentation start; the progressive reading trims them instead)
        assert a.streams[i].frames >= b.streams[i].frames
        if clip.streams[i].kind == "video":
            assert a.streams[i].frames == len(pa)
        assert not a.streams[i].decode_errors
    assert probe.ffmpeg_null(hyb) == ""


# --------------------------------------------------------------------------------------------
# GStreamer (qtdemux)


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:  # CI installs it (tests/run.sh): a missing tool is a failure, not a skip
        pytest.fail(f"{tool} is not installed (tests/run.sh installs it)")
    return path


def _gst_buffers(path) -> dict[str, list[tuple[float, float]]]:
    """(dts, pts) in seconds of every buffer qtdemux pushes, per source pad, from its log."""
    env = dict(os.environ, GST_DEBUG="qtdemux:6", GST_DEBUG_NO_COLOR="1")
    r = subprocess.run([_need("gst-launch-1.0"), "-q", "filesrc", f"location={path}", "!",
                        "qtdemux", "name=d", "d.video_0", "!", "queue", "!", "fakesink",
                        "d.audio_0", "!", "queue", "!", "fakesink"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "ERROR" not in r.stdout and " ERROR " not in r.stderr, r.stderr[-2000:]

    def secs(t: str) -> float:
        h, m, s = t.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    out: dict[str, list[tuple[float, float]]] = {}
    for m in re.finditer(r"Pushing buffer with dts ([0-9:.]+|99:99:99\.\d+), pts ([0-9:.]+), "
                         r"duration [0-9:.]+ on pad (\w+)", r.stderr):
        out.setdefault(m.group(3), []).append((secs(m.group(1)), secs(m.group(2))))
    return out


def _presented(mp4: boxes.Mp4, tid: int) -> int:
    """Samples of a progressive track that overlap its media edit (a reader applying the edit
    list, as qtdemux does, drops those that end before it)."""
    trk = mp4.hybrid.tracks[tid]
    start = next((mt for _seg, mt, _r in trk.edits if mt >= 0), 0)
    return sum(1 for s in trk.samples if s.pts + s.duration > start)


def test_gstreamer_qtdemux(pair):
    clip, hyb, _ = pair
    mp4 = boxes.parse_mp4(hyb)
    got = _gst_buffers(hyb)
    ids = mp4.track_ids()
    assert sorted(got) == ["audio_0", "video_0"], sorted(got)
    assert len(got["video_0"]) == _presented(mp4, ids[0]) == len(clip.video.packets)
    assert len(got["audio_0"]) == _presented(mp4, ids[1]) >= len(clip.audio.packets) - 2
    # video presentation times (qtdemux gives them in media time; its segment applies the
    # edit): the source's, frame for frame
    v = clip.video
    want = sorted(float(v.seconds(p.pts)) for p in v.packets)
    have = sorted(pts for _dts, pts in got["video_0"])
    assert max(abs((a - have[0]) - (b - want[0])) for a, b in zip(have, want)) < 0.002
    # duration and seekability as gst-discoverer reports them
    r = subprocess.run([_need("gst-discoverer-1.0"), str(hyb)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", r.stdout)
    assert m, r.stdout
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    assert abs(duration - _true_duration(clip)) <= 0.1, (duration, r.stdout)
    assert "Seekable: yes" in r.stdout
    # and it decodes (gstreamer1.0-libav)
    r = subprocess.run([_need("gst-launch-1.0"), "-q", "filesrc", f"location={hyb}", "!",
                        "decodebin", "name=d", "d.", "!", "queue", "!", "fakesink", "d.", "!",
                        "queue", "!", "fakesink"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ERROR" not in r.stdout + r.stderr, r.stdout + r.stderr


# --------------------------------------------------------------------------------------------
# A browser: headless Chromium plays the file from an HTTP server with Range support


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files of one folder with single-range support (Python's http.server has none);
    players fetch MP4 in ranges (the moov at the end first, then the media)."""

    root = "."
    ranges = 0
    result: dict | None = None
    got_result: threading.Event

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        """The page posts what it measured to /result."""
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        type(self).result = json.loads(body or b"{}")
        self.send_response(204)
        self.end_headers()
        self.got_result.set()

    def do_GET(self) -> None:
        name = os.path.basename(self.path.split("?", 1)[0])
        path = os.path.join(self.root, name)
        if not name or not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        start, end = 0, size - 1
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start = max(0, size - int(m.group(2)))
            if start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            type(self).ranges += 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        ctype = {".html": "text/html", ".mp4": "video/mp4"}.get(os.path.splitext(name)[1],
                                                               "application/octet-stream")
        self.send_header("Content-Type", ctype)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            try:
                while left > 0:
                    chunk = f.read(min(left, 1 << 16))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the player cancelled the request (normal while seeking)


class _Server(http.server.ThreadingHTTPServer):
    """server_close() waits for every request thread, so no socket outlives the test."""

    daemon_threads = False
    block_on_close = True


PAGE = """<!doctype html><html><body><pre id="r">pending</pre>
<video id="v" muted preload="auto"></video>
<script>
const v = document.getElementById('v'), r = document.getElementById('r'), out = {};
const done = () => {
  r.textContent = 'DONE ' + JSON.stringify(out);
  fetch('/result', {method: 'POST', body: JSON.stringify(out)});
};
v.addEventListener('error', () => {
  out.error = v.error ? v.error.code + ' ' + v.error.message : '?'; done();
});
v.addEventListener('loadedmetadata', () => {
  out.duration = v.duration; out.width = v.videoWidth;
  out.target = v.duration / 2; v.currentTime = out.target;
});
v.addEventListener('seeked', () => {
  out.seeked = v.currentTime;
  v.requestVideoFrameCallback((now, meta) => { out.frame = meta.mediaTime; done(); });
  v.play().catch(e => { out.play = String(e); done(); });
});
v.src = location.search.slice(1);
</script></body></html>"""


def _chromium(url: str, handler: type[_RangeHandler], profile: Path) -> dict:
    """Open `url` in headless Chromium (real time, no virtual-time budget) and wait for the
    page to post its result; then end the browser."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (tests/run.sh installs it)")
    p = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio",
                          "--autoplay-policy=no-user-gesture-required", "--no-first-run",
                          f"--user-data-dir={profile}", url],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        ok = handler.got_result.wait(90)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate(timeout=30)
    assert ok and handler.result is not None, f"the page posted no result: {err[-2000:]!r}"
    return handler.result


def test_chromium_plays_and_seeks(pair, tmp_path):
    """Debian's Chromium plays H.264/AAC (its FFmpeg-based demuxer reads the progressive
    moov): the duration is the true one and a seek to the middle shows a frame within one GOP
    (1 s) of the target."""
    clip, hyb, _ = pair
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(hyb, www / "rec.mp4")
    (www / "index.html").write_text(PAGE)
    handler = type("H", (_RangeHandler,), {"root": str(www), "ranges": 0, "result": None,
                                           "got_result": threading.Event()})
    srv = _Server(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        port = srv.server_address[1]
        res = _chromium(f"http://127.0.0.1:{port}/index.html?rec.mp4", handler,
                        tmp_path / "profile")
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)
    assert "error" not in res and "play" not in res, res
    assert abs(res["duration"] - _true_duration(clip)) <= 0.1, res
    assert res["width"] == clip.video.width
    keys = [p.pts for p in clip.video.packets if p.key]
    gop = float(clip.video.seconds(keys[1] - keys[0]))  # 1 s
    assert abs(res["seeked"] - res["target"]) <= gop, res
    assert res["target"] - gop <= res["frame"] <= res["target"] + gop, res
    assert handler.ranges > 0  # it did use ranges


# --------------------------------------------------------------------------------------------
# Crash safety: every state the finish can be cut in


def _zero_durations(data: bytes) -> bytes:
    """A fragmented pyrec file with its duration fields back at 0 (as before finish())."""
    mp4 = boxes.parse_mp4(data, allow_truncated=True)
    b = bytearray(data)
    moov = mp4.top(b"moov")[0]
    offs = [moov.find(b"mvhd").body + 24, moov.find(b"mvex", b"mehd").body + 4]
    for trak in moov.findall(b"trak"):
        offs += [trak.find(b"tkhd").body + 28, trak.find(b"mdia", b"mdhd").body + 24]
        elst = trak.find(b"edts", b"elst")
        if elst is not None:
            offs.append(elst.body + 8)
    for o in offs:
        b[o:o + 8] = bytes(8)
    return bytes(b)


def _states(data: bytes) -> dict[str, bytes]:
    mp4 = boxes.parse_mp4(data)
    inner = _inner(data, mp4)
    moov = data[len(inner):]
    return {
        "killed at the last fragment (durations 0)": _zero_durations(inner),
        "killed before the moov append": inner,
        "killed in the middle of the moov append": inner + moov[:len(moov) // 2],
        "killed before the header rewrite": inner + moov,
        "power loss: header on disk, moov not": data[:len(inner)],
        "power loss: header on disk, moov partly": data[:len(inner) + 100],
    }


STATES = ["killed at the last fragment (durations 0)", "killed before the moov append",
          "killed in the middle of the moov append", "killed before the header rewrite",
          "power loss: header on disk, moov not", "power loss: header on disk, moov partly"]


@pytest.mark.parametrize("state", STATES)
def test_cut_finish_is_repaired_to_the_clean_close(pair, tmp_path, state):
    _, hyb, frag = pair
    data = _read(hyb)
    src = _states(data)[state]
    path = _write(tmp_path / "cut.mp4", src)
    assert not R.is_finalized(path)
    if not state.startswith("power loss"):
        # what a killed process leaves is the fMP4 it was: readers see every packet
        pa, pb = probe.pyav_read(path, decode=False), probe.pyav_read(frag, decode=False)
        for i in pb.streams:
            assert [(p.pts, p.dts, p.sha1) for p in pa.streams[i].packets] == \
                [(p.pts, p.dts, p.sha1) for p in pb.streams[i].packets], (state, i)
        top, _ = boxes.walk(src, allow_truncated=True)
        assert [b.type for b in top[:3]] == [b"ftyp", b"free", b"moov"]
    rep = R.repair(path)
    assert rep.status == R.REPAIRED, rep
    assert _read(path) == data, state  # byte for byte the clean hybrid close
    assert R.repair(path).status == R.FINALIZED


def test_sigkill_before_the_header_rewrite(pair, tmp_path):
    """A real kill: a child process closes a recording and strace delivers SIGKILL on the
    finish's last pwrite (the header rewrite), so the file is left with its progressive moov
    appended and the reserved box still free. It plays as fMP4; repair finishes it into
    exactly the file a clean close writes."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is not installed (tests/run.sh installs it)")
    clip, hyb, frag = pair
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {TESTS_DIR!r})
        import pyrec, media
        clip = media.read_truth({str(clip.path)!r})
        specs = [media.track_spec(pyrec, st) for st in clip.streams]
        rec = pyrec.Recorder(specs, sys.argv[1], part_duration_ms=500)
        media.feed(rec, clip)
        rec.close()
    """)
    # count the pwrite64 calls of a clean run: the header rewrite is the last one
    log = tmp_path / "strace.log"
    clean = tmp_path / "clean.mp4"
    r = subprocess.run([strace, "-f", "-qq", "-e", "trace=pwrite64", "-o", str(log),
                        sys.executable, "-c", code, str(clean)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    calls = [ln for ln in log.read_text().splitlines() if "pwrite64(" in ln]
    assert calls and calls[-1].rstrip().endswith("= 8"), calls[-3:]
    assert _read(clean) == _read(hyb)
    killed = tmp_path / "killed.mp4"
    r = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=pwrite64",
                        "-e", f"inject=pwrite64:signal=KILL:when={len(calls)}",
                        sys.executable, "-c", code, str(killed)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (r.returncode, r.stderr)
    data = _read(killed)
    top, _ = boxes.walk(data)
    assert [b.type for b in top[:3]] == [b"ftyp", b"free", b"moov"]
    assert top[-1].type == b"moov" and top[-1].find(b"mvex") is None
    pa, pb = probe.pyav_read(killed, decode=False), probe.pyav_read(frag, decode=False)
    for i in pb.streams:
        assert [(p.pts, p.sha1) for p in pa.streams[i].packets] == \
            [(p.pts, p.sha1) for p in pb.streams[i].packets]
    fm = boxes.parse_mp4(frag)  # GStreamer too reads the fMP4 and skips the trailing moov
    got = _gst_buffers(killed)
    assert [len(got["video_0"]), len(got["audio_0"])] == \
        [len(fm.tracks[t].samples) for t in fm.track_ids()]
    assert R.find_unfinished(tmp_path) == [killed]
    rep = R.repair(killed)
    assert rep.status == R.REPAIRED and "progressive moov" in rep.message, rep
    assert _read(killed) == _read(hyb)


def test_repair_on_a_full_disk_waits_for_room(pair, tmp_path):
    """Repair on a full disk: the moov does not fit, the file stays the valid fMP4 it was
    (durations patched, nothing half-written); once there is room it is finished."""
    _, hyb, _ = pair
    data = _read(hyb)
    states = _states(data)
    unfinished = states["killed at the last fragment (durations 0)"]
    mnt = tmp_path / "small"
    mnt.mkdir()
    size_k = (len(unfinished) + 64 * 1024) // 1024
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_k}k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"this test needs to mount a tmpfs (root): {r.stderr.strip()}")
    try:
        path = _write(mnt / "rec.mp4", unfinished)
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:  # take every block left
            while True:
                os.write(fd, bytes(4096))
        except OSError:
            pass
        finally:
            os.close(fd)
        with pytest.raises(OSError) as e:
            R.repair(path)
        assert e.value.errno in (28, 27)  # ENOSPC (EFBIG)
        assert _read(path) == states["killed before the moov append"]  # a valid fMP4
        assert not R.is_finalized(path)
        filler.unlink()
        rep = R.repair(path)
        assert rep.status == R.REPAIRED, rep
        assert _read(path) == data
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_fragmented_option_everywhere(tmp_path, clips):
    """finish="fragmented" from the CLI and the config keeps the fMP4 + mfra finish; a bad
    value is refused with a clear message."""
    clip = clips.flv("hybrid-cli", seconds=2.0)
    for finish, want in (("fragmented", b"mfra"), ("hybrid", b"moov")):
        out = tmp_path / f"{finish}.mp4"
        r = subprocess.run([sys.executable, "-m", "pyrec", "record", str(clip.path), "-o",
                            str(out), "-q", "--finish", finish], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        top, _ = boxes.walk(_read(out))
        assert top[-1].type == want
        mp4 = checks.parse_recording(out)
        assert [len(t.samples) for t in mp4.tracks.values()] == \
            [len(s.packets) for s in clip.streams]
    r = subprocess.run([sys.executable, "-m", "pyrec", "record", str(clip.path), "-o",
                        str(tmp_path / "x.mp4"), "--finish", "progressive"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    with pytest.raises(ValueError, match="finish"):
        pyrec.record_file(str(clip.path), str(tmp_path / "y.mp4"), finish="mp4")
    from pyrec.config import ConfigError, load_config
    cfg = tmp_path / "c.toml"
    cfg.write_text('[vhosts.default.apps.app]\nfinish = "fragmented"\n'
                   '[vhosts.default.apps.live]\n')
    c = load_config(cfg, no_auth=True, host="127.0.0.1")
    assert c.app("default", "app").finish == "fragmented"
    assert c.app("default", "live").finish == "hybrid"
    cfg.write_text('[vhosts.default.apps.app]\nfinish = "mp4"\n')
    with pytest.raises(ConfigError, match="finish"):
        load_config(cfg, no_auth=True, host="127.0.0.1")


def _box(typ: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), typ) + body


def test_past_4_gib_largesize_header_and_co64(pair, tmp_path):
    """A file whose fragments pass 4 GiB (sparse: nothing near that is written or read): the
    hybrid finish (here by repair) writes a 16-byte `size 1, mdat, largesize` header over the
    reserved box and the start of the initial moov, and the chunk offsets past 4 GiB in co64.
    ffprobe reads the result."""
    _, hyb, _ = pair
    mp4 = boxes.parse_mp4(hyb)
    inner = _zero_durations(_inner(_read(hyb), mp4))
    first = mp4.fragments[0]
    head_and_frag0 = inner[:first.mdat_offset + first.mdat_size]  # ftyp, free, moov, frag 0
    trk = mp4.tracks[1]  # video
    last = trk.samples[first.nsamples[1] - 1]
    payload = mp4.payload(trk.samples[0])
    big = 1 << 29  # 10 samples of 512 MiB (FFmpeg refuses samples of 1 GiB)

    def fragment(seq: int, dts: int, sizes: list[int]) -> tuple[bytes, bytes]:
        """moof + mdat header of a video fragment with samples of these sizes."""
        tfhd = _box(b"tfhd", struct.pack(">II", 0x020000, 1))
        tfdt = _box(b"tfdt", struct.pack(">IQ", 1 << 24, dts))
        trun = _box(b"trun", struct.pack(">IIi", (1 << 24) | 0xF01, len(sizes), 0) + b"".join(
            struct.pack(">IIIi", 512, n, 0x02000000, 0) for n in sizes))
        mfhd = _box(b"mfhd", struct.pack(">II", 0, seq))
        moof = bytearray(_box(b"moof", mfhd + _box(b"traf", tfhd + tfdt + trun)))
        struct.pack_into(">i", moof, 8 + len(mfhd) + 8 + len(tfhd) + len(tfdt) + 16,
                         len(moof) + 16)
        return bytes(moof), struct.pack(">I4sQ", 1, b"mdat", 16 + sum(sizes))

    dts = last.dts + last.duration
    path = tmp_path / "huge.mp4"
    with open(path, "wb") as f:
        f.write(head_and_frag0)
        moof, mdat = fragment(100, dts, [big] * 10)  # 5 GiB of holes
        f.write(moof + mdat)
        f.seek(10 * big, os.SEEK_CUR)
        moof, mdat = fragment(101, dts + 10 * 512, [len(payload)])
        f.write(moof + mdat)
        third = f.tell()  # its chunk: past 4 GiB
        f.write(payload)
    rep = R.repair(path)
    assert rep.status == R.REPAIRED and rep.fragments == 3, rep
    assert R.is_finalized(path)
    start = mp4.boxes[0].end  # the reserved box, right after ftyp
    with open(path, "rb") as f:
        f.seek(start)
        size1, typ, large = struct.unpack(">I4sQ", f.read(16))
        assert (size1, typ) == (1, b"mdat") and large > 1 << 32
        f.seek(start + large)
        msize, mtyp = struct.unpack(">I4s", f.read(8))
        assert mtyp == b"moov" and start + large + msize == os.path.getsize(path)
        moov = f.read(msize - 8)
    assert b"co64" in moov and b"stco" in moov  # video past 4 GiB: co64; audio: stco
    co = moov.index(b"co64")
    n = struct.unpack_from(">I", moov, co + 8)[0]
    offs = struct.unpack_from(f">{n}Q", moov, co + 12)
    assert offs[-1] == third and offs[-2] < 1 << 32
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=nb_frames",
                        "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert [int(x) for x in r.stdout.split()] == [first.nsamples[1] + 11, first.nsamples[2]]


def test_cli_on_a_full_disk_finishes_what_it_wrote(clips, tmp_path):
    """`pyrec record` onto a disk that fills up: the error is reported, and the file it gives
    up is finished at once in the room its cut-back write left (a hybrid moov of a few KiB):
    a finished prefix of the source that every reader plays."""
    clip = clips.flv("hybrid-full", seconds=8.0, size="640x360", gop=25, fps=25)
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"this test needs to mount a tmpfs (root): {r.stderr.strip()}")
    try:
        out = mnt / "rec.mp4"
        r = subprocess.run([sys.executable, "-m", "pyrec", "record", str(clip.path), "-o",
                            str(out), "-q"], capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "No space left on device" in r.stderr, r.stderr
        assert R.is_finalized(out)
        mp4 = checks.parse_recording(out)  # the fragments, then the hybrid moov
        assert mp4.hybrid is not None and len(mp4.fragments) >= 1
        av_read = probe.pyav_read(out)
        for i, (trk, st) in enumerate(zip(checks.tracks_in_order(mp4, clip.streams),
                                          clip.streams)):
            assert 0 < len(trk.samples) < len(st.packets)
            assert len(av_read.streams[i].packets) == len(trk.samples)
            assert not av_read.streams[i].decode_errors
        assert probe.ffmpeg_null(out) == ""
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
