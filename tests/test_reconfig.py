"""An encoder that changes its configuration mid-stream (OBS changing the output resolution
sends a new AVC sequence header, then an IDR): the recording starts a new file at that keyframe,
carrying the new configuration, so both parts decode at their own size; nothing is lost."""
from __future__ import annotations

import struct
from pathlib import Path

import av

import boxes
import media
import probe
import pyrec


def tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, timestamp ms, body) of every tag of an FLV file."""
    out = []
    for off, typ, size, ts in media.flv_tags(data):
        out.append((typ, ts, data[off + 11:off + 11 + size]))
    return out


def write_flv(path: Path, items: list[tuple[int, int, bytes]]) -> None:
    buf = bytearray(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00")
    for typ, ts, body in items:
        buf += bytes([typ]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
        buf += bytes([(ts >> 24) & 0xFF]) + b"\x00\x00\x00" + body
        buf += struct.pack(">I", 11 + len(body))
    path.write_bytes(bytes(buf))


def test_resolution_change_starts_a_new_file(clips, out_dir):
    a = clips.flv("reconf_a", seconds=2.0, size="320x240", gop=30, fps=30).path
    b = clips.flv("reconf_b", seconds=2.0, size="640x480", gop=30, fps=30).path
    ta, tb = tags(a.read_bytes()), tags(b.read_bytes())
    shift = max(ts for _, ts, _ in ta) + 34
    spliced = out_dir / "spliced.flv"
    write_flv(spliced, ta + [(t, ts + shift, body) for t, ts, body in tb if t != 18])
    files = pyrec.record_file(str(spliced), str(out_dir / "r_${Sequence}.mp4"))
    assert [f.sequence for f in files] == [0, 1]
    nv = lambda tt: sum(1 for t, _, body in tt if t == 9 and body[1] == 1)  # AVC NALU packets
    na = lambda tt: sum(1 for t, _, body in tt if t == 8 and body[1] == 1)  # AAC raw packets
    sizes = []
    for f, src, (w, h) in zip(files, (ta, tb), ((320, 240), (640, 480))):
        mp4 = boxes.parse_mp4(f.path)
        boxes.check_fragmented(mp4)
        video, audio = mp4.tracks[1], mp4.tracks[2]
        assert (video.entry_width, video.entry_height) == (w, h)
        assert len(video.samples) == nv(src)
        sizes.append(len(audio.samples))
        probe.assert_plays(f.path)
        with av.open(f.path) as c:
            frames = list(c.decode(video=0))
        assert len(frames) == nv(src)
        assert {(fr.width, fr.height) for fr in frames} == {(w, h)}
    # Audio: nothing lost or doubled across the change (it follows the video split).
    assert sum(sizes) == na(ta) + na(tb)
