"""Live RTMP ingest with several publishers: concurrency, a publisher killed mid-GOP, refused
connects and publishes, names freed when a stream ends. Publishers are the Debian ffmpeg CLI."""

from __future__ import annotations

import logging
import os
import signal
import time

import checks
import probe
from ingest_harness import (RawRtmp, check_recording, ffmpeg_publish, finish,  # noqa: F401
                            flv_messages, ingest, media_tags, prefix_expected, run_publish,
                            sent_packets)


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_twenty_publishers_at_once(clips, ingest):
    # Four different clips (lengths, sizes, tones) so that a mix-up between streams shows.
    sources = [clips.flv("many_a", seconds=2.0, size="160x120"),
               clips.flv("many_b", seconds=2.5, size="176x144", gop=15),
               clips.flv("many_c", seconds=3.0, size="160x120", fps=25, gop=25),
               clips.flv("many_d", seconds=2.0, size="128x96", sample_rate=48000)]
    srv = ingest()
    names = [f"s{i:02d}" for i in range(20)]
    src_of = {n: sources[i % len(sources)] for i, n in enumerate(names)}
    procs = {n: ffmpeg_publish(srv.url(n), src_of[n].path) for n in names}
    for n, p in procs.items():
        rc, err = finish(p)
        assert rc == 0, f"{n}: ffmpeg exit {rc}: {err}"
    for n in names:
        assert srv.wait_ended(n) == "unpublished"
    st = srv.wait_quiet()
    assert st["accepted"] == st["closed"] == 20
    assert st["errors"] == st["refused"] == 0
    assert st["media_messages"] == sum(media_tags(src_of[n].path) for n in names)
    assert sorted(os.listdir(srv.out_dir)) == [f"{n}-0" for n in names]
    for n in names:
        files = srv.files(n)
        assert len(files) == 1, (n, files)
        assert os.path.basename(files[0].path) == f"{n}_0.mp4"
        # exact content for every stream; full decode by ffprobe/PyAV/ffmpeg for a few
        check_recording(files[0], src_of[n], decode=n in names[:4])
    for n in names[4:]:
        probe.assert_plays(srv.files(n)[0].path)


def test_publisher_killed_mid_gop(clips, ingest, caplog):
    """A paced publisher is SIGKILLed between keyframes: its stream ends, its file is finished
    (durations patched, hybrid moov) and is an exact prefix of the source; another stream publishing
    at the same time records to the end."""
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    victim_clip = clips.flv("kill_victim", seconds=6.0, gop=60, size="160x120")  # keys 0, 2, 4 s
    other_clip = clips.flv("kill_other", seconds=4.0, gop=30, size="176x144")
    srv = ingest()
    victim = ffmpeg_publish(srv.url("victim"), victim_clip.path, paced=True)
    other = ffmpeg_publish(srv.url("other"), other_clip.path, paced=True)
    try:
        srv.wait_ready("victim", timeout=10)
        t_ready = time.monotonic()
        srv.wait_ready("other", timeout=10)
        time.sleep(max(0.0, t_ready + 3.0 - time.monotonic()))  # ~3 s: mid second GOP
        os.kill(victim.pid, signal.SIGKILL)
        t_kill = time.monotonic() - t_ready
        victim.wait(10)
        reason = srv.wait_ended("victim", timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert srv.ended.get("other") is None, "the other stream ended with the victim"
    rc, err = finish(other)
    assert rc == 0, err
    assert srv.wait_ended("other") == "unpublished"

    # the victim's file: finished, an exact prefix of the source, decodes
    files = srv.files("victim")
    assert len(files) == 1, files
    f = files[0]
    nv, na = (t["samples"] for t in f.tracks)
    vdts = [p.dts for p in victim_clip.video.packets]
    assert 60 < nv < len(vdts), f"{nv} video samples for a kill at {t_kill:.2f}s"
    # what was sent before the kill is in the file (ffmpeg -re sends in real time)
    assert vdts[nv - 1] >= (t_kill - 1.0) * 1000, (vdts[nv - 1], t_kill)
    assert not victim_clip.video.packets[nv].key, "the kill did not land mid-GOP"
    assert na > 0
    check_recording(f, victim_clip, expected=prefix_expected(victim_clip, f))
    mp4 = checks.parse_recording(f.path)  # finalised: the hybrid moov after the fragments
    assert mp4.hybrid is not None and [b.type for b in mp4.hybrid.boxes] == \
        [b"ftyp", b"mdat", b"moov"]
    # the other stream: complete
    files = srv.files("other")
    assert len(files) == 1, files
    check_recording(files[0], other_clip)
    srv.wait_quiet()
    # a vanished publisher is not an unpublish (FIN, or RST when replies were unread)
    assert reason in ("peer closed the connection", "connection reset by the peer"), reason
    msgs = _messages(caplog)
    assert any(f"app/victim ended ({reason})" in m for m in msgs), msgs


def test_unknown_app_refused(clips, ingest, caplog):
    caplog.set_level(logging.DEBUG, logger="pyrec.ingest")
    clip = clips.flv("pub_small", seconds=1.0, size="160x120")
    srv = ingest(apps={"live": ("cam_video", "cam_audio")})
    rc, err = run_publish(srv.url("stream", app="app"), clip.path)
    assert rc != 0, "ffmpeg published to an app that is not configured"
    st = srv.wait_quiet()
    assert st["accepted"] == st["closed"] == 1 and st["streams"] == 0
    assert st["media_messages"] == 0
    assert srv.ready == {} and srv.ended == {}
    assert os.listdir(srv.out_dir) == []
    msgs = _messages(caplog)
    assert any("connect to app 'app' refused" in m for m in msgs), msgs
    assert not any("publishing" in m for m in msgs), msgs
    # the configured app works, with its own track names
    rc, err = run_publish(srv.url("stream", app="live"), clip.path)
    assert rc == 0, err
    srv.wait_ended("stream")
    live = srv.ready["stream"][0]
    assert live.app == "live"
    assert [(t.name, t.codec) for t in live.tracks] == [("cam_video", "h264"),
                                                         ("cam_audio", "aac")]
    check_recording(srv.files("stream")[0], clip, decode=False)


def test_second_publisher_of_a_live_name_refused(clips, ingest, caplog):
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    clip = clips.flv("dup_first", seconds=3.0, size="160x120")
    intruder_clip = clips.flv("pub_small", seconds=1.0, size="160x120")
    srv = ingest()
    first = ffmpeg_publish(srv.url("dup"), clip.path, paced=True)
    try:
        srv.wait_ready("dup", timeout=10)
        rc, err = run_publish(srv.url("dup"), intruder_clip.path, timeout=20)
        assert rc != 0, "ffmpeg published a name that is already live"
        assert "BadName" in err or "Server error" in err, err
        assert srv.ended.get("dup") is None, "the refused publish ended the live stream"
        assert srv.server.find("app", "dup") is srv.ready["dup"][0]
    finally:
        rc, err = finish(first)
    assert rc == 0, err
    assert srv.wait_ended("dup") == "unpublished"
    assert len(srv.ready["dup"]) == 1 and len(srv.recordings["dup"]) == 1
    files = srv.files("dup")
    assert len(files) == 1, files
    check_recording(files[0], clip)
    st = srv.wait_quiet()
    assert st["accepted"] == st["closed"] == 2
    assert st["media_messages"] == media_tags(clip.path)
    msgs = _messages(caplog)
    assert any("publish of app/dup refused (stream name already publishing)" in m
               for m in msgs), msgs


def test_name_free_again_after_end(clips, ingest):
    a = clips.flv("again_a", seconds=1.5, size="160x120")
    b = clips.flv("again_b", seconds=2.0, size="176x144", gop=15)
    srv = ingest()
    for k, clip in enumerate((a, b, a)):
        rc, err = run_publish(srv.url("again?take=" + str(k)), clip.path)
        assert rc == 0, f"publish #{k}: {err}"
        assert srv.wait_ended("again", count=k + 1) == "unpublished"
        live = srv.ready["again"][k]
        assert live.query == f"take={k}"
        files = srv.files("again", k)
        assert len(files) == 1
        assert files[0].path == str(srv.out_dir / f"again-{k}" / "again_0.mp4")
        check_recording(files[0], clip, decode=k == 1)
    assert len({live.key for live in srv.ready["again"]}) == 3, "stream keys are reused"
    srv.wait_quiet()


def test_end_reasons(clips, ingest, caplog):
    """on_stream_end says why: an unpublish, a vanished publisher (EOF without unpublish), the
    server stopping. Every case finishes the file with what was sent."""
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    clip = clips.flv("hostile_raw", seconds=2.0, size="160x120")
    tags = flv_messages(clip.path)
    part = tags[:len(tags) // 2]
    srv = ingest()

    def publish(name: str) -> RawRtmp:
        c = RawRtmp(srv.port)
        c.handshake()
        c.publish(name)
        c.set_chunk_size(4096)
        for typ, ts, body in part:
            c.send_tag(typ, ts, body)
        srv.wait_ready(name, timeout=5)
        return c

    with publish("clean") as c:
        c.unpublish("clean")
        assert srv.wait_ended("clean", timeout=5) == "unpublished"
        c.end()
    with publish("vanish") as c:
        c.end()
        assert srv.wait_ended("vanish", timeout=5) == "peer closed the connection"
    with publish("stopped"):
        srv.stop()
        assert srv.wait_ended("stopped", timeout=5) == "server stopping"
    for name in ("clean", "vanish", "stopped"):
        files = srv.files(name)
        assert len(files) == 1, (name, files)
        check_recording(files[0], clip, expected=sent_packets(clip, part), decode=False)
    msgs = _messages(caplog)
    for name, why in (("clean", "unpublished"), ("vanish", "peer closed the connection"),
                      ("stopped", "server stopping")):
        assert any(f"app/{name} ended ({why})" in m for m in msgs), (name, msgs)
