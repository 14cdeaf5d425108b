"""README.md's Python example runs as written and records what it says."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import boxes
import probe

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_python_example_runs(tmp_path):
    [code] = [b for b in python_blocks() if not b.startswith("# receiver.py")]  # (webhooks')
    (tmp_path / "example.py").write_text(code)
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    # One split (split() after 50 packets: at the 1 s keyframe); interval 2000 adds none.
    out = [tmp_path / "out_0.mp4", tmp_path / "out_1.mp4"]
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["copy_0.mp4", "frag_0.mp4",
                                                              "out_0.mp4", "out_1.mp4"]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("out_0.mp4 ") and lines[1].startswith("out_1.mp4 "), r.stdout
    video = audio = 0
    for path in out:
        mp4 = boxes.parse_mp4(path)
        boxes.check_fragmented(mp4)
        v, a = mp4.tracks[1].samples, mp4.tracks[2].samples
        assert v[0].flags & 0x00010000 == 0, f"{path.name} does not start on a keyframe"
        video += len(v)
        audio += len(a)
        probe.assert_plays(path)
    assert video == 60  # every frame the encoder made
    assert audio >= 94  # every AAC frame (the encoder's flush adds its tail)
    # record_file of the first file: the same packets again.
    first, copy = probe.count_packets(out[0]), probe.count_packets(tmp_path / "copy_0.mp4")
    assert copy == first and sum(first) > 0
    probe.assert_plays(tmp_path / "copy_0.mp4")
    # finish="fragmented": the same packets, the file left fMP4 with an mfra index at its end.
    frag = tmp_path / "frag_0.mp4"
    assert probe.count_packets(frag) == first
    assert frag.read_bytes()[-16:][4:8] == b"mfro"
    probe.assert_plays(frag)


# --- the documented contract of write / write_batch / split (pyrec/_core.pyi) ---------------

def _stub_docs() -> dict[str, str]:
    import ast
    from importlib import resources

    tree = ast.parse((resources.files("pyrec") / "_core.pyi").read_text(encoding="utf-8"))
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Recorder"]
    return {f.name: ast.get_docstring(f) or "" for f in cls.body
            if isinstance(f, ast.FunctionDef)}


def test_stub_documents_write_write_batch_and_split():
    docs = _stub_docs()
    for word in ("timescale", "key", "PyrecError"):
        assert word in docs["write"], word
    for word in ("int32", "int64", "uint8", "bit 0", "INT64_MIN", "Returns the number",
                 "ValueError"):
        assert word in docs["write_batch"], word
    assert "keyframe" in docs["split"] and "at_ms" in docs["split"]


def test_write_batch_behaves_as_documented(tmp_path):
    import numpy as np

    import pyrec
    from pyrec import _core

    files = []

    def opener(seq: int, start_ms: int) -> int:
        return os.open(tmp_path / f"b{seq}.mp4", os.O_WRONLY | os.O_CREAT, 0o644)

    def closer(info: dict) -> None:
        files.append(info)
        os.close(info["fd"])

    aac = pyrec.TrackSpec("aac", 48000, sample_rate=48000, channels=2, config=b"\x11\x90")
    rec = _core.Recorder([aac.as_core()], opener, closer)
    n = 4
    track = np.zeros(n, np.int32)
    dts = np.arange(n, dtype=np.int64) * 1024
    pts = np.full(n, np.iinfo(np.int64).min, np.int64)  # no pts: the same as dts
    flags = np.ones(n, np.uint8)
    sizes = np.array([6, 0, 6, 6], np.int64)  # packet 1 is empty: rejected
    frame = b"\x21\x10\x05\x00\xa0\x1c"
    payload = frame * 3 + b"tail is ignored"
    assert rec.write_batch(track, dts, pts, flags, sizes, payload) == 1
    with pytest.raises(ValueError, match="dtype"):
        rec.write_batch(track.astype(np.int64), dts, pts, flags, sizes, payload)
    with pytest.raises(ValueError, match="payload"):
        rec.write_batch(track, dts, pts, flags, sizes, frame)
    stats = rec.close()
    assert stats["tracks"][0]["rejected"] == 1 and stats["tracks"][0]["written"] == 3
    [f] = files
    assert f["packets"] == 3
