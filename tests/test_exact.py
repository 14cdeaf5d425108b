"""Every packet, true offsets, exact frame durations and exact joins (issue 8, sections 2-3).

`pyrec record` of a file keeps every packet `ffmpeg -c copy` keeps, each at the source's time
(after one common shift, within 1.5 ms), audio timed at its sample rate with every frame's
exact length, Opus with its pre-skip, and `segmentationRule: continuity` files that join
exactly, in presentation time as a player sees it (edit lists included), at every boundary.

Sources are made by the ffmpeg CLI; readers are PyAV (FFmpeg 8), ffprobe (FFmpeg 5.1) and our
box walker. (ffprobe 5.1 prints duration=N/A for every packet of a *fragmented* Opus track,
FFmpeg's own included; PyAV's newer demuxer reads the trun durations, so Opus durations are
checked through PyAV. Both FFmpeg versions also give the video packets of a fragmented file's
first fragment no duration for VP9, FFmpeg's own output included: video durations are checked
in the trun.)"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest

import boxes
import media
import probe
from ingest_harness import ffmpeg_publish, finish, ingest  # noqa: F401

TOL = Fraction(3, 2000)  # 1.5 ms


@dataclass(frozen=True)
class Pk:
    pts: Fraction      # seconds
    duration: int      # stream time base ticks (0 = none)
    size: int
    key: bool


def read_packets(path) -> list[tuple[str, str, Fraction, list[Pk]]]:
    """(kind, codec, time base, packets in file order) per audio/video stream, via PyAV."""
    out = []
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type in ("video", "audio")]
        got: dict[int, list[Pk]] = {s.index: [] for s in streams}
        for p in c.demux(*streams):
            if p.size == 0:
                continue
            t = p.pts if p.pts is not None else p.dts
            got[p.stream.index].append(Pk(t * p.time_base, p.duration or 0, p.size,
                                          bool(p.is_keyframe)))
        for s in streams:
            out.append((s.type, s.codec_context.name, s.time_base, got[s.index]))
    return out


def opus_samples(toc: int, second: int) -> int:
    """RFC 6716 3.1: samples at 48 kHz of one Opus packet (TOC byte and the next one)."""
    config, code = toc >> 3, toc & 3
    if config < 12:
        size = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:
        size = 960 if config & 1 else 480
    else:
        size = (120, 240, 480, 960)[config & 3]
    frames = 1 if code == 0 else 2 if code in (1, 2) else second & 0x3F
    return size * frames


def frame_lengths(path, index: int, codec: str, rate: int) -> list[int]:
    """Samples each audio packet of the stream decodes to, from its own bytes."""
    out = []
    with av.open(str(path)) as c:
        for p in c.demux(c.streams[index]):
            if p.size == 0:
                continue
            b = bytes(p)
            if codec == "opus":
                out.append(opus_samples(b[0], b[1] if len(b) > 1 else 0))
            elif codec in ("mp3", "mp3float"):
                mpeg1 = (b[1] >> 3) & 3 == 3
                out.append(1152 if mpeg1 else 576)
            else:
                out.append(1024)
    return out


def assert_every_packet(src, outs: list, *, annexb: bool = False) -> None:
    """The outputs together hold the source's packets per track, in order, each presented at
    the source's time after one common shift (within 1.5 ms). annexb: the source's video is
    Annex B (MPEG-TS), written length-prefixed, so its sizes differ."""
    s = read_packets(src)
    o = [read_packets(p) for p in outs]
    assert all(len(x) == len(s) for x in o), "track count differs from the source"
    shift = None
    for i, (kind, codec, _, spk) in enumerate(s):
        got = [p for f in o for p in f[i][3]]
        assert len(got) == len(spk), (
            f"{kind} ({codec}): {len(got)} packets recorded, the source has {len(spk)}")
        if not (annexb and kind == "video"):
            assert [p.size for p in got] == [p.size for p in spk], f"{kind}: sizes differ"
        if kind == "video":
            assert [p.key for p in got] == [p.key for p in spk], f"{kind}: keyframes differ"
        if shift is None:
            shift = got[0].pts - spk[0].pts
        off = [(k, float((a.pts - b.pts - shift) * 1000)) for k, (a, b) in
               enumerate(zip(got, spk)) if abs(a.pts - b.pts - shift) > TOL]
        assert not off, f"{kind} ({codec}): packets off the source's time (ms): {off[:5]}"


def assert_exact_durations(path) -> None:
    """Audio at its sample rate, every frame with its exact length; video durations present.
    Box walker (trun) and PyAV agree."""
    mp4 = boxes.parse_mp4(path)
    boxes.check_fragmented(mp4)
    streams = read_packets(path)
    for (kind, codec, tb, pk), tid in zip(streams, mp4.track_ids()):
        trk = mp4.tracks[tid]
        assert all(s.duration > 0 for s in trk.samples), f"track {tid}: a zero duration"
        if kind != "audio":
            continue
        assert all(p.duration > 0 for p in pk), f"PyAV: {kind} packet without a duration"
        with av.open(str(path)) as c:
            rate = c.streams[tid - 1].codec_context.sample_rate
        want_ts = 48000 if codec == "opus" else rate
        assert trk.timescale == want_ts and tb == Fraction(1, want_ts), (
            f"{codec}: timescale {trk.timescale}, time base {tb}; expected {want_ts}")
        want = frame_lengths(path, tid - 1, codec, rate)
        assert [s.duration for s in trk.samples] == want, f"{codec}: trun durations"
        assert [p.duration for p in pk] == want, f"{codec}: PyAV durations"


def ffprobe_durations(path) -> dict[int, list[int | None]]:
    return {i: [p.duration for p in s.packets] for i, s in probe.ffprobe(path).items()}


def record(src, out: Path, *args: str) -> list[Path]:
    r = subprocess.run([sys.executable, "-m", "pyrec", "record", str(src), "-o", str(out),
                        *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return sorted(out.parent.glob("*.mp4"), key=lambda p: int(p.stem.rsplit("_", 1)[-1]))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Short sources made by the ffmpeg CLI, once per module."""
    d = tmp_path_factory.mktemp("exact")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name in made:
            return made[name]
        v = ["-f", "lavfi", "-i", "testsrc2=size=256x144:rate=30:duration=3"]
        x264 = ["-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p",
                "-x264-params", "scenecut=0:min-keyint=30"]

        def a(rate: int) -> list[str]:
            return ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration=3"]

        spec = {
            "flv_bf": (".flv", v + a(44100) + x264 + ["-bf", "2", "-c:a", "aac"]),
            "flv_nobf": (".flv", v + a(48000) + x264 + ["-bf", "0", "-c:a", "aac"]),
            "mkv_opus": (".mkv", v + a(48000) + x264 + ["-bf", "2", "-c:a", "libopus"]),
            "webm_vp9_opus": (".webm", v + a(48000) + [
                "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "30",
                "-c:a", "libopus"]),
            "ts_mp3": (".ts", v + a(44100) + x264 + ["-bf", "2", "-c:a", "libmp3lame"]),
            "mp4_mp3_22k": (".mp4", v + a(22050) + x264 + ["-bf", "0", "-c:a", "libmp3lame"]),
        }[name]
        path = d / f"{name}{spec[0]}"
        media.ffmpeg_cli(*spec[1], str(path))
        made[name] = path
        return path

    return get


# --------------------------------------------------------------------------------------------
# Section 2: every packet, true offsets, exact durations


@pytest.mark.parametrize("name", ["flv_bf", "flv_nobf", "mkv_opus", "webm_vp9_opus", "ts_mp3",
                                  "mp4_mp3_22k"])
def test_record_keeps_every_packet_at_its_time(sources, tmp_path, name):
    src = sources(name)
    outs = record(src, tmp_path / "o" / "out_${Sequence}.mp4")
    assert len(outs) == 1
    assert_every_packet(src, outs, annexb=src.suffix == ".ts")
    assert_exact_durations(outs[0])
    probe.assert_plays(outs[0])
    # ffmpeg -c copy keeps as many packets per track: the same count
    ff = tmp_path / "ff.mp4"
    subprocess.run([probe.FFMPEG, "-v", "error", "-i", str(src), "-c", "copy", str(ff)],
                   check=True, timeout=60)
    assert probe.count_packets(outs[0]) == probe.count_packets(ff)


def test_flv_leading_audio_kept(sources, tmp_path):
    """The ffmpeg-made FLV starts with audio before the first video keyframe: it is kept,
    and every track starts at its own offset (per-track base decode time / edit list)."""
    src = sources("flv_nobf")
    s = read_packets(src)
    v0, a0 = s[0][3][0].pts, s[1][3][0].pts
    assert a0 < v0, "the source should start with audio"
    out = record(src, tmp_path / "o" / "out_${Sequence}.mp4")[0]
    o = read_packets(out)
    assert o[1][3][0].pts - o[0][3][0].pts == pytest.approx(a0 - v0, abs=float(TOL))
    mp4 = boxes.parse_mp4(out)
    assert mp4.tracks[1].samples[0].dts > 0 and mp4.tracks[2].samples[0].dts == 0
    # AAC at 48 kHz: every frame 1024 samples, also as ffprobe (FFmpeg 5.1) reads it
    assert set(ffprobe_durations(out)[1]) == {1024}


def test_opus_preskip_carried(sources, tmp_path):
    """dOps PreSkip is the source's, and the audio edit list skips it (as FFmpeg's mp4 muxer
    does): decoding starts with the same samples as decoding the source. (The Matroska
    source's end trimming, DiscardPadding on its last block, is not carried: at most one
    packet's padding more at the end.)"""
    src = sources("mkv_opus")
    with av.open(str(src)) as c:
        head = bytes(c.streams.audio[0].codec_context.extradata)
    preskip = int.from_bytes(head[10:12], "little")
    assert head[:8] == b"OpusHead" and preskip > 0
    out = record(src, tmp_path / "o" / "out_${Sequence}.mp4")[0]
    data = out.read_bytes()
    k = data.index(b"dOps")
    assert int.from_bytes(data[k + 6:k + 8], "big") == preskip
    mp4 = boxes.parse_mp4(out)
    a = mp4.tracks[2]
    assert a.timescale == 48000
    assert a.presentation_offset() - a.samples[0].dts == preskip

    def decoded(path) -> list[int]:
        with av.open(str(path)) as c:
            return [f.samples for f in c.decode(c.streams.audio[0])]

    got, want = decoded(out), decoded(src)
    assert got[0] == want[0] == 960 - preskip  # the pre-skip is not heard
    assert 0 <= sum(got) - sum(want) < 960


# --------------------------------------------------------------------------------------------
# Section 3: exact continuity at every split


def presented_span(trk: boxes.Track) -> tuple[int, int]:
    """(start, end) of a track's presentation in its timescale, edit list applied."""
    m = trk.presentation_offset()
    return (min(s.pts for s in trk.samples) - m,
            max(s.pts + s.duration for s in trk.samples) - m)


def assert_joins(paths: list) -> None:
    """File k+1 starts exactly where file k ended, per track, in presentation time (edit
    lists included) and in decode time; the first file's timeline has an edit (B-frames)."""
    mp4s = [boxes.parse_mp4(p) for p in paths]
    assert len(mp4s) >= 3, "need a first and a later boundary"
    for m in mp4s:
        boxes.check_fragmented(m)
    assert mp4s[0].tracks[1].edits, "B-frames: the first file should have an edit list"
    for k in range(len(mp4s) - 1):
        a, b = mp4s[k], mp4s[k + 1]
        for tid in a.track_ids():
            ta, tb = a.tracks[tid], b.tracks[tid]
            assert ta.timescale == tb.timescale
            end = presented_span(ta)[1]
            start = presented_span(tb)[0]
            assert start == end, (
                f"boundary {k}->{k + 1}, track {tid}: file {k + 1} starts at {start}, file {k} "
                f"ended at {end} ({ta.timescale} Hz; edits {ta.edits} / {tb.edits})")
            assert (tb.samples[0].dts - tb.presentation_offset()
                    == ta.end_dts - ta.presentation_offset())


def test_continuity_joins_from_a_file(sources, tmp_path):
    src = sources("flv_bf")
    outs = record(src, tmp_path / "o" / "c_${Sequence}.mp4", "--interval", "1000",
                  "--segmentation-rule", "continuity")
    assert_joins(outs)
    assert_every_packet(src, outs)


def test_continuity_joins_from_a_live_push(sources, ingest, tmp_path):  # noqa: F811
    src = sources("flv_bf")
    srv = ingest(rec_options={"interval_ms": 1000, "continuity": True})
    rc, err = finish(ffmpeg_publish(srv.url("s"), src))
    assert rc == 0, err
    srv.wait_ended("s")
    srv.stop()
    files = srv.files("s")
    assert len(files) >= 3 and not any(f.error for f in files)
    assert_joins([f.path for f in files])
    for f in files:  # live audio is timed at its sample rate too
        assert boxes.parse_mp4(f.path).tracks[2].timescale == 44100
