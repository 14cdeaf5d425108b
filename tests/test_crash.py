"""Crash safety: a recorder process killed with SIGKILL mid-stream leaves files that play, and
the open file holds every packet older than (last packet written - one part duration, or one
keyframe interval when fragments wait for keyframes: at most two parts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from fractions import Fraction

import pytest

import boxes
import checks
import media

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# Slack on top of one part: the last sample of a fragment needs its successor to know its
# duration, and the interleaver may hold a packet until the other track catches up.
SLACK_S = Fraction(1, 10)

CHILD = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {tests!r})
    import pyrec, media
    clip = media.read_truth({src!r})
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, {out!r}, part_duration_ms={part}, interval_ms={interval})
    tb = {{st.index: st.time_base for st in clip.streams}}
    track = {{st.index: i for i, st in enumerate(clip.streams)}}
    # live-like order: by time across tracks
    pkts = sorted(media.demux_packets({src!r}), key=lambda p: (p[1] * tb[p[0]], p[0]))
    t0 = min(p[1] * tb[p[0]] for p in pkts)
    n = 0
    last = None
    for index, dts, pts, key, data in pkts:
        t = dts * tb[index] - t0
        if t > {stop}:
            break
        rec.write(track[index], dts, pts, data, key)
        n += 1
        last = t
    print(json.dumps({{"written": n, "last_s": float(last)}}), flush=True)
    time.sleep(120)  # wait for SIGKILL; never close
""")


def _run_and_kill(tmp_path, src, out, *, part_ms, interval_ms, stop_s):
    code = CHILD.format(tests=TESTS_DIR, src=str(src), out=out, part=part_ms,
                        interval=interval_ms, stop=stop_s)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = p.stdout.readline()
        if not line:
            raise AssertionError(f"child died before its marker: {p.stderr.read()}")
        info = json.loads(line)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    return info


@pytest.mark.parametrize("part_ms,interval_ms", [(500, 0), (1000, 0), (500, 2000)])
def test_sigkill_mid_stream(clips, tmp_path, part_ms, interval_ms):
    clip = clips.get(video="h264", audio="aac", seconds=6.0)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    stop_s = 5.0
    info = _run_and_kill(tmp_path, clip.path, str(out_dir / "crash_${Sequence}.mp4"),
                         part_ms=part_ms, interval_ms=interval_ms, stop_s=stop_s)
    names = sorted(os.listdir(out_dir), key=lambda n: int(n.split("_")[1].split(".")[0]))
    n_files = 1 + (int(stop_s // (interval_ms / 1000)) if interval_ms else 0)
    assert len(names) == n_files, names

    streams = clip.streams
    expected = media.expected_packets(clip)
    t0 = media.first_video_key_seconds(clip)
    v_first = min(st.seconds(st.packets[0].dts) for st in streams)
    last_s = Fraction(info["last_s"]) + v_first - t0  # relative to the first keyframe
    # Fragments wait for the next keyframe when keyframes come at most two parts apart (the
    # clip's come every second): a crash then loses at most one keyframe interval.
    gop_s = Fraction(1)
    part_s = Fraction(part_ms, 1000)
    bound = max(part_s, gop_s) if gop_s <= 2 * part_s else part_s
    must_have = last_s - bound - SLACK_S
    pos = {st.index: 0 for st in streams}
    for k, name in enumerate(names):
        path = out_dir / name
        final = k < len(names) - 1
        if not final and path.stat().st_size == 0:
            continue  # opened just before the kill; the loss check below still applies
        mp4 = boxes.parse_mp4(path)  # strict: the killed process was not inside a write
        boxes.check_fragmented(mp4, finalized=final)
        tracks = checks.tracks_in_order(mp4, streams)
        exp = []
        for trk, st in zip(tracks, streams):
            n = len(trk.samples)
            e = expected[st.index][pos[st.index]:pos[st.index] + n]
            assert len(e) == n, f"{name}: more {st.kind} samples than the source has"
            checks.assert_samples_match(trk, st, e, mp4)  # a prefix of the source, bytes equal
            pos[st.index] += n
            exp.append(e)
        if all(exp):
            checks.assert_readers_agree(path, streams, exp)
    # nothing older than one part (+ slack) before the last written packet was lost
    for st in streams:
        kept = pos[st.index]
        missing = [p for p in expected[st.index][kept:] if st.seconds(p.dts) - t0 < must_have]
        assert not missing, (
            f"{st.kind}: {len(missing)} packets older than {float(must_have):.3f}s lost "
            f"(last written {float(last_s):.3f}s, part {part_ms} ms); first lost at "
            f"{float(st.seconds(missing[0].dts) - t0):.3f}s")
