#!/usr/bin/env python3
"""Soak under load: N real-time RTMP publishers (bench/loadgen.c, one process) recorded by a
real `pyrec serve` with interval splits, while an API client makes R requests per second
(records lists, filtered records, start/stop of extra tasks). Reports: lost packets per
stream (every recorded file counted by PyAV's demuxer, against what the loadgen
sent), files complete (every file finalised), API latency p50/p99/max and errors, server RSS
over time (flat = no leak) and CPU. A signed webhook receiver (in this process) takes every
event: each finished file must come as one file.finished, exactly once per event id.
Retention runs during the soak (`max_age = "60s"`, checked every 5 s), so most files are
deleted while it runs: the receiver scans each file when its file.finished arrives (before
retention may remove it) and packet loss is counted from those scans; every file finished is
then either still on disk or told deleted by a file.deleted webhook (reason max_age).

    python bench/soak.py                 # 200 publishers, 100 req/s, 300 s (the issue's run)
    python bench/soak.py --short         # 20 publishers, 50 req/s, 30 s
"""
from __future__ import annotations

import argparse
import base64
import datetime
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from remux import machine  # noqa: E402
from scale import build_loadgen, make_input  # noqa: E402

TOKEN = "soak:token"
AUTH = {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()}


class HookReceiver:
    """A webhook receiver on loopback: checks each signature, counts deliveries per event id
    and keeps the path of every file.finished."""

    SECRET = b"soak-secret"

    def __init__(self, root: Path) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import hashlib
        import hmac

        self.lock = threading.Lock()
        self.count: dict[str, int] = {}
        self.finished: dict[str, str] = {}  # event id -> recording path
        self.deleted: dict[str, str] = {}   # event id -> path, file.deleted (max_age)
        self.scanned: dict[str, tuple[int, bool]] = {}  # path -> (samples, finalised)
        self.scan_errors: list[str] = []
        self.bad_signatures = 0
        self.root = root
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sig = dict(p.partition("=")[::2]
                           for p in self.headers.get("X-Pyrec-Signature", "").split(","))
                mac = hmac.new(rcv.SECRET, sig.get("t", "").encode() + b"." + body,
                               hashlib.sha256).hexdigest()
                ev = json.loads(body)
                with rcv.lock:
                    if not hmac.compare_digest(mac, sig.get("v1", "")):
                        rcv.bad_signatures += 1
                    rcv.count[ev["id"]] = rcv.count.get(ev["id"], 0) + 1
                    first = rcv.count[ev["id"]] == 1
                    if ev["type"] == "file.finished":
                        rcv.finished[ev["id"]] = ev["data"]["recording"]["path"]
                    elif ev["type"] == "file.deleted":
                        rcv.deleted[ev["id"]] = ev["data"]["recording"]["path"]
                if first and ev["type"] == "file.finished":
                    rcv.scan(ev["data"]["recording"]["path"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pyrec"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def scan(self, rel: str) -> None:
        """Count the samples of a finished file now, before retention may delete it."""
        import av

        from pyrec import repair

        try:
            rep = repair.repair(self.root / rel, dry_run=True)   # finalised?
            with av.open(str(self.root / rel)) as c:   # an independent reader counts
                count = sum(1 for pkt in c.demux() if pkt.size)
        except (OSError, ValueError, av.FFmpegError) as e:
            with self.lock:
                self.scan_errors.append(f"{rel}: {e!r}")
            return
        with self.lock:
            self.scanned[rel] = (count, rep.status == repair.FINALIZED)
        if os.environ.get("SOAK_DEBUG"):
            print("scan", rel, rep.status, rep.samples, flush=True)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class ApiLoad(threading.Thread):
    """R requests per second on one keep-alive connection per worker, latency of each."""

    def __init__(self, port: int, rate: float, stop: threading.Event, nstreams: int,
                 workers: int = 4):
        super().__init__(daemon=True)
        self.port, self.rate, self.stop, self.n, self.workers = port, rate, stop, nstreams, workers
        self.lat: list[float] = []
        self.errors: list[str] = []
        self.count = 0
        self.lock = threading.Lock()

    def worker(self, k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        interval = self.workers / self.rate
        i = 0
        next_t = time.monotonic() + k * interval / self.workers
        while not self.stop.is_set():
            now = time.monotonic()
            if now < next_t:
                time.sleep(next_t - now)
            next_t += interval
            i += 1
            kind = i % 4
            if kind == 0:
                path, body = ":records", {}
            elif kind == 1:
                path, body = ":records", {"id": f"t{(i * 7 + k) % self.n}"}
            elif kind == 2:
                path, body = ":startRecord", {"id": f"x{k}-{i}", "stream": {"name": f"none{k}"}}
            else:
                path, body = ":stopRecord", {"id": f"x{k}-{i - 1}"}
            t0 = time.perf_counter()
            try:
                conn.request("POST", f"/v1/vhosts/default/apps/app{path}",
                             body=json.dumps(body), headers=AUTH)
                r = conn.getresponse()
                data = r.read()
                dt = time.perf_counter() - t0
                ok = r.status == 200 and json.loads(data)["statusCode"] == 200
                with self.lock:
                    self.lat.append(dt)
                    self.count += 1
                    if not ok:
                        self.errors.append(f"{path} {r.status} {data[:120]!r}")
            except (OSError, http.client.HTTPException, ValueError) as e:
                with self.lock:
                    self.errors.append(f"{path} {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def run(self) -> None:
        ts = [threading.Thread(target=self.worker, args=(k,), daemon=True)
              for k in range(self.workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


def api(port: int, action: str, body: dict) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", f"/v1/vhosts/default/apps/app:{action}", body=json.dumps(body),
              headers=AUTH)
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    if r.status != 200:
        raise RuntimeError(f"{action}: {data}")
    return data["response"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--streams", type=int)
    ap.add_argument("--rate", type=float, help="API requests per second")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--interval", type=int, default=10_000, help="split interval (ms)")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    n = a.streams or (20 if a.short else 200)
    rate = a.rate or (50 if a.short else 100)
    seconds = a.seconds or (30 if a.short else 300)
    src = make_input()
    exe = build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="pyrec-soak-"))
    api_port, rtmp_port = free_port(), free_port()
    hooks = HookReceiver(work / "records")
    (work / "pyrec.toml").write_text(
        "[limits]\nmax_connections = 4096\n"
        '[retention]\nmax_age = "60s"\ninterval = "5s"\n'
        f'[[webhooks]]\nurl = "{hooks.url}"\nsecret = "{HookReceiver.SECRET.decode()}"\n')
    log = open(work / "server.log", "wb")
    srv = subprocess.Popen(
        [sys.executable, "-m", "pyrec", "serve", "--config", str(work / "pyrec.toml"),
         "--host", "127.0.0.1", "--api-port", str(api_port), "--rtmp-port", str(rtmp_port),
         "--access-token", TOKEN, "--record-root", str(work / "records")],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                api(api_port, "records", {})
                break
            except OSError:
                time.sleep(0.1)
        for i in range(n):
            api(api_port, "startRecord", {"id": f"t{i}", "stream": {"name": f"s{i}"},
                                          "interval": a.interval,
                                          "filePath": "${Stream}/${Id}_${Sequence}.mp4"})
        rss0, cpu0 = rss_kib(srv.pid), cpu_s(srv.pid)
        stop = threading.Event()
        load = ApiLoad(api_port, rate, stop, n)
        samples: list[tuple[float, int]] = []
        t0 = time.monotonic()
        lg = subprocess.Popen([str(exe), "-n", str(n), "-a", "app", "-p", "s", "-d",
                               str(seconds), "-r", str(max(1000, n * 5)), "127.0.0.1",
                               str(rtmp_port), str(src)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        load.start()
        while lg.poll() is None:
            samples.append((time.monotonic() - t0, rss_kib(srv.pid)))
            time.sleep(5)
        out, err = lg.communicate()
        stop.set()
        load.join(15)
        cpu1 = cpu_s(srv.pid)
        report = json.loads(out.decode() or "{}")
        if not report:
            raise RuntimeError(err.decode())
        # every stream ended: tasks back to ready, files finished
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks = [t for t in api(api_port, "records", {}) if t["id"].startswith("t")]
            if all(t["state"] == "ready" for t in tasks):
                break
            time.sleep(1)
        sent = {s["name"]: s["packets"] for s in report["per_stream"]}
        records = work / "records"
        on_disk = {f.relative_to(records).as_posix() for f in records.glob("s*/*.mp4")}
        # every file finished is told by one file.finished (scanned then), and each is either
        # still on disk or told deleted by retention
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with hooks.lock:
                told_paths = set(hooks.finished.values())
                if on_disk <= told_paths and set(hooks.scanned) >= told_paths:
                    break
            time.sleep(0.5)
        with hooks.lock:
            told = list(hooks.finished.values())
            deleted = list(hooks.deleted.values())
            scanned = dict(hooks.scanned)
            dups = sum(c - 1 for c in hooks.count.values())
            nevents = len(hooks.count)
            scan_errors = list(hooks.scan_errors)
        not_told = len(on_disk - set(told))
        vanished = set(told) - on_disk - set(deleted)   # gone without a file.deleted
        got_per: dict[str, int] = {}
        for rel, (nsamp, _ok) in scanned.items():
            got_per[rel.split("/")[0]] = got_per.get(rel.split("/")[0], 0) + nsamp
        unfinished = sum(1 for _s, ok in scanned.values() if not ok)
        nfiles = len(scanned)
        lost = {f"s{i}": sent.get(f"s{i}", 0) - got_per.get(f"s{i}", 0) for i in range(n)
                if got_per.get(f"s{i}", 0) != sent.get(f"s{i}", -1)}
        lat = sorted(load.lat)
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
        half = len(samples) // 2
        first = statistics.mean(r for _, r in samples[1:half]) if half > 1 else float("nan")
        second = statistics.mean(r for _, r in samples[half:]) if samples[half:] else float("nan")
        result = {
            "streams": n, "seconds": seconds, "api_rate": rate,
            "packets_sent": report["packets"], "lost_streams": len(lost),
            "lost_packets": sum(lost.values()), "failed_publishers": report["failed"],
            "files": nfiles, "files_not_finalised": unfinished,
            "api_requests": load.count, "api_errors": len(load.errors),
            "api_p50_ms": round(p(0.50), 2), "api_p99_ms": round(p(0.99), 2),
            "api_max_ms": round(lat[-1] * 1000, 2) if lat else None,
            "rss_start_mib": round(rss0 / 1024, 1),
            "rss_first_half_mib": round(first / 1024, 1),
            "rss_second_half_mib": round(second / 1024, 1),
            "rss_end_mib": round(samples[-1][1] / 1024, 1) if samples else None,
            "server_cpu_s": round(cpu1 - cpu0, 1), "loadgen_max_late_ms": report["max_late_ms"],
            "webhook_events": nevents, "webhook_duplicate_deliveries": dups,
            "webhook_bad_signatures": hooks.bad_signatures,
            "webhook_file_finished": len(told),
            "files_without_file_finished": not_told,
            "files_deleted_by_retention": len(deleted),
            "files_on_disk_at_end": len(on_disk),
            "files_gone_without_file_deleted": len(vanished),
            "files_not_scannable": len(scan_errors),
            "file_finished_twice_for_a_path": len(told) - len(set(told)),
        }
        print(json.dumps(result, indent=1))
        if load.errors:
            print("first API errors:", load.errors[:5])
        if lost and os.environ.get("SOAK_DEBUG"):
            print(sent, got_per, scanned)
        if lost:
            print("lost per stream (first 10):", dict(list(lost.items())[:10]))
        print(f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
              f"machine {machine()}, command `python bench/soak.py {' '.join(sys.argv[1:])}`")
        if scan_errors:
            print("files not scannable (first 5):", scan_errors[:5])
        hooks_ok = not (dups or hooks.bad_signatures or not_told or vanished or scan_errors
                        or len(told) != len(set(told)) or not deleted)
        return 0 if not lost and not load.errors and not unfinished and hooks_ok else 1
    finally:
        if srv.poll() is None:
            srv.send_signal(signal.SIGTERM)
            try:
                srv.wait(60)
            except subprocess.TimeoutExpired:
                srv.kill()
        log.close()
        hooks.close()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work)


if __name__ == "__main__":
    sys.exit(main())
