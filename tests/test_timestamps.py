"""Timestamp repair through the whole recorder, row by row, with exact output times.

The input is a real FLV (ffmpeg CLI: H.264 with B-frames + AAC, millisecond timestamps, as
RTMP delivers them); each row rewrites its timestamps the way broken encoders and servers do,
records it with 32-bit wrap handling (RTMP), and reads the file back with our box walker."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import boxes
import media
import probe
import pyrec

WRAP = 1 << 32
HOUR = 3_600_000


@dataclass
class Pkt:
    track: int
    dts: int
    pts: int
    key: bool
    data: bytes


@pytest.fixture(scope="module")
def source(clips) -> list[Pkt]:
    clip = clips.flv("timestamps", seconds=4.0, gop=30, fps=30)
    assert [s.kind for s in clip.streams] == ["video", "audio"]
    return [Pkt(i, d, p, k, b) for i, d, p, k, b in media.demux_packets(clip.path)]


@pytest.fixture(scope="module")
def specs(clips):
    clip = clips.flv("timestamps", seconds=4.0, gop=30, fps=30)
    return [media.track_spec(pyrec, st) for st in clip.streams]


def record(tmp_path, specs, pkts: list[Pkt], name: str):
    out = tmp_path / f"{name}.mp4"
    rec = pyrec.Recorder(specs, str(out), wrap_bits=32, jump_threshold_ms=10_000)
    for p in pkts:
        rec.write(p.track, p.dts, p.pts, p.data, p.key)
    rec.close()
    mp4 = boxes.parse_mp4(out)
    boxes.check_fragmented(mp4)
    probe.assert_plays(out)
    return mp4, rec.stats()


def times(mp4, track: int) -> list[tuple[int, int]]:
    """(dts, cto) of every sample of track index `track` (track_ID track+1)."""
    return [(s.dts, s.cto) for s in mp4.tracks[track + 1].samples]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, specs, source):
    mp4, stats = record(tmp_path_factory.mktemp("ts"), specs, source, "baseline")
    return mp4, stats


def typical(dts: list[int]) -> int:
    """tsfix's typical duration after these DTS: lower median of the last 15 steps."""
    steps = sorted(b - a for a, b in zip(dts[-16:], dts[-15:]))
    return steps[(len(steps) - 1) // 2]


def placed(before: list[int], nxt: int) -> int:
    """Where tsfix puts a packet that needs room after `before` (DTS placed so far) when the
    next packet is at `nxt`: last + min(d, room / 2) with room >= d, else last + d."""
    d, last = typical(before), before[-1]
    room = nxt - last
    return last + (min(d, room // 2) if room >= d else d)


def video_index(pkts: list[Pkt], n: int) -> int:
    """Position in `pkts` of the n-th video packet."""
    return [i for i, p in enumerate(pkts) if p.track == 0][n]


def test_baseline_rebased_exactly_with_b_frames(baseline, source):
    mp4, stats = baseline
    video = [p for p in source if p.track == 0]
    audio = [p for p in source if p.track == 1]
    k0 = video[0].dts
    assert video[0].key
    # Every video sample: dts rebased to the first keyframe, composition offset exact.
    assert times(mp4, 0) == [(p.dts - k0, p.pts - p.dts) for p in video]
    assert any(p.pts - p.dts > 0 for p in video), "the clip should have B-frames"
    # Audio keeps its offset from video to the millisecond.
    assert [d for d, _ in times(mp4, 1)] == [p.dts - k0 for p in audio if p.dts >= k0]
    # The presentation starts at the first keyframe's PTS on every track (one shift).
    shift = video[0].pts - video[0].dts
    assert mp4.tracks[1].edits[0][1] == shift
    assert mp4.tracks[2].edits[0][1] == shift
    for t in stats["tracks"]:
        assert (t["wrap"], t["backward"], t["equal"]) == (0, 0, 0)
        assert (t["jump_forward"], t["jump_backward"], t["pts_fixed"]) == (0, 0, 0)


def test_wrap_at_2_32_ms(tmp_path, specs, source, baseline):
    # The stream's clock passes 2^32 ms (49.7 days of RTMP uptime) 1.5 s in.
    base = WRAP - 1500
    pkts = [Pkt(p.track, (p.dts + base) % WRAP, (p.pts + base) % WRAP, p.key, p.data)
            for p in source]
    assert any(p.dts < 1000 for p in pkts) and any(p.dts > WRAP - 2000 for p in pkts)
    mp4, stats = record(tmp_path, specs, pkts, "wrap")
    assert times(mp4, 0) == times(baseline[0], 0)
    assert times(mp4, 1) == times(baseline[0], 1)
    assert [t["wrap"] for t in stats["tracks"]] == [1, 1]
    assert [t["jump_forward"] + t["jump_backward"] for t in stats["tracks"]] == [0, 0]


def test_equal_dts(tmp_path, specs, source, baseline):
    pkts = list(source)
    i, j = video_index(pkts, 40), video_index(pkts, 39)
    prev = pkts[j]
    pkts[i] = Pkt(0, prev.dts, pkts[i].pts, pkts[i].key, pkts[i].data)
    mp4, stats = record(tmp_path, specs, pkts, "equal")
    want = list(times(baseline[0], 0))
    k0 = source[video_index(source, 0)].dts
    # Placed between its neighbours (where it was, within the 1 ms rounding); PTS moved with it.
    vd = [p.dts for p in source if p.track == 0]
    at = placed(vd[:40], vd[41])
    assert abs(at - vd[40]) <= 1
    want[40] = (at - k0, source[i].pts - prev.dts)
    assert times(mp4, 0) == want
    assert times(mp4, 1) == times(baseline[0], 1)
    assert stats["tracks"][0]["equal"] == 1


def test_backward_dts(tmp_path, specs, source, baseline):
    pkts = list(source)
    i, j = video_index(pkts, 50), video_index(pkts, 49)
    prev = pkts[j]
    pkts[i] = Pkt(0, prev.dts - 5, pkts[i].pts - (pkts[i].dts - (prev.dts - 5)), pkts[i].key,
                  pkts[i].data)
    mp4, stats = record(tmp_path, specs, pkts, "backward")
    want = list(times(baseline[0], 0))
    k0 = source[video_index(source, 0)].dts
    vd = [p.dts for p in source if p.track == 0]
    at = placed(vd[:50], vd[51])
    assert vd[49] + 16 <= at <= vd[51] - 16
    want[50] = (at - k0, pkts[i].pts - pkts[i].dts)  # PTS moved with DTS
    assert times(mp4, 0) == want
    assert times(mp4, 1) == times(baseline[0], 1)
    assert stats["tracks"][0]["backward"] == 1


def test_forward_jump_of_one_hour_keeps_tracks_aligned(tmp_path, specs, source, baseline):
    t_jump = 2000  # every packet (both tracks) from 2 s on jumps forward one hour
    pkts = [Pkt(p.track, p.dts + HOUR, p.pts + HOUR, p.key, p.data) if p.dts >= t_jump else p
            for p in source]
    mp4, stats = record(tmp_path, specs, pkts, "jump")
    # The first packet after the jump re-anchors: it follows its track's previous packet by
    # that track's previous step. Every later packet of EVERY track moves by that same delta.
    first = next(i for i, p in enumerate(source) if p.dts >= t_jump)
    tr = source[first].track
    same = [p for p in source[:first] if p.track == tr]
    delta = (same[-1].dts + typical([p.dts for p in same])) - source[first].dts
    assert abs(delta) < 50
    for t in (0, 1):
        base = times(baseline[0], t)
        k0 = source[video_index(source, 0)].dts
        want = [(d + delta, c) if d + k0 >= t_jump else (d, c) for d, c in base]
        assert times(mp4, t) == want, f"track {t}"
    assert [s["jump_forward"] for s in stats["tracks"]] == [1, 1]
    assert [s["jump_backward"] + s["backward"] + s["equal"] for s in stats["tracks"]] == [0, 0]


def test_audio_before_the_first_video_keyframe(tmp_path, specs, source):
    # The first keyframe is lost: the stream begins with a GOP tail and 1 s of audio.
    pkts = list(source)
    del pkts[video_index(pkts, 0)]
    video = [p for p in pkts if p.track == 0]
    key = next(p for p in video if p.key)
    mp4, stats = record(tmp_path, specs, pkts, "audio_first")
    v, a = times(mp4, 0), times(mp4, 1)
    assert v[0] == (0, key.pts - key.dts)
    assert len(v) == len([p for p in video if p.dts >= key.dts])
    kept_audio = [p for p in pkts if p.track == 1 and p.dts >= key.dts]
    assert [d for d, _ in a] == [p.dts - key.dts for p in kept_audio]
    dropped_video = len([p for p in video if p.dts < key.dts])
    dropped_audio = len([p for p in pkts if p.track == 1 and p.dts < key.dts])
    assert dropped_video == 29 and dropped_audio > 30
    assert stats["tracks"][0]["dropped_start"] == dropped_video
    assert stats["tracks"][1]["dropped_start"] == dropped_audio
