"""Live RTMP ingest, one publisher at a time: what a real publisher sends is what gets recorded.

Publishers: the Debian ffmpeg CLI (5.1: classic FLV codecs H.264 + AAC) and PyAV (FFmpeg 8,
Enhanced RTMP: HEVC, AV1, VP9, Opus) remuxing FLV files. The ground truth is what FFmpeg's FLV
demuxer reads from the published file: every recorded sample has the source's bytes, keyframe
flag and millisecond timestamps (only a constant rebase), and the file decodes."""

from __future__ import annotations

import logging
import os
from fractions import Fraction

import pytest

import checks
import media
from ingest_harness import (av1_payloads, check_recording, ingest, media_tags,  # noqa: F401
                            pyav_publish, run_publish)


def test_ffmpeg_cli_publish_h264_aac(clips, ingest, caplog):
    caplog.set_level(logging.DEBUG, logger="pyrec.ingest")
    clip = clips.flv("pub_h264_aac", seconds=3.0, gop=30)
    srv = ingest()
    rc, err = run_publish(srv.url("stream?token=x"), clip.path)
    assert rc == 0, err
    reason = srv.wait_ended("stream")
    assert reason == "unpublished"

    live = srv.ready["stream"][0]
    assert (live.app, live.name, live.query, live.vhost) == ("app", "stream", "token=x",
                                                              "default")
    assert live.peer.startswith("127.0.0.1:")
    assert live.ended
    assert [(t.id, t.kind, t.codec, t.unsupported) for t in live.tracks] == [
        (0, "video", "h264", None), (1, "audio", "aac", None)]
    assert (live.tracks[1].sample_rate, live.tracks[1].channels) == (44100, 2)
    assert srv.server.find("app", "stream") is None  # ended streams are forgotten

    files = srv.files("stream")
    assert len(files) == 1, files
    f = files[0]
    assert os.path.basename(f.path) == "stream_0.mp4"  # ${Stream} has no query
    assert f.sequence == 0 and f.start_ms == 0
    assert abs(f.end_ms - 3000) <= 150, f.end_ms
    expected = media.expected_packets(clip)
    assert [len(expected[st.index]) for st in clip.streams] == \
        [len(st.packets) for st in clip.streams], "the FLV starts with a keyframe"
    check_recording(f, clip)

    st = srv.wait_quiet()
    assert st["accepted"] == st["closed"] == 1
    assert st["errors"] == st["refused"] == 0
    # every audio/video tag of the file arrived as one media message (sequence headers too)
    assert st["media_messages"] == media_tags(clip.path)
    msgs = [r.getMessage() for r in caplog.records]
    assert any("publishing app/stream (live)" in m for m in msgs), msgs
    assert any("app/stream ready" in m and "h264" in m and "aac" in m for m in msgs), msgs
    assert any("app/stream ended (unpublished)" in m for m in msgs), msgs


def test_interval_split_while_live(clips, ingest):
    """interval 1000 ms with a keyframe every second: one file per GOP, each starting on its
    keyframe at decode time 0, together exactly the source's packets."""
    clip = clips.flv("pub_split", seconds=4.0, gop=30, fps=30)
    srv = ingest(rec_options={"interval_ms": 1000})
    rc, err = run_publish(srv.url("split"), clip.path)
    assert rc == 0, err
    srv.wait_ended("split")
    files = srv.files("split")
    checks.files_ok(files)
    v, a = clip.video, clip.audio
    keys = [p for p in v.packets if p.key]
    assert [p.dts for p in keys] == [0, 1000, 2000, 3000], [p.dts for p in keys]
    assert len(files) == 4, [(f.start_ms, f.end_ms) for f in files]
    assert [f.sequence for f in files] == [0, 1, 2, 3]
    assert [os.path.basename(f.path) for f in files] == [f"split_{k}.mp4" for k in range(4)]
    assert [f.start_ms for f in files] == [0, 1000, 2000, 3000]
    adur = a.packets[1].dts - a.packets[0].dts  # ms: one AAC frame
    for k in range(1, len(files)):
        assert files[k].start_ms <= files[k - 1].end_ms <= files[k].start_ms + adur + 1, (
            [(f.start_ms, f.end_ms) for f in files])

    expected = media.expected_packets(clip)
    mp4s = [checks.parse_recording(f.path) for f in files]
    tracks = [checks.tracks_in_order(m, clip.streams) for m in mp4s]
    # together: exactly the source packets, in order, nothing lost or doubled
    for ti, st in enumerate(clip.streams):
        got = [media.sha1(m.payload(s)) for m, trs in zip(mp4s, tracks) for s in trs[ti].samples]
        assert got == [p.sha1 for p in expected[st.index]], f"{st.kind}: lost/doubled packets"
    assert sum(f.packets for f in files) == sum(len(e) for e in expected.values())
    # each file: starts on the GOP's keyframe, holds exactly that GOP, plays on its own
    pos = {st.index: 0 for st in clip.streams}
    for k, (f, m, trs) in enumerate(zip(files, mp4s, tracks)):
        vt = trs[0]
        assert len(vt.samples) == 30, f"file {k}: {len(vt.samples)} video samples"
        assert vt.samples[0].sync and vt.samples[0].dts == 0
        assert sum(s.sync for s in vt.samples) == 1, f"file {k}: more than one keyframe"
        assert media.sha1(m.payload(vt.samples[0])) == keys[k].sha1
        exp = {}
        for ti, st in enumerate(clip.streams):
            n = len(trs[ti].samples)
            exp[st.index] = expected[st.index][pos[st.index]:pos[st.index] + n]
            pos[st.index] += n
        # audio goes to the file of its time: within one audio frame of the split
        first_a = exp[a.index][0].dts
        if k > 0:
            assert abs(first_a - 1000 * k) <= adur, f"file {k}: first audio at {first_a} ms"
        check_recording(f, clip, expected=exp, decode=(k in (0, 3)))


# (video, audio) published by PyAV with FFmpeg 8's FLV muxer (Enhanced RTMP FourCCs).
PYAV_CASES = [("hevc", "aac"), ("av1", "aac"), ("av1", "opus"), ("vp9", "opus"),
              ("h264", "opus")]
ENCODERS = {"hevc": "libx265", "av1": "libsvtav1", "vp9": "libvpx-vp9", "opus": "libopus",
            "h264": "libx264", "aac": "aac"}


@pytest.mark.parametrize("video,audio", PYAV_CASES, ids=[f"{v}+{a}" for v, a in PYAV_CASES])
def test_pyav_enhanced_rtmp_publish(clips, ingest, video, audio):
    for c in (video, audio):
        if not media.have_encoder(ENCODERS[c]):
            pytest.skip(f"PyAV has no {ENCODERS[c]} encoder")
    # An FLV written by PyAV's own muxer: its demuxed packets are the ground truth in ms.
    clip = clips.get(ext=".flv", video=video, audio=audio, seconds=2.0, width=192,
                     height=108, gop=30)
    assert [st.codec for st in clip.streams] == [video, audio]
    assert all(st.time_base == Fraction(1, 1000) for st in clip.streams)
    srv = ingest()
    name = f"{video}_{audio}"
    rc, err = pyav_publish(srv.url(name), clip.path)
    assert rc == 0, err
    assert srv.wait_ended(name) == "unpublished"
    live = srv.ready[name][0]
    assert [(t.kind, t.codec, t.unsupported) for t in live.tracks] == [
        ("video", video, None), ("audio", audio, None)]
    files = srv.files(name)
    assert len(files) == 1, files
    payloads = av1_payloads(clip) if video == "av1" else None
    check_recording(files[0], clip, payloads=payloads)
    st = srv.wait_quiet()
    assert st["errors"] == 0
    assert st["media_messages"] == media_tags(clip.path)
