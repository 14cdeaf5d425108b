"""Independent readers of written files: ffprobe, PyAV (demux + decode every frame) and
`ffmpeg -f null` (the full decode pipeline, reporting through stderr)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction

import av

from media import sha1

FFPROBE = shutil.which("ffprobe")
FFMPEG = shutil.which("ffmpeg")


def require_tools() -> None:
    missing = [n for n, p in (("ffprobe", FFPROBE), ("ffmpeg", FFMPEG)) if p is None]
    if missing:
        raise RuntimeError(f"required tools missing from PATH: {', '.join(missing)} "
                           "(install the Debian ffmpeg package)")


def _frac(s: str) -> Fraction:
    n, d = s.split("/")
    return Fraction(int(n), int(d))


@dataclass
class ProbePacket:
    dts: int | None
    pts: int | None
    key: bool
    size: int
    duration: int | None


@dataclass
class ProbeStream:
    index: int
    codec: str
    kind: str
    time_base: Fraction
    info: dict
    packets: list[ProbePacket] = field(default_factory=list)


def ffprobe(path: str | os.PathLike, *, timeout: float = 60) -> dict[int, ProbeStream]:
    """Streams and every packet as ffprobe sees them. Fails on any ffprobe error output."""
    require_tools()
    cmd = [FFPROBE, "-v", "error", "-show_streams", "-show_packets", "-of", "json",
           os.fspath(path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or r.stderr.strip():
        raise AssertionError(f"ffprobe {path}: rc={r.returncode} stderr={r.stderr.strip()!r}")
    doc = json.loads(r.stdout)
    streams = {s["index"]: ProbeStream(s["index"], s.get("codec_name", "?"),
                                       s.get("codec_type", "?"), _frac(s["time_base"]), s)
               for s in doc.get("streams", [])}
    for p in doc.get("packets", []):
        def num(k):
            v = p.get(k)
            return int(v) if v not in (None, "N/A") else None
        streams[p["stream_index"]].packets.append(
            ProbePacket(num("dts"), num("pts"), "K" in p.get("flags", ""), int(p["size"]),
                        num("duration")))
    return streams


def count_packets(path: str | os.PathLike, *, timeout: float = 300) -> list[int]:
    """Packets per stream (ffprobe -count_packets), in stream order."""
    require_tools()
    cmd = [FFPROBE, "-v", "error", "-count_packets", "-show_entries", "stream=nb_read_packets",
           "-of", "json", os.fspath(path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"ffprobe -count_packets {path}: {r.stderr.strip()}")
    return [int(s["nb_read_packets"]) for s in json.loads(r.stdout)["streams"]]


# Complaints of ffmpeg's *output* side (the null muxer), not about the input: with millisecond
# timestamps (FLV sources) two frames can round to the same tick of the 1/fps encoder time base.
_OUTPUT_SIDE = ("to muxer in stream",)


def ffmpeg_null(path: str | os.PathLike, *, timeout: float = 120) -> str:
    """Decode everything with the ffmpeg CLI; return stderr (empty when all is well)."""
    require_tools()
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-i", os.fspath(path),
           "-f", "null", "-"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out = "\n".join(line for line in r.stderr.splitlines()
                    if line.strip() and not any(k in line for k in _OUTPUT_SIDE))
    if r.returncode != 0:
        out = f"(exit {r.returncode}) {out}"
    return out


@dataclass
class AvPacket:
    dts: int | None
    pts: int | None
    key: bool
    size: int
    sha1: str


@dataclass
class AvStream:
    index: int
    kind: str
    codec: str
    time_base: Fraction
    extradata: bytes
    packets: list[AvPacket] = field(default_factory=list)
    frames: int = 0
    decode_errors: list[str] = field(default_factory=list)
    frame_pts: list[int] = field(default_factory=list)


@dataclass
class AvRead:
    streams: dict[int, AvStream]
    duration_s: float | None    # container duration as FFmpeg reports it
    format: str


def pyav_read(path: str | os.PathLike, *, decode: bool = True) -> AvRead:
    """Demux every packet (with its sha1) and decode every frame with PyAV; decode errors are
    collected, not raised. Packets are also flushed through the decoders at the end."""
    with av.open(os.fspath(path)) as c:
        streams: dict[int, AvStream] = {}
        for s in c.streams:
            if s.type not in ("video", "audio"):
                continue
            name = s.codec.canonical_name if hasattr(s.codec, "canonical_name") else s.codec.name
            streams[s.index] = AvStream(s.index, s.type, name,
                                        Fraction(s.time_base.numerator, s.time_base.denominator),
                                        bytes(s.codec_context.extradata or b""))
            if decode:
                s.codec_context.thread_type = "NONE"
        for pkt in c.demux(*[c.streams[i] for i in streams]):
            st = streams[pkt.stream.index]
            if pkt.size:
                st.packets.append(AvPacket(pkt.dts, pkt.pts, bool(pkt.is_keyframe), pkt.size,
                                           sha1(memoryview(pkt))))
            if not decode:
                continue
            try:
                for frame in pkt.decode():
                    st.frames += 1
                    if frame.pts is not None:
                        st.frame_pts.append(frame.pts)
            except av.error.FFmpegError as e:  # keep going: count every broken packet
                st.decode_errors.append(f"packet dts={pkt.dts}: {e}")
        duration = c.duration / 1_000_000 if c.duration is not None else None
        return AvRead(streams, duration, c.format.name)


def assert_plays(path: str | os.PathLike) -> AvRead:
    """The file demuxes and decodes without a single error in PyAV and in the ffmpeg CLI."""
    r = pyav_read(path)
    errors = {i: s.decode_errors for i, s in r.streams.items() if s.decode_errors}
    assert not errors, f"{path}: PyAV decode errors: {errors}"
    for s in r.streams.values():
        assert s.frames > 0, f"{path}: stream {s.index} ({s.codec}) decoded no frame"
    err = ffmpeg_null(path)
    assert err == "", f"{path}: ffmpeg -f null reports: {err}"
    return r
