#!/usr/bin/env python3
"""Write the seed corpora of the structure-aware fuzz targets (csrc/fuzz/corpus/{flvtags,
chunks,ertmp,amf0}) in the record format of csrc/fuzz/records.h: UI8 kind, UI8 aux, length
(UI8 < 0xfe, or 0xfe + UI16, or 0xff + UI24), body. Tag bodies come from csrc/tests/data/
small.flv (ffmpeg: H.264 + AAC) and from the real codec configs of csrc/tests/test_codec.c.
Run from anywhere; the seeds are committed (kept small)."""
from __future__ import annotations

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
SMALL_FLV = HERE.parent / "tests" / "data" / "small.flv"


def rec(kind: int, aux: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0xFE:
        size = bytes([n])
    elif n < 0x10000:
        size = b"\xfe" + struct.pack(">H", n)
    else:
        size = b"\xff" + n.to_bytes(3, "big")
    return bytes([kind, aux]) + size + body


def flv_tags(path: Path, limit: int) -> list[tuple[int, int, bytes]]:
    data = path.read_bytes()
    pos = 13
    tags = []
    while pos + 11 <= len(data) and len(tags) < limit:
        t = data[pos] & 0x1F
        n = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        tags.append((t, ts, data[pos + 11 : pos + 11 + n]))
        pos += 11 + n + 4
    return tags


H = bytes.fromhex
AVCC = H("0142c00affe10014" "6742c00ada11e840000003004000000c83c489a8" "0100" "04" "68ce0fc8")
HVCC = H(
    "0101600000009000000000001ef000fcfdf8f800000f03"
    "a000010018" "40010c01ffff01600000030090000003000003001e959409"
    "a100010028" "42010101600000030090000003000003001ea0208316595952930b9a020000030002000003003210"
    "a200010006" "4401c073c089"
)
AV1C = H("81000c00" "0a0a00000002aff7805f0008")
AV1_TU = H("12000a0a00000002aff7895f2008320f1000968010408200000000ebc68ef0")
VPCC = H("010a820202020000")
VP9_KEY = H("824983420003f002f60638241c184a00002040006b43ffffe55dbdb7fd2b24857afbcdd3f2a02472")
OPUS_HEAD = H("4f707573486561640102380180bb0000000000")
ASC = H("1210")


def kind_of(tag_type: int) -> int:
    return {8: 0, 9: 1, 18: 2}.get(tag_type, 3 | (tag_type << 2))


def write(name: str, files: dict[str, bytes]) -> None:
    d = CORPUS / name
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    for fname, data in files.items():
        (d / fname).write_bytes(data)


def main() -> None:
    tags = flv_tags(SMALL_FLV, 24)
    # flvtags: mode byte, then the first tags of a real file (bodies trimmed to 600 bytes)
    out = bytearray([0x00])
    last = 0
    for t, ts, body in tags:
        out += rec(kind_of(t), min(ts - last, 254) if ts >= last else 0xFF, body[:600])
        last = ts
    enhanced = bytearray([0x63])
    for kind, body in (
        (1, bytes([0x90]) + b"hvc1" + HVCC),
        (1, bytes([0x91]) + b"hvc1" + b"\x00\x00\x10" + H("0000000326 01af")),
        (1, bytes([0x90]) + b"av01" + AV1C),
        (1, bytes([0xA1]) + b"av01" + AV1_TU),
        (1, bytes([0x97, 0x02, 0xAA, 0xBB, 0xCC, 0x01]) + b"avc1" + b"\x00\x00\x00" + H("0000000165")),
        (0, bytes([0x90]) + b"Opus" + OPUS_HEAD),
        (0, bytes([0x91]) + b"Opus" + H("fcfffe")),
        (1, bytes([0x17, 0x00, 0, 0, 0]) + AVCC),
        (1, bytes([0x17, 0x01, 0, 0, 0x21]) + H("000000026588")),
        (0, bytes([0xAF, 0x00]) + ASC),
        (0, bytes([0xAF, 0x01]) + H("2110")),
    ):
        enhanced += rec(kind, 33, body)
    write("flvtags", {"small_head": bytes(out), "enhanced": bytes(enhanced)})

    # chunks: the same tags as RTMP messages, on varied chunk streams and header types
    out = bytearray([0x00])
    out += rec(4, 0, struct.pack(">I", 4096))  # Set Chunk Size
    for i, (t, _ts, body) in enumerate(tags):
        aux = ((i % 4) | ((i % 2) << 2)) | (1 << 5)
        out += rec(kind_of(t) if t in (8, 9, 18) else 2, aux, body[:1500])
    small_chunks = bytearray([0x01])  # 128-byte chunks, split feeding
    for i, (t, _ts, body) in enumerate(tags[:10]):
        small_chunks += rec(kind_of(t) if t in (8, 9, 18) else 2, (i % 4) | 0x28, body[:400])
    ext = bytearray([0x02])
    for i, (t, _ts, body) in enumerate(tags[:6]):
        ext += rec(kind_of(t) if t in (8, 9, 18) else 2, 0x10 | 0x20 | (i % 4), body[:300])
    write("chunks", {"publish": bytes(out), "small_chunks": bytes(small_chunks), "ext_ts": bytes(ext)})

    # ertmp: configs then frames per FourCC (kind: ptype | audio << 4 | modex << 5 | mt << 7)
    seeds = {
        "hvc1": rec(0x00, 0x01 | 0x80, HVCC) + rec(0x01, 0x01 | 0x80, b"\x10" + H("0000000326 01af")),
        "avc1_modex": rec(0x20, 0x00 | 0x80, AVCC) + rec(0x41, 0x40 | 0x80, b"\x05" + H("000000026588")),
        "av01": rec(0x00, 0x02 | 0x80, AV1C) + rec(0x01, 0x02 | 0x80, AV1_TU) + rec(0x05, 0x02, H("8004")),
        "vp09": rec(0x00, 0x03 | 0x80, VPCC) + rec(0x03, 0x03 | 0x80, VP9_KEY),
        "opus": rec(0x10, 0x00, OPUS_HEAD) + rec(0x11, 0x00, H("fcfffe")) + rec(0x11, 0x08, H("fcfffe")),
        "mp4a": rec(0x10, 0x01, ASC) + rec(0x11, 0x01, H("21100400")),
        "multitrack": rec(0x80, 0x01, b"\x00" + HVCC) + rec(0x91, 0x00, b"\x00" + H("fcff")),
        "misc": rec(0x02, 0x01, b"") + rec(0x04, 0x02, H("020000")) + rec(0x12, 0x04, b"")
        + rec(0x14, 0x04, H("0002")) + rec(0x11, 0x07, b"ac-4\x00"),
    }
    write("ertmp", {k: bytes([0x60]) + v for k, v in seeds.items()})

    # amf0: generator input (see fuzz_amf0.c: kind byte per value, then its fields)
    write(
        "amf0",
        {
            "command": bytes([13, 7, 2, 5, b"live"[0], 4, 2, 3, 1, 1, 1, 2, 9, 2, 0]),
            "metadata": bytes([8, 4, 3, 1, 2, 1, 0, 5, 3, 0, 0, 0, 0, 0, 0, 0, 0, 9, 2, 1, 1, 1]),
            "nested": bytes([4, 1, 3, 4, 1, 3, 9, 3, 0] + [0] * 8 + [1, 1, 2, 3, 97, 98, 99]),
            "mixed": bytes(range(0, 64)),
        },
    )


if __name__ == "__main__":
    main()
