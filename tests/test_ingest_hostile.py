"""Hostile and broken RTMP clients on raw sockets. Each case: the server closes that connection
with a clear log line, a real publisher (ffmpeg -re) recording at the same time finishes intact,
and nothing is left behind (no connection, no stream; memory back to its level)."""

from __future__ import annotations

import gc
import logging
import random
import time
from contextlib import contextmanager

import pytest

from pyrec.ingest import IngestLimits

from ingest_harness import (RawRtmp, check_recording, chunk_header0, chunk_message,  # noqa: F401
                            ffmpeg_publish, finish, flv_messages, ingest, sent_packets,
                            vm_rss_kib)

HANDSHAKE_BYTES = 1 + 1536 + 1536  # C0 + C1 + C2: the offset of the first chunk


def _msgs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture
def good_clip(clips):
    return clips.flv("hostile_good", seconds=3.0, size="160x120")


@pytest.fixture
def tags_clip(clips):
    """The clip raw clients publish tag by tag."""
    return clips.flv("hostile_raw", seconds=2.0, size="160x120")


@contextmanager
def bystander(srv, clip, name: str = "good"):
    """A paced ffmpeg publisher live during the block; afterwards its recording must be
    complete and exact."""
    p = ffmpeg_publish(srv.url(name), clip.path, paced=True)
    try:
        srv.wait_ready(name, timeout=10)
        yield
        assert name not in srv.ended, (
            f"{name} ended during the hostile part ({srv.ended[name]}): too slow or hurt")
    finally:
        rc, err = finish(p)
    assert rc == 0, f"bystander ffmpeg: {err}"
    assert srv.wait_ended(name) == "unpublished"
    files = srv.files(name)
    assert len(files) == 1, files
    check_recording(files[0], clip)


def _raw_publish(srv, name: str, tags, *, chunk_size: int = 4096) -> RawRtmp:
    c = RawRtmp(srv.port)
    c.handshake()
    c.publish(name)
    c.set_chunk_size(chunk_size)
    for typ, ts, body in tags:
        c.send_tag(typ, ts, body)
    return c


def _until(tags, ms: int):
    """Tags of the file before the first video frame at or after `ms`."""
    i = next(i for i, (typ, ts, body) in enumerate(tags)
             if typ == 9 and body[1] == 1 and ts >= ms)
    return tags[:i], tags[i]


# --------------------------------------------------------------------------------------------


def test_random_bytes(ingest, good_clip, caplog):
    """Garbage instead of C0, and garbage after a good handshake: the server closes each on its
    own with a MALFORMED/TOOBIG line, or (garbage that reads as the start of a long message)
    waits for more and closes at EOF."""
    caplog.set_level(logging.DEBUG, logger="pyrec.ingest")
    srv = ingest(limits=IngestLimits(max_message_size=1 << 20))
    bad_c0 = closed_by_server = 0
    with bystander(srv, good_clip):
        for seed in range(24):
            junk = random.Random(seed).randbytes(8192)
            with RawRtmp(srv.port) as c:
                if seed % 2:
                    c.handshake()  # garbage in the chunk stream
                elif junk[0] != 3:
                    bad_c0 += 1  # garbage instead of C0
                try:
                    c.send(junk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server already closed: fine
                if c.is_open(0.3):  # waiting for more bytes of a plausible message
                    c.end()
                else:
                    closed_by_server += 1
    st = srv.wait_quiet()
    assert st["accepted"] == st["closed"] == 25
    warnings = _warnings(caplog)
    closing = [m for m in warnings if ": closing: " in m]
    assert st["errors"] == len(closing) == closed_by_server, (st, closing)
    assert closed_by_server >= 18, closing
    c0 = [m for m in closing if "MALFORMED" in m and "(at byte 0)" in m]
    assert len(c0) == bad_c0 > 0, closing
    assert all("MALFORMED" in m or "TOOBIG" in m for m in closing), closing
    assert list(srv.ready) == ["good"], "garbage made a stream"


@pytest.mark.parametrize("cut", ["c1", "header", "payload"])
def test_truncated_then_close(ingest, good_clip, caplog, cut):
    """A connection that stops mid-handshake, mid-chunk-header or mid-chunk-payload and closes
    is just closed."""
    caplog.set_level(logging.DEBUG, logger="pyrec.ingest")
    srv = ingest()
    with bystander(srv, good_clip):
        with RawRtmp(srv.port) as c:
            if cut == "c1":
                c.send(b"\x03" + bytes(700))
            else:
                c.handshake()
                msg = chunk_message(3, 20, 0, bytes(20) + b"\x02" + bytes(400))
                c.send(msg[:5] if cut == "header" else msg[:12 + 60])
            c.end(timeout=2)
    st = srv.wait_quiet()
    assert st["errors"] == 0 and st["accepted"] == st["closed"] == 2
    msgs = _msgs(caplog)
    assert sum("connection closed (peer closed the connection)" in m for m in msgs) == 2, msgs
    assert not [m for m in _warnings(caplog)], _warnings(caplog)


def test_publisher_cut_mid_message(ingest, good_clip, tags_clip, caplog):
    """A raw publisher sends 1 s of tags, half of the next video message, then closes: its stream
    ends and its file holds exactly the complete messages."""
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    srv = ingest()
    tags = flv_messages(tags_clip.path)
    sent, nxt = _until(tags, 1000)
    with bystander(srv, good_clip):
        c = _raw_publish(srv, "cut", sent)
        typ, ts, body = nxt
        part = chunk_message(7, typ, 1, body, ts=ts, chunk_size=4096)
        c.send(part[:len(part) // 2])
        c.end()
        c.close()
        srv.wait_ended("cut", timeout=5)
    files = srv.files("cut")
    assert len(files) == 1, files
    check_recording(files[0], tags_clip, expected=sent_packets(tags_clip, sent))
    srv.wait_quiet()


def test_message_over_the_limit(ingest, good_clip, tags_clip, caplog):
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    srv = ingest(limits=IngestLimits(max_message_size=1 << 20))
    tags = flv_messages(tags_clip.path)
    sent, _ = _until(tags, 500)
    with bystander(srv, good_clip):
        # before connect: a command declaring 16 MiB - 1
        with RawRtmp(srv.port) as c:
            c.handshake()
            c.send(chunk_header0(3, 0, 0xFFFFFF, 20, 0) + bytes(100))
            assert c.wait_closed(2) < 1.0
        # a publisher whose next video message declares 1 MiB + 1: its stream ends, its file
        # keeps what came before
        c = _raw_publish(srv, "big", sent)
        c.send(chunk_header0(7, 600, (1 << 20) + 1, 9, 1) + bytes(4000))
        assert c.wait_closed(2) < 1.0
        c.close()
        assert srv.wait_ended("big", timeout=5) == "bad input"
    warnings = _warnings(caplog)
    want = [f"closing: TOOBIG: chunk stream 3: message length {0xFFFFFF} exceeds the limit of "
            f"{1 << 20} bytes (message type 20) (at byte {HANDSHAKE_BYTES})",
            f"closing: TOOBIG: chunk stream 7: message length {(1 << 20) + 1} exceeds the "
            f"limit of {1 << 20} bytes (message type 9)"]
    for w in want:
        assert any(w in m for m in warnings), (w, warnings)
    files = srv.files("big")
    assert len(files) == 1
    check_recording(files[0], tags_clip, expected=sent_packets(tags_clip, sent), decode=False)
    st = srv.wait_quiet()
    assert st["errors"] == 2


def test_chunk_stream_storm(ingest, good_clip, caplog):
    """Thousands of distinct chunk stream ids with 3-byte basic headers: the connection is closed
    at the first one over max_chunk_streams; the table never grows past the limit."""
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    srv = ingest()  # max_chunk_streams = 64
    storm = b"".join(chunk_header0(csid, 0, 1, 8, 1) + b"\xaf"
                     for csid in range(320, 320 + 5000))
    assert storm[0] & 0x3F == 1  # 3-byte basic headers
    with bystander(srv, good_clip):
        with RawRtmp(srv.port) as c:
            c.handshake()
            try:
                c.send(storm)
            except (BrokenPipeError, ConnectionResetError):
                pass
            c.wait_closed(2)
    warnings = _warnings(caplog)
    want = f"closing: TOOBIG: chunk stream {320 + 64} would be chunk stream number 65 (limit 64)"
    assert any(want in m for m in warnings), warnings
    st = srv.wait_quiet()
    assert st["errors"] == 1


def test_handshake_never_finishes(ingest, good_clip, caplog):
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    srv = ingest(limits=IngestLimits(handshake_timeout_ms=500))
    with bystander(srv, good_clip):
        conns = [RawRtmp(srv.port) for _ in range(5)]
        t0 = time.monotonic()
        for c in conns:
            c.send(b"\x03" + bytes(768))  # C0 + half of C1
        # one that finishes the handshake and connects, but never publishes
        lazy = RawRtmp(srv.port)
        lazy.handshake()
        lazy.connect()
        try:
            for c in conns + [lazy]:
                c.wait_closed(3)
            elapsed = time.monotonic() - t0
            assert 0.45 <= elapsed <= 2.0, elapsed
        finally:
            for c in conns + [lazy]:
                c.close()
    st = srv.wait_quiet()
    assert st["errors"] == 6
    warnings = _warnings(caplog)
    assert sum("closing: no publish within 500 ms (handshake timeout)" in m
               for m in warnings) == 6, warnings


def test_idle_timeout(ingest, good_clip, tags_clip, caplog):
    """A publisher that stops sending is closed after idle_timeout_ms; its stream ends with that
    reason and its file holds everything it sent. A connection idle after the handshake too."""
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    srv = ingest(limits=IngestLimits(idle_timeout_ms=600))
    tags = flv_messages(tags_clip.path)
    sent, _ = _until(tags, 800)
    with bystander(srv, good_clip):
        t0 = time.monotonic()
        c = _raw_publish(srv, "stall", sent)
        quiet = RawRtmp(srv.port)
        quiet.handshake()
        try:
            for x in (c, quiet):
                x.wait_closed(3)
            assert 0.55 <= time.monotonic() - t0 <= 2.0
        finally:
            c.close()
            quiet.close()
        assert srv.wait_ended("stall", timeout=5) == "idle timeout"
    files = srv.files("stall")
    assert len(files) == 1
    check_recording(files[0], tags_clip, expected=sent_packets(tags_clip, sent))
    st = srv.wait_quiet()
    assert st["errors"] == 2
    warnings = _warnings(caplog)
    assert sum("closing: idle for 600 ms" in m for m in warnings) == 2, warnings
    assert any("app/stall ended (idle timeout)" in m for m in _msgs(caplog))


def test_max_connections(ingest, good_clip, caplog):
    caplog.set_level(logging.INFO, logger="pyrec.ingest")
    srv = ingest(limits=IngestLimits(max_connections=3))
    with bystander(srv, good_clip):  # connection 1
        a, b = RawRtmp(srv.port), RawRtmp(srv.port)
        a.handshake()
        b.handshake()  # 2 and 3 are served
        try:
            with RawRtmp(srv.port) as extra:  # the 4th: closed at once
                assert extra.wait_closed(1.0) < 0.5
            st = srv.server.stats()
            assert (st["refused"], st["connections"]) == (1, 3), st
            a.end()
            deadline = time.monotonic() + 2
            while srv.server.stats()["connections"] != 2:
                assert time.monotonic() < deadline, srv.server.stats()
                time.sleep(0.01)
            with RawRtmp(srv.port) as again:  # a slot is free again
                again.handshake()
                again.end()
        finally:
            a.close()
            b.close()
    st = srv.wait_quiet()
    assert st["refused"] == 1 and st["accepted"] == 4 and st["errors"] == 0
    warnings = _warnings(caplog)
    assert sum("refused: 3 connections is the limit" in m for m in warnings) == 1, warnings


def _hostile_round(srv, tags, k: int) -> None:
    """One of each: big partial messages on many chunk streams, an oversized message, a
    chunk-stream storm, garbage, and a publisher that vanishes mid-stream."""
    with RawRtmp(srv.port) as c:  # ~60 chunk streams x 64 KiB partial messages
        c.handshake()
        c.set_chunk_size(65536)
        c.send(b"".join(chunk_header0(10 + i, 0, 200_000, 8, 1) + bytes(65536)
                        for i in range(60)))
        c.end()
    with RawRtmp(srv.port) as c:
        c.handshake()
        c.send(chunk_header0(3, 0, 0xFFFFFF, 20, 0))
        c.wait_closed(2)
    with RawRtmp(srv.port) as c:
        c.handshake()
        try:
            c.send(b"".join(chunk_header0(csid, 0, 1, 8, 1) + b"\x00"
                            for csid in range(400, 600)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        c.wait_closed(2)
    with RawRtmp(srv.port) as c:
        c.handshake()
        try:
            c.send(random.Random(k).randbytes(20000))
        except (BrokenPipeError, ConnectionResetError):
            pass
        if c.is_open(0.05):
            c.end()
    c = _raw_publish(srv, f"gone{k}", tags)
    c.end()
    c.close()


def test_memory_returns_to_baseline(ingest, tags_clip):
    """Many hostile connections (and publishers that vanish) leave no memory behind: the
    server's process RSS after 60 more rounds stays where it was after a few."""
    srv = ingest(limits=IngestLimits(max_message_size=1 << 20))
    tags, _ = _until(flv_messages(tags_clip.path), 500)
    for k in range(4):
        _hostile_round(srv, tags, k)
    srv.wait_quiet()
    gc.collect()
    base = vm_rss_kib()
    rounds = 60
    for k in range(4, 4 + rounds):
        _hostile_round(srv, tags, k)
    st = srv.wait_quiet()
    gc.collect()
    grown = vm_rss_kib() - base
    # one round buffers ~4 MiB of partial messages: a leak of it would be ~240 MiB
    assert grown < 24 * 1024, f"RSS grew by {grown} KiB over {rounds} hostile rounds"
    assert st["accepted"] == st["closed"] == 5 * (4 + rounds)
    assert st["streams"] == 0 and st["connections"] == 0
    assert len(srv.ended) == 4 + rounds
    for k in range(4 + rounds):
        files = srv.files(f"gone{k}")
        assert len(files) == 1 and files[0].error is None and files[0].packets > 0
