"""An independent ISO BMFF (ISO/IEC 14496-12) reader for fragmented MP4, written for the tests.

It shares no code with pyrec or FFmpeg: it walks every box, checks that sizes and nesting are
consistent to the byte (children exactly fill their parent, top-level boxes exactly fill the
file), and turns moov/moof/mfra into plain data: per track the header fields and the list of
samples (decode time, composition offset, duration, size, flags, file offset).

    mp4 = parse_mp4(path)              # raises BoxError on any inconsistency
    mp4.tracks[1].samples[0].sync      # sync flag of the first sample of track_ID 1
    mp4.payload(sample)                # the sample's bytes

`allow_truncated=True` accepts a file whose last top-level box is cut short (a file being
written, or left by a crash) and reports it in `mp4.truncated_at`; the incomplete box is
ignored.

A hybrid-finished file (ftyp, one mdat, a moov without mvex at the end) is read both ways:
`mp4.hybrid` holds the progressive view (top-level boxes, the moov's tracks with the samples
of their sample tables), and the rest of `mp4` is the fragmented file the mdat holds (its
reserved header restored to the `free` box, or for a 16-byte header the initial moov's
header), so the fragment checks apply unchanged. `check_hybrid` compares the two.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field


class BoxError(AssertionError):
    """The file is not a consistent ISO BMFF file (an AssertionError, so pytest shows it)."""


# Boxes whose payload is a sequence of boxes.
CONTAINERS = {
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"mfra", b"edts",
    b"dinf", b"udta", b"schi", b"sinf", b"rinf", b"tref", b"mdra", b"gmhd",
}
# Full boxes (version + flags) whose payload after a 4-byte entry count is boxes.
ENTRY_CONTAINERS = {b"stsd", b"dref"}
# Full box (version + flags) followed by boxes.
FULL_CONTAINERS = {b"meta"}
VISUAL_ENTRIES = {b"avc1", b"avc3", b"hvc1", b"hev1", b"av01", b"vp09", b"vp08", b"encv"}
AUDIO_ENTRIES = {b"mp4a", b"Opus", b"fLaC", b"ac-3", b"ec-3", b".mp3", b"enca"}
TOP_LEVEL_OK = {b"ftyp", b"styp", b"moov", b"moof", b"mdat", b"mfra", b"free", b"skip",
                b"sidx", b"emsg", b"prft", b"uuid", b"meta", b"ssix"}


@dataclass
class Box:
    type: bytes
    offset: int        # of the box header in the file
    size: int          # whole box, header included
    header: int        # header length (8, 16, +16 for uuid)
    children: list["Box"] = field(default_factory=list)

    @property
    def body(self) -> int:  # file offset of the payload
        return self.offset + self.header

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def name(self) -> str:
        return self.type.decode("latin-1")

    def find(self, *path: bytes) -> "Box | None":
        box: Box | None = self
        for t in path:
            box = next((c for c in box.children if c.type == t), None) if box else None
        return box

    def findall(self, t: bytes) -> list["Box"]:
        return [c for c in self.children if c.type == t]


@dataclass
class Sample:
    dts: int           # decode time (track timescale)
    cto: int           # composition offset: pts = dts + cto
    duration: int
    size: int
    flags: int         # ISO sample flags
    offset: int        # file offset of the sample data
    fragment: int      # index of the moof (0-based, file order)

    @property
    def pts(self) -> int:
        return self.dts + self.cto

    @property
    def sync(self) -> bool:
        return not (self.flags & 0x10000)  # sample_is_non_sync_sample

    @property
    def depends_on(self) -> int:
        return (self.flags >> 24) & 3


@dataclass
class TfraEntry:
    time: int
    moof_offset: int
    traf_number: int
    trun_number: int
    sample_number: int


@dataclass
class Fragment:
    offset: int        # moof offset
    sequence: int      # mfhd sequence_number
    mdat_offset: int   # following mdat box offset (-1 if none)
    mdat_size: int
    tfdt: dict[int, int] = field(default_factory=dict)        # track_ID -> baseMediaDecodeTime
    first_sample: dict[int, int] = field(default_factory=dict)  # track_ID -> index in samples
    nsamples: dict[int, int] = field(default_factory=dict)


@dataclass
class Track:
    track_id: int
    handler: str = ""
    timescale: int = 0
    mdhd_duration: int = 0
    tkhd_duration: int = 0
    tkhd_flags: int = 0
    width: float = 0.0       # tkhd, 16.16
    height: float = 0.0
    entry: str = ""          # sample entry type ("avc1", "mp4a", ...)
    entry_box: Box | None = None
    entry_width: int = 0     # VisualSampleEntry width/height
    entry_height: int = 0
    channels: int = 0        # AudioSampleEntry
    sample_rate: int = 0
    config: dict[str, bytes] = field(default_factory=dict)  # child box type -> body bytes
    edits: list[tuple[int, int, float]] = field(default_factory=list)  # (seg dur, media time, rate)
    trex: dict[str, int] = field(default_factory=dict)
    stbl_counts: dict[str, int] = field(default_factory=dict)  # entry counts of stts/stsz/...
    samples: list[Sample] = field(default_factory=list)
    tfra: list[TfraEntry] = field(default_factory=list)

    @property
    def end_dts(self) -> int:
        s = self.samples[-1]
        return s.dts + s.duration

    def media_duration(self) -> int:
        return self.end_dts - self.samples[0].dts if self.samples else 0

    def presentation_offset(self) -> int:
        """Media time at which presentation starts according to the edit list (0 without one;
        an initial empty edit is ignored here, see `empty_edit`)."""
        for seg, media_time, rate in self.edits:
            if media_time >= 0:
                return media_time
        return 0

    def empty_edit(self) -> int:
        """Total duration (movie timescale) of leading empty edits."""
        total = 0
        for seg, media_time, rate in self.edits:
            if media_time != -1:
                break
            total += seg
        return total


@dataclass
class Hybrid:
    """The progressive view of a hybrid-finished file."""

    boxes: list[Box]              # ftyp, mdat, moov
    header: int                   # 8 or 16: the mdat header written over the reserved box
    movie_timescale: int = 0
    mvhd_duration: int = 0
    has_mvex: bool = False
    tracks: dict[int, Track] = field(default_factory=dict)


@dataclass
class Mp4:
    path: str
    size: int
    boxes: list[Box]
    brands: list[str] = field(default_factory=list)
    major_brand: str = ""
    movie_timescale: int = 0
    mvhd_duration: int = 0
    mehd_duration: int | None = None
    tracks: dict[int, Track] = field(default_factory=dict)
    fragments: list[Fragment] = field(default_factory=list)
    mfro_size: int | None = None
    mfra_size: int | None = None
    truncated_at: int | None = None
    hybrid: Hybrid | None = None
    _data: bytes = b""

    def payload(self, s: Sample) -> bytes:
        return self._data[s.offset:s.offset + s.size]

    def track_ids(self) -> list[int]:
        return sorted(self.tracks)

    def by_handler(self, handler: str) -> list[Track]:
        return [self.tracks[t] for t in self.track_ids() if self.tracks[t].handler == handler]

    @property
    def video(self) -> Track | None:
        v = self.by_handler("vide")
        return v[0] if v else None

    @property
    def audio(self) -> Track | None:
        a = self.by_handler("soun")
        return a[0] if a else None

    def top(self, t: bytes) -> list[Box]:
        return [b for b in self.boxes if b.type == t]

    def dump(self) -> str:
        lines: list[str] = []

        def rec(bs: list[Box], depth: int) -> None:
            for b in bs:
                lines.append(f"{'  ' * depth}{b.name} @{b.offset} size={b.size}")
                rec(b.children, depth + 1)
        rec(self.boxes, 0)
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Walking


def _fail(msg: str) -> BoxError:
    return BoxError(msg)


def _read_header(data: bytes, pos: int, end: int, where: str) -> tuple[bytes, int, int]:
    if end - pos < 8:
        raise _fail(f"{where}: {end - pos} stray byte(s) at offset {pos} (not a box header)")
    size, typ = struct.unpack_from(">I4s", data, pos)
    header = 8
    if size == 1:
        if end - pos < 16:
            raise _fail(f"{where}: truncated largesize header at {pos}")
        size = struct.unpack_from(">Q", data, pos + 8)[0]
        header = 16
    elif size == 0:
        size = end - pos  # to the end of the enclosing space
    if typ == b"uuid":
        header += 16
    if size < header:
        raise _fail(f"{where}: box {typ!r} at {pos} has size {size} < header {header}")
    return typ, size, header


def _walk(data: bytes, pos: int, end: int, where: str, depth: int) -> list[Box]:
    boxes: list[Box] = []
    while pos < end:
        typ, size, header = _read_header(data, pos, end, where)
        if pos + size > end:
            raise _fail(f"{where}: box {typ!r} at {pos} size {size} overruns its parent "
                        f"(ends at {end}) by {pos + size - end} bytes")
        box = Box(typ, pos, size, header)
        body, bend = pos + header, pos + size
        child_where = f"{where}/{typ.decode('latin-1')}"
        if typ in CONTAINERS:
            box.children = _walk(data, body, bend, child_where, depth + 1)
        elif typ in FULL_CONTAINERS:
            box.children = _walk(data, body + 4, bend, child_where, depth + 1)
        elif typ in ENTRY_CONTAINERS:
            if bend - body < 8:
                raise _fail(f"{child_where}: too short ({size})")
            count = struct.unpack_from(">I", data, body + 4)[0]
            box.children = _walk(data, body + 8, bend, child_where, depth + 1)
            if len(box.children) != count:
                raise _fail(f"{child_where}: entry_count {count} but {len(box.children)} entries")
        elif typ in VISUAL_ENTRIES:
            if bend - body < 78:
                raise _fail(f"{child_where}: VisualSampleEntry too short ({size})")
            box.children = _walk(data, body + 78, bend, child_where, depth + 1)
        elif typ in AUDIO_ENTRIES:
            if bend - body < 28:
                raise _fail(f"{child_where}: AudioSampleEntry too short ({size})")
            version = struct.unpack_from(">H", data, body + 8)[0]
            extra = {0: 0, 1: 16, 2: 36}.get(version)
            if extra is None:
                raise _fail(f"{child_where}: AudioSampleEntry version {version}")
            box.children = _walk(data, body + 28 + extra, bend, child_where, depth + 1)
        boxes.append(box)
        pos += size
    if pos != end:
        raise _fail(f"{where}: children end at {pos}, parent at {end}")
    return boxes


def walk(data: bytes, *, allow_truncated: bool = False) -> tuple[list[Box], int | None]:
    """Top-level boxes of a whole file. Returns (boxes, truncated_at)."""
    pos, end = 0, len(data)
    boxes: list[Box] = []
    while pos < end:
        try:
            typ, size, header = _read_header(data, pos, end, "file")
        except BoxError:
            if allow_truncated:
                return boxes, pos
            raise
        if pos + size > end:
            if allow_truncated:
                return boxes, pos
            raise _fail(f"file: top-level box {typ!r} at {pos} size {size} runs past the end "
                        f"of the file ({end}) by {pos + size - end} bytes")
        if typ not in TOP_LEVEL_OK:
            raise _fail(f"file: unexpected top-level box {typ!r} at {pos} (garbage?)")
        box_list = _walk(data, pos, pos + size, "file", 0)
        assert len(box_list) == 1
        boxes.append(box_list[0])
        pos += size
    return boxes, None


# --------------------------------------------------------------------------------------------
# Field parsing


class _R:
    """Big-endian reader over one box body with bounds checks."""

    def __init__(self, data: bytes, box: Box, start: int | None = None):
        self.d = data
        self.box = box
        self.p = box.body if start is None else start
        self.end = box.end

    def need(self, n: int) -> None:
        if self.p + n > self.end:
            raise _fail(f"{box_name(self.box)} at {self.box.offset}: field at {self.p} needs {n} "
                        f"bytes, box ends at {self.end}")

    def u(self, n: int) -> int:
        self.need(n)
        v = int.from_bytes(self.d[self.p:self.p + n], "big")
        self.p += n
        return v

    def s32(self) -> int:
        self.need(4)
        v = struct.unpack_from(">i", self.d, self.p)[0]
        self.p += 4
        return v

    def s64(self) -> int:
        self.need(8)
        v = struct.unpack_from(">q", self.d, self.p)[0]
        self.p += 8
        return v

    def full(self) -> tuple[int, int]:
        v = self.u(1)
        return v, self.u(3)

    def skip(self, n: int) -> None:
        self.need(n)
        self.p += n

    def done(self) -> None:
        if self.p != self.end:
            raise _fail(f"{box_name(self.box)} at {self.box.offset}: {self.end - self.p} "
                        f"unparsed trailing byte(s)")


def box_name(b: Box) -> str:
    return b.type.decode("latin-1")


def _mvhd(data: bytes, box: Box, mp4: Mp4) -> None:
    r = _R(data, box)
    v, _ = r.full()
    if v == 1:
        r.skip(16)
        mp4.movie_timescale = r.u(4)
        mp4.mvhd_duration = r.u(8)
    else:
        r.skip(8)
        mp4.movie_timescale = r.u(4)
        mp4.mvhd_duration = r.u(4)
    r.skip(4 + 2 + 2 + 8 + 36 + 24 + 4)
    r.done()


def _tkhd(data: bytes, box: Box) -> tuple[int, int, int, float, float]:
    r = _R(data, box)
    v, flags = r.full()
    if v == 1:
        r.skip(16)
        tid = r.u(4)
        r.skip(4)
        dur = r.u(8)
    else:
        r.skip(8)
        tid = r.u(4)
        r.skip(4)
        dur = r.u(4)
    r.skip(8 + 2 + 2 + 2 + 2 + 36)
    w, h = r.u(4) / 65536, r.u(4) / 65536
    r.done()
    return tid, dur, flags, w, h


def _mdhd(data: bytes, box: Box) -> tuple[int, int]:
    r = _R(data, box)
    v, _ = r.full()
    if v == 1:
        r.skip(16)
        ts, dur = r.u(4), r.u(8)
    else:
        r.skip(8)
        ts, dur = r.u(4), r.u(4)
    r.skip(4)  # language + pre_defined
    r.done()
    return ts, dur


def _hdlr(data: bytes, box: Box) -> str:
    r = _R(data, box)
    r.full()
    r.skip(4)
    h = data[r.p:r.p + 4].decode("latin-1")
    r.skip(4 + 12)
    if r.p > r.end:
        raise _fail("hdlr too short")
    return h


def _elst(data: bytes, box: Box) -> list[tuple[int, int, float]]:
    r = _R(data, box)
    v, _ = r.full()
    n = r.u(4)
    out = []
    for _ in range(n):
        if v == 1:
            seg, mt = r.u(8), r.s64()
        else:
            seg, mt = r.u(4), r.s32()
        rate = r.u(2) + r.u(2) / 65536
        out.append((seg, mt, rate))
    r.done()
    return out


def _count_box(data: bytes, box: Box) -> int:
    """Entry count of an stbl table (stts/ctts/stsc/stco/co64/stss: count after version/flags;
    stsz: sample_count after sample_size)."""
    r = _R(data, box)
    r.full()
    if box.type == b"stsz":
        r.u(4)
    elif box.type == b"stz2":
        r.u(4)
    return r.u(4)


def _sample_entry(data: bytes, box: Box, trk: Track) -> None:
    trk.entry = box_name(box)
    trk.entry_box = box
    if box.type in VISUAL_ENTRIES:
        trk.entry_width, trk.entry_height = struct.unpack_from(">HH", data, box.body + 24)
    elif box.type in AUDIO_ENTRIES:
        trk.channels = struct.unpack_from(">H", data, box.body + 16)[0]
        trk.sample_rate = struct.unpack_from(">I", data, box.body + 24)[0] >> 16
    for c in box.children:
        trk.config[box_name(c)] = data[c.body:c.end]


def _trak(data: bytes, trak: Box) -> Track:
    tkhd = trak.find(b"tkhd")
    if tkhd is None:
        raise _fail(f"trak at {trak.offset} has no tkhd")
    tid, dur, flags, w, h = _tkhd(data, tkhd)
    trk = Track(tid, tkhd_duration=dur, tkhd_flags=flags, width=w, height=h)
    mdia = trak.find(b"mdia")
    if mdia is None:
        raise _fail(f"trak {tid} has no mdia")
    mdhd, hdlr = mdia.find(b"mdhd"), mdia.find(b"hdlr")
    if mdhd is None or hdlr is None:
        raise _fail(f"trak {tid}: mdia lacks mdhd or hdlr")
    trk.timescale, trk.mdhd_duration = _mdhd(data, mdhd)
    trk.handler = _hdlr(data, hdlr)
    elst = trak.find(b"edts", b"elst")
    if elst is not None:
        trk.edits = _elst(data, elst)
    stbl = mdia.find(b"minf", b"stbl")
    if stbl is None:
        raise _fail(f"trak {tid} has no stbl")
    stsd = stbl.find(b"stsd")
    if stsd is None or not stsd.children:
        raise _fail(f"trak {tid} has no sample description")
    _sample_entry(data, stsd.children[0], trk)
    for c in stbl.children:
        if c.type in (b"stts", b"ctts", b"stsc", b"stsz", b"stz2", b"stco", b"co64", b"stss"):
            trk.stbl_counts[box_name(c)] = _count_box(data, c)
    return trk


def _trex(data: bytes, box: Box) -> dict[str, int]:
    r = _R(data, box)
    r.full()
    d = dict(track_id=r.u(4), sdi=r.u(4), duration=r.u(4), size=r.u(4), flags=r.u(4))
    r.done()
    return d


def _moof(data: bytes, moof: Box, index: int, mp4: Mp4, next_box: Box | None) -> Fragment:
    mfhd = moof.find(b"mfhd")
    if mfhd is None:
        raise _fail(f"moof at {moof.offset} has no mfhd")
    r = _R(data, mfhd)
    r.full()
    frag = Fragment(moof.offset, r.u(4), -1, 0)
    r.done()
    if next_box is not None and next_box.type == b"mdat":
        frag.mdat_offset, frag.mdat_size = next_box.offset, next_box.size
    prev_data_end: int | None = None
    for traf in moof.findall(b"traf"):
        tfhd = traf.find(b"tfhd")
        if tfhd is None:
            raise _fail(f"traf in moof at {moof.offset} has no tfhd")
        r = _R(data, tfhd)
        _, tf = r.full()
        tid = r.u(4)
        if tid not in mp4.tracks:
            raise _fail(f"moof at {moof.offset}: tfhd names track_ID {tid}, not in moov")
        trk = mp4.tracks[tid]
        trex = trk.trex
        base = r.u(8) if tf & 0x1 else None
        if tf & 0x2:
            r.u(4)
        d_dur = r.u(4) if tf & 0x8 else trex.get("duration", 0)
        d_size = r.u(4) if tf & 0x10 else trex.get("size", 0)
        d_flags = r.u(4) if tf & 0x20 else trex.get("flags", 0)
        r.done()
        if base is None:
            if tf & 0x20000 or prev_data_end is None:
                base = moof.offset
            else:
                base = prev_data_end
        tfdt_box = traf.find(b"tfdt")
        if tfdt_box is not None:
            r = _R(data, tfdt_box)
            v, _ = r.full()
            t = r.u(8) if v == 1 else r.u(4)
            r.done()
        else:
            t = trk.end_dts if trk.samples else 0
        frag.tfdt[tid] = t
        frag.first_sample[tid] = len(trk.samples)
        pos = base
        first_trun = True
        for trun in traf.findall(b"trun"):
            r = _R(data, trun)
            v, fl = r.full()
            n = r.u(4)
            if fl & 0x1:
                pos = base + r.s32()
            elif not first_trun:
                pass  # continues right after the previous trun's data
            first_trun = False
            first_flags = r.u(4) if fl & 0x4 else None
            for i in range(n):
                dur = r.u(4) if fl & 0x100 else d_dur
                size = r.u(4) if fl & 0x200 else d_size
                flags = r.u(4) if fl & 0x400 else d_flags
                if i == 0 and first_flags is not None:
                    flags = first_flags
                cto = 0
                if fl & 0x800:
                    cto = r.s32() if v == 1 else r.u(4)
                if pos < 0 or pos + size > mp4.size:
                    raise _fail(f"track {tid} fragment {index}: sample {i} data [{pos}, "
                                f"{pos + size}) outside the file ({mp4.size} bytes)")
                if frag.mdat_offset >= 0 and not (
                        frag.mdat_offset + 8 <= pos and pos + size <= frag.mdat_offset
                        + frag.mdat_size):
                    raise _fail(f"track {tid} fragment {index}: sample {i} data [{pos}, "
                                f"{pos + size}) not inside the following mdat "
                                f"[{frag.mdat_offset}, {frag.mdat_offset + frag.mdat_size})")
                trk.samples.append(Sample(t, cto, dur, size, flags, pos, index))
                t += dur
                pos += size
            r.done()
        prev_data_end = pos
        frag.nsamples[tid] = len(trk.samples) - frag.first_sample[tid]
    return frag


def _mfra(data: bytes, mfra: Box, mp4: Mp4) -> None:
    mp4.mfra_size = mfra.size
    for c in mfra.children:
        if c.type == b"tfra":
            r = _R(data, c)
            v, _ = r.full()
            tid = r.u(4)
            lens = r.u(4)
            lt, lr, ls = ((lens >> 4) & 3) + 1, ((lens >> 2) & 3) + 1, (lens & 3) + 1
            n = r.u(4)
            entries = []
            for _ in range(n):
                if v == 1:
                    tm, mo = r.u(8), r.u(8)
                else:
                    tm, mo = r.u(4), r.u(4)
                entries.append(TfraEntry(tm, mo, r.u(lt), r.u(lr), r.u(ls)))
            r.done()
            if tid not in mp4.tracks:
                raise _fail(f"tfra names track_ID {tid}, not in moov")
            mp4.tracks[tid].tfra = entries
        elif c.type == b"mfro":
            r = _R(data, c)
            r.full()
            mp4.mfro_size = r.u(4)
            r.done()
        else:
            raise _fail(f"unexpected box {c.type!r} in mfra")


def _stbl_samples(data: bytes, trk: Track, stbl: Box) -> list[Sample]:
    """Every sample of a progressive track from its sample table (8.6.1.2 stts, 8.6.1.3 ctts,
    8.6.2 stss, 8.7.3.2 stsz, 8.7.4 stsc, 8.7.5 stco/co64)."""
    def entries(t: bytes, width: int, signed_last: bool = False) -> list[tuple[int, ...]]:
        b = stbl.find(t)
        if b is None:
            return []
        r = _R(data, b)
        v, _ = r.full()
        n = r.u(4)
        out = []
        for _ in range(n):
            row = tuple(r.u(4) for _ in range(width - 1))
            last = r.s32() if (signed_last and v == 1) else r.u(4)
            out.append(row + (last,))
        r.done()
        return out
    durs = [d for n, d in entries(b"stts", 2) for _ in range(n)]
    ctos = [c for n, c in entries(b"ctts", 2, True) for _ in range(n)] or [0] * len(durs)
    stsz = stbl.find(b"stsz")
    if stsz is None:
        raise _fail(f"track {trk.track_id}: no stsz")
    r = _R(data, stsz)
    r.full()
    fixed, count = r.u(4), r.u(4)
    sizes = [fixed] * count if fixed else [r.u(4) for _ in range(count)]
    r.done()
    co = stbl.find(b"stco") or stbl.find(b"co64")
    if co is None:
        raise _fail(f"track {trk.track_id}: no stco/co64")
    r = _R(data, co)
    r.full()
    offs = [r.u(8 if co.type == b"co64" else 4) for _ in range(r.u(4))]
    r.done()
    stsc = entries(b"stsc", 3)
    stss = stbl.find(b"stss")
    sync = None
    if stss is not None:
        sync = {e[0] for e in entries(b"stss", 1)}
    if not (len(durs) == len(ctos) == len(sizes)):
        raise _fail(f"track {trk.track_id}: stts {len(durs)}, ctts {len(ctos)}, stsz "
                    f"{len(sizes)} samples")
    out: list[Sample] = []
    k = 0
    for ci, off in enumerate(offs):
        chunk = ci + 1
        per = next((e[1] for e in reversed(stsc) if e[0] <= chunk), None)
        if per is None:
            raise _fail(f"track {trk.track_id}: chunk {chunk} not in stsc")
        for _ in range(per):
            if k >= len(sizes):
                raise _fail(f"track {trk.track_id}: stsc maps more samples than stsz has")
            dts = out[-1].dts + out[-1].duration if out else 0
            flags = 0 if sync is None or (k + 1) in sync else 0x10000
            out.append(Sample(dts, ctos[k], durs[k], sizes[k], flags, off, -1))
            off += sizes[k]
            k += 1
    if k != len(sizes):
        raise _fail(f"track {trk.track_id}: chunks hold {k} samples, stsz {len(sizes)}")
    return out


def _unwrap_hybrid(data: bytes, boxes: list[Box]) -> tuple[bytes, Hybrid] | None:
    """For ftyp, mdat, moov (no mvex) where the mdat starts right after ftyp: the progressive
    view, and the fragmented file the mdat holds (with the reserved header restored)."""
    if [b.type for b in boxes] != [b"ftyp", b"mdat", b"moov"] or boxes[1].offset != boxes[0].end:
        return None
    mdat, moov = boxes[1], boxes[2]
    h = Hybrid(boxes, mdat.header, has_mvex=moov.find(b"mvex") is not None)
    inner = data[:moov.offset]
    if mdat.header == 8:
        inner = inner[:mdat.offset] + struct.pack(">I4s", 8, b"free") + inner[mdat.offset + 8:]
    else:  # the initial moov's own header was overwritten: its size is up to the first moof
        pos = mdat.offset + 16
        while pos + 8 <= len(inner):
            size, typ = struct.unpack_from(">I4s", inner, pos)
            if typ == b"moof" or size < 8:
                break
            pos += size
        inner = (inner[:mdat.offset] + struct.pack(">I4sI4s", 8, b"free", pos - mdat.offset - 8,
                                                   b"moov") + inner[mdat.offset + 16:])
    mvhd = moov.find(b"mvhd")
    if mvhd is None:
        raise _fail("final moov has no mvhd")
    tmp = Mp4("", len(data), boxes)
    _mvhd(data, mvhd, tmp)
    h.movie_timescale, h.mvhd_duration = tmp.movie_timescale, tmp.mvhd_duration
    for trak in moov.findall(b"trak"):
        trk = _trak(data, trak)
        stbl = trak.find(b"mdia", b"minf", b"stbl")
        assert stbl is not None
        trk.samples = _stbl_samples(data, trk, stbl)
        h.tracks[trk.track_id] = trk
    return inner, h


def parse_mp4(src: str | os.PathLike | bytes, *, allow_truncated: bool = False) -> Mp4:
    """Walk and parse a (fragmented) MP4 file; raise BoxError on any inconsistency."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data, path = bytes(src), "<bytes>"
    else:
        path = os.fspath(src)
        with open(path, "rb") as f:
            data = f.read()
    boxes, trunc = walk(data, allow_truncated=allow_truncated)
    hybrid = _unwrap_hybrid(data, boxes) if trunc is None else None
    if hybrid is not None:
        data, hyb = hybrid
        boxes, trunc = walk(data)
    mp4 = Mp4(path, len(data), boxes, truncated_at=trunc, _data=data)
    if hybrid is not None:
        mp4.hybrid = hyb
    if not boxes or boxes[0].type not in (b"ftyp", b"styp"):
        raise _fail(f"{path}: first box is {boxes[0].type if boxes else None!r}, not ftyp")
    ftyp = boxes[0]
    mp4.major_brand = data[ftyp.body:ftyp.body + 4].decode("latin-1")
    mp4.brands = [data[p:p + 4].decode("latin-1") for p in range(ftyp.body + 8, ftyp.end, 4)]
    moovs = mp4.top(b"moov")
    if len(moovs) != 1:
        raise _fail(f"{path}: {len(moovs)} moov boxes")
    moov = moovs[0]
    mvhd = moov.find(b"mvhd")
    if mvhd is None:
        raise _fail("moov has no mvhd")
    _mvhd(data, mvhd, mp4)
    for trak in moov.findall(b"trak"):
        trk = _trak(data, trak)
        if trk.track_id in mp4.tracks:
            raise _fail(f"duplicate track_ID {trk.track_id}")
        mp4.tracks[trk.track_id] = trk
    mvex = moov.find(b"mvex")
    if mvex is not None:
        mehd = mvex.find(b"mehd")
        if mehd is not None:
            r = _R(data, mehd)
            v, _ = r.full()
            mp4.mehd_duration = r.u(8) if v == 1 else r.u(4)
            r.done()
        for trex in mvex.findall(b"trex"):
            d = _trex(data, trex)
            if d["track_id"] not in mp4.tracks:
                raise _fail(f"trex for unknown track_ID {d['track_id']}")
            mp4.tracks[d["track_id"]].trex = d
    for i, b in enumerate(boxes):
        if b.type == b"moof":
            nxt = boxes[i + 1] if i + 1 < len(boxes) else None
            mp4.fragments.append(_moof(data, b, len(mp4.fragments), mp4, nxt))
        elif b.type == b"mfra":
            _mfra(data, b, mp4)
    return mp4


# --------------------------------------------------------------------------------------------
# Checks a well-formed pyrec (or any) fMP4 recording must pass


def check_fragmented(mp4: Mp4, *, finalized: bool = True) -> None:
    """Structure every pyrec output must have: ftyp, moov (with mvex/trex for every track, empty
    sample tables), then moof+mdat pairs (mdat exactly filled by the samples of its moof,
    sequence numbers increasing, decode times contiguous per track), then — when `finalized` —
    mfra whose mfro size matches and whose tfra entries point at sync samples."""
    order = [b.type for b in mp4.boxes]
    if order[1:2] == [b"free"] and mp4.boxes[1].size == 8:  # the box reserved for the hybrid
        order = order[:1] + order[2:]
    if order[:2] != [b"ftyp", b"moov"]:
        raise _fail(f"file starts with {order[:2]}, expected ftyp, moov")
    moov = mp4.top(b"moov")[0]
    if moov.find(b"mvex") is None:
        raise _fail("moov has no mvex: not a fragmented file")
    for tid, trk in mp4.tracks.items():
        if not trk.trex:
            raise _fail(f"track {tid} has no trex")
        for name, n in trk.stbl_counts.items():
            if n != 0:
                raise _fail(f"track {tid}: {name} has {n} entries in a fragmented file")
        if trk.timescale <= 0:
            raise _fail(f"track {tid}: timescale {trk.timescale}")
    rest = order[2:]
    i = 0
    while i < len(rest) and rest[i] in (b"moof", b"free", b"skip"):
        if rest[i] == b"moof":
            if i + 1 >= len(rest) or rest[i + 1] != b"mdat":
                raise _fail(f"moof #{i} is not followed by an mdat")
            i += 2
        else:
            i += 1
    tail = rest[i:]
    if finalized and mp4.hybrid is not None:
        if tail:
            raise _fail(f"inside the hybrid mdat, after the fragments: {tail}")
    elif finalized:
        if tail != [b"mfra"]:
            raise _fail(f"after the fragments: {tail}, expected [mfra]")
    elif tail not in ([], [b"mfra"]):
        raise _fail(f"after the fragments: {tail}")
    # mdat exactly filled, sequence numbers increasing
    last_seq = 0
    for f in mp4.fragments:
        if f.sequence <= last_seq:
            raise _fail(f"moof at {f.offset}: sequence_number {f.sequence} after {last_seq}")
        last_seq = f.sequence
        spans = []
        for tid, first in f.first_sample.items():
            for s in mp4.tracks[tid].samples[first:first + f.nsamples[tid]]:
                spans.append((s.offset, s.offset + s.size))
        spans.sort()
        hdr = 16 if mp4.boxes and _is_large(mp4, f.mdat_offset) else 8
        pos = f.mdat_offset + hdr
        for a, b in spans:
            if a != pos:
                raise _fail(f"mdat at {f.mdat_offset}: gap/overlap at {pos} (next sample at {a})")
            pos = b
        if pos != f.mdat_offset + f.mdat_size:
            raise _fail(f"mdat at {f.mdat_offset}: samples end at {pos}, mdat at "
                        f"{f.mdat_offset + f.mdat_size}")
    # decode times contiguous per track
    for tid, trk in mp4.tracks.items():
        end = None
        for f in mp4.fragments:
            if tid not in f.tfdt:
                continue
            if end is not None and f.tfdt[tid] != end:
                raise _fail(f"track {tid}: tfdt {f.tfdt[tid]} in moof at {f.offset}, previous "
                            f"fragment ended at {end}")
            n = f.nsamples[tid]
            if n:
                s = trk.samples[f.first_sample[tid] + n - 1]
                end = s.dts + s.duration
        for s in trk.samples:
            if s.duration <= 0 and s is not trk.samples[-1]:
                raise _fail(f"track {tid}: sample at dts {s.dts} has duration {s.duration}")
    if finalized and mp4.hybrid is not None:
        check_hybrid(mp4)
    elif finalized:
        check_mfra(mp4)


def check_hybrid(mp4: Mp4) -> None:
    """A hybrid-finished file: ftyp, then one mdat from right after ftyp to the final moov,
    then that moov (no mvex) ending the file; per track its sample table lists exactly the
    fragments' samples (offset, size, duration, composition offset up to one shift per track,
    sync flag) and its durations are the fragments' (movie = longest track)."""
    h = mp4.hybrid
    if h is None:
        raise _fail("not a hybrid-finished file (expected ftyp, mdat, moov)")
    ftyp, mdat, moov = h.boxes
    if mdat.offset != ftyp.end or moov.offset != mdat.end or moov.end != len(mp4._data) + moov.size:
        raise _fail("hybrid: ftyp, mdat, moov do not tile the file")
    if h.has_mvex:
        raise _fail("hybrid: the final moov has an mvex")
    if sorted(h.tracks) != sorted(mp4.tracks):
        raise _fail(f"hybrid: tracks {sorted(h.tracks)} vs fragments {sorted(mp4.tracks)}")
    longest = 0
    for tid, frag in mp4.tracks.items():
        prog = h.tracks[tid]
        if len(prog.samples) != len(frag.samples):
            raise _fail(f"hybrid track {tid}: {len(prog.samples)} samples in stbl, "
                        f"{len(frag.samples)} in the fragments")
        shift = (prog.samples[0].cto - frag.samples[0].cto) if frag.samples else 0
        for i, (p, f) in enumerate(zip(prog.samples, frag.samples)):
            if (p.offset, p.size, p.duration, p.sync) != (f.offset, f.size, f.duration, f.sync):
                raise _fail(f"hybrid track {tid} sample {i}: stbl {p} vs fragment {f}")
            if p.cto - f.cto != shift:
                raise _fail(f"hybrid track {tid} sample {i}: cto {p.cto} vs {f.cto} "
                            f"(shift {shift})")
        if prog.mdhd_duration != sum(s.duration for s in frag.samples):
            raise _fail(f"hybrid track {tid}: mdhd {prog.mdhd_duration}")
        longest = max(longest, prog.tkhd_duration)
    if h.mvhd_duration != longest:
        raise _fail(f"hybrid: mvhd duration {h.mvhd_duration}, longest track {longest}")


def _is_large(mp4: Mp4, offset: int) -> bool:
    return struct.unpack_from(">I", mp4._data, offset)[0] == 1


def check_mfra(mp4: Mp4) -> None:
    if mp4.mfra_size is None:
        raise _fail("no mfra")
    if mp4.mfro_size != mp4.mfra_size:
        raise _fail(f"mfro says {mp4.mfro_size}, mfra is {mp4.mfra_size} bytes")
    if mp4.boxes[-1].type != b"mfra":
        raise _fail("mfra is not the last box")
    moofs = {f.offset: f for f in mp4.fragments}
    for tid, trk in mp4.tracks.items():
        for e in trk.tfra:
            f = moofs.get(e.moof_offset)
            if f is None:
                raise _fail(f"tfra track {tid}: moof_offset {e.moof_offset} is not a moof")
            if tid not in f.first_sample:
                raise _fail(f"tfra track {tid}: moof at {e.moof_offset} has no traf for it")
            # traf/trun/sample numbers are 1-based; pyrec writes one trun per traf, so the
            # sample number indexes the traf's samples.
            k = e.sample_number - 1
            if not (0 <= k < f.nsamples[tid]):
                raise _fail(f"tfra track {tid}: sample_number {e.sample_number} out of range")
            s = trk.samples[f.first_sample[tid] + k]
            if e.time not in (s.dts, s.pts):
                raise _fail(f"tfra track {tid}: time {e.time} is neither dts {s.dts} nor pts "
                            f"{s.pts} of the sample it points at")
            if trk.handler == "vide" and not s.sync:
                raise _fail(f"tfra track {tid}: entry at {e.time} points at a non-sync sample")
