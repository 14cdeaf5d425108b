"""Crash repair: files left open by a killed process, a power loss or a full disk are finalised
by pyrec.repair — every complete fragment kept (exactly a prefix of what was written), the rest
cut off, durations patched and the file finished — and checked by independent readers (the box
walker in boxes.py, ffprobe, PyAV).

Most tests here check the fragmented finish (an mfra appended) byte for byte against a clean
close with `finish="fragmented"`; the hybrid finish (repair's default) is checked the same way
in test_hybrid.py, and the real crashes below use the defaults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

import pyrec
from pyrec import repair as R

import boxes
import checks
import media
import probe

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def finished(tmp_path_factory, clips):
    """A cleanly closed pyrec recording (H.264 with B-frames + AAC, 3 s, 500 ms parts and
    keyframes, so one fragment per part) and its parse by the box walker."""
    clip = clips.get(video="h264", audio="aac", seconds=3.0, gop=15)
    d = tmp_path_factory.mktemp("repair_src")
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    rec = pyrec.Recorder(specs, str(d / "rec.mp4"), part_duration_ms=500, finish="fragmented")
    media.feed(rec, clip)
    path = rec.close()[0].path
    mp4 = boxes.parse_mp4(path)
    boxes.check_fragmented(mp4, finalized=True)
    assert len(mp4.fragments) >= 5
    assert any(t.edits for t in mp4.tracks.values()), "expected edit lists (B-frames)"
    with open(path, "rb") as f:
        data = f.read()
    # frames the readers drop at the start (the edit list starts presentation at the first
    # video pts, so leading audio frames are trimmed); a prefix of the file drops the same.
    r = probe.pyav_read(path)
    global TRIMMED
    TRIMMED = {i: len(s.packets) - s.frames for i, s in r.streams.items()}
    assert all(0 <= n < 10 for n in TRIMMED.values()), TRIMMED
    return clip, mp4, data


TRIMMED: dict[int, int] = {}


def _frag(path, **kw) -> R.RepairReport:
    """repair() with the fragmented finish, which the `finished` fixture was closed with."""
    return R.repair(path, finish=R.FRAGMENTED, **kw)


def _write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)
    return path


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _frag_ends(mp4: boxes.Mp4) -> list[int]:
    return [f.mdat_offset + f.mdat_size for f in mp4.fragments]


def _kept_fragments(mp4: boxes.Mp4, cut: int) -> int:
    """Fragments of `mp4` wholly inside its first `cut` bytes."""
    return sum(1 for e in _frag_ends(mp4) if e <= cut)


def _moov_end(mp4: boxes.Mp4) -> int:
    return mp4.top(b"moov")[0].end


def _zero_durations(data: bytes, mp4: boxes.Mp4) -> bytes:
    """The file as the writer leaves it before finish(): the version-1 duration fields of
    mvhd, tkhd, mdhd, elst and mehd all 0 (offsets found with the independent walker)."""
    b = bytearray(data)
    moov = mp4.top(b"moov")[0]
    offs = [moov.find(b"mvhd").body + 24, moov.find(b"mvex", b"mehd").body + 4]
    for trak in moov.findall(b"trak"):
        offs.append(trak.find(b"tkhd").body + 28)
        offs.append(trak.find(b"mdia", b"mdhd").body + 24)
        elst = trak.find(b"edts", b"elst")
        if elst is not None:
            offs.append(elst.body + 8)
    for o in offs:
        b[o:o + 8] = bytes(8)
    return bytes(b)


def _unfinished(data: bytes, mp4: boxes.Mp4) -> bytes:
    """The finished file without its mfra and with zero durations: what a writer killed at a
    fragment boundary leaves."""
    return _zero_durations(data[:mp4.top(b"mfra")[0].offset], mp4)


def _rescale(v: int, to: int, frm: int) -> int:
    return v * to // frm


def check_repaired(path, orig: boxes.Mp4, n_frags: int, *, decode: bool = True) -> boxes.Mp4:
    """The repaired file is a finalized pyrec file holding exactly the first `n_frags`
    fragments of `orig` (same samples, same bytes), with the durations of those samples, an
    mfra indexing their first sync samples, and readers that decode every kept frame."""
    mp4 = boxes.parse_mp4(path)                   # strict: sizes consistent to the byte
    boxes.check_fragmented(mp4, finalized=True)   # includes check_mfra
    assert len(mp4.fragments) == n_frags
    assert mp4.track_ids() == orig.track_ids()
    mts = mp4.movie_timescale
    movie = 0
    for tid in mp4.track_ids():
        got, src = mp4.tracks[tid], orig.tracks[tid]
        n = sum(f.nsamples.get(tid, 0) for f in orig.fragments[:n_frags])
        assert len(got.samples) == n, f"track {tid}: {len(got.samples)} samples, expected {n}"
        for i, (a, b) in enumerate(zip(got.samples, src.samples)):
            assert (a.dts, a.cto, a.duration, a.size, a.flags) == \
                (b.dts, b.cto, b.duration, b.size, b.flags), f"track {tid} sample {i}"
            assert mp4.payload(a) == orig.payload(b), f"track {tid} sample {i}: bytes differ"
        # durations: the sum of the kept samples
        media_dur = sum(s.duration for s in got.samples)
        assert got.mdhd_duration == media_dur
        if got.samples:
            assert media_dur == got.end_dts - got.samples[0].dts
        if got.edits:
            assert len(got.edits) == 1
            seg, media_time, _ = got.edits[0]
            end = got.end_dts if got.samples else 0
            want = _rescale(end - media_time, mts, got.timescale) if end > media_time else 0
            assert seg == want
            assert got.tkhd_duration == want
        else:
            assert got.tkhd_duration == _rescale(media_dur, mts, got.timescale)
        movie = max(movie, got.tkhd_duration)
        # the index: the first sync sample of every fragment that has one, nothing else
        want_idx = []
        for f in mp4.fragments:
            k = f.nsamples.get(tid, 0)
            ss = got.samples[f.first_sample[tid]:f.first_sample[tid] + k] if k else []
            j = next((j for j, s in enumerate(ss) if s.sync), None)
            if j is not None:
                traf_no = sorted(f.first_sample).index(tid) + 1
                want_idx.append((ss[j].dts, f.offset, traf_no, 1, j + 1))
        assert [(e.time, e.moof_offset, e.traf_number, e.trun_number, e.sample_number)
                for e in got.tfra] == want_idx
    assert mp4.mvhd_duration == movie
    assert mp4.mehd_duration == movie
    if decode and n_frags:
        fp = probe.ffprobe(path)
        for i, tid in enumerate(mp4.track_ids()):
            assert len(fp[i].packets) == len(mp4.tracks[tid].samples), f"ffprobe stream {i}"
        r = probe.assert_plays(path)  # PyAV decodes without error, ffmpeg -f null is silent
        for i, tid in enumerate(mp4.track_ids()):
            st = r.streams[i]
            assert len(st.packets) == len(mp4.tracks[tid].samples), f"PyAV stream {i}"
            want = max(0, len(st.packets) - TRIMMED[i])
            assert st.frames == want, (
                f"PyAV stream {i}: {st.frames} frames decoded of {len(st.packets)} packets")
    # repairing twice is a no-op
    before = _read(path)
    assert R.is_finalized(path)
    again = _frag(path)
    assert again.status == R.FINALIZED, again
    assert _read(path) == before
    return mp4


# --------------------------------------------------------------------------------------------
# Already complete files


def test_finished_file_is_left_alone(finished, tmp_path):
    _, mp4, data = finished
    path = _write(tmp_path / "done.mp4", data)
    assert R.is_finalized(path)
    rep = _frag(path)
    assert rep.status == R.FINALIZED and rep.truncated_bytes == 0
    assert rep.fragments == len(mp4.fragments)
    assert rep.samples == {t: len(mp4.tracks[t].samples) for t in mp4.track_ids()}
    assert rep.duration_ms == mp4.mvhd_duration * 1000 // mp4.movie_timescale
    assert _read(path) == data


def test_killed_at_a_boundary_is_restored_byte_for_byte(finished, tmp_path):
    """Killed just before finish() would have run: no mfra, durations 0. The repaired file is
    exactly the file the clean close wrote (same durations, same mfra)."""
    _, mp4, data = finished
    path = _write(tmp_path / "k.mp4", _unfinished(data, mp4))
    assert not R.is_finalized(path)
    rep = _frag(path)
    assert rep.status == R.REPAIRED and rep.truncated_bytes == 0, rep
    assert rep.fragments == len(mp4.fragments)
    assert _read(path) == data
    check_repaired(path, mp4, len(mp4.fragments))


def test_mfra_written_durations_not_patched(finished, tmp_path):
    """Killed between writing the mfra and patching the durations: not finalized."""
    _, mp4, data = finished
    path = _write(tmp_path / "m.mp4", _zero_durations(data, mp4))
    assert not R.is_finalized(path)
    rep = _frag(path)
    assert rep.status == R.REPAIRED and rep.truncated_bytes == 0, rep
    assert "durations" in rep.message
    assert _read(path) == data


def test_dry_run_changes_nothing(finished, tmp_path):
    _, mp4, data = finished
    ends = _frag_ends(mp4)
    cut = ends[2] + 100
    src = _unfinished(data, mp4)[:cut]
    path = _write(tmp_path / "d.mp4", src)
    dry = _frag(path, dry_run=True)
    assert _read(path) == src
    assert dry.status == R.REPAIRED and "dry run" in dry.message
    real = _frag(path)
    assert (dry.truncated_bytes, dry.fragments, dry.samples, dry.duration_ms) == \
        (real.truncated_bytes, real.fragments, real.samples, real.duration_ms)
    assert (real.truncated_bytes, real.fragments) == (100, 3)


# --------------------------------------------------------------------------------------------
# Cut short at many places


def _cuts(mp4: boxes.Mp4) -> list[tuple[str, int]]:
    moov_end = _moov_end(mp4)
    mfra = mp4.top(b"mfra")[0]
    out = [("at moov end", moov_end), ("4 bytes into the first moof", moov_end + 4)]
    for k, f in enumerate(mp4.fragments[:4]):
        moof = next(b for b in mp4.boxes if b.offset == f.offset)
        out += [
            (f"frag {k}: 7 bytes into the moof", f.offset + 7),
            (f"frag {k}: inside the moof", f.offset + moof.size // 2),
            (f"frag {k}: 1 byte short of the moof", moof.end - 1),
            (f"frag {k}: exactly at the moof/mdat boundary", moof.end),
            (f"frag {k}: inside the mdat header", f.mdat_offset + 5),
            (f"frag {k}: exactly after the mdat header", f.mdat_offset + 8),
            (f"frag {k}: inside the mdat", f.mdat_offset + f.mdat_size // 2),
            (f"frag {k}: 1 byte short of the mdat end", f.mdat_offset + f.mdat_size - 1),
            (f"frag {k}: exactly at the fragment end", f.mdat_offset + f.mdat_size),
        ]
    out += [
        ("just before the mfra", mfra.offset),
        ("inside the mfra", mfra.offset + 20),
        ("inside the mfro", mp4.size - 3),
    ]
    return out


def test_truncated_at_many_offsets(finished, tmp_path):
    """Cut a finished file (the writer killed mid-write, or a power loss before the tail
    reached the disk) at every kind of place; durations as left by the writer (0) or by a
    clean close (patched) make no difference."""
    _, mp4, data = finished
    unfinished = _unfinished(data, mp4) + data[mp4.top(b"mfra")[0].offset:]
    for i, (where, cut) in enumerate(_cuts(mp4)):
        for variant, src in (("zeroed", unfinished), ("patched", data)):
            path = _write(tmp_path / f"cut{i}_{variant}.mp4", src[:cut])
            assert not R.is_finalized(path), where
            rep = _frag(path)
            n = _kept_fragments(mp4, cut)
            end = _frag_ends(mp4)[n - 1] if n else _moov_end(mp4)
            assert rep.status == R.REPAIRED, (where, rep)
            assert rep.fragments == n, (where, rep)
            assert rep.truncated_bytes == cut - end, (where, rep)
            got = check_repaired(path, mp4, n, decode=variant == "zeroed")
            if n == len(mp4.fragments):
                assert _read(path) == data, where  # the whole file: exactly the clean close
            else:
                assert got.size < len(data)


@pytest.mark.parametrize("cut", ["empty", "in ftyp", "after ftyp", "in moov header",
                                 "in moov", "1 byte short of moov"])
def test_no_init_segment_is_unrecoverable(finished, tmp_path, cut):
    _, mp4, data = finished
    moov = mp4.top(b"moov")[0]
    n = {"empty": 0, "in ftyp": 20, "after ftyp": moov.offset, "in moov header": moov.offset + 5,
         "in moov": moov.offset + moov.size // 2, "1 byte short of moov": moov.end - 1}[cut]
    path = _write(tmp_path / "u.mp4", data[:n])
    assert not R.is_finalized(path)
    for dry in (True, False):
        rep = _frag(path, dry_run=dry)
        assert rep.status == R.UNRECOVERABLE, rep
        assert "init segment" in rep.message
        assert rep.fragments == 0 and rep.truncated_bytes == 0
    assert _read(path) == data[:n]  # left alone


def test_not_mp4_is_unrecoverable(tmp_path):
    path = _write(tmp_path / "junk.mp4", os.urandom(5000))
    rep = _frag(path)
    assert rep.status == R.UNRECOVERABLE
    assert _read(path) and len(_read(path)) == 5000


# --------------------------------------------------------------------------------------------
# Garbage after the data


GARBAGE = {
    "random": lambda: os.urandom(3000),
    "zeros (unwritten blocks after a power loss)": lambda: bytes(8192),
    "a moof header claiming 1 GiB": lambda: struct.pack(">I4s", 1 << 30, b"moof") + bytes(100),
    "an mdat with no moof": lambda: struct.pack(">I4s", 108, b"mdat") + bytes(100),
    "a moof of garbage": lambda: struct.pack(">I4s", 208, b"moof") + os.urandom(200),
    "a 3-byte stub": lambda: b"\x00\x00\x01",
}


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_appended(finished, tmp_path, kind):
    _, mp4, data = finished
    garbage = GARBAGE[kind]()
    ends = _frag_ends(mp4)
    # after the 3rd fragment of an unfinished file
    src = _unfinished(data, mp4)[:ends[2]] + garbage
    path = _write(tmp_path / "g.mp4", src)
    rep = _frag(path)
    assert rep.status == R.REPAIRED and rep.fragments == 3, rep
    assert rep.truncated_bytes == len(garbage), rep
    check_repaired(path, mp4, 3)
    # after a finished file: the garbage goes, the file is the original again
    path2 = _write(tmp_path / "g2.mp4", data + garbage)
    assert not R.is_finalized(path2)
    rep = _frag(path2)
    assert rep.status == R.REPAIRED and rep.truncated_bytes == len(garbage), rep
    assert _read(path2) == data


def test_moof_pointing_outside_its_mdat_is_dropped(finished, tmp_path):
    """A moof whose samples do not fit the following mdat (a size field hit by corruption) is
    where the good data ends."""
    _, mp4, data = finished
    f = mp4.fragments[3]
    b = bytearray(_unfinished(data, mp4))
    struct.pack_into(">I", b, f.mdat_offset, f.mdat_size - 10)  # mdat too small for its moof
    path = _write(tmp_path / "o.mp4", bytes(b[:f.mdat_offset + f.mdat_size - 10]))
    rep = _frag(path)
    assert rep.fragments == 3 and "outside" in rep.message, rep
    check_repaired(path, mp4, 3, decode=False)


# --------------------------------------------------------------------------------------------
# Version-0 boxes (32-bit fields), size-0 and largesize boxes


def _box(typ: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), typ) + body


def _to_v0(data: bytes, box: boxes.Box) -> bytes:
    """Rebuild `box` with version-0 mvhd/tkhd/mdhd/mehd/elst/tfdt (trun data offsets adjusted
    by the moof's change of size)."""
    body = data[box.body:box.end]
    t = box.type
    if t in (b"mvhd", b"mdhd"):
        assert body[0] == 1
        c, m, ts, dur = struct.unpack_from(">QQIQ", body, 4)
        return _box(t, b"\0" + body[1:4] + struct.pack(">IIII", c, m, ts, dur) + body[32:])
    if t == b"tkhd":
        c, m, tid, res, dur = struct.unpack_from(">QQIIQ", body, 4)
        return _box(t, b"\0" + body[1:4] + struct.pack(">IIIII", c, m, tid, res, dur) + body[36:])
    if t == b"mehd":
        return _box(t, b"\0" + body[1:4] + struct.pack(">I", struct.unpack_from(">Q", body, 4)[0]))
    if t == b"elst":
        n = struct.unpack_from(">I", body, 4)[0]
        out = b"\0" + body[1:4] + struct.pack(">I", n)
        for i in range(n):
            seg, mt, rate = struct.unpack_from(">QqI", body, 8 + 20 * i)
            out += struct.pack(">IiI", seg, mt, rate)
        return _box(t, out)
    if t == b"tfdt":
        return _box(t, b"\0" + body[1:4] + struct.pack(">I", struct.unpack_from(">Q", body, 4)[0]))
    if t in (b"moov", b"trak", b"edts", b"mdia", b"mvex", b"moof", b"traf"):
        new = _box(t, b"".join(_to_v0(data, c) for c in box.children))
        if t == b"moof":  # data offsets are relative to the moof: shift them
            delta = len(new) - box.size
            nb = bytearray(new)
            mp = boxes.walk(bytes(nb))[0][0]
            for traf in mp.findall(b"traf"):
                trun = traf.find(b"trun")
                off = struct.unpack_from(">i", nb, trun.body + 8)[0]
                struct.pack_into(">i", nb, trun.body + 8, off + delta)
            new = bytes(nb)
        return new
    return data[box.offset:box.end]


def test_version0_boxes(finished, tmp_path):
    _, mp4, data = finished
    src = _unfinished(data, mp4)
    top, _ = boxes.walk(src)
    v0 = b"".join(_to_v0(src, b) if b.type in (b"moov", b"moof") else src[b.offset:b.end]
                  for b in top)
    v0_mp4 = boxes.parse_mp4(v0)
    assert boxes.walk(v0)[0][2].find(b"mvhd") is not None  # ftyp, free, moov
    cut = _frag_ends(v0_mp4)[3] + 50
    path = _write(tmp_path / "v0.mp4", v0[:cut])
    rep = _frag(path)
    assert rep.status == R.REPAIRED and rep.fragments == 4 and rep.truncated_bytes == 50, rep
    got = check_repaired(path, v0_mp4, 4)
    moov = got.top(b"moov")[0]
    raw = _read(path)
    for name in (b"mvhd", b"mvex"):
        assert moov.find(name) is not None
    assert raw[moov.find(b"mvhd").body] == 0  # still version 0, patched in place
    assert got.mvhd_duration > 0
    # same durations as the version-1 file repaired at the same place
    path1 = _write(tmp_path / "v1.mp4", src[:_frag_ends(mp4)[3]])
    _frag(path1)
    v1 = boxes.parse_mp4(path1)
    assert got.mvhd_duration == v1.mvhd_duration
    assert [t.mdhd_duration for t in got.tracks.values()] == \
        [t.mdhd_duration for t in v1.tracks.values()]


def test_mdat_size_zero_to_end_of_file(finished, tmp_path):
    """An mdat whose size field is 0 ("to the end of the file") gets its real size, so the
    mfra can follow it; whatever lies beyond its samples is cut."""
    _, mp4, data = finished
    f = mp4.fragments[2]
    b = bytearray(_unfinished(data, mp4)[:f.mdat_offset + f.mdat_size])
    struct.pack_into(">I", b, f.mdat_offset, 0)
    path = _write(tmp_path / "z.mp4", bytes(b) + bytes(500))
    rep = _frag(path)
    assert rep.status == R.REPAIRED and rep.fragments == 3 and rep.truncated_bytes == 500, rep
    check_repaired(path, mp4, 3)


def test_huge_sparse_file_is_not_read(finished, tmp_path):
    """A fragment with a 5 GiB largesize mdat (sparse) and a cut-short one after it: repair
    seeks over the payload (fast, little memory) and keeps the big fragment."""
    import resource
    _, mp4, data = finished
    moov_end = _moov_end(mp4)
    f0 = mp4.fragments[0]
    trk = mp4.tracks[1]
    # one traf, track 1, two samples of 2.5 GiB each
    n = 2
    big = (5 << 30) // n
    tfhd = _box(b"tfhd", struct.pack(">II", 0x020000, 1))
    tfdt = _box(b"tfdt", struct.pack(">IQ", 1 << 24, trk.samples[0].dts))
    sflags = [0x02000000, 0x01010000]
    trun_body = struct.pack(">III", (1 << 24) | 0x701, n, 0) + b"".join(
        struct.pack(">III", 3000, big, sflags[i]) for i in range(n))
    trun = _box(b"trun", trun_body)
    mfhd = _box(b"mfhd", struct.pack(">II", 0, 1))
    traf = _box(b"traf", tfhd + tfdt + trun)
    moof = bytearray(_box(b"moof", mfhd + traf))
    data_off = len(moof) + 16
    struct.pack_into(">i", moof, 8 + len(mfhd) + 8 + len(tfhd) + len(tfdt) + 8 + 8, data_off)
    mdat_hdr = struct.pack(">I4sQ", 1, b"mdat", 16 + n * big)
    path = tmp_path / "huge.mp4"
    with open(path, "wb") as fh:
        fh.write(_unfinished(data, mp4)[:moov_end])
        fh.write(moof)
        fh.write(mdat_hdr)
        fh.seek(n * big, os.SEEK_CUR)
        # a second fragment cut short: sequence 2
        tail = bytearray(data[f0.offset:f0.offset + 100])
        fh.write(tail)
    size = os.path.getsize(path)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    assert not R.is_finalized(path)
    rep = _frag(path)
    elapsed = time.monotonic() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert rep.status == R.REPAIRED and rep.fragments == 1 and rep.truncated_bytes == 100, rep
    assert rep.samples[1] == n and rep.samples[2] == 0
    assert elapsed < 10
    assert rss1 - rss0 < 200 * 1024  # KiB: nothing near the 5 GiB payload was read
    assert R.is_finalized(path)
    assert _frag(path).status == R.FINALIZED
    # the tail: an mfra pointing at the big moof, then its mfro
    with open(path, "rb") as fh:
        fh.seek(-16, os.SEEK_END)
        _, typ, _, mfra_size = struct.unpack(">I4sII", fh.read(16))
        assert typ == b"mfro"
        fh.seek(-mfra_size, os.SEEK_END)
        mfra = fh.read(mfra_size)
    assert os.path.getsize(path) == size - 100 + mfra_size
    m = boxes.walk(mfra)[0][0]
    tfra1 = m.children[0]
    tid, _lens, count, t, moof_off = struct.unpack_from(">IIIQQ", mfra, tfra1.body + 4)
    assert (tid, count, t, moof_off) == (1, 1, trk.samples[0].dts, moov_end)
    with open(path, "rb") as fh:  # mdhd duration = 2 samples of 3000
        fh.seek(mp4.top(b"moov")[0].find(b"trak").find(b"mdia", b"mdhd").body + 24)
        assert struct.unpack(">Q", fh.read(8))[0] == 2 * 3000


def test_index_thinning_keeps_the_writer_rule(finished, tmp_path, monkeypatch):
    """With a tiny index cap the rebuilt tfra keeps every 2nd (4th, ...) candidate, as the
    writer does, and still points at sync samples."""
    _, mp4, data = finished
    monkeypatch.setattr(R, "MAX_INDEX_ENTRIES", 2)
    path = _write(tmp_path / "t.mp4", _unfinished(data, mp4))
    _frag(path)
    got = boxes.parse_mp4(path)
    boxes.check_fragmented(got, finalized=True)
    for tid, trk in got.tracks.items():
        full = [e.moof_offset for e in mp4.tracks[tid].tfra]
        kept = [e.moof_offset for e in trk.tfra]
        assert 1 <= len(kept) <= 2
        stride = 1
        while len(full[::stride]) > 2:
            stride *= 2
        assert kept == full[::stride][:len(kept)]


# --------------------------------------------------------------------------------------------
# Real crashes: SIGKILL and a full disk


CHILD = textwrap.dedent("""
    import json, os, resource, signal, sys, time
    sys.path.insert(0, {tests!r})
    import pyrec, media
    clip = media.read_truth({src!r})
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    if {fsize}:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize}, resource.RLIM_INFINITY))
    rec = pyrec.Recorder(specs, {out!r}, part_duration_ms=500)
    tb = {{st.index: st.time_base for st in clip.streams}}
    track = {{st.index: i for i, st in enumerate(clip.streams)}}
    pkts = sorted(media.demux_packets({src!r}), key=lambda p: (p[1] * tb[p[0]], p[0]))
    t0 = min(p[1] * tb[p[0]] for p in pkts)
    err = None
    try:
        for index, dts, pts, key, data in pkts:
            if dts * tb[index] - t0 > {stop}:
                break
            rec.write(track[index], dts, pts, data, key)
        if {fsize}:
            rec.close()
    except Exception as e:
        err = repr(e)
    print(json.dumps({{"err": err}}), flush=True)
    if {fsize}:
        os._exit(0)  # a process dying after the disk filled: no clean close
    time.sleep(120)  # wait for SIGKILL; never close
""")


def _child(tmp_path, src, out, *, stop_s, fsize=0):
    code = CHILD.format(tests=TESTS_DIR, src=str(src), out=str(out), stop=stop_s, fsize=fsize)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = p.stdout.readline()
        if not line:
            raise AssertionError(f"child died before its marker: {p.stderr.read()}")
        info = json.loads(line)
        if not fsize:
            os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    return info, p.returncode


def _check_against_source(path, clip):
    """The repaired file holds a prefix of the source's packets, bytes equal, and plays."""
    mp4 = checks.parse_recording(path, finalized=True)
    streams = clip.streams
    expected = media.expected_packets(clip)
    tracks = checks.tracks_in_order(mp4, streams)
    exp = []
    for trk, st in zip(tracks, streams):
        e = expected[st.index][:len(trk.samples)]
        checks.assert_samples_match(trk, st, e, mp4)
        exp.append(e)
        assert trk.mdhd_duration == sum(s.duration for s in trk.samples)
    checks.assert_readers_agree(path, streams, exp)
    checks.assert_durations(mp4, tracks)
    return mp4


def test_sigkill_mid_recording(clips, tmp_path):
    clip = clips.get(video="h264", audio="aac", seconds=6.0, gop=15)  # a fragment per 500 ms
    out = tmp_path / "out" / "crash.mp4"
    out.parent.mkdir()
    info, rc = _child(tmp_path, clip.path, out, stop_s=4.0)
    assert rc == -signal.SIGKILL and info["err"] is None
    assert R.find_unfinished(tmp_path / "out") == [out]
    rep = R.repair(out)
    assert rep.status == R.REPAIRED, rep
    assert rep.truncated_bytes == 0  # SIGKILL outside a write: the file ends with a fragment
    mp4 = _check_against_source(out, clip)
    assert rep.fragments == len(mp4.fragments) >= 4
    assert rep.samples == {t: len(mp4.tracks[t].samples) for t in mp4.track_ids()}
    assert 3000 <= rep.duration_ms <= 4200
    assert R.find_unfinished(tmp_path / "out") == []
    assert R.repair(out).status == R.FINALIZED


def test_disk_full(clips, tmp_path):
    """The file size limit hit mid-recording (EFBIG, like ENOSPC): the writer cuts its partial
    write back, and the file it gives up is finished at once when the index fits in the room
    that freed (here: the hybrid moov); the process then dies without closing. What is there
    is a finished prefix of the source. (Repair on a disk that stays full: test_hybrid.py.)"""
    clip = clips.get(video="h264", audio="aac", seconds=6.0)
    out = tmp_path / "full.mp4"
    info, rc = _child(tmp_path, clip.path, out, stop_s=10.0, fsize=60_000)
    assert info["err"] is not None, "the size limit was not hit"
    assert os.path.getsize(out) <= 60_000
    assert R.is_finalized(out)
    rep = R.repair(out)
    assert rep.status == R.FINALIZED, rep
    mp4 = _check_against_source(out, clip)
    assert mp4.hybrid is not None and len(mp4.fragments) >= 1


# --------------------------------------------------------------------------------------------
# The start-up scan


def test_find_unfinished(finished, clips, tmp_path):
    _, mp4, data = finished
    root = tmp_path / "rec"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    done = [
        _write(root / "done.mp4", data),
        _write(root / "a" / ".pyrec-1-2-3.part", data),
    ]
    unfinished = [
        _write(root / "killed.mp4", _unfinished(data, mp4)),
        _write(root / "a" / "b" / "cut.MP4", data[:_frag_ends(mp4)[1] + 33]),
        _write(root / "a" / "b" / ".pyrec-9-9-1.part", data[:_frag_ends(mp4)[2]]),
        _write(root / ".hidden" / "nomfra.mp4", data[:mp4.top(b"mfra")[0].offset]),
        _write(root / "unpatched.mp4", _zero_durations(data, mp4)),
        _write(root / "garbage-after.mp4", data + b"\0" * 64),
        _write(root / "empty.mp4", b""),
        _write(root / "in-moov.mp4", data[:100]),
    ]
    _write(root / "notes.txt", b"not a recording")
    _write(root / "other.part", data[:5000])                  # not pyrec's temporary name
    shutil.copy(clips.get(video="h264", audio="aac", seconds=3.0).path, root / "plain.mp4")
    os.symlink(root / "killed.mp4", root / "link.mp4")        # links are not followed
    assert R.find_unfinished(root) == sorted(unfinished)
    assert R.find_unfinished(str(root)) == sorted(unfinished)
    reports = {os.path.basename(p): R.repair(p) for p in R.find_unfinished(root)}
    assert {n: r.status for n, r in reports.items()} == {
        "killed.mp4": R.REPAIRED, "cut.MP4": R.REPAIRED, ".pyrec-9-9-1.part": R.REPAIRED,
        "nomfra.mp4": R.REPAIRED, "unpatched.mp4": R.REPAIRED, "garbage-after.mp4": R.REPAIRED,
        "empty.mp4": R.UNRECOVERABLE, "in-moov.mp4": R.UNRECOVERABLE}
    # what is left unfinished: only the files without an init segment
    assert R.find_unfinished(root) == sorted([root / "empty.mp4", root / "in-moov.mp4"])
    for p in done:
        assert _read(p) == data


def test_defaults_from_tfhd_and_first_sample_flags(finished, tmp_path):
    """truns that carry no per-sample durations/flags (tfhd defaults, first_sample_flags) as
    other writers produce them: durations, counts and the index still come out right."""
    _, mp4, data = finished
    moov_end = _moov_end(mp4)
    v0, a0 = mp4.tracks[1].samples[0].dts, mp4.tracks[2].samples[0].dts
    nv, na, asize = 5, 7, 10
    vsizes = [100 + i for i in range(nv)]
    # video: default duration 3000 and non-sync flags in tfhd, the first sample sync
    tfhd_v = _box(b"tfhd", struct.pack(">IIII", 0x020000 | 0x08 | 0x20, 1, 3000, 0x01010000))
    trun_v = _box(b"trun", struct.pack(">IIiI", 0x205, nv, 0, 0x02000000)
                  + b"".join(struct.pack(">I", s) for s in vsizes))
    # audio: everything from tfhd (duration 1024, size 10, sync), trun = count + offset
    tfhd_a = _box(b"tfhd", struct.pack(">IIIII", 0x020000 | 0x38, 2, 1024, asize, 0x02000000))
    trun_a = _box(b"trun", struct.pack(">IIi", 0x001, na, 0))
    traf_v = _box(b"traf", tfhd_v + _box(b"tfdt", struct.pack(">IQ", 1 << 24, v0)) + trun_v)
    traf_a = _box(b"traf", tfhd_a + _box(b"tfdt", struct.pack(">IQ", 1 << 24, a0)) + trun_a)
    mfhd = _box(b"mfhd", struct.pack(">II", 0, 1))
    moof = bytearray(_box(b"moof", mfhd + traf_v + traf_a))
    vstart = len(moof) + 8
    off_v = 8 + len(mfhd) + 8 + len(tfhd_v) + 20 + 16
    off_a = 8 + len(mfhd) + len(traf_v) + 8 + len(tfhd_a) + 20 + 16
    struct.pack_into(">i", moof, off_v, vstart)
    struct.pack_into(">i", moof, off_a, vstart + sum(vsizes))
    payload = bytes(sum(vsizes) + na * asize)
    src = _unfinished(data, mp4)[:moov_end] + bytes(moof) + _box(b"mdat", payload)
    path = _write(tmp_path / "def.mp4", src + bytes(moof[:40]))  # + a cut-short fragment
    rep = _frag(path)
    assert rep.status == R.REPAIRED and rep.truncated_bytes == 40, rep
    assert rep.fragments == 1 and rep.samples == {1: nv, 2: na}
    got = boxes.parse_mp4(path)
    boxes.check_fragmented(got, finalized=True)
    v, a = got.tracks[1], got.tracks[2]
    assert v.mdhd_duration == nv * 3000 and a.mdhd_duration == na * 1024
    assert [s.sync for s in v.samples] == [True] + [False] * (nv - 1)
    assert [(e.time, e.sample_number) for e in v.tfra] == [(v0, 1)]
    assert [(e.time, e.sample_number) for e in a.tfra] == [(a0, 1)]
    assert _frag(path).status == R.FINALIZED
