"""Every supported codec pair recorded through pyrec.Recorder and read back by three independent
readers (our box walker, ffprobe, PyAV + ffmpeg decode): same packets, same bytes, same
timestamps (only rebased), A/V alignment kept, every frame decodes, true duration declared."""

from __future__ import annotations

import os

import numpy as np
import pytest

import pyrec

import checks
import media
from media import StreamTruth

CASES = [
    ("h264", "aac"),
    ("hevc", "aac"),
    ("av1", "opus"),
    ("vp9", "opus"),
    ("h264", "mp3"),
    ("hevc", "opus"),
    ("h264", None),
    (None, "aac"),
]


def _ids(case):
    return "+".join(c for c in case if c)


def _need(video, audio):
    enc = {"mp3": "libmp3lame", "av1": "libsvtav1", "hevc": "libx265", "vp9": "libvpx-vp9",
           "opus": "libopus"}
    for c in (video, audio):
        if c in enc and not media.have_encoder(enc[c]):
            pytest.skip(f"PyAV has no {enc[c]} encoder")


def record(clip: media.Clip, out_dir, streams: list[StreamTruth] | None = None, *,
           config: bool = True, **opts):
    streams = list(streams if streams is not None else clip.streams)
    specs = [media.track_spec(pyrec, st, config=config) for st in streams]
    rec = pyrec.Recorder(specs, str(out_dir / "rec_${Sequence}.mp4"), **opts)
    fed = media.feed(rec, clip, streams)
    files = rec.close()
    stats = rec.stats()  # final counts: nothing queued any more
    return files, stats, fed


@pytest.mark.parametrize("video,audio", CASES, ids=[_ids(c) for c in CASES])
def test_codec_pair_roundtrip(clips, out_dir, video, audio):
    _need(video, audio)
    clip = clips.get(video=video, audio=audio, seconds=2.0)
    streams = clip.streams
    files, stats, fed = record(clip, out_dir)
    expected = media.expected_packets(clip)
    exp = [expected[st.index] for st in streams]
    n_expected = sum(len(e) for e in exp)

    # What pyrec reports
    assert len(files) == 1, files
    f = files[0]
    checks.files_ok(files)
    assert f.sequence == 0
    assert os.path.basename(f.path) == "rec_0.mp4"
    assert f.bytes == os.path.getsize(f.path)
    assert f.packets == n_expected
    assert f.payload_bytes == sum(p.size for e in exp for p in e)
    assert f.start_ms == 0
    assert abs((f.end_ms - f.start_ms) / 1000 - 2.0) < 0.15, (f.start_ms, f.end_ms)
    for i, (st, e) in enumerate(zip(streams, exp)):
        t = stats["tracks"][i]
        assert t["received"] == len(st.packets)
        assert t["written"] == len(e)
        assert t["dropped_start"] == len(st.packets) - len(e)
        assert t["rejected"] == 0
        assert t["wrap"] == t["backward"] == t["equal"] == 0, t
        assert t["jump_forward"] == t["jump_backward"] == 0, t
    assert sum(len(st.packets) for st in streams) == fed

    # Our box walker: structure, samples, alignment, durations
    mp4 = checks.parse_recording(f.path)
    tracks = checks.tracks_in_order(mp4, streams)
    for trk, st, e in zip(tracks, streams, exp):
        checks.assert_samples_match(trk, st, e, mp4)
        if st.kind == "video":
            assert (trk.entry_width, trk.entry_height) == (st.width, st.height)
    checks.assert_aligned(mp4, tracks, streams, exp)
    checks.assert_durations(mp4, tracks)

    # Players
    src_frames = checks.source_frame_counts(clip)
    video_frames = {st.index: src_frames[st.index] for st in streams if st.kind == "video"}
    checks.assert_readers_agree(f.path, streams, exp, source_frames=video_frames)


def test_write_batch_same_samples_as_write(clips, out_dir):
    """write_batch over the same packets produces the same samples as write() one by one."""
    clip = clips.get(video="h264", audio="aac", seconds=2.0)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    files_a, _, _ = record(clip, out_dir)
    (out_dir / "b").mkdir()
    rec = pyrec.Recorder(specs, str(out_dir / "b" / "rec_${Sequence}.mp4"))
    track, dts, pts, flags, sizes, payload = media.batch_arrays(clip)
    # in three uneven batches, to cross batch boundaries
    cuts = [0, 7, len(track) // 2, len(track)]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    for a, b in zip(cuts, cuts[1:]):
        rec.write_batch(track[a:b], dts[a:b], pts[a:b], flags[a:b], sizes[a:b],
                        memoryview(payload)[offs[a]:offs[b]])
    files_b = rec.close()
    assert len(files_a) == len(files_b) == 1
    a = checks.parse_recording(files_a[0].path)
    b = checks.parse_recording(files_b[0].path)
    for tid in a.track_ids():
        sa = [(s.dts, s.cto, s.duration, s.size, s.flags, a.payload(s)) for s in a.tracks[tid].samples]
        sb = [(s.dts, s.cto, s.duration, s.size, s.flags, b.payload(s)) for s in b.tracks[tid].samples]
        assert sa == sb, f"track {tid}: write_batch and write differ"


def test_write_batch_rejects_inconsistent_arrays(clips, out_dir):
    clip = clips.get(video="h264", audio="aac", seconds=2.0)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    track, dts, pts, flags, sizes, payload = media.batch_arrays(clip)
    rec = pyrec.Recorder(specs, str(out_dir / "rec_${Sequence}.mp4"))
    try:
        with pytest.raises((ValueError, pyrec.PyrecError)):
            rec.write_batch(track, dts[:-1], pts, flags, sizes, payload)  # lengths differ
        with pytest.raises((ValueError, pyrec.PyrecError)):
            rec.write_batch(track, dts, pts, flags, sizes, payload[:-1])  # sizes > payload
    finally:
        rec.close()


# --- Annex B (MPEG-TS source): H.264/H.265 converted to length-prefixed, ADTS stripped ------

_PARAM_NALS = {"h264": {7, 8, 9}, "hevc": {32, 33, 34, 35}}  # SPS/PPS/AUD, VPS/SPS/PPS/AUD


def _nal_type(codec: str, nal: bytes) -> int:
    return nal[0] & 0x1F if codec == "h264" else (nal[0] >> 1) & 0x3F


def annexb_nals(data: bytes) -> list[bytes]:
    out, i, n = [], 0, len(data)
    starts = []
    while i + 3 <= n:
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            starts.append(i + 3)
            i += 3
        else:
            i += 1
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else n
        nal = data[s:e]
        if k + 1 < len(starts):
            nal = nal.rstrip(b"\x00")  # zero_byte of a 4-byte start code / trailing zeros
        out.append(nal)
    return out


def lp_nals(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        assert i + 4 <= len(data), "truncated NAL length prefix"
        n = int.from_bytes(data[i:i + 4], "big")
        assert n > 0 and i + 4 + n <= len(data), f"bad NAL length {n} at {i}"
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def adts_body(data: bytes) -> bytes:
    assert data[0] == 0xFF and (data[1] & 0xF0) == 0xF0, "not ADTS"
    protection_absent = data[1] & 1
    return data[7 if protection_absent else 9:]


@pytest.mark.parametrize("video", ["h264", "hevc"])
def test_annexb_and_adts_source_converted(clips, out_dir, video):
    clip = clips.get(".ts", video=video, audio="aac", seconds=2.0)
    streams = clip.streams
    packets = {}
    for index, dts, pts, key, data in media.demux_packets(clip.path):
        packets.setdefault(index, []).append(data)
    files, stats, _ = record(clip, out_dir, config=False)
    assert len(files) == 1
    checks.files_ok(files)
    expected = media.expected_packets(clip)
    exp = [expected[st.index] for st in streams]
    mp4 = checks.parse_recording(files[0].path)
    tracks = checks.tracks_in_order(mp4, streams)
    for trk, st, e in zip(tracks, streams, exp):
        checks.assert_samples_match(trk, st, e, mp4, compare_bytes=False)
        src = packets[st.index][len(st.packets) - len(e):]
        for k, (s, raw) in enumerate(zip(trk.samples, src)):
            got = mp4.payload(s)
            if st.kind == "video":
                skip = _PARAM_NALS[video]
                a = [x for x in lp_nals(got) if _nal_type(video, x) not in skip]
                b = [x for x in annexb_nals(raw) if _nal_type(video, x) not in skip]
                assert a == b, f"{video} sample {k}: NAL units differ from the Annex B source"
            else:
                assert got == adts_body(raw), f"AAC sample {k}: not the ADTS payload"
    assert tracks[0].entry in (("avc1", "avc3") if video == "h264" else ("hvc1", "hev1"))
    assert tracks[1].entry == "mp4a"
    checks.assert_aligned(mp4, tracks, streams, exp)
    checks.assert_readers_agree(files[0].path, streams, exp, compare_bytes=False)
