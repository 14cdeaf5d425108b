"""`pyrec record` shows a progress bar when stderr is a terminal (and only then)."""
from __future__ import annotations

import os
import pty
import subprocess
import sys


def test_progress_bar_on_a_terminal(clips, out_dir):
    flv = clips.flv("progress", seconds=3.0).path
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pyrec", "record", str(flv), "-o",
                                 str(out_dir / "p.mp4")], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO once the child closed its side
                break
            if not data:
                break
            chunks.append(data)
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0
    tty = b"".join(chunks).decode()
    assert "100%" in tty and "[" + "#" * 30 + "]" in tty, tty
    assert "p.mp4" in out.decode()  # the file list goes to stdout


def test_no_progress_bar_without_a_terminal(clips, out_dir):
    flv = clips.flv("progress", seconds=3.0).path
    r = subprocess.run([sys.executable, "-m", "pyrec", "record", str(flv), "-o",
                        str(out_dir / "q.mp4")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "%" not in r.stderr and "#" not in r.stderr
