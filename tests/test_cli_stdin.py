"""`pyrec record -` reads FLV from standard input (a live pipe from ffmpeg); Ctrl-C (SIGINT)
finalises the open file: durations patched, finished (hybrid moov), every sample playable."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import boxes
import probe


def test_stdin_pipe_then_ctrl_c_finalises(tmp_path):
    out = tmp_path / "live.mp4"
    ff = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440", "-t", "30", "-c:v", "libx264",
         "-preset", "ultrafast", "-g", "30", "-c:a", "aac", "-f", "flv", "-"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    rec = subprocess.Popen([sys.executable, "-m", "pyrec", "record", "-", "-o", str(out), "-q",
                            "--part-duration", "500"],
                           stdin=ff.stdout, stderr=subprocess.PIPE, text=True)
    assert ff.stdout is not None
    ff.stdout.close()
    try:
        deadline = time.monotonic() + 20
        # Live: fragments reach the disk while recording (at least ~2 s of media).
        while time.monotonic() < deadline:
            if out.exists() and out.stat().st_size > 0:
                mp4 = boxes.parse_mp4(out, allow_truncated=True)
                if len(mp4.fragments) >= 4:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("no fragments written while live")
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=20)
        assert rec.returncode == 130, err
        assert "finalised" in err
    finally:
        ff.kill()
        ff.wait()
        if rec.poll() is None:
            rec.kill()
    mp4 = boxes.parse_mp4(out)
    boxes.check_fragmented(mp4, finalized=True)
    seconds = mp4.mvhd_duration / mp4.movie_timescale
    assert 1.5 < seconds < 15
    read = probe.assert_plays(out)
    assert read is not None
