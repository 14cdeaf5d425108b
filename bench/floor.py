#!/usr/bin/env python3
"""The floor: how far is pyrec's live ingest from just receiving the same bytes and writing
them to disk?

    python bench/floor.py               # unpaced: 10-min 720p30 input, N = 1 and 8, 3 runs;
                                        # paced: 100 streams of the 360p 1.5 Mbit/s input, 20 s
    python bench/floor.py --short       # 30 s input, 1 run; paced 50 streams for 10 s

Three servers get the same byte stream from the same client, bench/loadgen.c (one process):
  floor   bench/sink.c: epoll loop shaped like pyrec's (256 KiB recv buffer, 8 reads per wake),
          recv() then write() the bytes to one file per connection. No parsing, no replies.
          The loadgen runs in raw mode (-R): it sends the client side of the RTMP session
          (handshake, commands, chunked media) without waiting for replies, so the sink
          receives the same bytes pyrec receives, give or take the few hundred bytes of
          handshake that depend on the server.
  pyrec   bench/ingest_server.py: real RTMP session, chunk parsing, FLV tag parsing, tsfix,
          fMP4 fragments, writev.
  nginx   nginx-rtmp `record all` to FLV (a peer on the same footing; with this client no
          TCP reset cuts the end of a push, unlike ffmpeg in bench/ingest.py).
Each server's CPU (utime + stime from /proc/PID/stat) is taken from just before the push to
just after it has closed every connection and file. Unpaced: the loadgen sends as fast as the
sockets take it (-u). Paced: real-time, which adds the cost of many small wake-ups.
pyrec/floor is the price of the protocol and the MP4 writing over a plain receive-and-write.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ingest import NginxServer, PyrecServer, free_port, proc_cpu, proc_mem  # noqa: E402
from remux import CACHE, count_packets, log, machine, make_input  # noqa: E402
from scale import build_loadgen  # noqa: E402
from scale import make_input as make_360p  # noqa: E402


def build_sink() -> Path:
    exe = CACHE / "sink"
    src = HERE / "sink.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(exe), str(src)], check=True)
    return exe


class SinkServer:
    name = "floor"

    def __init__(self, outdir: Path, exe: Path):
        self.outdir = outdir
        self.proc = subprocess.Popen([str(exe), str(free_port()), str(outdir)],
                                     stdout=subprocess.PIPE, text=True)
        port, pid = self.proc.stdout.readline().split()
        self.port, self.pid = int(port), int(pid)
        self.base_fds = len(os.listdir(f"/proc/{self.pid}/fd"))

    def wait_done(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(os.listdir(f"/proc/{self.pid}/fd")) <= self.base_fds:
                return
            time.sleep(0.05)
        raise RuntimeError("sink still has connections open")

    def stop(self) -> dict:
        self.proc.terminate()
        out = self.proc.stdout.read()
        self.proc.wait(10)
        return {"report": out.strip()}


def run(kind: str, lg: Path, sink: Path, src: Path, n: int, unpaced: bool, seconds: float,
        work: Path, tag: str) -> dict:
    outdir = work / f"{kind}-{tag}"
    outdir.mkdir()
    srv = (SinkServer(outdir, sink) if kind == "floor"
           else PyrecServer(outdir, max_connections=n + 64) if kind == "pyrec"
           else NginxServer(outdir, max_connections=n + 64))
    try:
        rss0, _ = proc_mem(srv.pid)
        c0 = proc_cpu(srv.pid)
        cmd = [str(lg), "-n", str(n), "-r", str(int(max(200, n * 5)))]
        if unpaced:
            cmd.append("-u")
        if seconds:
            cmd += ["-d", str(seconds)]
        if kind == "floor":
            cmd.append("-R")
        t = time.perf_counter()
        p = subprocess.run(cmd + ["127.0.0.1", str(srv.port), str(src)], capture_output=True)
        wall = time.perf_counter() - t
        report = json.loads(p.stdout.decode() or "{}")
        if not report or report["failed"]:
            raise RuntimeError(f"loadgen: {p.stderr.decode()} {str(report)[:500]}")
        srv.wait_done()
        c1 = proc_cpu(srv.pid)
        _, hwm = proc_mem(srv.pid)
    except BaseException:
        srv.stop()
        raise
    result = srv.stop()
    sent = {s["name"]: s["packets"] for s in report["per_stream"]}
    lost = 0
    if kind == "pyrec":
        for name, k in sent.items():
            info = result["streams"].get(name, {"packets": 0, "paths": []})
            lost += max(0, k - info["packets"])
        one = next(iter(result["streams"].values()))["paths"][0]
        if sum(count_packets(Path(one))) != sent[Path(one).name.rsplit("_", 1)[0]]:
            lost += 1
    elif kind == "nginx":
        for name, paths in srv.outputs(result).items():
            lost += max(0, sent[name] - sum(sum(count_packets(Path(x))) for x in paths))
    written = sum(f.stat().st_size for f in outdir.iterdir())
    shutil.rmtree(outdir, ignore_errors=True)
    return {"cpu": c1 - c0, "wall": wall, "packets": report["packets"],
            "payload": report["bytes"], "written": written, "lost": lost,
            "rss0": rss0, "hwm": hwm}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--publishers", default="1,8")
    ap.add_argument("--paced", type=int, default=None, help="paced streams (100; 0 to skip)")
    ap.add_argument("--servers", default="floor,pyrec,nginx")
    args = ap.parse_args()
    runs = args.runs or (1 if args.short else 3)
    big = make_input(30 if args.short else 600)
    small = make_360p()
    lg, sink = build_loadgen(), build_sink()
    kinds = args.servers.split(",")
    paced_n = args.paced if args.paced is not None else (50 if args.short else 100)
    paced_s = 10 if args.short else 20
    cases = [("unpaced", n, big, True, 0) for n in map(int, args.publishers.split(","))]
    if paced_n:
        cases.append(("paced", paced_n, small, False, paced_s))
    work = Path(tempfile.mkdtemp(prefix="pyrec-floor-bench-"))
    res: dict[tuple[str, int, str], list[dict]] = {}
    try:
        for mode, n, src, unpaced, secs in cases:
            for r in range(runs):
                order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
                for kind in order:
                    m = run(kind, lg, sink, src, n, unpaced, secs, work, f"{mode}{n}-{r}")
                    res.setdefault((mode, n, kind), []).append(m)
                    log(f"{mode} N={n} run {r + 1}/{runs} {kind:5s} cpu {m['cpu']:6.2f}s "
                        f"wall {m['wall']:6.2f}s written {m['written'] / 1e6:8.1f} MB "
                        f"lost {m['lost']} hwm {m['hwm']:.1f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print("| case | N | server | CPU median (s) | min | max | CPU us/packet | x floor | "
          "MB written | packets lost |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode, n, src, _, secs in cases:
        base = statistics.median(m["cpu"] for m in res[(mode, n, "floor")]) \
            if "floor" in kinds else float("nan")
        for kind in kinds:
            ms = res[(mode, n, kind)]
            c = [m["cpu"] for m in ms]
            med = statistics.median(c)
            print(f"| {mode} {src.name} | {n} | {kind} | {med:.2f} | {min(c):.2f} | "
                  f"{max(c):.2f} | {1e6 * med / ms[0]['packets']:.2f} | "
                  f"{med / base if base else float('nan'):.2f} | "
                  f"{statistics.median(m['written'] for m in ms) / 1e6:.1f} | "
                  f"{sum(m['lost'] for m in ms)} |")
    print()
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, machine {machine()}, "
          f"command `python bench/floor.py {' '.join(sys.argv[1:])}`, {runs} run(s) each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
