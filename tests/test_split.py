"""Splitting: interval and on-demand splits land on video keyframes; the keyframe is the first
sample of the next file; nothing is lost or doubled; discontinuity files restart at 0 and
continuity files continue exactly where the previous one ended."""

from __future__ import annotations

import os
from fractions import Fraction

import pytest

import pyrec

import checks
import media

SECONDS, GOP, FPS = 10.0, 30, 30  # keyframe every second


@pytest.fixture
def clip10(clips):
    return clips.get(video="h264", audio="aac", seconds=SECONDS, gop=GOP, fps=FPS)


def _record(clip, out_dir, **opts):
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, str(out_dir / "part_${Sequence}.mp4"), **opts)
    media.feed(rec, clip)
    return rec.close()


def _check_split_files(clip, files, split_keys_s, *, continuity: bool):
    """`split_keys_s`: source times (s, relative to the first keyframe) of the keyframes that
    must start files 1..n-1."""
    streams = clip.streams
    expected = media.expected_packets(clip)
    v = clip.video
    vexp = expected[v.index]
    t0 = v.seconds(vexp[0].dts)
    assert len(files) == len(split_keys_s) + 1, (
        f"{len(files)} files, expected {len(split_keys_s) + 1} "
        f"(splits at {split_keys_s}); got {[(f.start_ms, f.end_ms) for f in files]}")
    checks.files_ok(files)
    assert [f.sequence for f in files] == list(range(len(files)))
    mp4s = [checks.parse_recording(f.path) for f in files]
    tracks = [checks.tracks_in_order(m, streams) for m in mp4s]

    # Video: each file starts on the expected keyframe
    bounds = [0] + [next(i for i, p in enumerate(vexp) if v.seconds(p.dts) - t0 >= Fraction(s)
                         and p.key) for s in split_keys_s] + [len(vexp)]
    for k, (m, trs) in enumerate(zip(mp4s, tracks)):
        vt = trs[0]
        assert vt.samples, f"file {k}: no video"
        assert vt.samples[0].sync, f"file {k}: first video sample is not a sync sample"
        assert len(vt.samples) == bounds[k + 1] - bounds[k], (
            f"file {k}: {len(vt.samples)} video samples, expected {bounds[k + 1] - bounds[k]}")
        assert m.payload(vt.samples[0]) and media.sha1(m.payload(vt.samples[0])) == \
            vexp[bounds[k]].sha1, f"file {k} does not start with the split keyframe"

    # Every track: the files together hold exactly the expected packets, in order
    for ti, st in enumerate(streams):
        got = [media.sha1(m.payload(s)) for m, trs in zip(mp4s, tracks)
               for s in trs[ti].samples]
        want = [p.sha1 for p in expected[st.index]]
        assert len(got) == len(want), f"{st.kind}: {len(got)} packets in all files, {len(want)}"
        assert got == want, f"{st.kind}: packets lost, doubled or reordered across files"

    # Audio lands in the file of its time: within one audio frame of the video boundary
    a = clip.audio
    if a is not None:
        ai = streams.index(a)
        adur = Fraction(a.packets[1].dts - a.packets[0].dts) * a.time_base
        pos = 0
        for k, trs in enumerate(tracks):
            n = len(trs[ai].samples)
            if k > 0 and n:
                first = expected[a.index][pos]
                split = Fraction(split_keys_s[k - 1])
                at = a.seconds(first.dts) - t0
                assert abs(at - split) <= adur, (
                    f"file {k}: first audio at {float(at):.3f}s, split at {float(split):.3f}s")
            pos += n

    # Timestamps across files
    for k in range(len(files)):
        trs = tracks[k]
        if not continuity or k == 0:
            assert trs[0].samples[0].dts == 0, f"file {k}: video starts at {trs[0].samples[0].dts}"
        if continuity and k > 0:
            for ti, trk in enumerate(trs):
                prev = tracks[k - 1][ti]
                if trk.samples and prev.samples:
                    # exact in presentation time, edit lists included (the first file has
                    # one for B-frames; the next ones continue its timeline)
                    start = trk.samples[0].dts - trk.presentation_offset()
                    end = prev.end_dts - prev.presentation_offset()
                    assert start == end, (
                        f"file {k} track {trk.track_id}: starts at {start} (tfdt "
                        f"{trk.samples[0].dts}, edit {trk.edits}), previous file ended at "
                        f"{end} (edit {prev.edits})")
    # Reported media times chain up: a file ends where the next starts, give or take the
    # audio frame that straddles the split
    slack = 0
    if clip.audio is not None:
        a = clip.audio
        slack = float((a.packets[1].dts - a.packets[0].dts) * a.time_base) * 1000 + 1
    for k in range(1, len(files)):
        assert files[k].start_ms <= files[k - 1].end_ms <= files[k].start_ms + slack, (
            [(f.start_ms, f.end_ms) for f in files])
    for k, s in enumerate(split_keys_s):
        assert abs(files[k + 1].start_ms - s * 1000) <= 1, (k, files[k + 1].start_ms, s)

    # Each file plays on its own with its share of the packets
    pos = {st.index: 0 for st in streams}
    for k, (f, trs) in enumerate(zip(files, tracks)):
        exp = []
        for ti, st in enumerate(streams):
            n = len(trs[ti].samples)
            exp.append(expected[st.index][pos[st.index]:pos[st.index] + n])
            pos[st.index] += n
        for trk, st, e in zip(trs, streams, exp):
            checks.assert_samples_match(trk, st, e, mp4s[k])
        if not continuity:
            checks.assert_aligned(mp4s[k], trs, streams, exp)
        checks.assert_durations(mp4s[k], trs)
        checks.assert_readers_agree(f.path, streams, exp)
    return mp4s


@pytest.mark.parametrize("segmentation", ["discontinuity", "continuity"])
def test_interval_split(clip10, out_dir, segmentation):
    files = _record(clip10, out_dir, interval_ms=2000, segmentation=segmentation)
    _check_split_files(clip10, files, [2, 4, 6, 8], continuity=segmentation == "continuity")
    names = sorted(os.listdir(out_dir))
    assert names == [f"part_{k}.mp4" for k in range(5)], names


def test_interval_not_multiple_of_gop(clip10, out_dir):
    """interval 2500 ms: the split waits for the first keyframe at least 2.5 s after the file
    start (3 s), and the next file's own 2.5 s run from there (6 s, 9 s)."""
    files = _record(clip10, out_dir, interval_ms=2500)
    _check_split_files(clip10, files, [3, 6, 9], continuity=False)


def test_manual_split_now_and_at(clip10, out_dir):
    clip = clip10
    v = clip.video
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, str(out_dir / "part_${Sequence}.mp4"))
    t0 = v.seconds(v.packets[0].dts)
    done = set()
    # Split "now" once 3.3 s of video has been written: lands on the 4 s keyframe. Then ask
    # for a split at media time 6500 ms: lands on the 7 s keyframe.
    for index, dts, pts, key, data in media.demux_packets(clip.path):
        t = clip.streams.index(next(s for s in clip.streams if s.index == index))
        if t == 0 and "now" not in done and v.seconds(dts) - t0 >= Fraction(33, 10):
            rec.split()
            done.add("now")
        if t == 0 and "at" not in done and v.seconds(dts) - t0 >= 5:
            rec.split(6500)
            done.add("at")
        rec.write(t, dts, pts, data, key)
    files = rec.close()
    _check_split_files(clip, files, [4, 7], continuity=False)


def test_callable_output(clip10, out_dir):
    calls = []

    def name(sequence: int, start_ms: int) -> str:
        calls.append((sequence, start_ms))
        return str(out_dir / f"cb-{sequence}-{start_ms}.mp4")

    specs = [media.track_spec(pyrec, st) for st in clip10.streams]
    rec = pyrec.Recorder(specs, name, interval_ms=4000)
    media.feed(rec, clip10)
    files = rec.close()
    assert calls == [(0, 0), (1, 4000), (2, 8000)], calls
    assert [os.path.basename(f.path) for f in files] == [f"cb-{s}-{m}.mp4" for s, m in calls]
    _check_split_files(clip10, files, [4, 8], continuity=False)


def test_stats_count_files_and_media(clip10, out_dir):
    specs = [media.track_spec(pyrec, st) for st in clip10.streams]
    rec = pyrec.Recorder(specs, str(out_dir / "part_${Sequence}.mp4"), interval_ms=3000)
    media.feed(rec, clip10)
    rec.flush()
    st = rec.stats()
    files = rec.close()
    assert st["files"] == len(files) == 4
    assert abs(st["media_ms"] - SECONDS * 1000) <= 200, st["media_ms"]
    total = sum(f.packets for f in files)
    expected = media.expected_packets(clip10)
    assert total == sum(len(v) for v in expected.values())
