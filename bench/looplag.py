#!/usr/bin/env python3
"""Ingest-loop lag while many streams split at once (DESIGN.md: control work never stalls
the data plane; p99 <= 2 ms while 200 streams split at once).

    python bench/looplag.py                  # 200 publishers, 40 s, every task splits on
                                             # the wall clock's 10 s marks
    python bench/looplag.py --short          # 50 publishers, 20 s

One in-process `Service` (pyrec serve's parts: RTMP loop, task manager, Record API) records
N real-time publishers (bench/loadgen.c replaying bench/.cache/in_360p30_60s_1500k.flv, one
process), each through a Record API task with `schedule = "*/10 * *"`: at every 10 s mark of
the wall clock all N tasks split (each at its next keyframe, GOP 2 s), so N files close and N
open within about two seconds. Records go to a disk-backed folder (fsync is real).

Loop lag is measured by the C server itself: a 10 ms timerfd on its epoll loop; each expiry
records how late it was handled -- what any socket event waits while the loop is busy with
a batch or a callback (the histogram in `IngestServer.stats()`). Reported over the steady
window (after the publishers' ramp, before they end): the lag percentiles as the upper bound
of their histogram bucket, the number of samples, files written and publishers that failed.
Run it with the Python of the tree to measure (e.g. a venv with main + the lag probe).
"""
from __future__ import annotations

import argparse
import base64
import datetime
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from remux import machine  # noqa: E402
from scale import build_loadgen, make_input  # noqa: E402

TOKEN = "lag:token"
AUTH = {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()}


def api(port: int, action: str, body: dict) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", f"/v1/vhosts/default/apps/app:{action}", body=json.dumps(body),
              headers=AUTH)
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    if r.status != 200:
        raise RuntimeError(f"{action}: {data}")
    return data["response"]


def percentile(hist: list[int], bounds: tuple[int, ...], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding quantile q; None above the last bound."""
    total = sum(hist)
    if not total:
        return 0.0
    need, acc = q * total, 0
    for i, c in enumerate(hist):
        acc += c
        if acc >= need:
            return bounds[i] / 1000 if i < len(bounds) else None
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--streams", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--schedule", default="*/10 * *")
    ap.add_argument("--ramp-ms", type=int, default=5000)
    ap.add_argument("--label", default="", help="a name for this run in the output")
    ap.add_argument("--switch-ms", type=float, default=None,
                    help="sys.setswitchinterval for the server process (default: as is)")
    a = ap.parse_args()
    n = a.streams or (50 if a.short else 200)
    seconds = a.seconds or (20 if a.short else 40)

    import os

    import pyrec

    if a.switch_ms is not None:
        sys.setswitchinterval(a.switch_ms / 1000)
    from pyrec.config import load_config
    from pyrec.serve import Service

    src = make_input()
    exe = build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="looplag-", dir=HERE / ".cache"))
    cfg = load_config(None, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN,
                      record_root=str(work / "records"))
    svc = Service(cfg).start()
    try:
        for i in range(n):
            body = {"id": f"t{i}", "stream": {"name": f"s{i}"},
                    "filePath": "${Stream}/${Id}_${Sequence}.mp4"}
            if a.schedule:  # "" = no split: the data plane's own lag, for comparison
                body["schedule"] = a.schedule
            api(svc.api_port, "startRecord", body)
        t0 = time.monotonic()
        lg = subprocess.Popen([str(exe), "-n", str(n), "-a", "app", "-p", "s", "-d",
                               str(seconds), "-r", str(a.ramp_ms), "127.0.0.1",
                               str(svc.rtmp_port), str(src)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(a.ramp_ms / 1000 + 2)
        s0 = svc.ingest.stats()
        time.sleep(max(1.0, seconds - 1 - (time.monotonic() - t0)))
        s1 = svc.ingest.stats()
        out, err = lg.communicate()
        report = json.loads(out.decode() or "{}")
    finally:
        svc.stop()
    bounds = tuple(s1["lag_bounds_us"])
    hist = [b - c for b, c in zip(s1["lag_hist"], s0["lag_hist"])]
    files = len(list((work / "records").rglob("*.mp4")))
    shutil.rmtree(work, ignore_errors=True)
    q = {f"p{k}": percentile(hist, bounds, v) for k, v in
         (("50", 0.50), ("99", 0.99), ("99.9", 0.999))}
    above = {f"over_{ms}ms": sum(c for b, c in zip(bounds + (10**9,), hist) if b > ms * 1000)
             for ms in (2, 10, 50)}
    result = {"label": a.label, "pyrec": pyrec.__file__, "streams": n, "seconds": seconds,
              "schedule": a.schedule, "lag_samples": sum(hist),
              **{f"lag_{k}_ms_at_most": v for k, v in q.items()}, **above,
              "lag_max_ms_whole_run": round(s1["lag_max_us"] / 1000, 2), "files": files,
              "failed_publishers": report.get("failed"),
              "switch_interval_ms": sys.getswitchinterval() * 1000,
              "load_avg_1m_after": os.getloadavg()[0],
              "loadgen_max_late_ms": report.get("max_late_ms")}
    print(json.dumps(result, indent=1))
    print(f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"machine {machine()}, command `python bench/looplag.py {' '.join(sys.argv[1:])}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
