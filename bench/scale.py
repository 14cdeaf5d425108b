#!/usr/bin/env python3
"""Scale benchmark: N concurrent real-time RTMP publishers recorded by pyrec.

    python bench/scale.py                      # N = 10,100,250,500,1000, 25 s of media each
    python bench/scale.py --short              # N = 10,100, 10 s
    python bench/scale.py --streams 1000 --seconds 30 --servers pyrec,nginx

The publishers are one process, bench/loadgen.c (compiled here with `cc -O2`): an epoll loop
with a 2 ms pacing tick that speaks the client side of RTMP itself (handshake, connect,
createStream, publish, @setDataFrame, audio/video messages in 4096-byte chunks with type-0/1/3
headers) and replays bench/.cache/in_360p30_60s_1500k.flv (640x360 30 fps H.264 + AAC,
~1.5 Mbit/s, made once with the ffmpeg CLI) at real-time pace. Connection starts are spread
over --ramp seconds. Each publisher ends with FCUnpublish + deleteStream and a half-close,
then reads until the server closes, so no data in flight is lost to a TCP reset.

Per N, for the server process (bench/ingest_server.py for pyrec, recording every stream to
fMP4; or nginx-rtmp `record all` to FLV with --servers nginx):
  - lost packets: per stream, media packets the loadgen sent minus packets in the recording
    (pyrec: LiveRecording.files[].packets, and ffprobe -count_packets on a sample of files;
    nginx: ffprobe on every file); the largest N with zero loss is reported
  - CPU (utime + stime from /proc/PID/stat) over the whole run, per stream, per packet,
    and in the steady-state window where every publisher is sending (after the ramp)
  - RSS: VmRSS sampled in the steady-state window minus VmRSS before the run, per stream
  - loadgen: its own CPU and the worst lateness of a message against its schedule

Goals (DESIGN.md): 1000 streams on 2 cores with zero loss, <= 256 KiB per stream beyond the
baseline, CPU per packet flat from 1 to 1000 streams.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ingest import NginxServer, PyrecServer, proc_cpu, proc_mem  # noqa: E402
from remux import CACHE, count_packets, log, machine  # noqa: E402

INPUT = CACHE / "in_360p30_60s_1500k.flv"


def make_input() -> Path:
    CACHE.mkdir(exist_ok=True)
    if INPUT.exists() and INPUT.stat().st_size > 0:
        return INPUT
    log(f"generating {INPUT} (60 s of 640x360 30 fps H.264 ~1.4 Mbit/s + AAC 96k) ...")
    tmp = INPUT.with_suffix(".part.flv")
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=60",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60",
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v", "1400k",
                    "-maxrate", "1400k", "-bufsize", "1400k", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "96k", "-f", "flv", str(tmp)], check=True)
    tmp.rename(INPUT)
    return INPUT


def build_loadgen() -> Path:
    exe = CACHE / "loadgen"
    src = HERE / "loadgen.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(exe), str(src)], check=True)
    return exe


class Sampler(threading.Thread):
    """Takes (CPU, RSS) of the server at two instants: the steady-state window."""

    def __init__(self, pid: int, t_from: float, t_to: float):
        super().__init__(daemon=True)
        self.pid, self.t_from, self.t_to = pid, t_from, t_to
        self.a = self.b = None
        self.rss_max = 0.0

    def run(self):
        while time.monotonic() < self.t_from:
            time.sleep(0.05)
        self.a = (time.monotonic(), proc_cpu(self.pid))
        while time.monotonic() < self.t_to:
            self.rss_max = max(self.rss_max, proc_mem(self.pid)[0])
            time.sleep(0.25)
        self.b = (time.monotonic(), proc_cpu(self.pid))


def one_run(kind: str, exe: Path, src: Path, n: int, seconds: float, ramp: float,
            work: Path, probe_sample: int) -> dict:
    outdir = work / f"{kind}-n{n}"
    outdir.mkdir()
    srv = (PyrecServer(outdir, max_connections=n + 64) if kind == "pyrec"
           else NginxServer(outdir, max_connections=n + 64))
    try:
        rss0, _ = proc_mem(srv.pid)
        c0 = proc_cpu(srv.pid)
        t0 = time.monotonic()
        # steady state: every stream started (ramp + 1 s) until the first one ends
        sampler = Sampler(srv.pid, t0 + ramp + 1.5, t0 + seconds - 0.5)
        sampler.start()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        lg = subprocess.Popen([str(exe), "-n", str(n), "-d", str(seconds), "-r",
                               str(int(ramp * 1000)), "127.0.0.1", str(srv.port), str(src)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out_b, err_b = lg.communicate()
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # only the loadgen exited since
        lg_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        report = json.loads(out_b.decode() or "{}")
        if not report:
            raise RuntimeError(f"loadgen gave no report: {err_b.decode(errors='replace')}")
        srv.wait_done(120)
        c1 = proc_cpu(srv.pid)
        rss1, hwm = proc_mem(srv.pid)
        sampler.join(5)
    except BaseException:
        srv.stop()
        raise
    result = srv.stop()
    sent = {s["name"]: s["packets"] for s in report["per_stream"]}
    recorded: dict[str, int] = {}
    if kind == "pyrec":
        for name, info in result["streams"].items():
            recorded[name] = info["packets"]
        # independent check of a few files
        names = sorted(result["streams"])[:probe_sample]
        for name in names:
            for p in result["streams"][name]["paths"]:
                got = sum(count_packets(Path(p)))
                if got != result["streams"][name]["packets"]:
                    log(f"  ffprobe disagrees on {p}: {got} vs pyrec {recorded[name]}")
                    recorded[name] = min(recorded[name], got)
    else:
        for name, paths in srv.outputs(result).items():
            recorded[name] = sum(sum(count_packets(Path(p))) for p in paths)
    lost = sum(max(0, sent[k] - recorded.get(k, 0)) for k in sent)
    extra = sum(max(0, recorded.get(k, 0) - sent[k]) for k in sent)
    streams_lost = sum(1 for k in sent if recorded.get(k, 0) < sent[k])
    cpu = c1 - c0
    packets = sum(sent.values())
    steady = None
    if sampler.a and sampler.b and sampler.b[0] > sampler.a[0]:
        steady = (sampler.b[1] - sampler.a[1]) / (sampler.b[0] - sampler.a[0])
    rate = packets / max(1e-9, n * report["media_ms"] / 1000)  # packets/s per stream
    shutil.rmtree(outdir, ignore_errors=True)
    return {
        "n": n, "kind": kind, "cpu": cpu, "wall": wall, "packets": packets,
        "lost": lost, "extra": extra, "streams_lost": streams_lost,
        "failed": report["failed"], "errors": sorted({s["error"] for s in report["per_stream"]
                                                       if s["error"]})[:3],
        "cpu_per_stream_pct": 100 * cpu / wall / n,
        "us_per_packet": 1e6 * cpu / max(1, packets),
        "steady_cores": steady,
        "steady_us_per_packet": (1e6 * steady / (n * rate)) if steady else None,
        "rss0": rss0, "rss_steady": sampler.rss_max, "rss1": rss1, "hwm": hwm,
        "kib_per_stream": 1024 * (sampler.rss_max - rss0) / n,
        "late_ms": report["max_late_ms"], "loadgen_cpu": lg_cpu,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="N = 10,100 and 10 s")
    ap.add_argument("--streams", default=None, help="comma-separated N (default 10,100,250,500,1000)")
    ap.add_argument("--seconds", type=float, default=None, help="media seconds per stream (25)")
    ap.add_argument("--ramp", type=float, default=None, help="seconds to start all (N/200, >= 1)")
    ap.add_argument("--servers", default="pyrec", help="comma-separated pyrec,nginx")
    ap.add_argument("--probe", type=int, default=3, help="files to check with ffprobe per run")
    args = ap.parse_args()
    ns = [int(x) for x in (args.streams or ("10,100" if args.short else "10,100,250,500,1000"))
          .split(",") if x]
    seconds = args.seconds or (10.0 if args.short else 25.0)
    src = make_input()
    exe = build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="pyrec-scale-bench-"))
    rows = []
    try:
        for n in ns:
            ramp = args.ramp if args.ramp is not None else max(1.0, n / 200)
            if seconds < ramp + 4:
                raise SystemExit(f"--seconds must exceed the ramp ({ramp}s) by 4 s")
            for kind in args.servers.split(","):
                r = one_run(kind, exe, src, n, seconds, ramp, work, args.probe)
                rows.append(r)
                log(f"{kind} N={n}: cpu {r['cpu']:.2f}s over {r['wall']:.1f}s, "
                    f"{r['us_per_packet']:.2f} us/pkt (steady "
                    f"{r['steady_us_per_packet'] or float('nan'):.2f}), lost {r['lost']} "
                    f"({r['streams_lost']} streams), failed publishers {r['failed']} "
                    f"{r['errors']}, RSS {r['rss0']:.1f} -> {r['rss_steady']:.1f} MiB "
                    f"({r['kib_per_stream']:.0f} KiB/stream), late {r['late_ms']} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print("| server | N | packets sent | lost | CPU s (whole run) | CPU us/packet | "
          "steady CPU (cores) | steady us/packet | CPU % of a core per stream | "
          "RSS base -> steady (MiB) | KiB/stream | loadgen CPU s | loadgen max late (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        st = r["steady_cores"]
        print(f"| {r['kind']} | {r['n']} | {r['packets']} | {r['lost']} | {r['cpu']:.2f} | "
              f"{r['us_per_packet']:.2f} | {st if st is None else f'{st:.3f}'} | "
              f"{r['steady_us_per_packet'] and round(r['steady_us_per_packet'], 2)} | "
              f"{r['cpu_per_stream_pct']:.3f} | {r['rss0']:.1f} -> {r['rss_steady']:.1f} | "
              f"{r['kib_per_stream']:.0f} | {r['loadgen_cpu']:.2f} | {r['late_ms']} |")
    print()
    for kind in args.servers.split(","):
        ok = [r["n"] for r in rows if r["kind"] == kind and r["lost"] == 0 and not r["failed"]]
        print(f"{kind}: largest N with zero loss and no failed publisher: "
              f"{max(ok) if ok else 'none'}")
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, machine {machine()}, "
          f"command `python bench/scale.py {' '.join(sys.argv[1:])}`, "
          f"{seconds:g} s of media per stream")
    return 0


if __name__ == "__main__":
    sys.exit(main())
