#!/usr/bin/env python3
"""A pyrec RTMP ingest server for the benchmarks: records every stream published to app `live`
to OUTDIR/${Stream}_${Sequence}.mp4 and is driven by lines on stdin.

    python bench/ingest_server.py OUTDIR [--port 0]

Prints one JSON line {"port": P, "pid": PID} when listening, then answers stdin commands with
one JSON line each:
    stats   srv.stats()
    stop    stops the server (every file finished) and prints
            {"stats": ..., "streams": {name: {"files": n, "packets": n, "bytes": n, "errors": [..]}}}
The benchmark measures this process's CPU (utime + stime) and RSS from /proc/PID.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading

from pyrec.ingest import IngestLimits, IngestServer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-connections", type=int, default=4096)
    ap.add_argument("--part-ms", type=int, default=1000)
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args()
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")

    lock = threading.Lock()
    recs = []

    def ready(live):
        r = live.record(args.outdir + "/${Stream}_${Sequence}.mp4",
                        part_duration_ms=args.part_ms)
        with lock:
            recs.append(r)

    srv = IngestServer(host="127.0.0.1", port=args.port, apps=("live",),
                       limits=IngestLimits(max_connections=args.max_connections),
                       on_stream_ready=ready)
    srv.start()
    print(json.dumps({"port": srv.port, "pid": __import__("os").getpid()}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "stats":
            print(json.dumps(srv.stats()), flush=True)
        elif cmd == "stop":
            break
    srv.stop()
    out: dict[str, dict] = {}
    with lock:
        for r in recs:
            files = r.files
            out[r.stream.name] = {
                "files": len(files),
                "packets": sum(f.packets for f in files),
                "bytes": sum(f.bytes for f in files),
                "paths": [f.path for f in files],
                "errors": [f.error for f in files if f.error],
            }
    print(json.dumps({"stats": srv.stats(), "streams": out}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
