#!/usr/bin/env python3
"""File remux benchmark: FLV (H.264 + AAC) -> fragmented MP4, pyrec against its peers.

    python bench/remux.py            # 10-minute 1280x720 30 fps input, 5 runs of each tool
    python bench/remux.py --short    # 30-second input, for a quick check
    python bench/remux.py --runs 9 --keep

Tools, run alternately (a b c, b c a, c a b, ...) so that drift in machine load is shared:
  pyrec   `python -m pyrec record in.flv -o out.mp4` (C FLV reader -> C fMP4 writer)
  ffmpeg  `ffmpeg -v error -y -i in.flv -c copy -movflags frag_keyframe+empty_moov+default_base_moof`
  pyav    a PyAV packet loop (demux + mux copy to fragmented MP4, same movflags)
The CPU time (user + sys) of each child process is taken from os.wait4; every output is
checked with `ffprobe -count_packets` against the input. Every tool is charged for writing its
file to the disk: pyrec fsyncs its file at close (in its own process), so ffmpeg and PyAV are
charged the CPU of a `sync FILE` run right after them (the writeback of their dirty pages). Then the batched Python API is timed
on packets already in memory: pyrec.Recorder.write_batch (and, for scale, write() per packet).

Goal (DESIGN.md): pyrec <= 0.5x the CPU of ffmpeg -c copy. Prints a markdown row for
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"

PYAV_REMUX = r"""
import sys, av
src, dst, flags = sys.argv[1:4]
with av.open(src) as i, av.open(dst, "w", format="mp4", options={"movflags": flags}) as o:
    streams = [s for s in i.streams if s.type in ("video", "audio")]
    omap = {s.index: o.add_stream_from_template(s) for s in streams}
    for p in i.demux(*streams):
        if p.dts is None:
            continue
        p.stream = omap[p.stream.index]
        o.mux(p)
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_input(seconds: int) -> Path:
    CACHE.mkdir(exist_ok=True)
    gitignore = CACHE / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")
    path = CACHE / f"in_720p30_{seconds}s.flv"
    if path.exists() and path.stat().st_size > 0:
        return path
    log(f"generating {path} ({seconds} s of 1280x720 30 fps H.264 + AAC) ...")
    tmp = path.with_suffix(".part.flv")
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
           "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v", "3M",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(tmp)]
    subprocess.run(cmd, check=True)
    tmp.rename(path)
    return path


def make_highrate_input(seconds: int = 120) -> Path:
    """720p30 testsrc2, x264 ultrafast (default CRF), GOP 30, AAC: ~7.7 Mbit/s, 2,700
    packets per minute. The single high-bitrate push of bench/ingest.py."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"in_720p30_{seconds}s_ultrafast_g30.flv"
    if path.exists() and path.stat().st_size > 0:
        return path
    log(f"generating {path} ({seconds} s of 1280x720 30 fps H.264 ultrafast GOP 30 + AAC) ...")
    tmp = path.with_suffix(".part.flv")
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(tmp)]
    subprocess.run(cmd, check=True)
    tmp.rename(path)
    return path


def run_measured(cmd: list[str], cwd: str | None = None,
                 env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """(user+sys CPU s, max RSS MiB, wall s) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd,
                         env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {err.strip()}")
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, wall


def count_packets(path: Path) -> list[int]:
    r = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
                        "stream=nb_read_packets", "-of", "json", str(path)],
                       capture_output=True, text=True, check=True)
    return [int(s["nb_read_packets"]) for s in json.loads(r.stdout)["streams"]]


TOOLS = ("pyrec", "pyrec-S", "ffmpeg", "pyav")


def no_site_env() -> dict[str, str]:
    """`python -S` finds the installed pyrec through PYTHONPATH (site-packages)."""
    paths = sysconfig.get_paths()
    return dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys([paths["platlib"],
                                                                       paths["purelib"]])))


def tool_commands(src: Path, out_dir: Path) -> dict[str, tuple[list[str], Path]]:
    outs = {k: out_dir / f"{k}.mp4" for k in TOOLS}
    return {
        "pyrec": ([sys.executable, "-m", "pyrec", "record", str(src), "-o", str(outs["pyrec"])],
                  outs["pyrec"]),
        # the same without the site/.pth processing of this machine's interpreter (see
        # --tools): start-up as on an interpreter whose site imports next to nothing
        "pyrec-S": ([sys.executable, "-S", "-m", "pyrec", "record", str(src), "-o",
                     str(outs["pyrec-S"])], outs["pyrec-S"]),
        "ffmpeg": (["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-c", "copy",
                    "-movflags", MOVFLAGS, str(outs["ffmpeg"])], outs["ffmpeg"]),
        "pyav": ([sys.executable, "-c", PYAV_REMUX, str(src), str(outs["pyav"]), MOVFLAGS],
                 outs["pyav"]),
    }


def python_startup_cpu() -> tuple[float, float]:
    """CPU s of the bare interpreter (`python -c pass`: on this machine it includes what its
    site/.pth files import) and of `python -m pyrec --help` (start-up + the CLI's imports)."""
    bare, _, _ = run_measured([sys.executable, "-c", "pass"], cwd="/")
    cli, _, _ = run_measured([sys.executable, "-m", "pyrec", "--help"], cwd="/")
    return bare, cli


def sync_cpu(path: Path) -> float:
    """CPU s of `sync FILE`: writing the file's dirty pages, which pyrec does itself (fsync)."""
    cpu, _, _ = run_measured(["sync", str(path)])
    return cpu


def bench_batch(src: Path, out_dir: Path, repeats: int = 3) -> dict[str, float]:
    """packets/s (per CPU second) of the Python API on packets already in memory."""
    import av
    import numpy as np
    import pyrec

    with av.open(str(src)) as c:
        streams = [s for s in c.streams if s.type in ("video", "audio")]
        idx = {s.index: i for i, s in enumerate(streams)}
        specs = []
        for s in streams:
            cc = s.codec_context
            name = s.codec.canonical_name if hasattr(s.codec, "canonical_name") else cc.name
            kw = (dict(width=cc.width, height=cc.height) if s.type == "video"
                  else dict(sample_rate=cc.sample_rate, channels=cc.channels))
            specs.append(pyrec.TrackSpec(name, s.time_base.denominator,
                                         config=bytes(cc.extradata or b""), **kw))
        tr, dt, pt, fl, sz, chunks = [], [], [], [], [], []
        for p in c.demux(*streams):
            if p.size == 0 or p.dts is None:
                continue
            tr.append(idx[p.stream.index]); dt.append(p.dts)
            pt.append(p.pts if p.pts is not None else p.dts)
            fl.append(1 if p.is_keyframe else 0); sz.append(p.size); chunks.append(bytes(p))
    track = np.asarray(tr, np.int32); dts = np.asarray(dt, np.int64)
    pts = np.asarray(pt, np.int64); flags = np.asarray(fl, np.uint8)
    sizes = np.asarray(sz, np.int64); payload = b"".join(chunks)
    offs = np.concatenate([[0], np.cumsum(sizes)])
    n = len(track)
    results: dict[str, list[float]] = {"batch": [], "write": []}
    for r in range(repeats):
        for mode in ("batch", "write"):
            out = out_dir / f"api_{mode}_{r}_${{Sequence}}.mp4"
            before = resource.getrusage(resource.RUSAGE_SELF)
            rec = pyrec.Recorder(specs, str(out))
            if mode == "batch":
                step = 1024
                mv = memoryview(payload)
                for a in range(0, n, step):
                    b = min(n, a + step)
                    rec.write_batch(track[a:b], dts[a:b], pts[a:b], flags[a:b], sizes[a:b],
                                    mv[offs[a]:offs[b]])
            else:
                mv = memoryview(payload)
                tl, dl, pl, kl, ol = (track.tolist(), dts.tolist(), pts.tolist(),
                                      (flags == 1).tolist(), offs.tolist())
                for i in range(n):
                    rec.write(tl[i], dl[i], pl[i], mv[ol[i]:ol[i + 1]], kl[i])
            files = rec.close()
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            results[mode].append(n / cpu if cpu > 0 else float("inf"))
            for f in files:
                os.unlink(f.path)
    return {"packets": n, **{k: statistics.median(v) for k, v in results.items()}}


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}x {model}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="30 s input instead of 10 minutes")
    ap.add_argument("--seconds", type=int, default=600,
                    help="input length in seconds (default 600; the issue's figure uses 120)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each tool (default 5)")
    ap.add_argument("--keep", action="store_true", help="keep the output files")
    ap.add_argument("--no-api", action="store_true", help="skip the in-memory API benchmark")
    ap.add_argument("--tools", default="pyrec,ffmpeg,pyav",
                    help="comma-separated subset of pyrec,pyrec-S,ffmpeg,pyav (pyrec-S: "
                         "`python -S -m pyrec record` with site-packages on PYTHONPATH, i.e. "
                         "without the .pth files this machine's site runs at every start-up)")
    args = ap.parse_args()
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            ap.error(f"{tool} not found on PATH")
    seconds = 30 if args.short else args.seconds
    src = make_input(seconds)
    want = count_packets(src)
    log(f"input {src.name}: {src.stat().st_size / 1e6:.1f} MB, packets per stream {want}")

    work = Path(tempfile.mkdtemp(prefix="pyrec-bench-"))
    tools = [t for t in args.tools.split(",") if t]
    if not set(tools) <= set(TOOLS) or not tools:
        ap.error(f"--tools: unknown tool in {args.tools!r}")
    cpu: dict[str, list[float]] = {t: [] for t in tools}
    synced: dict[str, list[float]] = {t: [] for t in tools}
    rss: dict[str, list[float]] = {k: [] for k in cpu}
    wall: dict[str, list[float]] = {k: [] for k in cpu}
    try:
        cmds = tool_commands(src, work)
        order = tools
        for r in range(args.runs):
            rot = order[r % len(order):] + order[:r % len(order)]
            for name in rot:
                cmd, out = cmds[name]
                if out.exists():
                    out.unlink()
                # cwd: not a source tree whose pyrec/ would shadow the installed package
                c, m, w = run_measured(cmd, cwd=str(work),
                                       env=no_site_env() if name == "pyrec-S" else None)
                sc = 0.0 if name.startswith("pyrec") else sync_cpu(out)  # pyrec fsynced
                c += sc
                got = count_packets(out)
                if got != want:
                    raise SystemExit(f"{name}: output has packets {got}, input {want}")
                cpu[name].append(c); rss[name].append(m); wall[name].append(w)
                synced[name].append(sc)
                log(f"run {r + 1}/{args.runs} {name:6s} cpu {c:7.3f}s (sync {sc:.3f})  "
                    f"wall {w:7.3f}s  maxrss {m:6.1f} MiB")
        use_pyrec = "pyrec" in tools or "pyrec-S" in tools
        starts = [python_startup_cpu() for _ in range(5)] if use_pyrec else []
        startup = statistics.median(s[0] for s in starts) if starts else 0.0
        cli_start = statistics.median(s[1] for s in starts) if starts else 0.0
        api = bench_batch(src, work) if use_pyrec and not args.no_api else None
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"outputs kept in {work}")

    med = {k: statistics.median(v) for k, v in cpu.items()}
    nan = float("nan")
    r_ff = med["pyrec"] / med["ffmpeg"] if {"pyrec", "ffmpeg"} <= med.keys() else nan
    r_av = med["pyrec"] / med["pyav"] if {"pyrec", "pyav"} <= med.keys() else nan
    print()
    print("| tool | CPU median (s) | min | max | of which sync (s) | wall median (s) | "
          "max RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for k in cpu:
        print(f"| {k} | {med[k]:.3f} | {min(cpu[k]):.3f} | {max(cpu[k]):.3f} | "
              f"{statistics.median(synced[k]):.3f} | "
              f"{statistics.median(wall[k]):.3f} | {statistics.median(rss[k]):.1f} |")
    print()
    pairs = ([p / f for p, f in zip(cpu["pyrec"], cpu["ffmpeg"])]
             if {"pyrec", "ffmpeg"} <= cpu.keys() else [])
    if {"pyrec-S", "ffmpeg"} <= cpu.keys():
        ps = [p / f for p, f in zip(cpu["pyrec-S"], cpu["ffmpeg"])]
        print(f"pyrec-S/ffmpeg CPU = {med['pyrec-S'] / med['ffmpeg']:.3f} (medians); per run "
              f"{' '.join(f'{x:.2f}' for x in ps)}, median {statistics.median(ps):.3f}")
    print(f"pyrec/ffmpeg CPU = {r_ff:.3f} (medians; goal <= 0.5)"
          + (f"; per run {' '.join(f'{x:.2f}' for x in pairs)}, median "
             f"{statistics.median(pairs):.3f}" if pairs else "")
          + f"   pyrec/pyav CPU = {r_av:.3f}")
    if startup and "pyrec" in med:
        print(f"interpreter start-up (python -c pass) = {startup:.3f}s CPU, `python -m pyrec "
              f"--help` = {cli_start:.3f}s (both included in pyrec's figure); without the "
              f"interpreter's start-up pyrec/ffmpeg = "
              f"{(med['pyrec'] - startup) / med.get('ffmpeg', nan):.3f}")
    if api:
        print(f"API on {api['packets']} in-memory packets: write_batch "
              f"{api['batch']:,.0f} packets/CPU-s, write() {api['write']:,.0f} packets/CPU-s")
    date = datetime.date.today().isoformat()
    cmdline = " ".join(["python", "bench/remux.py", *sys.argv[1:]])
    api_cell = f"{api['batch']:,.0f} / {api['write']:,.0f}" if api else "-"
    print()
    print("RESULTS.md row:")
    print("| date | machine | command | input | pyrec CPU s | ffmpeg CPU s | PyAV CPU s | "
          "pyrec/ffmpeg | pyrec/PyAV | API pkt/CPU-s (batch / write) |")
    print(f"| {date} | {machine()} | `{cmdline}` | {seconds} s 720p30 H.264+AAC FLV | "
          f"{med.get('pyrec', nan):.3f} | {med.get('ffmpeg', nan):.3f} | "
          f"{med.get('pyav', nan):.3f} | {r_ff:.3f} | "
          f"{r_av:.3f} | {api_cell} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
