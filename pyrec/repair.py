"""Finalise fragmented MP4 files left open by a crash (process killed, power loss, disk full).

pyrec writes an init segment (ftyp + an 8-byte free box + moov with mvex) and then whole
moof+mdat fragments; a clean finish patches the durations the init segment left at 0 and
then either appends an mfra index ("fragmented") or, by default ("hybrid"), appends a
progressive moov and rewrites the free box into the header of one mdat that covers the
initial moov and all fragments (see csrc/fmp4_writer.c). A file whose writer died has no
index, zero durations and possibly a partial last fragment, a progressive moov whose header
rewrite never happened, or garbage at its end. `repair()` walks the file box by box (reading
headers and moofs, seeking over mdat payloads), keeps every complete and consistent fragment,
cuts the rest off, patches the durations and finishes the file the way the writer would
have: for a pyrec file cut anywhere after its moov the result is byte for byte the file a
clean close of the same fragments gives.

    report = repair(path)                      # hybrid finish; RepairReport(status=...)
    report = repair(path, finish="fragmented") # mfra index instead
    is_finalized(path)                 # cheap: a hybrid file, or mfra/mfro at the end and
                                       # durations patched
    find_unfinished(root)              # start-up scan

Box names and clauses: ISO/IEC 14496-12 (moof 8.8.4, tfhd 8.8.7, trun 8.8.8, tfdt 8.8.12,
mfra 8.8.9, tfra 8.8.10, mfro 8.8.11).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["RepairReport", "is_finalized", "repair", "find_unfinished",
           "FINALIZED", "REPAIRED", "UNRECOVERABLE"]

HYBRID = "hybrid"
FRAGMENTED = "fragmented"

FINALIZED = "finalized"
REPAIRED = "repaired"
UNRECOVERABLE = "unrecoverable"

# A moov, moof or mfra larger than this is taken for garbage (pyrec's are KiBs to a few MiB).
MAX_META_BOX = 64 << 20
# Entries per track in the rebuilt tfra, thinned like the writer does (its default
# max_index_entries) so the index of a rebuilt file equals the one a clean close writes.
MAX_INDEX_ENTRIES = 65536

# tfhd flags (8.8.7.1)
_TFHD_BASE_OFFSET = 0x000001
_TFHD_SDI = 0x000002
_TFHD_DURATION = 0x000008
_TFHD_SIZE = 0x000010
_TFHD_FLAGS = 0x000020
_TFHD_BASE_IS_MOOF = 0x020000
# trun flags (8.8.8.1)
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTO = 0x000800
# sample_is_non_sync_sample (8.8.3.1)
_NON_SYNC = 0x10000

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


@dataclass
class RepairReport:
    """What repair() found and did. `samples` maps track_ID to the samples kept; durations
    are those of the kept media (ms of the movie timescale)."""

    path: str
    status: str  # FINALIZED (was already complete), REPAIRED, UNRECOVERABLE
    truncated_bytes: int = 0
    fragments: int = 0
    samples: dict[int, int] = field(default_factory=dict)
    duration_ms: int = 0
    message: str = ""


class _Bad(Exception):
    """A structure that does not parse (internal; turned into a stop or a report)."""


class _NoInit(Exception):
    """The file has no usable init segment (ftyp + moov with mvex)."""


# --------------------------------------------------------------------------------------------
# Reading


class _Reader:
    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def read(self, off: int, n: int) -> bytes:
        n = max(0, min(n, self.size - off))
        parts = []
        while n > 0:
            b = os.pread(self.fd, n, off)
            if not b:
                break
            parts.append(b)
            off += len(b)
            n -= len(b)
        return b"".join(parts)

    def header(self, pos: int) -> tuple[bytes, int, int, bool] | None:
        """(type, size, header length, size-field-was-0) of the box at `pos`, or None when
        fewer bytes than a header remain or the header is inconsistent. The box may run past
        the end of the file; callers check."""
        h = self.read(pos, 16)
        if len(h) < 8:
            return None
        size, typ = struct.unpack_from(">I4s", h)
        hdr, to_end = 8, False
        if size == 1:
            if len(h) < 16:
                return None
            size, hdr = _U64.unpack_from(h, 8)[0], 16
        elif size == 0:
            size, to_end = self.size - pos, True
        if size < hdr:
            return None
        return typ, size, hdr, to_end


def _children(buf: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, body offset, end offset) of the boxes exactly filling buf[start:end]."""
    out = []
    pos = start
    while pos < end:
        if end - pos < 8:
            raise _Bad(f"{end - pos} stray byte(s) at {pos}")
        size, typ = struct.unpack_from(">I4s", buf, pos)
        hdr = 8
        if size == 1:
            if end - pos < 16:
                raise _Bad(f"cut largesize header at {pos}")
            size, hdr = _U64.unpack_from(buf, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < hdr or pos + size > end:
            raise _Bad(f"box {typ!r} at {pos}: size {size} does not fit its parent")
        out.append((typ, pos + hdr, pos + size))
        pos += size
    return out


def _need(body: int, end: int, n: int, what: str) -> None:
    if end - body < n:
        raise _Bad(f"{what} too short ({end - body} bytes)")


# --------------------------------------------------------------------------------------------
# The init segment


@dataclass
class _Field:
    """A duration field in the file: absolute offset, width (4 or 8) and current value."""

    off: int
    width: int
    value: int

    @classmethod
    def at(cls, buf: bytes, base: int, rel: int, version: int) -> _Field:
        if version == 1:
            return cls(base + rel, 8, _U64.unpack_from(buf, rel)[0])
        return cls(base + rel, 4, _U32.unpack_from(buf, rel)[0])


@dataclass
class _Track:
    track_id: int
    timescale: int
    tkhd: _Field
    mdhd: _Field
    elst: _Field | None = None   # segment_duration of a single-entry edit list
    media_time: int = 0
    trex: tuple[int, int, int] | None = None  # default duration, size, flags
    # walk state
    first: int | None = None     # decode time of the first kept sample
    end: int = 0                 # decode end of the last kept sample
    samples: int = 0
    index: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    idx_stride: int = 1
    idx_cand: int = 0
    # sample table of the kept fragments (for the hybrid finish): per trun its file offset,
    # the decode time of its first sample and (sizes, durations, ctos, sync flags) arrays
    runs: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list)

    def add_index(self, entry: tuple[int, int, int, int, int]) -> None:
        """The writer's thinning (fmp4_writer.c index_add): keep every candidate until the
        table is full, then drop every other entry and keep only every 2nd (4th, ...)."""
        cand = self.idx_cand
        self.idx_cand += 1
        if cand % self.idx_stride:
            return
        if len(self.index) >= MAX_INDEX_ENTRIES:
            self.index = self.index[::2]
            self.idx_stride *= 2
            if cand % self.idx_stride or len(self.index) >= MAX_INDEX_ENTRIES:
                return
        self.index.append(entry)


@dataclass
class _Init:
    end: int                     # file offset after the moov
    movie_timescale: int
    mvhd: _Field
    mehd: _Field | None
    tracks: dict[int, _Track]    # in trak order
    start: int = 0               # file offset of the moov
    reserved: int | None = None  # the 8-byte box after ftyp (free, or an mdat header)


def _parse_moov(buf: bytes, base: int, hdr: int) -> _Init:
    """The moov at file offset `base` (buf holds the whole box)."""
    mvhd: _Field | None = None
    mts = 0
    mehd: _Field | None = None
    tracks: dict[int, _Track] = {}
    trex: dict[int, tuple[int, int, int]] = {}
    has_mvex = False
    for typ, body, end in _children(buf, hdr, len(buf)):
        if typ == b"mvhd":
            v = buf[body]
            _need(body, end, 32 if v == 1 else 20, "mvhd")
            mts = _U32.unpack_from(buf, body + (20 if v == 1 else 12))[0]
            mvhd = _Field.at(buf, base, body + (24 if v == 1 else 16), v)
        elif typ == b"trak":
            t = _parse_trak(buf, base, body, end)
            if t.track_id in tracks:
                raise _Bad(f"duplicate track_ID {t.track_id}")
            tracks[t.track_id] = t
        elif typ == b"mvex":
            has_mvex = True
            for ctyp, cbody, cend in _children(buf, body, end):
                if ctyp == b"mehd":
                    v = buf[cbody]
                    _need(cbody, cend, 12 if v == 1 else 8, "mehd")
                    mehd = _Field.at(buf, base, cbody + 4, v)
                elif ctyp == b"trex":
                    _need(cbody, cend, 24, "trex")
                    tid, _sdi, dur, size, flags = struct.unpack_from(">5I", buf, cbody + 4)
                    trex[tid] = (dur, size, flags)
    if mvhd is None or mts == 0:
        raise _Bad("moov has no mvhd (or a zero timescale)")
    if not has_mvex:
        raise _Bad("moov has no mvex: not a fragmented MP4")
    for tid, t in tracks.items():
        t.trex = trex.get(tid)
    return _Init(base + len(buf), mts, mvhd, mehd, tracks)


def _parse_trak(buf: bytes, base: int, start: int, stop: int) -> _Track:
    tkhd = mdhd = None
    tid = ts = 0
    elst: _Field | None = None
    media_time = 0
    for typ, body, end in _children(buf, start, stop):
        if typ == b"tkhd":
            v = buf[body]
            _need(body, end, 36 if v == 1 else 24, "tkhd")
            tid = _U32.unpack_from(buf, body + (20 if v == 1 else 12))[0]
            tkhd = _Field.at(buf, base, body + (28 if v == 1 else 20), v)
        elif typ == b"edts":
            for etyp, ebody, eend in _children(buf, body, end):
                if etyp != b"elst":
                    continue
                v = buf[ebody]
                _need(ebody, eend, 8, "elst")
                if _U32.unpack_from(buf, ebody + 4)[0] != 1:
                    continue  # not pyrec's single edit: left alone
                _need(ebody, eend, 28 if v == 1 else 20, "elst")
                elst = _Field.at(buf, base, ebody + 8, v)
                if v == 1:
                    media_time = struct.unpack_from(">q", buf, ebody + 16)[0]
                else:
                    media_time = struct.unpack_from(">i", buf, ebody + 12)[0]
                if media_time < 0:
                    elst = None  # an empty edit: nothing to patch
        elif typ == b"mdia":
            for mtyp, mbody, mend in _children(buf, body, end):
                if mtyp == b"mdhd":
                    v = buf[mbody]
                    _need(mbody, mend, 32 if v == 1 else 20, "mdhd")
                    ts = _U32.unpack_from(buf, mbody + (20 if v == 1 else 12))[0]
                    mdhd = _Field.at(buf, base, mbody + (24 if v == 1 else 16), v)
    if tkhd is None or mdhd is None or ts == 0:
        raise _Bad(f"trak {tid}: no tkhd, no mdhd or a zero timescale")
    return _Track(tid, ts, tkhd, mdhd, elst, media_time)


def _read_init(r: _Reader) -> _Init:
    h = r.header(0)
    if h is None or h[0] != b"ftyp" or h[1] > r.size:
        raise _NoInit("no init segment: the file does not start with a complete ftyp")
    pos = h[1]
    reserved = None
    h = r.header(pos)
    if h is not None and h[0] == b"free" and h[1] == 8:
        reserved, pos = pos, pos + 8
    elif h is not None and h[0] == b"mdat" and h[2] == 8:
        # the hybrid header was written but what it covers is not all there (power loss
        # after the header reached the disk and before the moov did): the initial moov is
        # intact behind it
        nh = r.header(pos + 8)
        if nh is not None and nh[0] == b"moov":
            reserved, pos = pos, pos + 8
    h = r.header(pos)
    if h is None or h[0] != b"moov":
        raise _NoInit("no init segment: no moov after the ftyp")
    typ, size, hdr, to_end = h
    if pos + size > r.size or to_end:
        raise _NoInit(f"no init segment: the moov at {pos} is cut short")
    if size > MAX_META_BOX:
        raise _NoInit(f"moov of {size} bytes: not a pyrec file")
    try:
        init = _parse_moov(r.read(pos, size), pos, hdr)
    except (_Bad, IndexError, struct.error) as e:
        raise _NoInit(f"unusable moov: {e}") from None
    init.start, init.reserved = pos, reserved
    return init


# --------------------------------------------------------------------------------------------
# Fragments


@dataclass
class _Traf:
    track: _Track
    number: int                  # 1-based traf number in the moof
    tfdt: int | None
    count: int
    duration: int                # sum of sample durations
    runs: list[tuple[int, int]]  # (file offset, bytes) of each trun's data
    sync: tuple[int, int, int] | None  # (trun number, sample number, decode offset) of the first sync
    tables: list[tuple[int, tuple]] = field(default_factory=list)  # (offset, arrays) per trun


def _parse_trun(buf: bytes, body: int, end: int, defaults: tuple[int, int, int]
                ) -> tuple[int, int | None, int, int, tuple[int, int] | None, tuple]:
    """(count, data offset or None, duration sum, size sum, (sample index, decode offset) of
    the first sync sample or None, (sizes, durations, ctos, sync) arrays)."""
    _need(body, end, 8, "trun")
    flags = int.from_bytes(buf[body + 1:body + 4], "big")
    n = _U32.unpack_from(buf, body + 4)[0]
    p = body + 8
    data_off = None
    if flags & _TRUN_DATA_OFFSET:
        _need(p, end, 4, "trun")
        data_off = struct.unpack_from(">i", buf, p)[0]
        p += 4
    first_flags = None
    if flags & _TRUN_FIRST_FLAGS:
        _need(p, end, 4, "trun")
        first_flags = _U32.unpack_from(buf, p)[0]
        p += 4
    cols = [f for f in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTO) if flags & f]
    k = len(cols)
    if end - p != 4 * k * n:
        raise _Bad(f"trun: {n} samples of {4 * k} bytes in {end - p} bytes")
    a = np.frombuffer(buf, dtype=">u4", count=n * k, offset=p).reshape(n, k) if k and n else None
    d_dur, d_size, d_flags = defaults

    def col(f: int) -> np.ndarray | None:  # no array for defaults: n comes from the file
        return a[:, cols.index(f)].astype(np.uint64) if a is not None and f in cols else None

    durs, sizes, sflags = col(_TRUN_DURATION), col(_TRUN_SIZE), col(_TRUN_FLAGS)
    dur_sum = int(durs.sum()) if durs is not None else n * d_dur
    size_sum = int(sizes.sum()) if sizes is not None else n * d_size
    sync = None
    if n:
        first = first_flags if first_flags is not None else (
            int(sflags[0]) if sflags is not None else d_flags)
        if not first & _NON_SYNC:
            i: int | None = 0
        elif sflags is not None:
            rest = (sflags[1:] & _NON_SYNC) == 0
            i = int(np.argmax(rest)) + 1 if rest.any() else None
        else:
            i = 1 if n > 1 and not d_flags & _NON_SYNC else None
        if i is not None:
            sync = (i, int(durs[:i].sum()) if durs is not None else i * d_dur)
    version = buf[body]
    ctos = col(_TRUN_CTO)
    cto_arr = (np.zeros(n, np.int32) if ctos is None else
               (ctos.astype(np.uint32).view(np.int32) if version == 1 else
                ctos.astype(np.int64).clip(0, 0x7FFFFFFF).astype(np.int32)))
    fl = sflags if sflags is not None else np.full(n, d_flags, np.uint64)
    if n and first_flags is not None:
        fl = fl.copy()
        fl[0] = first_flags
    table = ((sizes if sizes is not None else np.full(n, d_size)).astype(np.uint32),
             (durs if durs is not None else np.full(n, d_dur)).astype(np.uint32),
             cto_arr, ((fl & _NON_SYNC) == 0).astype(np.uint8))
    return n, data_off, dur_sum, size_sum, sync, table


def _parse_moof(buf: bytes, moof_off: int, hdr: int, init: _Init) -> tuple[int, list[_Traf]]:
    """(sequence_number, trafs) of the moof at `moof_off`; data ranges are file offsets."""
    kids = _children(buf, hdr, len(buf))
    if not kids or kids[0][0] != b"mfhd":
        raise _Bad("moof does not start with mfhd")
    _, body, end = kids[0]
    _need(body, end, 8, "mfhd")
    seq = _U32.unpack_from(buf, body + 4)[0]
    trafs: list[_Traf] = []
    prev_end: int | None = None  # end of the previous traf's data (implicit base offsets)
    for typ, body, end in kids[1:]:
        if typ != b"traf":
            continue
        tkids = _children(buf, body, end)
        if not tkids or tkids[0][0] != b"tfhd":
            raise _Bad("traf does not start with tfhd")
        _, hb, he = tkids[0]
        _need(hb, he, 8, "tfhd")
        tf = int.from_bytes(buf[hb + 1:hb + 4], "big")
        tid = _U32.unpack_from(buf, hb + 4)[0]
        trk = init.tracks.get(tid)
        if trk is None or trk.trex is None:
            raise _Bad(f"traf for track_ID {tid}, which the moov does not extend")
        p = hb + 8
        base = None
        if tf & _TFHD_BASE_OFFSET:
            _need(p, he, 8, "tfhd")
            base = _U64.unpack_from(buf, p)[0]
            p += 8
        if tf & _TFHD_SDI:
            p += 4
        d_dur, d_size, d_flags = trk.trex
        for bit in (_TFHD_DURATION, _TFHD_SIZE, _TFHD_FLAGS):
            if tf & bit:
                _need(p, he, 4, "tfhd")
                v = _U32.unpack_from(buf, p)[0]
                p += 4
                if bit == _TFHD_DURATION:
                    d_dur = v
                elif bit == _TFHD_SIZE:
                    d_size = v
                else:
                    d_flags = v
        if p > he:
            raise _Bad("tfhd too short")
        if base is None:
            base = moof_off if (tf & _TFHD_BASE_IS_MOOF or prev_end is None) else prev_end
        tfdt = None
        traf = _Traf(trk, len(trafs) + 1, None, 0, 0, [], None)
        pos = base
        trun_no = 0
        for ctyp, cb, ce in tkids[1:]:
            if ctyp == b"tfdt":
                _need(cb, ce, 4, "tfdt")
                if buf[cb] == 1:
                    _need(cb, ce, 12, "tfdt")
                    tfdt = _U64.unpack_from(buf, cb + 4)[0]
                else:
                    _need(cb, ce, 8, "tfdt")
                    tfdt = _U32.unpack_from(buf, cb + 4)[0]
            elif ctyp == b"trun":
                trun_no += 1
                n, doff, dsum, ssum, sync, table = _parse_trun(buf, cb, ce,
                                                               (d_dur, d_size, d_flags))
                if doff is not None:
                    pos = base + doff
                if n:
                    traf.tables.append((pos, table))
                if traf.sync is None and sync is not None:
                    traf.sync = (trun_no, sync[0] + 1, traf.duration + sync[1])
                traf.count += n
                traf.duration += dsum
                if ssum:
                    traf.runs.append((pos, ssum))
                pos += ssum
        traf.tfdt = tfdt
        prev_end = pos
        trafs.append(traf)
    return seq, trafs


@dataclass
class _Scan:
    init: _Init
    data_end: int                 # end of the last good fragment (or of the moov)
    fragments: int
    stop: str                     # why the walk stopped ("" at the end of the file)
    mfra: tuple[int, int] | None  # (offset, size) of a complete mfra right at data_end
    mdat_fix: tuple[int, int] | None  # (offset, size) for a size-0 ("to the end") last mdat


def _scan(r: _Reader, init: _Init) -> _Scan:
    """Walk the top-level boxes after the moov and apply every good fragment to the tracks."""
    pos = init.end
    fragments = 0
    last_seq = 0
    mdat_fix = None
    stop = ""
    mfra = None
    while pos < r.size:
        h = r.header(pos)
        if h is None:
            stop = f"partial box header at {pos}"
            break
        typ, size, hdr, to_end = h
        name = typ.decode("latin-1")
        if typ in (b"free", b"skip") and not to_end and pos + size <= r.size:
            pos += size
            continue
        if typ == b"mfra" and not to_end and pos + size <= r.size and size <= MAX_META_BOX:
            mfra = (pos, size)
            stop = f"mfra at {pos}"
            break
        if typ == b"moov":
            stop = f"a progressive moov at {pos} (a hybrid finish cut short)"
            break
        if typ != b"moof":
            stop = f"unexpected box {name!r} at {pos}" if name.isprintable() else \
                f"garbage at {pos}"
            break
        if to_end or pos + size > r.size:
            stop = f"moof at {pos} cut short ({r.size - pos} of {size} bytes)"
            break
        if size > MAX_META_BOX:
            stop = f"moof at {pos} of {size} bytes: garbage"
            break
        mh = r.header(pos + size)
        if mh is None or mh[0] != b"mdat":
            stop = f"moof at {pos} is not followed by an mdat"
            break
        _, msize, mhdr, mto_end = mh
        mdat = pos + size
        if not mto_end and mdat + msize > r.size:
            stop = f"mdat at {mdat} cut short ({r.size - mdat} of {msize} bytes)"
            break
        try:
            seq, trafs = _parse_moof(r.read(pos, size), pos, hdr, init)
        except (_Bad, IndexError, ValueError, struct.error) as e:
            stop = f"moof at {pos} does not parse: {e}"
            break
        if seq <= last_seq:
            stop = f"moof at {pos}: sequence_number {seq} after {last_seq}"
            break
        body, mend = mdat + mhdr, mdat + msize
        data_end = body
        bad = ""
        for t in trafs:
            for off, n in t.runs:
                if off < body or off + n > mend:
                    bad = (f"moof at {pos}: track {t.track.track_id} data [{off}, {off + n}) "
                           f"outside its mdat [{body}, {mend})")
                data_end = max(data_end, off + n)
        # decode times: each traf starts where its track's previous one ended (or later)
        ends: dict[int, int] = {}
        for t in trafs:
            trk = t.track
            prev = ends.get(trk.track_id, trk.end if trk.first is not None else None)
            start = t.tfdt if t.tfdt is not None else (prev or 0)
            if prev is not None and start < prev:
                bad = bad or (f"moof at {pos}: track {trk.track_id} decode time {start} before "
                              f"the previous end {prev}")
            ends[trk.track_id] = start + t.duration
        if bad:
            stop = bad
            break
        fix = None
        if mto_end:  # "to the end of the file": end it where its samples end
            if data_end - mdat > 0xFFFFFFFF:
                stop = f"mdat at {mdat} runs to the end of the file and is too big to close"
                break
            fix, mend = (mdat, data_end - mdat), data_end
        # the fragment is good: apply it
        last_seq = seq
        mdat_fix = fix
        indexed: set[int] = set()
        for t in trafs:
            trk = t.track
            start = t.tfdt if t.tfdt is not None else (trk.end if trk.first is not None else 0)
            if t.count:
                if trk.first is None:
                    trk.first = start
                trk.end = start + t.duration
                trk.samples += t.count
                d = start
                for off, arrays in t.tables:
                    trk.runs.append((off, d, *arrays))
                    d += int(arrays[1].sum())
            if t.sync is not None and trk.track_id not in indexed:
                indexed.add(trk.track_id)
                trun_no, sample_no, dt = t.sync
                trk.add_index((start + dt, pos, t.number, trun_no, sample_no))
        fragments += 1
        pos = mend
    return _Scan(init, pos, fragments, stop, mfra, mdat_fix)


# --------------------------------------------------------------------------------------------
# Durations and the index


def _rescale(v: int, to: int, frm: int) -> int:
    return v if frm == to or frm == 0 else v * to // frm


def _durations(init: _Init) -> tuple[list[tuple[_Field, int]], int]:
    """The duration patches a clean close writes (fmp4_writer.c patch_durations) and the
    movie duration: mdhd = end - first (track timescale); tkhd = that in the movie timescale
    or, with an edit, the elst segment_duration = end - media_time; mvhd = mehd = the
    longest tkhd."""
    mts = init.movie_timescale
    patches: list[tuple[_Field, int]] = []
    movie = 0
    for t in init.tracks.values():
        media = t.end - t.first if t.first is not None else 0
        tk = _rescale(media, mts, t.timescale)
        patches.append((t.mdhd, media))
        if t.elst is not None:
            end = t.end if t.first is not None else 0
            tk = _rescale(end - t.media_time, mts, t.timescale) if end > t.media_time else 0
            patches.append((t.elst, tk))
        patches.append((t.tkhd, tk))
        movie = max(movie, tk)
    patches.append((init.mvhd, movie))
    if init.mehd is not None:
        patches.append((init.mehd, movie))  # last: a file whose mehd is set was fully patched
    return patches, movie


def _table(t: _Track) -> tuple:
    """The track's sample table for _core.progressive_moov. A gap between fragments (a tfdt
    after the previous end; pyrec never writes one) lengthens the sample before it, so every
    sample keeps its decode time."""
    if not t.runs:
        e32 = np.zeros(0, np.uint32)
        return (t.track_id, 0, e32, e32, np.zeros(0, np.int32), np.zeros(0, np.uint8),
                np.zeros(0, np.uint64), e32)
    durs = [r[3].copy() for r in t.runs]
    for k in range(1, len(t.runs)):
        prev_end = t.runs[k - 1][1] + int(t.runs[k - 1][3].sum())
        gap = t.runs[k][1] - prev_end
        if gap > 0:
            durs[k - 1][-1] = min(int(durs[k - 1][-1]) + gap, 0xFFFFFFFF)
    return (t.track_id, t.runs[0][1],
            np.ascontiguousarray(np.concatenate([r[2] for r in t.runs]), np.uint32),
            np.ascontiguousarray(np.concatenate(durs), np.uint32),
            np.ascontiguousarray(np.concatenate([r[4] for r in t.runs]), np.int32),
            np.ascontiguousarray(np.concatenate([r[5] for r in t.runs]), np.uint8),
            np.array([r[0] for r in t.runs], np.uint64),
            np.array([len(r[2]) for r in t.runs], np.uint32))


def _region_header(size: int) -> bytes:
    """The header that makes [region start, + size) one mdat (fmp4_moov.c
    pyrec_mp4_region_header): 32-bit size, or size 1 + 64-bit largesize."""
    if size <= 0xFFFFFFFF:
        return struct.pack(">I4s", size, b"mdat")
    return struct.pack(">I4sQ", 1, b"mdat", size)


def _hybrid_finished(r: _Reader) -> int | None:
    """ftyp, then an mdat from right after it to a moov without mvex that ends the file: the
    movie's duration in ms (from its mvhd); None when the file is not such a file."""
    h = r.header(0)
    if h is None or h[0] != b"ftyp":
        return None
    pos = h[1]
    h = r.header(pos)
    if h is None or h[0] != b"mdat" or h[3]:
        return None
    pos += h[1]
    h = r.header(pos)
    if h is None or h[0] != b"moov" or h[3] or pos + h[1] != r.size or h[1] > MAX_META_BOX:
        return None
    buf = r.read(pos, h[1])
    try:
        kids = _children(buf, h[2], len(buf))
    except _Bad:
        return None
    types = [k[0] for k in kids]
    if b"mvex" in types or b"mvhd" not in types or b"trak" not in types:
        return None
    _, body, end = kids[types.index(b"mvhd")]
    v = buf[body] if body < end else -1
    if v == 1 and end - body >= 32:  # version 1: 64-bit times, timescale at 20, duration at 24
        ts, dur = struct.unpack_from(">IQ", buf, body + 20)
    elif v == 0 and end - body >= 20:  # version 0: timescale at 12, duration at 16
        ts, dur = struct.unpack_from(">II", buf, body + 12)
    else:
        return None
    return _rescale(dur, 1000, ts) if ts else 0


def _fits(f: _Field, v: int) -> int:
    return min(v, (1 << (8 * f.width)) - 1)


def _build_mfra(init: _Init) -> bytes:
    """mfra: one tfra (version 1, 4-byte traf/trun/sample numbers) per track in trak order,
    then mfro with the size of the whole mfra."""
    parts = []
    for t in init.tracks.values():
        body = bytearray(struct.pack(">I4sII I I", 0, b"tfra", 1 << 24, t.track_id, 0x3F,
                                     len(t.index)))
        for e in t.index:
            body += struct.pack(">QQIII", *e)
        _U32.pack_into(body, 0, len(body))
        parts.append(bytes(body))
    size = 8 + sum(len(p) for p in parts) + 16
    return (struct.pack(">I4s", size, b"mfra") + b"".join(parts)
            + struct.pack(">I4sII", 16, b"mfro", 0, size))


def _mfra_valid(r: _Reader, off: int, size: int, init: _Init) -> bool:
    """A complete mfra at `off`: tfra boxes for known tracks whose moof offsets point at moof
    boxes before it, and a last mfro holding the mfra size."""
    buf = r.read(off, size)
    if len(buf) != size:
        return False
    try:
        h = _children(buf, 0, size)
        if len(h) != 1 or h[0][0] != b"mfra":
            return False
        kids = _children(buf, h[0][1], size)
        if not kids or kids[-1][0] != b"mfro":
            return False
        _, mb, me = kids[-1]
        if me - mb != 8 or _U32.unpack_from(buf, mb + 4)[0] != size:
            return False
        offsets: set[int] = set()
        for typ, b, e in kids[:-1]:
            if typ != b"tfra":
                return False
            v = buf[b]
            tid, lens, n = struct.unpack_from(">III", buf, b + 4)
            if tid not in init.tracks:
                return False
            esize = (16 if v == 1 else 8) + ((lens >> 4) & 3) + ((lens >> 2) & 3) + (lens & 3) + 3
            if e - (b + 16) != n * esize:
                return False
            for i in range(n):
                p = b + 16 + i * esize
                offsets.add(_U64.unpack_from(buf, p + 8)[0] if v == 1
                            else _U32.unpack_from(buf, p + 4)[0])
    except (_Bad, IndexError, struct.error):
        return False
    for mo in offsets:
        if not init.end <= mo < off:
            return False
        mh = r.header(mo)
        if mh is None or mh[0] != b"moof":
            return False
    return True


# --------------------------------------------------------------------------------------------
# Public API


def _trailer(r: _Reader) -> tuple[int, int] | None:
    """(offset, size) of the mfra that the mfro ending the file points at, if consistent."""
    if r.size < 24:
        return None
    tail = r.read(r.size - 16, 16)
    size, typ, vf, mfra_size = struct.unpack(">I4sII", tail)
    if size != 16 or typ != b"mfro" or vf != 0 or not 24 <= mfra_size <= r.size:
        return None
    off = r.size - mfra_size
    h = r.header(off)
    if h is None or h[0] != b"mfra" or h[1] != mfra_size:
        return None
    return off, mfra_size


def is_finalized(path: str | os.PathLike[str]) -> bool:
    """True when the file ends with an mfra that its closing mfro points at and the header
    durations were patched (a writer killed between writing the mfra and patching leaves
    mehd != mvhd or both 0). Cheap: reads the init segment and a few headers, not the
    fragments; repair() verifies everything."""
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        r = _Reader(fd, os.fstat(fd).st_size)
        if _hybrid_finished(r) is not None:
            return True
        tr = _trailer(r)
        if tr is None:
            return False
        try:
            init = _read_init(r)
        except _NoInit:
            return False
        if not init.end <= tr[0] or not _mfra_valid_shape(r, *tr):
            return False
        if tr[0] == init.end:
            return True  # no fragment: zero durations are right
        mehd = init.mehd.value if init.mehd is not None else init.mvhd.value
        return init.mvhd.value > 0 and mehd == init.mvhd.value
    finally:
        os.close(fd)


def _mfra_valid_shape(r: _Reader, off: int, size: int) -> bool:
    """The mfra's children exactly fill it and end with the mfro (no moof lookups)."""
    if size > MAX_META_BOX:
        return False
    buf = r.read(off, size)
    try:
        kids = _children(buf, 8, size) if len(buf) == size else []
    except _Bad:
        return False
    return bool(kids) and kids[-1][0] == b"mfro" and all(k[0] == b"tfra" for k in kids[:-1])


def repair(path: str | os.PathLike[str], *, dry_run: bool = False,
           finish: str = HYBRID) -> RepairReport:
    """Finalise a pyrec fMP4 file left open by a crash, in place.

    Keeps every complete, consistent moof+mdat fragment after the init segment, truncates the
    rest (a fragment cut short, a progressive moov whose finish was cut short, garbage),
    patches mvhd/tkhd/mdhd/mehd/elst durations and fsyncs; then finishes the file as the
    writer does: `finish="hybrid"` (default) appends a progressive moov, fsyncs, and rewrites
    the reserved box after ftyp into the header of one mdat over the initial moov and the
    fragments; `finish="fragmented"` appends an mfra. A file without an init segment is
    reported UNRECOVERABLE and left alone; a complete file (either finish) is reported
    FINALIZED and left alone. `dry_run` reports what would be done without writing.
    OSErrors (permissions, I/O, a full disk) propagate; the file is then still a valid fMP4
    and a later repair() finishes it."""
    if finish not in (HYBRID, FRAGMENTED):
        raise ValueError(f"finish must be {HYBRID!r} or {FRAGMENTED!r}, got {finish!r}")
    p = os.fspath(path)
    report = RepairReport(p, UNRECOVERABLE)
    fd = os.open(p, (os.O_RDONLY if dry_run else os.O_RDWR) | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        r = _Reader(fd, size)
        finished_ms = _hybrid_finished(r)
        if finished_ms is not None:
            report.duration_ms = finished_ms
            report.status = FINALIZED
            report.message = "already finalized (hybrid MP4)"
            return report
        try:
            init = _read_init(r)
        except _NoInit as e:
            report.message = f"{e} ({size} bytes); left untouched"
            return report
        scan = _scan(r, init)
        patches, movie = _durations(init)
        report.fragments = scan.fragments
        report.samples = {t.track_id: t.samples for t in init.tracks.values()}
        report.duration_ms = _rescale(movie, 1000, init.movie_timescale)

        mfra = _build_mfra(init)
        keep_mfra = False
        if scan.mfra is not None:
            off, msize = scan.mfra
            old = r.read(off, msize)
            keep_mfra = old == mfra or _mfra_valid(r, off, msize, init)
        cut = scan.data_end + (scan.mfra[1] if keep_mfra and scan.mfra else 0)
        stale = [(f, v) for f, v in patches if f.value != _fits(f, v)]
        reserved_mdat = init.reserved is not None and r.read(init.reserved + 4, 4) == b"mdat"
        if (keep_mfra and cut == size and not stale and scan.mdat_fix is None
                and not reserved_mdat):
            report.status = FINALIZED
            report.message = "already finalized"
            return report
        hybrid = finish == HYBRID
        if hybrid:
            keep_mfra = False
            cut = scan.data_end

        report.status = REPAIRED
        report.truncated_bytes = size - cut
        what = []
        if report.truncated_bytes:
            why = scan.stop if not keep_mfra else f"data after the mfra at {scan.mfra[0]}"
            what.append(f"cut {report.truncated_bytes} bytes at {cut} ({why})")
        if stale:
            what.append("patched durations")
        if hybrid:
            what.append("finished as a hybrid MP4 (progressive moov appended)")
        elif not keep_mfra:
            what.append("replaced the mfra" if scan.mfra else "appended an mfra")
        report.message = (f"{'; '.join(what)}: {scan.fragments} fragments, "
                          f"{sum(report.samples.values())} samples, {report.duration_ms} ms")
        if scan.fragments == 0:
            report.message += " (no complete fragment: the file holds no media)"
        if dry_run:
            report.message = "dry run: would have " + report.message
            return report

        # Order keeps the file repairable if this is cut short too: the mfra (which marks a
        # finished file) is written last, after the durations are on disk.
        # A hybrid finish: the progressive moov is built before anything is written (its
        # errors leave the file as it was).
        moov = b""
        if hybrid:
            from pyrec import _core
            moov = _core.progressive_moov(r.read(init.start, init.end - init.start),
                                          [_table(t) for t in init.tracks.values()])
        if not keep_mfra:
            cut = scan.data_end
        os.ftruncate(fd, cut)
        if reserved_mdat and init.reserved is not None:  # back to a valid fMP4 first
            _pwrite_all(fd, _U32.pack(8) + b"free", init.reserved)
        if scan.mdat_fix is not None:
            off, msize = scan.mdat_fix
            _pwrite_all(fd, _U32.pack(msize), off)
        for f, v in patches:
            _pwrite_all(fd, _fits(f, v).to_bytes(f.width, "big"), f.off)
        os.fsync(fd)
        if hybrid:
            try:
                _pwrite_all(fd, moov, cut)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, cut)  # e.g. a full disk: stays the valid fMP4 it is now
                raise
            start = init.reserved if init.reserved is not None else init.start
            _pwrite_all(fd, _region_header(cut - start), start)
            os.fsync(fd)
        elif not keep_mfra:
            _pwrite_all(fd, mfra, cut)
            os.fsync(fd)
        return report
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes, off: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view, off = view[n:], off + n


def _is_candidate(name: str) -> bool:
    return name.lower().endswith(".mp4") or (name.startswith(".pyrec-") and name.endswith(".part"))


def _foreign(path: str) -> bool:
    """A plain (non-fragmented) MP4 — a complete moov without mvex among its first top-level
    boxes (moov at the start or after the mdat) — is not pyrec's to finalise."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        r = _Reader(fd, os.fstat(fd).st_size)
        pos = 0
        for _ in range(64):
            h = r.header(pos)
            if h is None or pos + h[1] > r.size:
                return False
            typ, size, hdr, _to_end = h
            if typ == b"moov":
                if size > MAX_META_BOX:
                    return False
                try:
                    _parse_moov(r.read(pos, size), pos, hdr)
                except (_Bad, IndexError, struct.error) as e:
                    return "mvex" in str(e)
                return False
            if typ in (b"moof", b"mfra"):
                return False
            pos += size
        return False
    finally:
        os.close(fd)


def find_unfinished(root: str | os.PathLike[str]) -> list[Path]:
    """Files under `root` (recursively, symlinks not followed) named *.mp4 or
    .pyrec-*.part (pyrec's temporary names) that are not finalized, sorted. Plain
    non-fragmented MP4s are not pyrec recordings and are skipped; files that cannot be read
    are listed (repair() will raise the error)."""
    out: list[Path] = []
    for d, _dirs, files in os.walk(root):
        for name in files:
            if not _is_candidate(name):
                continue
            path = os.path.join(d, name)
            try:
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                if is_finalized(path) or _foreign(path):
                    continue
            except FileNotFoundError:
                continue  # removed meanwhile
            except OSError:
                pass
            out.append(Path(path))
    return sorted(out)
