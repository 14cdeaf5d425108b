"""Timestamp pathologies through the whole FLV path (C reader -> tsfix -> recorder), one table
row per pathology.

Each row starts from a real FLV made by the ffmpeg CLI (x264 with or without B-frames + AAC, or
AAC alone) and rewrites its tag timestamps the way broken publishers, relays and spliced files
do (the AVC composition offset stays in the tag body, so a B-frame's PTS moves with its DTS).
It is recorded with pyrec.record_file (the FLV goes through the C reader) and the file must hold
every packet, keep time (no collapse: span within 0.5 s of the source's, no DTS step below half
the track's typical duration), decode without a word from `ffmpeg -v error`, and the repair
counters must name the pathology. One row is also pushed live through the RTMP server."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

import boxes
import media
import pyrec
from ingest_harness import RawRtmp, ingest  # noqa: F401  (fixture)
from pyrec import _core

SECONDS = 6.0
WRAP = 1 << 32
KINDS = ("wrap", "equal", "backward", "jump_forward", "jump_backward", "pts_fixed")


@dataclass(frozen=True)
class Tag:
    type: int    # 8 audio, 9 video, 18 script
    ts: int      # ms (32-bit: 24 bits + extension)
    offset: int  # of the tag header in the file
    media: bool  # carries a frame (not a sequence header or metadata)


def read_tags(data: bytes) -> list[Tag]:
    out = []
    for off, typ, size, ts in media.flv_tags(data):
        body = data[off + 11:off + 11 + size]
        is_media = typ in (8, 9) and len(body) > 1 and body[1] == 1
        out.append(Tag(typ, ts, off, is_media))
    return out


def with_times(data: bytes, tags: list[Tag], times: list[int]) -> bytes:
    """The FLV with each tag's timestamp replaced (24 bits + the extension byte)."""
    buf = bytearray(data)
    for t, ts in zip(tags, times):
        ts %= WRAP
        buf[t.offset + 4:t.offset + 7] = (ts & 0xFFFFFF).to_bytes(3, "big")
        buf[t.offset + 7] = ts >> 24
    return bytes(buf)


# ---- rewrites: tags -> new timestamp of every tag ---------------------------------------------

def restart(at_ms: int, to_ms: int) -> Callable[[list[Tag]], list[int]]:
    """The publisher's clock restarts at `to_ms` where the stream reaches `at_ms`: every tag from
    there on (file order) moves back by the same amount."""
    def f(tags: list[Tag]) -> list[int]:
        i0 = next(i for i, t in enumerate(tags) if t.media and t.ts >= at_ms)
        back = tags[i0].ts - to_ms
        return [t.ts - back if i >= i0 else t.ts for i, t in enumerate(tags)]
    return f


def repeat_video(every: int) -> Callable[[list[Tag]], list[int]]:
    """Every `every`-th video frame carries the previous video frame's DTS."""
    def f(tags: list[Tag]) -> list[int]:
        out = [t.ts for t in tags]
        prev, n = None, 0
        for i, t in enumerate(tags):
            if t.type == 9 and t.media:
                if n % every == every // 2 and prev is not None:
                    out[i] = tags[prev].ts
                prev, n = i, n + 1
        return out
    return f


def late_then_early(every: int) -> Callable[[list[Tag]], list[int]]:
    """Every `every`-th video frame is stamped 20 ms late and the next one 20 ms early: the
    second lands 7 ms behind the first (backward jitter with little room around it)."""
    def f(tags: list[Tag]) -> list[int]:
        out = [t.ts for t in tags]
        video = [i for i, t in enumerate(tags) if t.type == 9 and t.media]
        for n in range(every // 2, len(video) - 1, every):
            out[video[n]] += 20
            out[video[n + 1]] -= 20
        return out
    return f


def audio_batched(per: int) -> Callable[[list[Tag]], list[int]]:
    """Audio frames stamped `per` at a time with the first one's time (some relays do)."""
    def f(tags: list[Tag]) -> list[int]:
        out = [t.ts for t in tags]
        audio = [i for i, t in enumerate(tags) if t.type == 8 and t.media]
        for n, i in enumerate(audio):
            out[i] = tags[audio[n - n % per]].ts
        return out
    return f


def jitter(tags: list[Tag]) -> list[int]:
    """+-2 ms on every frame (a fixed pattern)."""
    return [max(0, t.ts + (i * 7) % 5 - 2) if t.media else t.ts for i, t in enumerate(tags)]


def wrap_then_restart(tags: list[Tag]) -> list[int]:
    """The 32-bit clock passes 2^32 ms 1.5 s in, and restarts at 0 at 4 s."""
    base = WRAP - 1500
    wrapped = [(t.ts + base) % WRAP for t in tags]
    i0 = next(i for i, t in enumerate(tags) if t.media and t.ts >= 4000)
    return [w if i < i0 else tags[i].ts - tags[i0].ts for i, w in enumerate(wrapped)]


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # "bframes", "plain" (no B-frames), "audio" (AAC only)
    rewrite: Callable[[list[Tag]], list[int]]
    video: dict[str, int]  # repair counters expected on the video track (others 0)
    audio: dict[str, int]
    tol_ms: int = 1  # every sample's DTS and PTS vs the unmodified recording's (same origin)


N_REPEAT = 10
CASES = [
    Case("restart_to_0", "bframes", restart(3000, 0), {"jump_backward": 1}, {"jump_backward": 1}),
    Case("restart_earlier", "bframes", restart(3500, 1500), {"jump_backward": 1},
         {"jump_backward": 1}),
    Case("repeat_every_10th", "plain", repeat_video(N_REPEAT), {"equal": -1}, {}),
    Case("jitter_2ms", "bframes", jitter, {}, {}, tol_ms=4),  # the origin jitters too
    Case("late_then_early", "bframes", late_then_early(N_REPEAT), {"backward": -1}, {},
         tol_ms=20),
    Case("audio_batched_by_4", "bframes", audio_batched(4), {}, {"equal": -1}),
    Case("wrap_then_restart", "bframes", wrap_then_restart,
         {"wrap": 1, "jump_backward": 1}, {"wrap": 1, "jump_backward": 1}),
    Case("audio_only_restart", "audio", restart(3000, 0), {}, {"jump_backward": 1}),
    Case("bframes_repeat", "bframes", repeat_video(N_REPEAT), {"equal": -1}, {}),
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("patho_src")
    return {
        "bframes": media.make_flv_cli(d / "bframes.flv", seconds=SECONDS, size="160x120",
                                      extra=["-bf", "3"]),
        "plain": media.make_flv_cli(d / "plain.flv", seconds=SECONDS, size="160x120",
                                    extra=["-bf", "0"]),
        "audio": media.make_flv_cli(d / "audio.flv", seconds=SECONDS, vcodec=None),
    }


@pytest.fixture(scope="module")
def baselines(sources, tmp_path_factory) -> dict[str, boxes.Mp4]:
    """The unmodified sources recorded: the packet counts every row must reach."""
    d = tmp_path_factory.mktemp("patho_base")
    return {k: boxes.parse_mp4(record(p, d / f"{k}.mp4")) for k, p in sources.items()}


def record(src: Path, out: Path) -> str:
    files = pyrec.record_file(str(src), str(out))
    assert len(files) == 1 and files[0].error is None, files
    return files[0].path


def repair_counts(data: bytes, tmp: Path) -> dict[str, dict[str, int]]:
    """The same FLV through the C reader once more, to read the recorder's repair counters
    per track kind (record_file does not return them)."""
    sids: list[int] = []
    kinds: list[str] = []

    def opener(seq: int, start_ms: int) -> int:
        return os.open(tmp / f"counted_{seq}.mp4", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def closer(info: dict) -> None:
        os.close(info["fd"])

    def on_ready(src: _core.FlvSource) -> None:
        found = src.tracks()
        kinds.extend(t["kind"] for t in found)
        sids.append(src.attach(sum(1 << t["id"] for t in found), opener, closer))

    src = _core.FlvSource(on_ready)
    src.feed(data)
    src.close()
    stats = src.sink_stats(sids[0])
    src.detach(sids[0])
    return {k: {n: t[n] for n in KINDS} for k, t in zip(kinds, stats["tracks"])}


def decode_errors(path: str | os.PathLike) -> str:
    r = subprocess.run([media.FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-i",
                        os.fspath(path), "-f", "null", "-"], capture_output=True, text=True,
                       timeout=120)
    return (r.stderr.strip() + (f" (exit {r.returncode})" if r.returncode else "")).strip()


def media_span(tags: list[Tag], typ: int) -> float:
    ts = [t.ts for t in tags if t.media and t.type == typ]
    return (max(ts) - min(ts)) / 1000


def check_file(path: str | os.PathLike, base: boxes.Mp4, src_tags: list[Tag],
               tol_ms: int) -> dict:
    """Every packet, time kept, steps with room, clean decode, and every sample where the
    unmodified recording has it within tol_ms (so A/V stay aligned across a restart).
    Returns figures for the table."""
    mp4 = boxes.parse_mp4(path)
    boxes.check_fragmented(mp4)
    fig: dict = {"packets": [], "span": []}
    for tid, trk in mp4.tracks.items():
        want = base.tracks[tid]
        assert trk.handler == want.handler
        assert len(trk.samples) == len(want.samples), f"{trk.handler}: packets lost"
        # ... and the unmodified recording holds every frame of the source (audio before the
        # first video keyframe may be left out at the start: the live rule).
        typ = 9 if trk.handler == "vide" else 8
        frames = [t for t in src_tags if t.media and t.type == typ]
        keys = [t for t in src_tags if t.media and t.type == 9]
        early = sum(1 for t in frames if keys and t.ts < keys[0].ts)
        assert len(frames) - early <= len(trk.samples) <= len(frames)
        assert [s.size for s in trk.samples] == [s.size for s in want.samples]
        dts = [s.dts for s in trk.samples]
        steps = [b - a for a, b in zip(dts, dts[1:])]
        typical = statistics.median_low(steps)
        assert min(steps) * 2 >= typical, (
            f"{trk.handler}: step {min(steps)} below half the typical {typical}")
        assert all(s.pts >= s.dts for s in trk.samples)
        span = (dts[-1] - dts[0]) / trk.timescale
        real = media_span(src_tags, 9 if trk.handler == "vide" else 8)
        assert abs(span - real) <= 0.5, f"{trk.handler}: span {span:.3f} s, source {real:.3f} s"
        # Both files count time from their first video keyframe: this compares the tracks
        # against one origin, so A/V alignment is checked too.
        off = [max(abs(s.dts - b.dts), abs(s.pts - b.pts)) * 1000
               for s, b in zip(trk.samples, want.samples)]
        assert max(off) <= tol_ms * trk.timescale, (
            f"{trk.handler}: a sample moved {max(off) / trk.timescale:.1f} ms from its time")
        fig["packets"].append(len(trk.samples))
        fig["span"].append(round(span, 3))
    if len(mp4.tracks) == 2:  # A/V stay aligned: both tracks end together (within 0.1 s)
        ends = [trk.end_dts / trk.timescale for trk in mp4.tracks.values()]
        assert abs(ends[0] - ends[1]) < 0.1, ends
    assert decode_errors(path) == ""
    return fig


def steps_of(tags: list[Tag], times: list[int], typ: int) -> list[int]:
    """DTS steps between consecutive frames of one tag type after a rewrite."""
    v = [ts for t, ts in zip(tags, times) if t.type == typ and t.media]
    return [b - a for a, b in zip(v, v[1:])]


def expected_counts(case: Case, tags: list[Tag], kinds: list[str]) -> dict[str, dict[str, int]]:
    """Counters per track kind; -1 in the table stands for as many as the rewrite made (steps
    of 0 for `equal`, below 0 for `backward`)."""
    times = case.rewrite(tags)
    out = {}
    for k in kinds:
        steps = steps_of(tags, times, 9 if k == "video" else 8)
        made = {"equal": sum(1 for x in steps if x == 0),
                "backward": sum(1 for x in steps if x < 0)}
        want = dict.fromkeys(KINDS, 0)
        want.update({n: (made[n] if v == -1 else v)
                     for n, v in (case.video if k == "video" else case.audio).items()})
        out[k] = want
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_pathology(case: Case, sources, baselines, tmp_path):
    data = sources[case.source].read_bytes()
    tags = read_tags(data)
    bad = with_times(data, tags, case.rewrite(tags))
    src = tmp_path / f"{case.name}.flv"
    src.write_bytes(bad)
    out = record(src, tmp_path / f"{case.name}.mp4")
    fig = check_file(out, baselines[case.source], tags, case.tol_ms)
    got = repair_counts(bad, tmp_path)
    assert got == expected_counts(case, tags, list(got)), got
    print(f"\n{case.name}: packets {fig['packets']} span {fig['span']} repairs "
          f"{ {k: {n: v for n, v in c.items() if v} for k, c in got.items()} } decode clean")


def test_live_restart_over_rtmp(sources, baselines, ingest):  # noqa: F811
    """A raw RTMP publisher whose clock restarts to 0 mid-stream (same connection)."""
    data = sources["bframes"].read_bytes()
    tags = read_tags(data)
    times = restart(3000, 0)(tags)
    srv = ingest()
    c = RawRtmp(srv.port)
    c.handshake()
    c.publish("restart")
    c.set_chunk_size(4096)
    sent = 0
    for t, ts in zip(tags, times):
        size = int.from_bytes(data[t.offset + 1:t.offset + 4], "big")
        c.send_tag(t.type, ts, data[t.offset + 11:t.offset + 11 + size])
        sent += t.media
    srv.wait_ready("restart", timeout=10)
    rec = srv.recordings["restart"][0]
    # Every frame has reached the recorder before the counters are read (bounded wait).
    deadline = time.monotonic() + 10
    while True:
        stats, exc = rec.stats()
        assert exc is None
        if sum(t["received"] for t in stats["tracks"]) >= sent or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert [t["jump_backward"] for t in stats["tracks"]] == [1, 1], stats
    assert [t["equal"] + t["backward"] + t["jump_forward"] for t in stats["tracks"]] == [0, 0]
    c.unpublish("restart")
    c.end()
    c.close()
    srv.wait_ended("restart", timeout=10)
    files = srv.files("restart")
    assert len(files) == 1, files
    fig = check_file(files[0].path, baselines["bframes"], tags, 1)
    print(f"\nlive restart_to_0: packets {fig['packets']} span {fig['span']} decode clean")
