"""Fragment layout: a moof+mdat at least every part_duration_ms of media (two parts when it
waits for a keyframe), fragments that start on keyframes, and the mfra index of a cleanly
closed file points at the keyframes."""

from __future__ import annotations

from fractions import Fraction

import pytest

import pyrec

import checks
import media


@pytest.mark.parametrize("part_ms", [250, 1000])
def test_part_duration_bounds_fragments(clips, out_dir, part_ms):
    clip = clips.get(video="h264", audio="aac", seconds=3.0)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, str(out_dir / "f_${Sequence}.mp4"), part_duration_ms=part_ms)
    media.feed(rec, clip)
    files = rec.close()
    mp4 = checks.parse_recording(files[0].path)
    part = Fraction(part_ms, 1000)
    frame = Fraction(1, 30)
    for f in mp4.fragments:
        for tid, first in f.first_sample.items():
            trk = mp4.tracks[tid]
            ss = trk.samples[first:first + f.nsamples[tid]]
            if not ss:
                continue
            span = Fraction(ss[-1].dts + ss[-1].duration - ss[0].dts, trk.timescale)
            # 1 s keyframes: within two parts, a fragment waits for the next one
            bound = 2 * part if part >= Fraction(1, 2) else part
            assert span <= bound + frame, (
                f"fragment at {f.offset}, track {tid}: {float(span):.3f}s of media, "
                f"part duration {part_ms} ms")
    n = len(mp4.fragments)
    assert n >= int(3.0 / float(part)) - 1, f"only {n} fragments for 3 s at {part_ms} ms"


def test_mfra_indexes_keyframes(clips, out_dir):
    clip = clips.get(video="h264", audio="aac", seconds=3.0)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, str(out_dir / "f_${Sequence}.mp4"), part_duration_ms=500,
                         finish="fragmented")  # the mfra is the fragmented finish's index
    media.feed(rec, clip)
    files = rec.close()
    mp4 = checks.parse_recording(files[0].path)  # check_mfra: mfro size, entries -> sync samples
    v = mp4.video
    assert v.tfra, "no tfra entries for the video track"
    keys = [s.dts for s in v.samples if s.sync]
    # every keyframe that starts a fragment is indexed
    starts = {v.samples[f.first_sample[v.track_id]].dts for f in mp4.fragments
              if f.nsamples.get(v.track_id)}
    indexed = {e.time for e in v.tfra} | {v.samples[0].dts}
    for k in keys:
        if k in starts:
            assert k in indexed or any(k + s.cto in indexed for s in v.samples if s.dts == k), (
                f"keyframe at {k} starts a fragment but is not in tfra")


@pytest.mark.parametrize("gop,part_ms,aligned", [
    (30, 1000, True),   # 1 s keyframes, 1 s parts
    (45, 1000, True),   # 1.5 s keyframes: a fragment waits for the next one
    (60, 1000, True),   # 2 s: still within two parts
    (90, 1000, False),  # 3 s: too rare, cut at the part duration (crash-loss bound)
])
def test_fragments_start_on_keyframes(clips, out_dir, gop, part_ms, aligned):
    """Readers that reset their decoder per fragment (GStreamer's libvpx/libaom paths) need
    fragments that start on keyframes: once the keyframe interval is known (from the second
    keyframe on) and is at most two parts, every video fragment starts on one."""
    clip = clips.get(video="h264", audio="aac", seconds=6.0, gop=gop)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, str(out_dir / "k_${Sequence}.mp4"), part_duration_ms=part_ms)
    media.feed(rec, clip)
    files = rec.close()
    mp4 = checks.parse_recording(files[0].path)
    v = mp4.video
    second_key = [s.dts for s in v.samples if s.sync][1]
    starts = [v.samples[f.first_sample[v.track_id]] for f in mp4.fragments
              if f.nsamples.get(v.track_id)]
    later = [s for s in starts if s.dts >= second_key]
    assert len(later) >= 2
    if aligned:
        assert all(s.sync for s in later), (
            f"GOP {gop}: fragments start on non-keyframes at "
            f"{[s.dts for s in later if not s.sync]}")
        spans = [b.dts - a.dts for a, b in zip(starts, starts[1:])]
        assert max(spans) <= 2 * part_ms * v.timescale // 1000
    else:
        assert not all(s.sync for s in later)
        spans = [b.dts - a.dts for a, b in zip(starts, starts[1:])]
        assert max(spans) <= (part_ms + 40) * v.timescale // 1000
