"""The handshake timeout applies only to connections that never published (bench/RESULTS.md,
anomaly 5): a connection that published and then ended its publish (FCUnpublish +
deleteStream) but was not closed yet, or lingers, is not "a connection that never
published". Each case runs with a short handshake timeout and checks the server's log: no
"handshake timeout" warning, no error counted, and the stream ended with its real reason.
(The original cause: the check looked at the connection's *current* state, "publishing", so
a finished publish that was still open after handshake_timeout_ms since its accept was
reported as a handshake timeout.)"""

from __future__ import annotations

import logging
import time

import pytest

from pyrec.ingest import IngestLimits

from ingest_harness import (RawRtmp, check_recording, ffmpeg_publish, finish, flv_messages,
                            ingest, sent_packets)  # noqa: F401

HANDSHAKE_MS = 400


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture
def clip(clips):
    return clips.flv("timeouts", seconds=2.0, size="160x120")


def _raw_publish(srv, name, tags) -> RawRtmp:
    c = RawRtmp(srv.port)
    c.handshake()
    c.publish(name)
    c.set_chunk_size(4096)
    for typ, ts, body in tags:
        c.send_tag(typ, ts, body)
    return c


def _case_ffmpeg_paced(srv, clip):
    """A real publisher (ffmpeg -re) whose push outlives the handshake timeout."""
    rc, err = finish(ffmpeg_publish(srv.url("s"), clip.path, paced=True))
    assert rc == 0, err
    return "unpublished", None


def _case_unpublish_then_linger(srv, clip):
    """Publish everything, FCUnpublish + deleteStream, then keep the connection open past
    the handshake timeout (counted from the accept) before closing it."""
    tags = flv_messages(clip.path)
    c = _raw_publish(srv, "s", tags)
    try:
        c.unpublish("s")
        assert srv.wait_ended("s", timeout=5) == "unpublished"
        time.sleep(3 * HANDSHAKE_MS / 1000)
        assert c.is_open(0.2), "the server closed a connection that published"
        c.end()
    finally:
        c.close()
    return "unpublished", tags


def _case_unpublish_then_idle(srv, clip):
    """Publish, unpublish, then send nothing: the idle timeout closes it, not the handshake
    timeout."""
    tags = flv_messages(clip.path)
    c = _raw_publish(srv, "s", tags)
    try:
        c.unpublish("s")
        c.wait_closed(5)
    finally:
        c.close()
    return "unpublished", tags


def _case_slow_publisher(srv, clip):
    """Still publishing (slowly) long after the handshake timeout, then ends by closing."""
    tags = flv_messages(clip.path)
    c = _raw_publish(srv, "s", tags[:3])
    try:
        for t in tags[3:]:
            c.send_tag(*t)
            time.sleep(2 * HANDSHAKE_MS / 1000 / len(tags))
        time.sleep(1.5 * HANDSHAKE_MS / 1000)
        c.end()
    finally:
        c.close()
    return "peer closed the connection", tags


@pytest.mark.parametrize("case,idle_ms,idle_warnings", [
    (_case_ffmpeg_paced, 30_000, 0),
    (_case_unpublish_then_linger, 30_000, 0),
    (_case_unpublish_then_idle, 1_000, 1),
    (_case_slow_publisher, 30_000, 0),
], ids=lambda v: v.__name__[6:] if callable(v) else str(v))
def test_no_handshake_timeout_after_a_publish(ingest, clip, caplog, case, idle_ms,
                                              idle_warnings):
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    srv = ingest(limits=IngestLimits(handshake_timeout_ms=HANDSHAKE_MS, idle_timeout_ms=idle_ms))
    reason, tags = case(srv, clip)
    assert srv.wait_ended("s", timeout=10) == reason
    st = srv.wait_quiet()
    warnings = _warnings(caplog)
    assert not [w for w in warnings if "handshake timeout" in w], warnings
    assert sum(f"closing: idle for {idle_ms} ms" in w for w in warnings) == idle_warnings, \
        warnings
    assert st["errors"] == idle_warnings, (st, warnings)
    files = srv.files("s")
    assert len(files) == 1, files
    check_recording(files[0], clip, expected=sent_packets(clip, tags) if tags else None)


def test_a_connection_that_never_publishes_still_times_out(ingest, caplog):
    """The guard above must not disable the timeout: connect without publishing."""
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    srv = ingest(limits=IngestLimits(handshake_timeout_ms=HANDSHAKE_MS))
    with RawRtmp(srv.port) as c:
        c.handshake()
        c.connect()
        took = c.wait_closed(5)
    assert took >= HANDSHAKE_MS / 1000 * 0.9
    assert srv.wait_quiet()["errors"] == 1
    assert any(f"no publish within {HANDSHAKE_MS} ms (handshake timeout)" in w
               for w in _warnings(caplog))
