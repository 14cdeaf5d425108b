"""Helpers for the RTMP ingest tests (test_ingest_*.py): an in-process IngestServer that records
every stream it gets, real publishers (the ffmpeg CLI, PyAV in a child process), a minimal raw
RTMP client for hostile input, and the check of a recorded file against its source FLV.

PyAV publishers always run in a child process: PyAV keeps the GIL while it does network I/O in
avformat_write_header, and the server's loop thread needs the GIL for its event callbacks (log
lines included), so an in-process PyAV publisher deadlocks against an in-process server.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyrec.ingest import IngestLimits, IngestServer, LiveRecording, LiveStream

import checks
import media

FFMPEG = media.FFMPEG
HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------------------------
# The server under test


class Ingest:
    """An IngestServer on 127.0.0.1:ephemeral that records every ready stream of its apps to
    out_dir/<name>-<k>/<name>_<Sequence>.mp4 (k counts publishes of that name), and lets tests
    wait for ready/end events."""

    def __init__(self, out_dir: Path, *, limits: IngestLimits = IngestLimits(),
                 apps: Any = ("app",), record: bool = True,
                 rec_options: Callable[[LiveStream], dict] | dict | None = None):
        self.out_dir = Path(out_dir)
        self.record = record
        self.rec_options = rec_options
        self.cond = threading.Condition()
        self.ready: dict[str, list[LiveStream]] = {}
        self.recordings: dict[str, list[LiveRecording]] = {}
        self.ended: dict[str, list[str]] = {}
        self.errors: list[BaseException] = []
        self.server = IngestServer(host="127.0.0.1", port=0, apps=apps, limits=limits,
                                   on_stream_ready=self._on_ready,
                                   on_stream_end=self._on_end)
        self.server.start()
        self.port = self.server.port
        self._stopped = False

    def url(self, name: str, app: str = "app") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{name}"

    def _on_ready(self, live: LiveStream) -> None:
        try:
            rec = None
            if self.record:
                k = len(self.recordings.get(live.name, []))
                opts = self.rec_options(live) if callable(self.rec_options) else \
                    dict(self.rec_options or {})
                out = self.out_dir / f"{live.name}-{k}" / "${Stream}_${Sequence}.mp4"
                rec = live.record(str(out), **opts)
            with self.cond:
                self.ready.setdefault(live.name, []).append(live)
                if rec is not None:
                    self.recordings.setdefault(live.name, []).append(rec)
                self.cond.notify_all()
        except BaseException as e:  # surfaced by the wait_* methods
            with self.cond:
                self.errors.append(e)
                self.cond.notify_all()
            raise

    def _on_end(self, live: LiveStream, reason: str) -> None:
        with self.cond:
            self.ended.setdefault(live.name, []).append(reason)
            self.cond.notify_all()

    def _wait(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                if self.errors:
                    raise AssertionError(f"listener failed: {self.errors[0]!r}") from \
                        self.errors[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                         f"ready={list(self.ready)} ended={self.ended} "
                                         f"stats={self.server.stats()}")
                self.cond.wait(min(left, 0.2))

    def wait_ready(self, name: str, count: int = 1, timeout: float = 30) -> LiveStream:
        self._wait(lambda: len(self.ready.get(name, [])) >= count, timeout,
                   f"{count} ready event(s) of {name}")
        return self.ready[name][count - 1]

    def wait_ended(self, name: str, count: int = 1, timeout: float = 30) -> str:
        self._wait(lambda: len(self.ended.get(name, [])) >= count, timeout,
                   f"{count} end event(s) of {name}")
        return self.ended[name][count - 1]

    def files(self, name: str, k: int = 0):
        return self.recordings[name][k].files

    def wait_quiet(self, timeout: float = 10) -> dict:
        """Every connection closed and no stream left."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.server.stats()
            if st["connections"] == 0 and st["streams"] == 0:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"server not quiet after {timeout}s: {st}")
            time.sleep(0.02)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.server.stop()


@pytest.fixture
def ingest(out_dir):
    """Factory: ingest(limits=..., apps=..., rec_options=...) -> a started Ingest, stopped at
    teardown (every stream ended, files finished)."""
    made: list[Ingest] = []

    def make(**kw) -> Ingest:
        srv = Ingest(out_dir, **kw)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.stop()


# --------------------------------------------------------------------------------------------
# Publishers


def ffmpeg_publish(url: str, src, *, paced: bool = False, extra=()) -> subprocess.Popen:
    """`ffmpeg [-re] -i src -c copy -f flv url` (the Debian CLI); stdout/stderr captured."""
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", *(["-re"] if paced else []),
           "-i", os.fspath(src), "-c", "copy", *extra, "-f", "flv", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def finish(p: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        raise AssertionError(f"publisher {p.args} did not finish in {timeout}s: {err}")
    return p.returncode, err


def run_publish(url: str, src, *, paced: bool = False, timeout: float = 60) -> tuple[int, str]:
    return finish(ffmpeg_publish(url, src, paced=paced), timeout)


PYAV_PUBLISHER = r"""
import sys
import av
src_path, url = sys.argv[1:]
with av.open(src_path) as src, av.open(url, "w", format="flv") as dst:
    # opaque=True: take the codec from the template (there may be no AV1 *encoder* by the
    # decoder's name); this is a remux.
    out = {s.index: dst.add_stream_from_template(s, opaque=True) for s in src.streams
           if s.type in ("video", "audio")}
    for pkt in src.demux(*[src.streams[i] for i in out]):
        if pkt.dts is None:
            continue
        pkt.stream = out[pkt.stream.index]
        dst.mux(pkt)
"""


def pyav_publish(url: str, src, *, timeout: float = 60) -> tuple[int, str]:
    """Remux `src` to `url` with PyAV's FLV muxer (FFmpeg 8: Enhanced RTMP) in a child."""
    env = dict(os.environ, SVT_LOG="1")
    r = subprocess.run([sys.executable, "-c", PYAV_PUBLISHER, os.fspath(src), url],
                       capture_output=True, text=True, timeout=timeout, env=env)
    return r.returncode, r.stderr


# --------------------------------------------------------------------------------------------
# Checking a recording against its source


def strip_av1_temporal_delimiters(data: bytes) -> bytes:
    """AV1 in ISO BMFF (AV1-ISOBMFF 2.4) carries no temporal delimiter OBUs; FLV may."""
    out, i = bytearray(), 0
    while i < len(data):
        hdr = data[i]
        obu_type = (hdr >> 3) & 0xF
        ext = (hdr >> 2) & 1
        has_size = (hdr >> 1) & 1
        assert has_size, "AV1 OBU without obu_size in a packet"
        j = i + 1 + ext
        size = shift = 0
        while True:
            b = data[j]
            j += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        end = j + size
        if obu_type != 2:  # OBU_TEMPORAL_DELIMITER
            out += data[i:end]
        i = end
    return bytes(out)


def av1_payloads(clip: media.Clip) -> dict[str, bytes]:
    """sha1 of each source AV1 packet -> its bytes as they must appear in the MP4."""
    v = clip.video
    return {media.sha1(data): strip_av1_temporal_delimiters(data)
            for index, *_, data in media.demux_packets(clip.path, [v.index])}


def check_recording(f, clip: media.Clip, *, expected: dict | None = None, decode: bool = True,
                    payloads: dict[str, bytes] | None = None) -> None:
    """One recorded file holds exactly `expected` (default: the clip's packets from the first
    video keyframe on), byte for byte, with the source's timestamps rebased, a finalised
    structure (hybrid moov or mfra, patched durations) and A/V alignment; with `decode`,
    ffprobe and PyAV agree and every frame decodes. `payloads` maps a source packet's sha1 to
    the bytes expected in the file when they differ (AV1)."""
    streams = clip.streams
    exp_map = expected if expected is not None else media.expected_packets(clip)
    exp = [exp_map[st.index] for st in streams]
    checks.files_ok([f])
    assert f.bytes == os.path.getsize(f.path), (f.bytes, os.path.getsize(f.path))
    assert f.packets == sum(len(e) for e in exp), (
        f"{f.path}: {f.packets} packets, expected {[len(e) for e in exp]}")

    def size(p):
        return len(payloads[p.sha1]) if payloads and p.sha1 in payloads else p.size

    assert f.payload_bytes == sum(size(p) for e in exp for p in e)
    mp4 = checks.parse_recording(f.path)
    tracks = checks.tracks_in_order(mp4, streams)
    for trk, st, e in zip(tracks, streams, exp):
        checks.assert_samples_match(trk, st, e, mp4,
                                    payload_of=(lambda p: payloads.get(p.sha1)) if payloads
                                    else None)
    checks.assert_aligned(mp4, tracks, streams, exp)
    checks.assert_durations(mp4, tracks)
    if decode:
        checks.assert_readers_agree(f.path, streams, exp, compare_bytes=payloads is None)


def prefix_expected(clip: media.Clip, f) -> dict[int, list[media.Packet]]:
    """The expected packets cut to as many per track as the file holds (a stream that ended
    early: its file must be an exact prefix of the source)."""
    exp = media.expected_packets(clip)
    counts = [t["samples"] for t in f.tracks]
    return {st.index: exp[st.index][:n] for st, n in zip(clip.streams, counts)}


def media_tags(path) -> int:
    """Audio + video tags of an FLV file (what a publisher sends as RTMP media messages)."""
    data = Path(path).read_bytes()
    return sum(1 for _, typ, _, _ in media.flv_tags(data) if typ in (8, 9))


# --------------------------------------------------------------------------------------------
# A minimal RTMP client over a raw socket (Adobe RTMP 1.0; AMF0)


def amf_str(s: str) -> bytes:
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_num(x: float) -> bytes:
    return b"\x00" + struct.pack(">d", x)


AMF_NULL = b"\x05"


def amf_obj(d: dict) -> bytes:
    out = b"\x03"
    for k, v in d.items():
        kb = k.encode()
        out += struct.pack(">H", len(kb)) + kb
        out += amf_str(v) if isinstance(v, str) else amf_num(float(v))
    return out + b"\x00\x00\x09"


def basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes([(fmt << 6) | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([(fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])


def chunk_header0(csid: int, ts: int, length: int, mtype: int, msid: int) -> bytes:
    ext = ts >= 0xFFFFFF
    h = (basic_header(0, csid) + (0xFFFFFF if ext else ts).to_bytes(3, "big")
         + length.to_bytes(3, "big") + bytes([mtype]) + struct.pack("<I", msid))
    return h + (struct.pack(">I", ts) if ext else b"")


def chunk_message(csid: int, mtype: int, msid: int, payload: bytes, *, ts: int = 0,
                  chunk_size: int = 128) -> bytes:
    out = bytearray(chunk_header0(csid, ts, len(payload), mtype, msid))
    out += payload[:chunk_size]
    for i in range(chunk_size, len(payload), chunk_size):
        out += basic_header(3, csid)
        if ts >= 0xFFFFFF:
            out += struct.pack(">I", ts)
        out += payload[i:i + chunk_size]
    return bytes(out)


class RawRtmp:
    """A client that speaks just enough RTMP (or not) to reach a given server state."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.chunk_size = 128

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            b = self.sock.recv(n - len(buf))
            if not b:
                raise ConnectionError(f"server closed after {len(buf)} of {n} bytes")
            buf += b
        return bytes(buf)

    def handshake(self) -> None:
        c1 = bytes(8) + random.Random(1).randbytes(1528)
        self.send(b"\x03" + c1)
        s = self.recv_exact(1 + 1536 + 1536)
        assert s[0] == 3, f"S0 = {s[0]}"
        assert s[1 + 1536:] == c1, "S2 is not an echo of C1"
        self.send(s[1:1 + 1536])  # C2 = echo of S1

    def set_chunk_size(self, size: int) -> None:
        self.send(chunk_message(2, 1, 0, struct.pack(">I", size)))
        self.chunk_size = size

    def command(self, *values: bytes, msid: int = 0, csid: int = 3) -> None:
        self.send(chunk_message(csid, 20, msid, b"".join(values), chunk_size=self.chunk_size))

    def connect(self, app: str = "app") -> None:
        self.command(amf_str("connect"), amf_num(1), amf_obj(
            {"app": app, "type": "nonprivate", "flashVer": "FMLE/3.0 (compatible; pyrec-test)",
             "tcUrl": f"rtmp://127.0.0.1:{self.port}/{app}"}))

    def publish(self, name: str, app: str = "app") -> None:
        """connect, createStream (message stream 1), publish; replies are not waited for."""
        self.connect(app)
        self.command(amf_str("createStream"), amf_num(2), AMF_NULL)
        self.command(amf_str("publish"), amf_num(3), AMF_NULL, amf_str(name), amf_str("live"),
                     msid=1, csid=4)

    def unpublish(self, name: str) -> None:
        """FCUnpublish + deleteStream, as ffmpeg and OBS end a publish."""
        self.command(amf_str("FCUnpublish"), amf_num(4), AMF_NULL, amf_str(name))
        self.command(amf_str("deleteStream"), amf_num(5), AMF_NULL, amf_num(1))

    def send_tag(self, mtype: int, ts: int, body: bytes) -> None:
        csid = {8: 6, 9: 7, 18: 5}[mtype]
        self.send(chunk_message(csid, mtype, 1, body, ts=ts, chunk_size=self.chunk_size))

    def wait_closed(self, timeout: float) -> float:
        """Read (and drop) until the server closes; seconds it took. Fails on timeout."""
        t0 = time.monotonic()
        self.sock.settimeout(0.1)
        while True:
            try:
                b = self.sock.recv(65536)
                if not b:
                    return time.monotonic() - t0
            except ConnectionResetError:
                return time.monotonic() - t0
            except (socket.timeout, TimeoutError):
                pass
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"server kept the connection open for {timeout}s")

    def is_open(self, wait: float = 0.1) -> bool:
        """No EOF/reset within `wait` seconds (data that arrives is dropped)."""
        self.sock.settimeout(wait)
        try:
            while True:
                b = self.sock.recv(65536)
                if not b:
                    return False
        except (socket.timeout, TimeoutError):
            return True
        except ConnectionResetError:
            return False

    def end(self, timeout: float = 5.0) -> float:
        """Half-close (EOF to the server, like a process that exits) and wait until the server
        closes its side; unread replies are drained so that no RST replaces the FIN."""
        self.sock.shutdown(socket.SHUT_WR)
        return self.wait_closed(timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawRtmp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flv_messages(path) -> list[tuple[int, int, bytes]]:
    """(type, timestamp ms, body) of every tag of an FLV file: what a publisher sends."""
    data = Path(path).read_bytes()
    return [(typ, ts, data[off + 11:off + 11 + size])
            for off, typ, size, ts in media.flv_tags(data)]


def sent_packets(clip: media.Clip, tags: list[tuple[int, int, bytes]]) -> dict[int, list]:
    """The clip's packets carried by `tags` (a prefix of the file's tags): sequence headers
    and end-of-sequence tags carry none."""
    nv = sum(1 for typ, _, body in tags if typ == 9 and len(body) > 1 and body[1] == 1
             and body[0] & 0x0F == 7)
    na = sum(1 for typ, _, body in tags if typ == 8 and len(body) > 1 and body[1] == 1
             and body[0] >> 4 == 10)
    v, a = clip.video, clip.audio
    assert v.codec == "h264" and a.codec == "aac", "only classic H.264/AAC FLV tags counted"
    exp = media.expected_packets(clip)
    return {v.index: exp[v.index][:nv],
            a.index: [p for p in exp[a.index] if p in a.packets[:na]]}


def vm_rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")
