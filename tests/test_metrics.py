"""Health, readiness and Prometheus metrics (lifecycle spec section 8) of a real service: ffmpeg
pushes over RTMP, a task records through the Record API, and /metrics is scraped over loopback
and parsed with prometheus_client's own parser; the numbers are checked against the files on
disk and the requests the test made."""
from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import media
from ingest_harness import RawRtmp, flv_messages
from pyrec.config import load_config
from pyrec.metrics import FEEDS, Metrics
from test_service_e2e import TOKEN, clip4, publish, service  # noqa: F401

AUTH = "Basic " + base64.b64encode(TOKEN.encode()).decode()
ACTION_ROUTE = "/v1/vhosts/{vhost}/apps/{app_action}"

pytestmark = pytest.mark.timeout(120)


def get(port: int, path: str, auth: bool = False) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": AUTH} if auth else {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


class Scrape:
    """One /metrics answer, parsed: value(name, **labels) of a sample."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, metric: str, /, **labels: str) -> float:
        key = (metric, frozenset(labels.items()))
        assert key in self.samples, f"no sample {metric}{labels}; have " + ", ".join(
            sorted(n for n, _ in self.samples if n.startswith(metric[:12])))
        return self.samples[key]


def scrape(port: int, auth: bool = True) -> Scrape:
    status, ctype, body = get(port, "/metrics", auth)
    assert status == 200, (status, body[:200])
    assert ctype.startswith("text/plain"), ctype
    return Scrape(body.decode())


def wait_for(pred, what: str, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"not {what} after {timeout}s"
        time.sleep(0.05)


def _config(tmp_path: Path, toml: str = "", **kw: Any):
    path = None
    if toml:
        tmp_path.mkdir(parents=True, exist_ok=True)
        path = tmp_path / "pyrec.toml"
        path.write_text(toml, encoding="utf-8")
    return load_config(path, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN,
                       record_root=str(tmp_path / "rec"), db_path=str(tmp_path / "db.sqlite3"),
                       **kw)


def test_metrics_of_a_recording(service, publish, clip4, tmp_path):
    run = service(_config(tmp_path))
    port = run.svc.api_port
    m0 = scrape(port)
    assert m0.value("pyrec_streams_live") == 0
    assert m0.value("pyrec_tasks", state="recording") == 0
    assert m0.value("pyrec_files_finished_total") == 0

    run.api.start("m", "cam", interval=1000)
    p = publish(clip4, run.url("cam"))
    run.api.wait("m", lambda t: t.get("sequence", 0) >= 1, "past one split", timeout=20)
    # the first file's bytes count once it is finished (fsynced on the dispatcher)
    wait_for(lambda: scrape(port).value("pyrec_written_bytes_total") > 0, "bytes written")
    live = scrape(port)
    assert live.value("pyrec_streams_live") == 1
    assert live.value("pyrec_tasks", state="recording") == 1
    assert live.value("pyrec_tasks", state="ready") == 0
    assert live.value("pyrec_received_bytes_total") > 0
    assert live.value("pyrec_written_bytes_total") > 0
    assert live.value("pyrec_packets_total", kind="video") > 0
    assert live.value("pyrec_packets_total", kind="audio") > 0

    run.api.stop("m")
    media.rtmp_wait(p)
    run.svc.bus.flush()
    wait_for(lambda: scrape(port).value("pyrec_streams_live") == 0, "stream ended")
    end = scrape(port)
    files = sorted(run.root.rglob("*.mp4"))
    assert len(files) >= 2, files
    assert end.value("pyrec_files_finished_total") == len(files)
    sizes = sum(f.stat().st_size for f in files)
    written = end.value("pyrec_written_bytes_total")
    received = end.value("pyrec_received_bytes_total")
    # written: the finished files' bytes; the hybrid finish adds a moov, so a little more
    assert 0.9 * sizes <= written <= 1.01 * sizes, (written, sizes)
    # received: the whole clip (the push goes on after :stopRecord) in RTMP chunks instead
    # of FLV tags, so about the clip's size; the files hold part of it
    flv = clip4.path.stat().st_size
    assert 0.8 * flv <= received <= 1.2 * flv, (received, flv)
    assert sizes < received
    assert received >= live.value("pyrec_received_bytes_total")
    assert written >= live.value("pyrec_written_bytes_total")
    # :stopRecord removes the task (OME's records no longer lists it): no task in any state
    for state in ("ready", "recording", "stopping", "stopped", "error"):
        assert end.value("pyrec_tasks", state=state) == 0, state
    assert end.value("pyrec_packets_total", kind="video") >= live.value(
        "pyrec_packets_total", kind="video")
    for kind in ("wrap", "equal", "backward", "jump_forward", "jump_backward", "pts_fixed"):
        assert end.value("pyrec_timestamp_repairs_total", kind=kind) >= 0
    assert end.value("pyrec_errors_total", name="task") == 0
    assert end.value("pyrec_errors_total", name="api") == 0
    assert end.value("pyrec_disk_free_bytes") == pytest.approx(
        shutil.disk_usage(run.root).free, rel=0.05)

    # the loop-lag histogram: cumulative buckets ending at +Inf, its count that of +Inf
    lag = end.families["pyrec_ingest_loop_lag_seconds"]
    assert lag.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in lag.samples
               if s.name == "pyrec_ingest_loop_lag_seconds_bucket"]
    assert len(buckets) == 20 and buckets[-1][0] == "+Inf", buckets
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] > 0, counts
    assert end.value("pyrec_ingest_loop_lag_seconds_count") == counts[-1]
    assert end.value("pyrec_ingest_loop_lag_seconds_sum") >= 0
    bounds = [float(le) for le, _ in buckets[:-1]]
    assert bounds == sorted(bounds) and bounds[0] > 0


def test_api_requests_counted_by_route_and_code(service, tmp_path):
    run = service(_config(tmp_path))
    port = run.svc.api_port
    before = scrape(port)
    n = 3
    for _ in range(n):
        run.api.records()
    status, _doc = run.api.request("POST", "records")  # 200 again, via request()
    assert status == 200
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/v1/vhosts/nope/apps/app:records", headers={"Authorization": AUTH})
    assert conn.getresponse().status == 404
    conn.close()
    assert get(port, "/v1/vhosts/default/apps/app:records")[0] == 401  # no credentials
    assert get(port, "/nowhere", auth=True)[0] == 404
    after = scrape(port)

    def delta(route: str, code: str) -> float:
        key = ("pyrec_api_requests_total", frozenset({"route": route, "code": code}.items()))
        return after.samples.get(key, 0) - before.samples.get(key, 0)

    assert delta(ACTION_ROUTE, "200") == n + 1
    assert delta(ACTION_ROUTE, "404") == 1
    assert delta(ACTION_ROUTE, "401") == 1
    assert delta("unmatched", "404") == 1
    assert delta("/metrics", "200") == 1  # the first scrape, counted once answered


def test_metrics_auth(service, tmp_path):
    run = service(_config(tmp_path))
    status, _ct, body = get(run.svc.api_port, "/metrics")
    assert status == 401, body
    assert get(run.svc.api_port, "/metrics", auth=True)[0] == 200

    open_run = service(_config(tmp_path / "open", "[server]\nmetrics_auth = false\n"))
    assert open_run.svc.config.metrics_auth is False
    m = scrape(open_run.svc.api_port, auth=False)
    assert m.value("pyrec_streams_live") == 0
    # only /metrics is opened: the Record API still wants credentials
    assert get(open_run.svc.api_port, "/v1/vhosts/default/apps/app:records")[0] == 401


def test_healthz_and_readyz(service, tmp_path):
    run = service(_config(tmp_path))
    port = run.svc.api_port
    assert get(port, "/healthz") == (200, "text/plain; charset=utf-8", b"ok\n")
    status, _ct, body = get(port, "/readyz")
    assert (status, body) == (200, b"ready\n")
    assert not [p for p in run.root.iterdir() if p.name.startswith(".pyrec-ready")]

    # The record root replaced by a file (running as root, permissions would not stop a
    # write): not ready, and the reason names the record root.
    moved = run.root.with_name("rec-moved")
    os.rename(run.root, moved)
    run.root.write_text("not a directory\n")
    status, _ct, body = get(port, "/readyz")
    assert status == 503, body
    text = body.decode()
    assert text.startswith("not ready: ") and f"record root {run.root}" in text, text
    assert "not writable" in text and "RTMP" not in text, text
    assert get(port, "/healthz")[0] == 200  # alive all the same

    run.root.unlink()
    os.rename(moved, run.root)
    assert get(port, "/readyz")[0] == 200

    run.svc.ingest.stop()  # the RTMP listener is gone: not ready, for that reason
    status, _ct, body = get(port, "/readyz")
    assert status == 503 and b"RTMP listener is not running" in body, body


def test_fed_metrics_default_to_zero_and_take_a_feed(tmp_path):
    m = Metrics(tmp_path)
    s = Scrape(m.render().decode())
    for name, (_help, label, usual, _kind) in FEEDS.items():
        if label is None:
            assert s.value(name) == 0
        for v in usual:
            assert s.value(name, **{label: v}) == 0
    m.feed("pyrec_webhook_deliveries_total", lambda: {"delivered": 5, "failed": 2})
    m.feed("pyrec_webhook_outbox_events", lambda: 7)
    s = Scrape(m.render().decode())
    assert s.value("pyrec_webhook_deliveries_total", result="delivered") == 5
    assert s.value("pyrec_webhook_deliveries_total", result="failed") == 2
    assert s.value("pyrec_webhook_outbox_events") == 7
    # the webhook outbox's counters (pyrec.webhooks.WebhookOutbox's attributes; a stand-in
    # here: this test is about the wiring, the outbox is tested in test_webhooks.py)
    class Outbox:
        delivered, failed_attempts, given_up = 9, 4, 1

        def depth(self) -> int:
            return 3
    m.feed_webhooks(Outbox())
    s = Scrape(m.render().decode())
    assert [s.value("pyrec_webhook_deliveries_total", result=r)
            for r in ("delivered", "failed", "given_up")] == [9, 4, 1]
    assert s.value("pyrec_webhook_outbox_events") == 3
    with pytest.raises(KeyError, match="not a fed metric"):
        m.feed("pyrec_nonsense", lambda: 0)
    # a second service's registry is its own
    other = Scrape(Metrics(tmp_path).render().decode())
    assert other.value("pyrec_webhook_outbox_events") == 0


def test_timestamp_repairs_counted_and_kept_after_the_recording(service, clips, tmp_path):
    """A raw RTMP publisher whose clock passes 2^32 ms 1 s in (see test_ts_counters.py):
    pyrec_timestamp_repairs_total{kind="wrap"} shows one wrap per track while recording, and
    keeps them once the recording has ended (the collector folds an ended recording's last
    values into its base); the other kinds stay 0; every packet of the clip is counted once."""
    clip = clips.flv("wraplive", seconds=3.0, size="160x120")
    tags = flv_messages(clip.path)
    run = service(_config(tmp_path))
    port = run.svc.api_port
    run.api.start("w", "w")
    with RawRtmp(run.svc.rtmp_port) as c:
        c.handshake()
        c.publish("w")
        c.set_chunk_size(4096)
        shift = (1 << 32) - 1000
        for typ, ts, body in tags:
            c.send_tag(typ, (ts + shift) % (1 << 32) if typ != 18 else ts, body)
        want = {"video": len(clip.video.packets), "audio": len(clip.audio.packets)}

        # every video packet reached the file (the stats are live); audio after the last
        # video packet waits in the interleaving queue until the stream ends
        wait_for(lambda: scrape(port).value("pyrec_packets_total", kind="video")
                 == want["video"], "every video packet counted")
        live = scrape(port)
        assert live.value("pyrec_timestamp_repairs_total", kind="wrap") == 2
        c.unpublish("w")
        c.end()
    run.api.stop("w")
    wait_for(lambda: scrape(port).value("pyrec_streams_live") == 0, "stream ended")
    end = scrape(port)
    assert end.value("pyrec_timestamp_repairs_total", kind="wrap") == 2
    for kind in ("equal", "backward", "jump_forward", "jump_backward"):
        assert end.value("pyrec_timestamp_repairs_total", kind=kind) == 0, kind
    # kept after the recording ended: what the last scrape of the live recording saw (the
    # audio flushed at the end is not seen: the documented limit of scraping C stats)
    assert end.value("pyrec_packets_total", kind="video") == want["video"]
    audio = live.value("pyrec_packets_total", kind="audio")
    assert 0.9 * want["audio"] <= audio <= want["audio"]
    assert end.value("pyrec_packets_total", kind="audio") == audio
    assert end.value("pyrec_files_finished_total") == 1


def test_ingest_errors_counted(service, tmp_path):
    """An RTMP connection closed for bad input (a handshake of an unknown version) is
    pyrec_errors_total{name="ingest"}."""
    run = service(_config(tmp_path))
    port = run.svc.api_port
    assert scrape(port).value("pyrec_errors_total", name="ingest") == 0
    with socket.create_connection(("127.0.0.1", run.svc.rtmp_port), timeout=5) as s:
        s.sendall(b"\x09" + bytes(1536))  # C0 says version 9: not RTMP
        s.settimeout(5)
        try:
            while s.recv(4096):  # the server closes it
                pass
        except ConnectionResetError:
            pass
    wait_for(lambda: scrape(port).value("pyrec_errors_total", name="ingest") == 1,
             "the bad connection counted")
