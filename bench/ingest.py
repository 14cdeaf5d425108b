#!/usr/bin/env python3
"""Live ingest benchmark: RTMP pushes recorded by pyrec (fMP4) against nginx-rtmp (FLV).

    python bench/ingest.py              # both inputs, 1 and 8 publishers, 3 runs
    python bench/ingest.py --short      # 30-second inputs, for a quick check
    python bench/ingest.py --runs 5 --publishers 1 --inputs hi --keep

Inputs: `3M` 10-minute 720p30 H.264 (veryfast, 3 Mbit/s, GOP 60) + AAC; `hi` 2-minute 720p30
H.264 (ultrafast, ~7.7 Mbit/s, GOP 30) + AAC, the single high-bitrate push.
The same FLV is pushed unpaced by `ffmpeg -v error -i in.flv -c copy -f flv rtmp://...` from N
publishers at once, to:
  pyrec   bench/ingest_server.py: pyrec.ingest.IngestServer recording every stream to fMP4
          (C epoll loop -> RTMP -> FLV tags -> tsfix -> fMP4 fragments, 1 s parts)
  nginx   nginx + libnginx-mod-rtmp (Debian), `live on; record all;` to FLV, one process
          (`daemon off; master_process off; worker_processes 1`), config written to a temp dir
Each run starts a fresh server, waits for it to listen, then takes its CPU (on-CPU time of
all its threads, from /proc/PID/task/*/schedstat) before the push and after every publisher has exited
and the server has closed its files (pyrec: fsynced and closed by its fsync thread): the figure
is the CPU of receiving and recording the push, with no start-up cost. nginx is also charged
the CPU of `sync FILE...` on its recordings (pyrec fsyncs its own at close). Runs alternate (pyrec nginx, nginx pyrec, ...) and the medians are
compared. Every output file is checked with `ffprobe -count_packets` against the input.

Goal (DESIGN.md): pyrec <= 0.7x the CPU of nginx-rtmp, N = 1 and 8. Prints a markdown table
and a row for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from remux import count_packets, log, machine, make_highrate_input, make_input  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- process measurement ---------------------------------------------------------------

def proc_cpu(pid: int) -> float:
    """CPU seconds of a live process: the on-CPU time of its threads from
    /proc/PID/task/*/schedstat (nanoseconds; utime + stime in /proc/PID/stat count 10 ms
    ticks, too coarse for a 0.15 s figure). Neither server starts or ends a thread while it
    is measured. Falls back to utime + stime when schedstat is missing."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


def proc_mem(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def open_files_under(pid: int, d: Path) -> int:
    """How many of the process's open files are under `d`."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(d)):
                n += 1
        except OSError:
            pass
    return n


def sync_cpu(paths: list[str]) -> float:
    """CPU (user + sys) of `sync FILE...`: writing those files' dirty pages to the disk, which
    pyrec does itself (fsync at close) and nginx leaves to the kernel."""
    if not paths:
        return 0.0
    p = subprocess.Popen(["sync", *paths])
    _, status, ru = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"sync exited {status}")
    return ru.ru_utime + ru.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


# ---- servers ---------------------------------------------------------------------------

class PyrecServer:
    """bench/ingest_server.py in a child process, driven over its stdin."""
    name = "pyrec"

    def __init__(self, outdir: Path, max_connections: int = 4096, extra_env=None):
        self.outdir = outdir
        # the installed pyrec (pip install .): the source tree has no built extension
        env = dict(os.environ)
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "ingest_server.py"), str(outdir),
             "--max-connections", str(max_connections)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        hello = json.loads(self.proc.stdout.readline())
        self.port, self.pid = hello["port"], hello["pid"]
        wait_listening(self.port, self.proc)
        # the probe connection above is refused/closed by the server; let it settle
        self._wait(lambda s: s["connections"] == 0, 5)

    def _cmd(self, c: str) -> dict:
        self.proc.stdin.write(c + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stats(self) -> dict:
        return self._cmd("stats")

    def _wait(self, pred, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while True:
            s = self.stats()
            if pred(s) or time.monotonic() > end:
                return s
            time.sleep(0.05)

    def wait_done(self, timeout: float = 60.0) -> None:
        """Every connection closed and every stream ended (its files finished), and every
        file fsynced and closed (live files are fsynced on a background thread)."""
        s = self._wait(lambda s: s["connections"] == 0 and s["streams"] == 0, timeout)
        if s["connections"] or s["streams"]:
            raise RuntimeError(f"pyrec still busy after {timeout}s: {s}")
        end = time.monotonic() + timeout
        while open_files_under(self.pid, self.outdir):
            if time.monotonic() > end:
                raise RuntimeError(f"pyrec still has files open after {timeout}s")
            time.sleep(0.02)

    def stop(self) -> dict:
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        self.proc.wait(30)
        return out

    def outputs(self, result: dict) -> dict[str, list[str]]:
        return {k: v["paths"] for k, v in result["streams"].items()}


def rtmp_module() -> str:
    for pat in ("/usr/lib/nginx/modules/ngx_rtmp_module.so",
                "/usr/share/nginx/modules/ngx_rtmp_module.so",
                "/usr/lib/nginx/modules/*rtmp*.so", "/usr/share/nginx/modules*/*rtmp*.so"):
        hits = glob.glob(pat)
        if hits:
            return hits[0]
    raise SystemExit("nginx rtmp module not found: apt-get install -y nginx libnginx-mod-rtmp")


NGINX_CONF = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
worker_rlimit_nofile 20000;
events {{ worker_connections {conns}; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            record all;
            record_path {outdir};
            record_unique on;
        }}
    }}
}}
"""


class NginxServer:
    """nginx + rtmp module, one process (master_process off), recording to FLV."""
    name = "nginx"

    def __init__(self, outdir: Path, max_connections: int = 4096):
        self.outdir = outdir
        self.prefix = outdir.parent / f"nginx-{outdir.name}"
        self.prefix.mkdir(exist_ok=True)
        self.port = free_port()
        conf = self.prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(module=rtmp_module(), prefix=self.prefix,
                                          port=self.port, outdir=outdir,
                                          conns=max_connections + 16))
        self.proc = subprocess.Popen(["nginx", "-p", str(self.prefix), "-c", str(conf)],
                                     stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        wait_listening(self.port, self.proc)

    def _open_records(self) -> int:
        return open_files_under(self.pid, self.outdir)

    def _tcp_conns(self) -> int:
        n = 0
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                if os.readlink(f"/proc/{self.pid}/fd/{fd}").startswith("socket:"):
                    n += 1
            except OSError:
                pass
        return n - 1  # the listening socket

    def wait_done(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._open_records() == 0 and self._tcp_conns() <= 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"nginx still has recordings open after {timeout}s")

    def stop(self) -> dict:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        return {"stderr": err}

    def outputs(self, result: dict) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for p in sorted(self.outdir.glob("*.flv")):
            out.setdefault(p.name.rsplit("-", 1)[0], []).append(str(p))
        return out


# ---- one run ---------------------------------------------------------------------------

def push(src: Path, port: int, n: int) -> float:
    """N unpaced ffmpeg publishers at once; wall seconds until the last exits."""
    t = time.perf_counter()
    procs = [subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c", "copy",
                               "-f", "flv", f"rtmp://127.0.0.1:{port}/live/s{i}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(n)]
    errs = []
    for i, p in enumerate(procs):
        _, err = p.communicate()
        if p.returncode != 0:
            errs.append(f"publisher s{i} exited {p.returncode}: {err.decode(errors='replace')}")
    if errs:
        raise RuntimeError("\n".join(errs))
    return time.perf_counter() - t


def one_run(kind: str, src: Path, n: int, want: list[int], work: Path, tag: str) -> dict:
    outdir = work / f"{kind}-{tag}"
    outdir.mkdir()
    srv = PyrecServer(outdir) if kind == "pyrec" else NginxServer(outdir)
    try:
        rss0, _ = proc_mem(srv.pid)
        c0 = proc_cpu(srv.pid)
        wall = push(src, srv.port, n)
        srv.wait_done()
        c1 = proc_cpu(srv.pid)
        rss1, hwm = proc_mem(srv.pid)
    except BaseException:
        srv.stop()
        raise
    result = srv.stop()
    outs = srv.outputs(result)
    # nginx is charged a `sync` of its files (pyrec fsyncs its own at close, counted above)
    synced = sync_cpu([p for ps in outs.values() for p in ps]) if kind == "nginx" else 0.0
    if sorted(outs) != sorted(f"s{i}" for i in range(n)):
        raise SystemExit(f"{kind}: outputs for streams {sorted(outs)}, expected s0..s{n - 1}")
    lost = 0  # packets missing from the outputs, all streams
    recorded = 0
    for name, paths in outs.items():
        got = [0] * len(want)
        for p in paths:
            for i, c in enumerate(count_packets(Path(p))):
                got[i] += c
        if len(paths) != 1 or got != want:
            log(f"  INCOMPLETE {kind} {name}: {len(paths)} file(s), packets {got}, input {want}")
        lost += sum(want) - sum(got)
        recorded += sum(got)
    size = sum(os.path.getsize(p) for ps in outs.values() for p in ps)
    return {"cpu": c1 - c0 + synced, "sync": synced, "wall": wall, "rss0": rss0, "rss1": rss1,
            "hwm": hwm, "bytes": size, "packets": recorded, "lost": lost}


INPUTS = {
    "3M": "720p30 H.264 veryfast 3 Mbit/s GOP 60 + AAC (600 s; --short 30 s)",
    "hi": "720p30 H.264 ultrafast ~7.7 Mbit/s GOP 30 + AAC (120 s; --short 30 s)",
}


def input_file(name: str, short: bool) -> Path:
    if name == "3M":
        return make_input(30 if short else 600)
    return make_highrate_input(30 if short else 120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="30 s inputs, for a quick check")
    ap.add_argument("--runs", type=int, default=3, help="runs of each server per case (default 3)")
    ap.add_argument("--publishers", default="1,8", help="comma-separated N (default 1,8)")
    ap.add_argument("--inputs", default="3M,hi",
                    help="comma-separated inputs: " + "; ".join(f"{k}: {v}" for k, v in INPUTS.items()))
    ap.add_argument("--keep", action="store_true", help="keep the output files")
    args = ap.parse_args()
    for tool in ("ffmpeg", "ffprobe", "nginx", "sync"):
        if shutil.which(tool) is None:
            ap.error(f"{tool} not found on PATH (apt-get install -y ffmpeg nginx libnginx-mod-rtmp)")
    rtmp_module()
    inputs = [x for x in args.inputs.split(",") if x]
    if not inputs or not set(inputs) <= INPUTS.keys():
        ap.error(f"--inputs: choose from {', '.join(INPUTS)}")
    ns = [int(x) for x in args.publishers.split(",") if x]

    work = Path(tempfile.mkdtemp(prefix="pyrec-ingest-bench-"))
    res: dict[tuple[str, str, int], list[dict]] = {}
    srcs: dict[str, tuple[Path, list[int]]] = {}
    try:
        for inp in inputs:
            src = input_file(inp, args.short)
            want = count_packets(src)
            srcs[inp] = (src, want)
            log(f"input {inp} {src.name}: {src.stat().st_size / 1e6:.1f} MB, packets per "
                f"stream {want}")
            for n in ns:
                for r in range(args.runs):
                    order = ("pyrec", "nginx") if r % 2 == 0 else ("nginx", "pyrec")
                    for kind in order:
                        m = one_run(kind, src, n, want, work, f"{inp}-n{n}-r{r}")
                        res.setdefault((inp, kind, n), []).append(m)
                        log(f"{inp} N={n} run {r + 1}/{args.runs} {kind:5s} cpu {m['cpu']:7.3f}s"
                            f" (sync {m['sync']:.3f})  lost {m['lost']:5d} pkts  "
                            f"push wall {m['wall']:6.2f}s  rss {m['rss0']:6.1f} -> "
                            f"{m['rss1']:6.1f} MiB (hwm {m['hwm']:6.1f})  out "
                            f"{m['bytes'] / 1e6:8.1f} MB")
                        if not args.keep:
                            for d in work.iterdir():
                                shutil.rmtree(d, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"outputs kept in {work}")

    cases = [(inp, n) for inp in inputs for n in ns]
    med = lambda inp, kind, n, k: statistics.median(m[k] for m in res[(inp, kind, n)])  # noqa: E731
    per_pkt = lambda inp, kind, n: statistics.median(  # noqa: E731  CPU us per recorded packet
        1e6 * m["cpu"] / m["packets"] for m in res[(inp, kind, n)])
    # run r of pyrec against run r of nginx (adjacent in time): the ratio least hurt by drift
    pair = {c: [p["cpu"] / q["cpu"] for p, q in zip(res[(c[0], "pyrec", c[1])],
                                                    res[(c[0], "nginx", c[1])])]
            for c in cases}
    print()
    print("| input | N | server | CPU median (s) | min | max | of which sync (s) | CPU us per "
          "recorded packet | packets lost (all runs) | push wall median (s) | "
          "RSS before -> after (MiB) | VmHWM (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for inp, n in cases:
        for kind in ("pyrec", "nginx"):
            ms = res[(inp, kind, n)]
            cpus = [m["cpu"] for m in ms]
            print(f"| {inp} | {n} | {kind} | {statistics.median(cpus):.3f} | {min(cpus):.3f} | "
                  f"{max(cpus):.3f} | {med(inp, kind, n, 'sync'):.3f} | "
                  f"{per_pkt(inp, kind, n):.2f} | {sum(m['lost'] for m in ms)} | "
                  f"{med(inp, kind, n, 'wall'):.2f} | {med(inp, kind, n, 'rss0'):.1f} -> "
                  f"{med(inp, kind, n, 'rss1'):.1f} | {med(inp, kind, n, 'hwm'):.1f} |")
    print()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cmdline = " ".join(["python", "bench/ingest.py", *sys.argv[1:]])
    rows = []
    for inp, n in cases:
        ratio = med(inp, "pyrec", n, "cpu") / med(inp, "nginx", n, "cpu")
        pkt_ratio = per_pkt(inp, "pyrec", n) / per_pkt(inp, "nginx", n)
        pairs = pair[(inp, n)]
        lost_p = sum(m["lost"] for m in res[(inp, "pyrec", n)])
        lost_n = sum(m["lost"] for m in res[(inp, "nginx", n)])
        print(f"{inp} N={n}: pyrec/nginx CPU = {ratio:.3f} (medians; goal <= 0.7, DESIGN 0.5); "
              f"per run pair {' '.join(f'{x:.2f}' for x in pairs)} (median "
              f"{statistics.median(pairs):.3f}); per recorded packet {pkt_ratio:.3f}; lost "
              f"pyrec {lost_p}, nginx {lost_n}")
        src, _ = srcs[inp]
        rows.append(f"| {date} | {machine()} | `{cmdline}` | {src.name} ({INPUTS[inp]}), "
                    f"{args.runs} runs | {n} | {med(inp, 'pyrec', n, 'cpu'):.3f} | "
                    f"{med(inp, 'nginx', n, 'cpu'):.3f} | {ratio:.3f} | "
                    f"{statistics.median(pairs):.3f} | {pkt_ratio:.3f} | {lost_p} / {lost_n} |")
    print()
    print("RESULTS.md rows:")
    print("| date | machine | command | input | N | pyrec CPU s | nginx-rtmp CPU s (+ sync) | "
          "pyrec/nginx (medians) | median of per-run-pair ratios | per recorded packet | "
          "packets lost pyrec / nginx |")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
