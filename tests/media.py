"""Test media: make short clips with PyAV (or the ffmpeg CLI) and describe them.

Everything here is a *peer* of pyrec: clips are encoded by FFmpeg's encoders and muxers, and the
ground truth of a clip is what FFmpeg's demuxer reads back from it (per stream: every packet's
dts, pts, keyframe flag, size and sha1). `feed()` pushes a clip's demuxed packets into a
`pyrec.Recorder`, the way an application would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import av
import numpy as np

# SVT-AV1 prints a banner straight to stderr unless told otherwise.
os.environ.setdefault("SVT_LOG", "1")

# pyrec codec name -> (PyAV encoder, encoder options)
VIDEO_ENCODERS: dict[str, tuple[str, dict[str, str]]] = {
    "h264": ("libx264", {"preset": "veryfast", "tune": "zerolatency"}),  # bframes set below
    "hevc": ("libx265", {"preset": "ultrafast"}),
    "av1": ("libsvtav1", {"preset": "12"}),
    "vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
}
AUDIO_ENCODERS: dict[str, tuple[str, int, str]] = {
    # name -> (encoder, sample rate, sample format)
    "aac": ("aac", 48000, "fltp"),
    "opus": ("libopus", 48000, "s16"),
    "mp3": ("libmp3lame", 44100, "s16p"),
}
# FFmpeg codec (descriptor) names -> pyrec codec names
PYREC_CODEC = {"h264": "h264", "hevc": "hevc", "av1": "av1", "vp9": "vp9", "aac": "aac",
               "opus": "opus", "mp3": "mp3"}
CONTAINER_FORMAT = {".mp4": "mp4", ".mkv": "matroska", ".flv": "flv", ".mov": "mov",
                    ".ts": "mpegts"}


def have_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False
    return True


# --------------------------------------------------------------------------------------------
# Ground truth


@dataclass(frozen=True)
class Packet:
    dts: int           # in the stream's time base (pts used when the demuxer gives no dts)
    pts: int
    key: bool
    size: int
    sha1: str
    duration: int = 0


@dataclass
class StreamTruth:
    index: int
    kind: str                 # "video" / "audio"
    codec: str                # pyrec codec name ("h264", ...)
    time_base: Fraction
    extradata: bytes
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    packets: list[Packet] = field(default_factory=list)

    @property
    def timescale(self) -> int:
        if self.time_base.numerator != 1:
            raise ValueError(f"time base {self.time_base} is not 1/N")
        return self.time_base.denominator

    def seconds(self, ticks: int) -> Fraction:
        return ticks * self.time_base


@dataclass
class Clip:
    path: Path
    streams: list[StreamTruth]

    @property
    def video(self) -> StreamTruth | None:
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def audio(self) -> StreamTruth | None:
        return next((s for s in self.streams if s.kind == "audio"), None)

    def duration_s(self) -> float:
        ends = [s.seconds(p.dts + p.duration) for s in self.streams for p in s.packets]
        starts = [s.seconds(p.dts) for s in self.streams for p in s.packets]
        return float(max(ends) - min(starts)) if ends else 0.0


def sha1(data) -> str:
    return hashlib.sha1(bytes(data)).hexdigest()


def read_truth(path: str | os.PathLike) -> Clip:
    """Demux `path` with PyAV and record every packet of every audio/video stream."""
    path = Path(path)
    with av.open(str(path)) as c:
        streams: list[StreamTruth] = []
        by_index: dict[int, StreamTruth] = {}
        for s in c.streams:
            if s.type not in ("video", "audio"):
                continue
            cc = s.codec_context
            name = s.codec.canonical_name if hasattr(s.codec, "canonical_name") else cc.name
            st = StreamTruth(
                index=s.index, kind=s.type, codec=PYREC_CODEC.get(name, name),
                time_base=Fraction(s.time_base.numerator, s.time_base.denominator),
                extradata=bytes(cc.extradata or b""),
            )
            if s.type == "video":
                st.width, st.height = cc.width, cc.height
            else:
                st.sample_rate = cc.sample_rate
                st.channels = cc.channels if hasattr(cc, "channels") else cc.layout.nb_channels
            streams.append(st)
            by_index[s.index] = st
        for pkt in c.demux(*[c.streams[i] for i in by_index]):
            if pkt.size == 0:  # demuxer flush packets
                continue
            st = by_index[pkt.stream.index]
            dts = pkt.dts if pkt.dts is not None else pkt.pts
            pts = pkt.pts if pkt.pts is not None else dts
            st.packets.append(Packet(dts, pts, bool(pkt.is_keyframe), pkt.size,
                                     sha1(memoryview(pkt)), pkt.duration or 0))
    return Clip(path, streams)


# --------------------------------------------------------------------------------------------
# Encoding clips with PyAV


def _video_frames(n: int, width: int, height: int, fps: int) -> Iterable[av.VideoFrame]:
    x = np.arange(width, dtype=np.int32)[None, :]
    y = np.arange(height, dtype=np.int32)[:, None]
    for i in range(n):
        img = np.empty((height, width, 3), np.uint8)
        img[:, :, 0] = (x * 2 + i * 5) % 256
        img[:, :, 1] = (y * 3 + i * 2) % 256
        img[:, :, 2] = ((x + y) // 4 + i * 7) % 256
        # a moving box so that motion search has something to do
        bx, by = (i * 7) % max(1, width - 40), (i * 3) % max(1, height - 40)
        img[by:by + 40, bx:bx + 40, :] = (255, 255 - (i * 9) % 256, 0)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        yield frame


def _audio_frames(stream, seconds: float) -> Iterable[av.AudioFrame]:
    cc = stream.codec_context
    rate = cc.sample_rate
    n = int(round(seconds * rate))
    chunk = cc.frame_size or 1024
    t0 = 0
    fmt = av.AudioFormat(cc.format.name)
    nch = 2
    while t0 < n:
        k = min(chunk, n - t0)
        t = (np.arange(t0, t0 + k) / rate).astype(np.float64)
        tone = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.1 * np.sin(2 * np.pi * 1234.5 * t)
        planes = np.stack([tone, 0.5 * tone])  # (channels, samples)
        if fmt.name in ("fltp", "flt"):
            data = planes.astype(np.float32)
        else:
            data = (planes * 32767).astype(np.int16)
        if not fmt.is_planar:
            data = data.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt.name,
                                           layout="stereo" if nch == 2 else "mono")
        frame.sample_rate = rate
        frame.pts = t0
        frame.time_base = Fraction(1, rate)
        yield frame
        t0 += k


def encode_clip(path: str | os.PathLike, *, video: str | None = "h264", audio: str | None = "aac",
                seconds: float = 2.0, fps: int = 30, gop: int = 30, width: int = 320,
                height: int = 240, bframes: int | None = None, fmt: str | None = None) -> Clip:
    """Encode a synthetic clip with PyAV into `path` (container from the extension or `fmt`) and
    return its ground truth as read back by FFmpeg's demuxer.

    Video keyframes come exactly every `gop` frames (scene cut detection off), the first frame
    is a keyframe. H.264 and HEVC get B-frames (2 by default; `bframes=0` disables them)."""
    path = Path(path)
    fmt = fmt or CONTAINER_FORMAT.get(path.suffix)
    out = av.open(str(path), "w", format=fmt)
    try:
        vs = as_ = None
        if video:
            enc, options = VIDEO_ENCODERS[video]
            options = dict(options)
            bf = 2 if bframes is None else bframes
            if video == "h264":
                options.pop("tune", None)
                options["x264-params"] = (f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bf}"
                                          ":log-level=error")
            elif video == "hevc":
                options["x265-params"] = (f"log-level=error:keyint={gop}:min-keyint={gop}"
                                          f":scenecut=0:bframes={bf}:open-gop=0")
            elif video == "av1":
                options["svtav1-params"] = f"keyint={gop}:scd=0"
            vs = out.add_stream(enc, rate=fps, options=options)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            vs.codec_context.gop_size = gop
            vs.codec_context.time_base = Fraction(1, fps)
        if audio:
            enc, rate, sfmt = AUDIO_ENCODERS[audio]
            as_ = out.add_stream(enc, rate=rate)
            as_.layout = "stereo"
            as_.format = sfmt
            if audio == "mp3":
                as_.codec_context.bit_rate = 128000
        # Interleave roughly by time; the muxer's interleaving queue does the rest.
        vframes = list(_video_frames(int(round(seconds * fps)), width, height, fps)) if vs else []
        aframes = list(_audio_frames(as_, seconds)) if as_ else []
        events = [(f.pts / fps, 0, f) for f in vframes]
        if as_:
            rate = as_.codec_context.sample_rate
            events += [(f.pts / rate, 1, f) for f in aframes]
        events.sort(key=lambda e: (e[0], e[1]))
        for _, which, f in events:
            stream = vs if which == 0 else as_
            for p in stream.encode(f):
                out.mux(p)
        for stream in (vs, as_):
            if stream is not None:
                for p in stream.encode(None):
                    out.mux(p)
    finally:
        out.close()
    return read_truth(path)


# --------------------------------------------------------------------------------------------
# Clips made by the Debian ffmpeg CLI (FLV with codecs PyAV can't put there, big bench inputs)

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def ffmpeg_cli(*args: str, timeout: float = 120) -> None:
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-y", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")


def ffmpeg_has_encoder(name: str) -> bool:
    r = subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True)
    return any(line.split()[1:2] == [name] for line in r.stdout.splitlines() if line.strip())


def make_flv_cli(path: str | os.PathLike, *, seconds: float = 2.0, size: str = "320x240",
                 fps: int = 30, gop: int = 30, vcodec: str | None = "libx264",
                 acodec: str | None = "aac", sample_rate: int = 44100,
                 extra: Sequence[str] = ()) -> Path:
    """An FLV made by the ffmpeg CLI from lavfi sources (testsrc2 + sine)."""
    path = Path(path)
    args: list[str] = []
    if vcodec:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if acodec:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}"
                                      f":duration={seconds}"]
    if vcodec:
        args += ["-c:v", vcodec, "-g", str(gop), "-pix_fmt", "yuv420p"]
        if vcodec == "libx264":
            args += ["-preset", "veryfast", "-x264-params", f"scenecut=0:min-keyint={gop}"]
    else:
        args += ["-vn"]
    if acodec:
        args += ["-c:a", acodec, "-ac", "1" if acodec == "nellymoser" else "2"]
        if acodec == "nellymoser":
            args += ["-ar", "22050"]
    else:
        args += ["-an"]
    args += [*extra, "-f", "flv", str(path)]
    ffmpeg_cli(*args)
    return path


# --------------------------------------------------------------------------------------------
# Feeding pyrec


def track_spec(pyrec, st: StreamTruth, *, config: bool = True):
    """A pyrec.TrackSpec for one stream of a clip."""
    kw: dict = {}
    if st.kind == "video":
        kw.update(width=st.width, height=st.height)
    else:
        kw.update(sample_rate=st.sample_rate, channels=st.channels)
    return pyrec.TrackSpec(st.codec, st.timescale, config=st.extradata if config else b"",
                           name=f"{st.kind}{st.index}", **kw)


def first_video_key_seconds(clip: Clip) -> Fraction | None:
    v = clip.video
    if v is None:
        return None
    for p in v.packets:
        if p.key:
            return v.seconds(p.dts)
    return None


def expected_packets(clip: Clip, streams: Sequence[StreamTruth] | None = None, *,
                     keep_leading: bool = False) -> dict[int, list[Packet]]:
    """What a recording must contain, per stream index: live recordings, packets from the
    first video keyframe on (by dts; a tie is kept); file recordings (`pyrec record`,
    keep_leading) and audio-only clips, everything."""
    streams = list(streams if streams is not None else clip.streams)
    t0 = (first_video_key_seconds(clip)
          if any(s.kind == "video" for s in streams) and not keep_leading else None)
    out: dict[int, list[Packet]] = {}
    for st in streams:
        if t0 is None:
            out[st.index] = list(st.packets)
        elif st.kind == "video":
            i = next(i for i, p in enumerate(st.packets) if p.key)
            out[st.index] = st.packets[i:]
        else:
            out[st.index] = [p for p in st.packets if st.seconds(p.dts) >= t0]
    return out


def demux_packets(path: str | os.PathLike, stream_indices: Sequence[int] | None = None):
    """(stream index, dts, pts, key, bytes) for every non-empty packet, in file order."""
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type in ("video", "audio")]
        if stream_indices is not None:
            streams = [s for s in streams if s.index in stream_indices]
        for pkt in c.demux(*streams):
            if pkt.size == 0:
                continue
            dts = pkt.dts if pkt.dts is not None else pkt.pts
            pts = pkt.pts if pkt.pts is not None else dts
            yield pkt.stream.index, dts, pts, bool(pkt.is_keyframe), bytes(pkt)


def feed(rec, clip: Clip, streams: Sequence[StreamTruth] | None = None, *,
         before_packet: Callable[[int, int], None] | None = None) -> int:
    """Push the clip's packets (file order) into `rec`; track i = streams[i]. Returns the
    number of packets written. `before_packet(n, track)` runs before each write (pacing,
    splits, kills)."""
    streams = list(streams if streams is not None else clip.streams)
    track_of = {st.index: i for i, st in enumerate(streams)}
    n = 0
    for index, dts, pts, key, data in demux_packets(clip.path, list(track_of)):
        t = track_of[index]
        if before_packet is not None:
            before_packet(n, t)
        rec.write(t, dts, pts, data, key)
        n += 1
    return n


def batch_arrays(clip: Clip, streams: Sequence[StreamTruth] | None = None):
    """The clip's packets as write_batch arrays: (track, dts, pts, flags, sizes, payload)."""
    streams = list(streams if streams is not None else clip.streams)
    track_of = {st.index: i for i, st in enumerate(streams)}
    tr, dt, pt, fl, sz, chunks = [], [], [], [], [], []
    for index, dts, pts, key, data in demux_packets(clip.path, list(track_of)):
        tr.append(track_of[index]); dt.append(dts); pt.append(pts); fl.append(1 if key else 0)
        sz.append(len(data)); chunks.append(data)
    return (np.asarray(tr, np.int32), np.asarray(dt, np.int64), np.asarray(pt, np.int64),
            np.asarray(fl, np.uint8), np.asarray(sz, np.int64), b"".join(chunks))


def flv_tags(data: bytes) -> list[tuple[int, int, int, int]]:
    """(offset, type, data size, timestamp ms) of every complete tag of an FLV file."""
    assert data[:3] == b"FLV", "not an FLV file"
    pos = int.from_bytes(data[5:9], "big") + 4  # header, then PreviousTagSize0
    out = []
    while pos + 11 <= len(data):
        typ = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        ts = int.from_bytes(data[pos + 4:pos + 7], "big") | (data[pos + 7] << 24)
        end = pos + 11 + size + 4
        if end > len(data):
            break
        assert int.from_bytes(data[end - 4:end], "big") == size + 11, f"bad tag at {pos}"
        out.append((pos, typ, size, ts))
        pos = end
    return out


# --------------------------------------------------------------------------------------------
# Publishing over RTMP (the ffmpeg CLI as a real publisher)


def rtmp_publish(src: str | os.PathLike, url: str, *, realtime: bool = True,
                 extra: Sequence[str] = ()) -> subprocess.Popen:
    """Start `ffmpeg [-re] -i src -c copy -f flv url` (stream copy: the payloads pyrec receives
    are the source's packets byte for byte). Returns the running process; see `rtmp_wait`."""
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error"]
    if realtime:
        cmd.append("-re")
    cmd += ["-i", os.fspath(src), "-c", "copy", *extra, "-f", "flv", url]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def rtmp_wait(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait for a publisher started by `rtmp_publish`; fail on a non-zero exit or any error
    output."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"publisher {proc.args[-1]} still running after {timeout}s")
    assert proc.returncode == 0 and not err.strip(), (
        f"publisher {proc.args[-1]} exited {proc.returncode}: {err.strip()}")
