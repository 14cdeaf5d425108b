"""Bad input gets a clear PyrecError (name, message, offset) and what was written before stays
playable: truncated or random FLV, empty payloads, unsupported codecs, unusable outputs."""

from __future__ import annotations

import errno
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

import pyrec

import boxes
import checks
import media
import probe


def _outputs(out_dir):
    return sorted(p for p in out_dir.iterdir() if p.suffix == ".mp4")


def _assert_error(e: pyrec.PyrecError, names, *words):
    assert e.name in names, f"error name {e.name!r} ({e.message!r}), expected one of {names}"
    assert isinstance(e.code, int) and e.code > 0
    assert e.message and isinstance(e.message, str)
    text = f"{e.message} {e}".lower()
    for w in words:
        assert w.lower() in text, f"{w!r} not in the error message {text!r}"


@pytest.fixture
def good_flv(clips):
    return clips.flv("good", seconds=3.0)


def test_truncated_flv(good_flv, out_dir, tmp_path):
    data = good_flv.path.read_bytes()
    cut = int(len(data) * 0.6)
    src = tmp_path / "cut.flv"
    src.write_bytes(data[:cut])
    with pytest.raises(pyrec.PyrecError) as ei:
        pyrec.record_file(str(src), str(out_dir / "t_${Sequence}.mp4"))
    _assert_error(ei.value, ("TRUNCATED",), )
    assert 0 < ei.value.offset <= cut, ei.value.offset
    # What came before the cut was recorded and plays
    outs = _outputs(out_dir)
    assert len(outs) == 1, outs
    mp4 = checks.parse_recording(outs[0])
    v = mp4.video
    assert v is not None and len(v.samples) > 0.4 * len(good_flv.video.packets)
    probe.assert_plays(outs[0])


def test_not_an_flv(out_dir, tmp_path):
    src = tmp_path / "noise.flv"
    src.write_bytes(random.Random(1).randbytes(50_000))
    with pytest.raises(pyrec.PyrecError) as ei:
        pyrec.record_file(str(src), str(out_dir / "n_${Sequence}.mp4"))
    _assert_error(ei.value, ("MALFORMED",))
    assert ei.value.offset in (0, -1)
    assert _outputs(out_dir) == []  # no empty or partial file left behind


def test_noise_after_an_flv_header(out_dir, tmp_path):
    """Noise behind a valid FLV header goes to the FLV parser: MALFORMED at the first tag (13),
    no file left behind."""
    src = tmp_path / "noise2.flv"
    noise = bytearray(random.Random(2).randbytes(50_000))
    noise[0] |= 0xc0  # reserved bits set in the first tag's type: never a valid tag
    src.write_bytes(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00" + bytes(noise))
    with pytest.raises(pyrec.PyrecError) as ei:
        pyrec.record_file(str(src), str(out_dir / "n_${Sequence}.mp4"))
    _assert_error(ei.value, ("MALFORMED",))
    assert ei.value.offset == 13, ei.value
    assert _outputs(out_dir) == []


def test_garbage_after_good_tags(good_flv, out_dir, tmp_path):
    """A valid FLV whose tail (from a tag boundary on) is noise: an error past the good tags
    and the good part plays."""
    data = good_flv.path.read_bytes()
    tags = media.flv_tags(data)
    keep = tags[len(tags) // 2][0]
    src = tmp_path / "tail.flv"
    src.write_bytes(data[:keep] + random.Random(2).randbytes(len(data) - keep))
    with pytest.raises(pyrec.PyrecError) as ei:
        pyrec.record_file(str(src), str(out_dir / "g_${Sequence}.mp4"))
    _assert_error(ei.value, ("MALFORMED", "TRUNCATED", "TOOBIG", "CODEC"))
    assert ei.value.offset >= keep, (ei.value.offset, keep)
    outs = _outputs(out_dir)
    assert len(outs) == 1
    checks.parse_recording(outs[0])
    probe.assert_plays(outs[0])


def test_tag_torn_by_noise_not_recorded(good_flv, out_dir, tmp_path):
    """Noise starting inside a tag body: the torn tag's PreviousTagSize no longer matches, so
    the tag must not reach the file (nothing undecodable is recorded)."""
    data = good_flv.path.read_bytes()
    tags = media.flv_tags(data)
    off, typ, size, ts = next(t for t in tags[len(tags) // 2:] if t[2] > 64)
    cut = off + 11 + size // 2
    src = tmp_path / "torn.flv"
    src.write_bytes(data[:cut] + random.Random(3).randbytes(len(data) - cut))
    with pytest.raises(pyrec.PyrecError) as ei:
        pyrec.record_file(str(src), str(out_dir / "g_${Sequence}.mp4"))
    _assert_error(ei.value, ("MALFORMED", "TRUNCATED", "TOOBIG", "CODEC"))
    outs = _outputs(out_dir)
    assert len(outs) == 1
    checks.parse_recording(outs[0])
    probe.assert_plays(outs[0])


@pytest.fixture
def good_flv_path(good_flv) -> str:
    return str(good_flv.path)  # a small repr for hypothesis' failure reports


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=hst.binary(min_size=0, max_size=1500), keep=hst.integers(3, 3000))  # keep the "FLV" magic
def test_fuzzed_flv_never_crashes(good_flv_path, tmp_path, noise, keep):
    """Arbitrary bytes after a valid prefix: record_file returns or raises PyrecError, never
    anything else, and any file it leaves is structurally valid."""
    with open(good_flv_path, "rb") as f:
        data = f.read()
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    src = d / "in.flv"
    src.write_bytes(data[:keep] + noise)
    try:
        pyrec.record_file(str(src), str(d / "o_${Sequence}.mp4"))
    except pyrec.PyrecError as e:
        assert e.name != "UNKNOWN" and e.message
    for p in _outputs(d):
        if p.stat().st_size:
            mp4 = boxes.parse_mp4(p)
            boxes.check_fragmented(mp4, finalized=True)


def test_empty_payloads_rejected_and_counted(clips, out_dir):
    clip = clips.get(video="h264", audio="aac", seconds=2.0)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, str(out_dir / "e_${Sequence}.mp4"))
    rejected = [0, 0]
    n = 0
    for index, dts, pts, key, data in media.demux_packets(clip.path):
        t = index
        rec.write(t, dts, pts, data, key)
        n += 1
        if n % 10 == 0:  # an empty payload on the same track, with a later timestamp
            try:
                rec.write(t, dts + 1, pts + 1, b"", False)
            except pyrec.PyrecError as e:
                _assert_error(e, ("MALFORMED",))
            rejected[t] += 1
    files = rec.close()
    st = rec.stats()
    assert [t["rejected"] for t in st["tracks"]] == rejected
    checks.files_ok(files)
    expected = media.expected_packets(clip)
    exp = [expected[s.index] for s in clip.streams]
    mp4 = checks.parse_recording(files[0].path)
    tracks = checks.tracks_in_order(mp4, clip.streams)
    for trk, s, e in zip(tracks, clip.streams, exp):
        checks.assert_samples_match(trk, s, e, mp4)
    checks.assert_readers_agree(files[0].path, clip.streams, exp)


def test_malformed_nal_payload_keeps_earlier_media(clips, out_dir):
    """A length-prefixed H.264 payload whose NAL length overruns it: a MALFORMED error (raised
    or counted as rejected); what was written before still plays."""
    clip = clips.get(video="h264", audio="aac", seconds=2.0)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, str(out_dir / "m_${Sequence}.mp4"))
    pkts = list(media.demux_packets(clip.path))
    half = len(pkts) // 2
    for index, dts, pts, key, data in pkts[:half]:
        rec.write(index, dts, pts, data, key)
    vlast = max(p[1] for p in pkts[:half] if p[0] == 0)
    bad = (1_000_000).to_bytes(4, "big") + b"\x65" + b"\x00" * 20
    raised = None
    try:
        rec.write(0, vlast + 512, vlast + 512, bad, False)
    except pyrec.PyrecError as e:
        raised = e
        _assert_error(e, ("MALFORMED",))
    files = rec.close()
    st = rec.stats()
    if raised is None:
        assert st["tracks"][0]["rejected"] == 1
    assert files and os.path.getsize(files[0].path) > 0
    mp4 = checks.parse_recording(files[0].path)
    assert len(mp4.video.samples) > 0
    probe.assert_plays(files[0].path)


@pytest.mark.parametrize("vcodec,acodec,words", [
    ("libx264", "nellymoser", ["nellymoser"]),
    ("flv", "aac", ["h.263"]),
])
def test_unsupported_flv_codec(tmp_path, out_dir, vcodec, acodec, words):
    if not media.ffmpeg_has_encoder(acodec if acodec != "aac" else vcodec):
        pytest.skip(f"the ffmpeg CLI has no {acodec} encoder")
    src = media.make_flv_cli(tmp_path / "odd.flv", seconds=1.0, vcodec=vcodec, acodec=acodec)
    with pytest.raises(pyrec.PyrecError) as ei:
        pyrec.record_file(str(src), str(out_dir / "u_${Sequence}.mp4"))
    _assert_error(ei.value, ("CODEC",), *words)


def test_unknown_codec_name(tmp_path):
    with pytest.raises(pyrec.PyrecError) as ei:
        pyrec.Recorder([pyrec.TrackSpec("mpeg2video", 90000, width=320, height=240)],
                       str(tmp_path / "x_${Sequence}.mp4"))
    _assert_error(ei.value, ("CODEC",), "mpeg2video")


def test_bad_codec_config(tmp_path):
    """An avcC that is not one: a CONFIG (or MALFORMED) error at construction or first write."""
    spec = pyrec.TrackSpec("h264", 1000, width=320, height=240, config=b"\x01\x02\x03")
    with pytest.raises(pyrec.PyrecError) as ei:
        rec = pyrec.Recorder([spec], str(tmp_path / "c_${Sequence}.mp4"))
        try:
            rec.write(0, 0, 0, b"\x00\x00\x00\x02\x65\x88", True)
            rec.flush()
        finally:
            rec.close()
    _assert_error(ei.value, ("CONFIG", "MALFORMED"))


def _expect_output_error(rec, clip, want_errno, words):
    with pytest.raises((pyrec.PyrecError, OSError)) as ei:
        media.feed(rec, clip)
        rec.close()
    e = ei.value
    if isinstance(e, pyrec.PyrecError):
        assert e.name in ("IO", "CALLBACK"), e.name
        cause = e.__cause__ or e.__context__
        assert (e.errno in want_errno or getattr(cause, "errno", None) in want_errno
                or any(w in str(e).lower() for w in words)), (
            f"the error does not say why: {e!r} (cause {cause!r})")
    else:
        assert e.errno in want_errno or any(w in str(e).lower() for w in words), repr(e)
    try:
        rec.close()  # a failed recorder still closes (it may repeat its error)
    except (pyrec.PyrecError, OSError):
        pass


def test_output_path_unusable(clips, out_dir):
    """A directory in the template is a regular file: a clear error naming the cause."""
    clip = clips.get(video="h264", audio="aac", seconds=2.0)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    (out_dir / "blocker").write_bytes(b"")
    rec = pyrec.Recorder(specs, str(out_dir / "blocker" / "r_${Sequence}.mp4"))
    _expect_output_error(rec, clip, (errno.ENOTDIR, errno.EEXIST),
                         ["not a directory", "exists"])


def test_missing_directories_are_created(clips, out_dir):
    clip = clips.get(video="h264", audio="aac", seconds=2.0)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, str(out_dir / "a" / "b" / "r_${Sequence}.mp4"))
    media.feed(rec, clip)
    files = rec.close()
    assert [f.path for f in files] == [str(out_dir / "a" / "b" / "r_0.mp4")]
    probe.assert_plays(files[0].path)


def test_existing_file_never_overwritten(clips, out_dir):
    clip = clips.get(video="h264", audio="aac", seconds=2.0)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    victim = out_dir / "r_0.mp4"
    victim.write_bytes(b"precious")
    rec = pyrec.Recorder(specs, str(out_dir / "r_${Sequence}.mp4"))
    _expect_output_error(rec, clip, (errno.EEXIST,), ["exist"])
    assert victim.read_bytes() == b"precious"


def test_bad_track_index(clips, out_dir):
    clip = clips.get(video="h264", audio="aac", seconds=2.0)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, str(out_dir / "b_${Sequence}.mp4"))
    try:
        with pytest.raises((pyrec.PyrecError, IndexError, ValueError)) as ei:
            rec.write(5, 0, 0, b"\x00\x00\x00\x01\x09", True)
        if isinstance(ei.value, pyrec.PyrecError):
            assert ei.value.name in ("NOTRACK", "INVAL")
    finally:
        rec.close()
