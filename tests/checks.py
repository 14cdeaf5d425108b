"""Assertions shared by the recording tests: a written file against the clip it came from.

Every check is made through an independent reader: our box walker (boxes.py) for the raw
fMP4 fields, ffprobe and PyAV (probe.py) for what players see."""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import boxes
import media
import probe
from media import Packet, StreamTruth


def parse_recording(path, *, finalized: bool = True) -> boxes.Mp4:
    mp4 = boxes.parse_mp4(path)
    boxes.check_fragmented(mp4, finalized=finalized)
    return mp4


def audio_rate(st: StreamTruth) -> int:
    """The timescale pyrec gives an audio track it times itself (FLV/RTMP, PyAV sources): the
    sample rate, 48000 for Opus."""
    return 48000 if st.codec == "opus" else st.sample_rate


def tracks_in_order(mp4: boxes.Mp4, streams: Sequence[StreamTruth]) -> list[boxes.Track]:
    """Track i of the recording is track_ID i+1 and has the kind of streams[i]; its timescale
    is the source's (as a TrackSpec gives it) or, for audio, its sample rate."""
    ids = mp4.track_ids()
    assert ids == list(range(1, len(streams) + 1)), f"track_IDs {ids} for {len(streams)} tracks"
    out = []
    for st, tid in zip(streams, ids):
        trk = mp4.tracks[tid]
        want = {"video": "vide", "audio": "soun"}[st.kind]
        assert trk.handler == want, f"track {tid}: handler {trk.handler}, source is {st.kind}"
        ok = (st.timescale, audio_rate(st)) if st.kind == "audio" else (st.timescale,)
        assert trk.timescale in ok, (
            f"track {tid}: timescale {trk.timescale}, TrackSpec said {st.timescale}")
        out.append(trk)
    return out


def assert_samples_match(trk: boxes.Track, st: StreamTruth, expected: Sequence[Packet],
                         mp4: boxes.Mp4, *, compare_bytes: bool = True,
                         payload_of=None) -> None:
    """Same packets, same order: sizes/bytes, keyframe flags, decode-time steps and composition
    offsets exact in the track timescale (only a constant rebase allowed)."""
    got = trk.samples
    assert len(got) == len(expected), (
        f"track {trk.track_id} ({st.codec}): {len(got)} samples, expected {len(expected)}")
    if not got:
        return
    d0, e0 = got[0].dts, expected[0].dts
    # Audio timed at its sample rate from millisecond sources: within 1 ms of the source
    # (snapped to the sample grid), compared in seconds.
    rescaled = trk.timescale != st.timescale
    tol = Fraction(1, 1000) + Fraction(1, trk.timescale)
    for i, (s, p) in enumerate(zip(got, expected)):
        where = f"track {trk.track_id} ({st.codec}) sample {i}"
        if compare_bytes:
            data = mp4.payload(s)
            want = payload_of(p) if payload_of else None
            if want is None:
                assert s.size == p.size, f"{where}: size {s.size}, source {p.size}"
                assert media.sha1(data) == p.sha1, f"{where}: payload differs from the source"
            else:
                assert data == want, f"{where}: payload differs from the converted source"
        if st.kind == "video":
            assert s.sync == p.key, f"{where}: sync={s.sync}, source key={p.key}"
        else:
            assert s.sync, f"{where}: audio sample not marked sync"
        if rescaled:
            step = Fraction(s.dts - d0, trk.timescale) - st.seconds(p.dts - e0)
            assert abs(step) <= tol, (
                f"{where}: decode time {float(step) * 1000:+.3f} ms off the source's")
            cto = Fraction(s.cto, trk.timescale) - st.seconds(p.pts - p.dts)
            assert abs(cto) <= tol, f"{where}: cto {s.cto}, source pts-dts {p.pts - p.dts}"
            continue
        assert s.dts - d0 == p.dts - e0, (
            f"{where}: dts step {s.dts - d0}, source {p.dts - e0} (ticks since the first)")
        assert s.cto == p.pts - p.dts, f"{where}: cto {s.cto}, source pts-dts {p.pts - p.dts}"
    assert got[0].sync, f"track {trk.track_id}: first sample is not a sync sample"
    assert got[-1].duration > 0, f"track {trk.track_id}: last sample has duration 0"


def presented_seconds(trk: boxes.Track, mp4: boxes.Mp4, s: boxes.Sample) -> Fraction:
    """Presentation time of a sample after the edit list (empty edit + media_time)."""
    return (Fraction(s.pts - trk.presentation_offset(), trk.timescale)
            + Fraction(trk.empty_edit(), mp4.movie_timescale or 1))


def assert_aligned(mp4: boxes.Mp4, tracks: Sequence[boxes.Track],
                   streams: Sequence[StreamTruth], expected: Sequence[Sequence[Packet]], *,
                   video_starts_at_zero: bool = True) -> None:
    """Cross-track timing: the first video sample decodes at 0 (discontinuity files), every
    other track keeps its decode offset from video, and presentation (after edit lists) keeps
    the source's A/V alignment: out_pts - src_pts is the same for every track."""
    vi = next((i for i, st in enumerate(streams) if st.kind == "video"), None)
    if vi is None or not tracks[vi].samples:
        return
    vt, vs, vexp = tracks[vi], streams[vi], expected[vi]
    if video_starts_at_zero:
        assert vt.samples[0].dts == 0, f"first video decode time {vt.samples[0].dts}, not 0"
    v_src0 = vs.seconds(vexp[0].dts)
    v_out0 = Fraction(vt.samples[0].dts, vt.timescale)
    c_video = presented_seconds(vt, mp4, vt.samples[0]) - vs.seconds(vexp[0].pts)
    for trk, st, exp in zip(tracks, streams, expected):
        if trk is vt or not trk.samples:
            continue
        tol = Fraction(1, trk.timescale) + Fraction(1, vt.timescale)
        want = st.seconds(exp[0].dts) - v_src0
        got = Fraction(trk.samples[0].dts, trk.timescale) - v_out0
        assert abs(got - want) <= tol, (
            f"track {trk.track_id}: starts {float(got):.6f}s after video, source "
            f"{float(want):.6f}s")
        c = presented_seconds(trk, mp4, trk.samples[0]) - st.seconds(exp[0].pts)
        assert abs(c - c_video) <= tol, (
            f"track {trk.track_id}: presented {float(c - c_video) * 1000:+.3f} ms off video "
            f"compared with the source (edit lists: video {vt.edits}, this {trk.edits})")


def assert_durations(mp4: boxes.Mp4, tracks: Sequence[boxes.Track]) -> None:
    """A cleanly closed file declares its real duration (mvhd/mehd/tkhd/mdhd patched)."""
    spans = [Fraction(t.media_duration(), t.timescale) for t in tracks if t.samples]
    longest = max(spans)
    mvhd = Fraction(mp4.mvhd_duration, mp4.movie_timescale)
    tol = Fraction(1, 10)
    assert abs(mvhd - longest) <= tol, (
        f"mvhd duration {float(mvhd):.3f}s, longest track {float(longest):.3f}s")
    if mp4.mehd_duration is not None:
        mehd = Fraction(mp4.mehd_duration, mp4.movie_timescale)
        assert abs(mehd - longest) <= tol, f"mehd {float(mehd):.3f}s vs {float(longest):.3f}s"
    for t in tracks:
        if not t.samples:
            continue
        span = Fraction(t.media_duration(), t.timescale)
        if t.mdhd_duration:
            md = Fraction(t.mdhd_duration, t.timescale)
            assert abs(md - span) <= tol, f"track {t.track_id}: mdhd {float(md)} vs {float(span)}"


def assert_readers_agree(path, streams: Sequence[StreamTruth],
                         expected: Sequence[Sequence[Packet]], *, compare_bytes: bool = True,
                         source_frames: dict[int, int] | None = None) -> probe.AvRead:
    """ffprobe and PyAV see the same packets as the source (count, size, sha1, timestamp steps,
    A/V alignment), every frame decodes, and `ffmpeg -f null` is silent."""
    fp = probe.ffprobe(path)
    assert len(fp) == len(streams), f"ffprobe sees {len(fp)} streams, expected {len(streams)}"
    for i, (st, exp) in enumerate(zip(streams, expected)):
        got = fp[i].packets
        assert len(got) == len(exp), (
            f"ffprobe stream {i} ({st.codec}): {len(got)} packets, expected {len(exp)}")
        if compare_bytes:
            assert [p.size for p in got] == [p.size for p in exp], f"ffprobe stream {i}: sizes"
        if st.kind == "video":
            assert [p.key for p in got] == [p.key for p in exp], f"ffprobe stream {i}: keys"
    r = probe.pyav_read(path)
    offsets = []
    for i, (st, exp) in enumerate(zip(streams, expected)):
        s = r.streams[i]
        ok = (st.time_base, Fraction(1, audio_rate(st) or 1)) if st.kind == "audio" else (
            st.time_base,)
        assert s.time_base in ok, f"PyAV stream {i}: time base {s.time_base}"
        assert len(s.packets) == len(exp), f"PyAV stream {i}: {len(s.packets)} packets"
        if compare_bytes:
            bad = [k for k, (a, b) in enumerate(zip(s.packets, exp)) if a.sha1 != b.sha1]
            assert not bad, f"PyAV stream {i}: payload differs at packets {bad[:10]}"
        if s.packets and s.time_base != st.time_base:
            d0, e0 = s.packets[0].dts, exp[0].dts
            off = [k for k, (a, b) in enumerate(zip(s.packets, exp))
                   if abs((a.dts - d0) * s.time_base - st.seconds(b.dts - e0))
                   > Fraction(1, 1000) + s.time_base]
            assert not off, f"PyAV stream {i}: timestamps more than 1 ms off at {off[:5]}"
            offsets.append((s.packets[0].pts * s.time_base - st.seconds(exp[0].pts),
                            Fraction(1, 1000) + s.time_base, i))
        elif s.packets:
            d0, e0 = s.packets[0].dts, exp[0].dts
            steps = [(a.dts - d0, a.pts - a.dts) for a in s.packets]
            want = [(b.dts - e0, b.pts - b.dts) for b in exp]
            diff = [k for k, (a, b) in enumerate(zip(steps, want)) if a != b]
            assert not diff, (f"PyAV stream {i}: timestamps differ at packets {diff[:5]}: "
                              f"{[steps[k] for k in diff[:3]]} vs {[want[k] for k in diff[:3]]}")
            offsets.append((st.seconds(s.packets[0].pts) - st.seconds(exp[0].pts),
                            Fraction(1, st.timescale), i))
        assert not s.decode_errors, f"PyAV stream {i}: decode errors {s.decode_errors[:3]}"
        assert s.frames > 0, f"PyAV stream {i}: no frame decoded"
        if source_frames is not None and st.index in source_frames:
            assert s.frames == source_frames[st.index], (
                f"PyAV stream {i}: {s.frames} frames decoded, source gives "
                f"{source_frames[st.index]}")
    if len(offsets) > 1:
        base, btol, _ = offsets[0]
        for c, tol, i in offsets[1:]:
            assert abs(c - base) <= tol + btol, (
                f"PyAV: stream {i} is presented {float(c - base) * 1000:+.3f} ms off stream 0 "
                "compared with the source (A/V sync lost)")
    err = probe.ffmpeg_null(path)
    assert err == "", f"ffmpeg -f null: {err}"
    return r


def source_frame_counts(clip: media.Clip) -> dict[int, int]:
    r = probe.pyav_read(clip.path)
    return {i: s.frames for i, s in r.streams.items()}


def files_ok(files) -> None:
    for f in files:
        assert f.error is None, f"{f.path}: error {f.error}"
