"""README.md's Python example runs as written and records what it says."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import boxes
import probe

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_python_example_runs(tmp_path):
    [code] = python_blocks()
    (tmp_path / "example.py").write_text(code)
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    # One split (split() after 50 packets: at the 1 s keyframe); interval 2000 adds none.
    out = [tmp_path / "out_0.mp4", tmp_path / "out_1.mp4"]
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["copy_0.mp4", "out_0.mp4",
                                                              "out_1.mp4"]
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
