"""Webhooks (lifecycle spec section 2) against a real HTTP receiver on loopback (http.server in
a thread, told to answer 200, 500, a redirect, or to hang): events come from real ffmpeg
pushes and Record API calls. Signed requests verify with the secret; a receiver down (500 or
nothing listening) then up gets every event once per id, in order per stream; a hanging
receiver holds up neither another webhook nor recording; a redirect is a failure and
`max_attempts` gives up (kept in the database); `kill -9` of a `pyrec serve` process with
undelivered events, then a restart: they are delivered."""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import media
from pyrec.config import ConfigError, load_config
from pyrec.events import Event
from pyrec.webhooks import backoff_seconds
from test_faults_crash import api, free_ports
from test_service_e2e import (TOKEN, check_series, clip2, mp4_files, publish,  # noqa: F401
                              read_rec, service)

pytestmark = pytest.mark.timeout(120)

# Retries in tests: 50 ms doubling, at most 400 ms (the real schedule is 1 s .. 5 min).
BACKOFF = "50:400"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setenv("PYREC_WEBHOOK_BACKOFF_MS", BACKOFF)


# ---- the receiver ----------------------------------------------------------------------------

@dataclass
class Req:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what we answered; 0 = no answer (hung)

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """`mode`: "ok" (200), "fail" (500), "redirect" (302 to /elsewhere), "hang" (no answer
    until release or close), "trickle" (a 200 whose status line comes a byte every 50 ms, for
    seconds). Every request is kept in `reqs`."""

    def __init__(self, port: int = 0, mode: str = "ok",
                 tls: tuple[Path, Path] | None = None) -> None:
        self.mode = mode
        self.on_post: Any = None  # on_post(event) in the handler, before answering
        self.fail_streams: set[str] = set()  # events of these streams get a 500
        self.delay = 0.0  # seconds before answering
        self.reqs: list[Req] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mode = rcv.mode
                status = {"ok": 200, "fail": 500, "redirect": 302, "hang": 0, "trickle": 200}[mode]
                if json.loads(body or b"{}").get("stream") in rcv.fail_streams:
                    status = 500
                if self.path == "/elsewhere":
                    status = 200
                with rcv.lock:
                    rcv.reqs.append(Req(self.path, dict(self.headers.items()), body, status))
                if rcv.on_post is not None:
                    rcv.on_post(json.loads(body))
                if rcv.delay:
                    time.sleep(rcv.delay)
                if status == 0:
                    rcv.release.wait(60)
                    self.close_connection = True
                    return
                if mode == "trickle":
                    try:
                        for b in b"HTTP/1.0 200 " + b" " * 100 + b"OK\r\n\r\n":
                            if rcv.release.wait(0.05):
                                break
                            self.wfile.write(bytes([b]))
                            self.wfile.flush()
                    except OSError:  # the client gave up: what we want to see
                        pass
                    self.close_connection = True
                    return
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # (cert, key): https
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/pyrec"

    def answered(self, status: int = 200) -> list[Req]:
        with self.lock:
            return [r for r in self.reqs if r.status == status]

    def delivered_ids(self) -> list[str]:
        return [r.headers["X-Pyrec-Delivery"] for r in self.answered(200)]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(port: int = 0, mode: str = "ok", tls: tuple[Path, Path] | None = None) -> Receiver:
        r = Receiver(port, mode, tls)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


# ---- helpers ----------------------------------------------------------------------------------

def toml_hooks(hooks: list[dict[str, Any]]) -> str:
    out = []
    for h in hooks:
        out.append("[[webhooks]]")
        out += [f"{k} = {json.dumps(v)}" for k, v in h.items()]
    return "\n".join(out) + "\n"


def _config(tmp_path: Path, hooks: list[dict[str, Any]]):
    f = tmp_path / "pyrec.toml"
    f.write_text(toml_hooks(hooks))
    return load_config(f, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN,
                       record_root=str(tmp_path / "rec"))


class Truth:
    """Every event of the bus, as its JSON, in publish order (the ground truth)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, ev: Event) -> None:
        self.events.append(ev.to_dict())

    def ids(self, types: set[str] | None = None) -> list[str]:
        return [e["id"] for e in self.events if types is None or e["type"] in types]

    def per_stream(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for e in self.events:
            out.setdefault(e.get("stream", ""), []).append(e["id"])
        return out


def wait_for(pred, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"not {what} after {timeout}s"
        time.sleep(0.02)


def check_order(delivered: list[Req], truth: Truth) -> None:
    """Each id delivered once (2xx), all of them, and in the bus's order within each stream."""
    ids = [r.headers["X-Pyrec-Delivery"] for r in delivered]
    assert len(ids) == len(set(ids)), "an event delivered twice"
    assert set(ids) == set(truth.ids())
    pos = {i: n for n, i in enumerate(ids)}
    for stream, want in truth.per_stream().items():
        assert sorted(want, key=pos.__getitem__) == want, f"stream {stream}: out of order"


def push_and_stop(run, publish, clip, stream: str, rid: str, others: int = 0) -> None:
    """A task on `stream` recording a real push, `others` tasks on other streams started and
    stopped (task.state events only); every task stopped at the end."""
    run.api.start(rid, stream)
    for i in range(others):
        run.api.start(f"{rid}-o{i}", f"{stream}-o{i}")
    p = publish(clip, run.url(stream), realtime=False)
    media.rtmp_wait(p)
    run.api.wait(rid, lambda t: t.get("files", 0) >= 1 and t["state"] == "ready", "done")
    run.api.stop(rid)
    for i in range(others):
        run.api.stop(f"{rid}-o{i}")
    assert run.svc.bus.flush()


# ---- delivery ---------------------------------------------------------------------------------

def test_signed_requests_verify_and_carry_the_event(service, publish, clip2, receiver,
                                                    tmp_path):
    signed, filtered = receiver(), receiver()
    xml_listed: dict[str, bool] = {}

    def check_xml(ev: dict[str, Any]) -> None:
        # the contract: file.finished comes once the info XML lists the file
        if ev["type"] == "file.finished":
            info = ET.parse(tmp_path / "rec/default/app/cam/t1.xml").getroot()
            listed = [e.findtext("filePath") for e in info.iter("file")]
            xml_listed[ev["id"]] = ev["data"]["recording"]["path"] in listed

    filtered.on_post = check_xml
    run = service(_config(tmp_path, [
        {"url": signed.url, "secret": "hook-secret"},
        {"url": filtered.url + "?x=1", "events": ["file.finished"], "timeout_ms": 2000}]))
    truth = Truth()
    run.svc.bus.subscribe(truth)
    push_and_stop(run, publish, clip2, "cam", "t1")
    out = run.svc.webhooks
    wait_for(lambda: out.depth() == 0, "every event delivered")

    reqs = signed.answered()
    assert [r.event for r in reqs] == truth.events  # every event, in order, as the bus had it
    for r in reqs:
        assert r.path == "/pyrec"
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["X-Pyrec-Event"] == r.event["type"]
        assert r.headers["X-Pyrec-Delivery"] == r.event["id"]
        t, v1 = (kv.split("=", 1)[1] for kv in r.headers["X-Pyrec-Signature"].split(","))
        want = hmac.new(b"hook-secret", t.encode() + b"." + r.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(v1, want)
        assert abs(int(t) - time.time()) < 120
        bad = hmac.new(b"other", t.encode() + b"." + r.body, hashlib.sha256).hexdigest()
        assert v1 != bad
    types = [r.event["type"] for r in reqs]
    assert {"stream.published", "file.opened", "file.finished", "stream.ended",
            "task.state"} <= set(types)
    # the filtered one: only file.finished, unsigned, its query string kept
    freqs = filtered.answered()
    assert [r.event for r in freqs] == [e for e in truth.events if e["type"] == "file.finished"]
    assert all(r.path == "/pyrec?x=1" and "X-Pyrec-Signature" not in r.headers for r in freqs)
    assert xml_listed == {r.event["id"]: True for r in freqs}
    assert out.delivered == len(reqs) + len(freqs) and out.failed_attempts == 0
    [f] = mp4_files(run.root, "default/app/cam")
    assert freqs[0].event["data"]["recording"]["bytes"] == f.stat().st_size
    check_series([read_rec(f, clip2)], clip2)
    # delivered rows are pruned
    run.stop()
    con = sqlite3.connect(run.root / ".pyrec" / "webhooks.sqlite3")
    assert con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    con.close()


def test_receiver_down_then_up_gets_each_event_once_in_order(service, publish, clip2, receiver,
                                                             tmp_path):
    failing = receiver(mode="fail")
    [port] = free_ports(1)  # nothing listens there yet: connection refused
    run = service(_config(tmp_path, [{"url": failing.url},
                                     {"url": f"http://127.0.0.1:{port}/later"}]))
    truth = Truth()
    run.svc.bus.subscribe(truth)
    push_and_stop(run, publish, clip2, "cam", "t1", others=2)
    out = run.svc.webhooks
    stats = out.stats
    wait_for(lambda: all(s["failed_attempts"] >= 4 for s in stats().values()),
             "both webhooks failing for a while")
    assert out.delivered == 0 and out.depth() == 2 * len(truth.events)
    failing.mode = "ok"
    late = receiver(port=port)
    wait_for(lambda: out.depth() == 0, "every event delivered after the receivers came back")
    check_order(failing.answered(200), truth)
    check_order(late.answered(200), truth)
    assert failing.answered(500), "the receiver was never tried while it failed"
    assert out.delivered == 2 * len(truth.events)
    assert len(truth.per_stream()) == 3


def test_a_graceful_stop_sends_the_last_events_first(service, receiver, tmp_path):
    """Events still queued when the server stops (a receiver slow to answer) go out before
    it exits; nothing is left in the outbox."""
    slow = receiver()
    slow.delay = 0.15
    run = service(_config(tmp_path, [{"url": slow.url}]))
    truth = Truth()
    run.svc.bus.subscribe(truth)
    for rid in ("a", "b"):
        run.api.start(rid, "cam")
        run.api.stop(rid)
    run.stop()
    assert len(truth.events) == 4
    check_order(slow.answered(200), truth)
    con = sqlite3.connect(run.root / ".pyrec" / "webhooks.sqlite3")
    assert con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    con.close()


def test_a_failing_stream_holds_up_only_its_own_events(service, receiver, tmp_path):
    """The receiver refuses camA's events: camB's and camC's go on meanwhile (each stream's
    queue is its own); camA's come once accepted, in order."""
    rcv = receiver()
    rcv.fail_streams = {"camA"}
    run = service(_config(tmp_path, [{"url": rcv.url}]))
    truth = Truth()
    run.svc.bus.subscribe(truth)
    run.api.start("a", "camA")  # camA's first event is refused from here on
    for rid in ("b", "c"):
        run.api.start(rid, f"cam{rid.upper()}")
        run.api.stop(rid)
    run.api.stop("a")
    assert run.svc.bus.flush()
    out = run.svc.webhooks
    others = {e["id"] for e in truth.events if e["stream"] != "camA"}
    wait_for(lambda: others <= set(rcv.delivered_ids()), "camB and camC delivered")
    # camA's first attempt may still be in flight when the others are through: wait for it
    wait_for(lambda: out.failed_attempts >= 1, "camA refused at least once")
    assert out.depth() == 2  # camA's two still queued
    assert not [r for r in rcv.answered(200) if r.event["stream"] == "camA"]
    rcv.fail_streams = set()
    wait_for(lambda: out.depth() == 0, "camA delivered once accepted")
    check_order(rcv.answered(200), truth)


def test_a_hanging_receiver_holds_up_neither_other_webhooks_nor_recording(
        service, publish, clip2, receiver, tmp_path):
    hanging, fine = receiver(mode="hang"), receiver()
    run = service(_config(tmp_path, [{"url": hanging.url, "timeout_ms": 300},
                                     {"url": fine.url, "timeout_ms": 300}]))
    truth = Truth()
    run.svc.bus.subscribe(truth)
    push_and_stop(run, publish, clip2, "cam", "t1", others=5)  # the API answered throughout
    out = run.svc.webhooks
    hurl, furl = hanging.url, fine.url
    wait_for(lambda: out.stats()[furl]["depth"] == 0, "the other webhook served")
    check_order(fine.answered(200), truth)
    [f] = mp4_files(run.root, "default/app/cam")
    check_series([read_rec(f, clip2)], clip2)
    assert out.stats()[hurl]["delivered"] == 0 and out.stats()[hurl]["depth"] > 0
    wait_for(lambda: out.stats()[hurl]["failed_attempts"] >= 4, "timeouts counted")
    hanging.mode = "ok"
    hanging.release.set()
    wait_for(lambda: out.depth() == 0, "the hanging receiver served once it answers")
    check_order(hanging.answered(200), truth)
    # the hung attempts reached the receiver too: at least once, never lost
    assert len(hanging.reqs) > len(truth.events)


def test_a_redirect_is_a_failure_and_max_attempts_gives_up(service, receiver, tmp_path,
                                                           caplog):
    redirecting = receiver(mode="redirect")
    run = service(_config(tmp_path, [{"url": redirecting.url, "max_attempts": 2}]))
    truth = Truth()
    run.svc.bus.subscribe(truth)
    run.api.start("t1", "cam")
    run.api.stop("t1")
    assert run.svc.bus.flush()
    out = run.svc.webhooks
    n = len(truth.events)
    assert n == 2  # task.state ready, stopped
    wait_for(lambda: out.given_up == n, "given up")
    ids = [r.headers["X-Pyrec-Delivery"] for r in redirecting.reqs]
    assert ids == [i for i in truth.ids() for _ in range(2)]  # in order, 2 attempts each
    assert all(r.path == "/pyrec" for r in redirecting.reqs), "a redirect was followed"
    assert (out.delivered, out.failed_attempts, out.depth()) == (0, 2 * n, 0)
    run.stop()
    con = sqlite3.connect(run.root / ".pyrec" / "webhooks.sqlite3")
    kept = con.execute("SELECT event_id, attempts, last_error FROM given_up ORDER BY seq"
                       ).fetchall()
    assert con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    con.close()
    assert [k[0] for k in kept] == truth.ids()
    assert all(a == 2 and e.startswith("HTTP 302") for _, a, e in kept), kept
    assert sum("gave up" in r.getMessage() for r in caplog.records
               if r.name == "pyrec.webhooks") == n


def test_timeout_ms_bounds_the_whole_attempt(service, receiver, tmp_path):
    """A receiver answering a byte every 50 ms (never silent for the 300 ms of timeout_ms,
    done only after ~6 s) is cut off at the deadline: failed attempts, nothing delivered,
    until it answers at once."""
    slow = receiver(mode="trickle")
    run = service(_config(tmp_path, [{"url": slow.url, "timeout_ms": 300}]))
    run.api.start("t1", "cam")
    out = run.svc.webhooks
    wait_for(lambda: out.failed_attempts >= 2, "attempts cut off")
    assert out.delivered == 0
    slow.mode = "ok"
    wait_for(lambda: out.depth() == 0, "delivered once the receiver answers")
    assert out.delivered == 1


def test_https_verifies_the_receivers_certificate(service, receiver, tmp_path, monkeypatch):
    """https: the receiver's certificate is verified against the system's CAs (or those of
    SSL_CERT_FILE): a self-signed one is a failed attempt until it is trusted."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    tls = receiver(tls=(cert, key))
    assert tls.url.startswith("https://")
    run = service(_config(tmp_path, [{"url": tls.url, "secret": "s", "timeout_ms": 2000}]))
    run.api.start("t1", "cam")
    out = run.svc.webhooks
    wait_for(lambda: out.failed_attempts >= 2, "untrusted certificate refused")
    assert out.delivered == 0 and not tls.reqs
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by OpenSSL per new context
    wait_for(lambda: out.depth() == 0, "delivered once the certificate is trusted")
    [r] = tls.answered(200)
    assert r.event["type"] == "task.state" and r.headers["X-Pyrec-Signature"].startswith("t=")


# ---- kill -9 ---------------------------------------------------------------------------------

def _serve(tmp_path: Path, hook_url: str, api_port: int, rtmp_port: int) -> subprocess.Popen:
    cfg = tmp_path / "pyrec.toml"
    cfg.write_text(toml_hooks([{"url": hook_url}]))
    env = {**os.environ, "PYREC_WEBHOOK_BACKOFF_MS": BACKOFF}
    log = open(tmp_path / "server.log", "ab")
    with log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyrec", "serve", "--config", str(cfg), "--host",
             "127.0.0.1", "--api-port", str(api_port), "--rtmp-port", str(rtmp_port),
             "--access-token", TOKEN, "--record-root", str(tmp_path / "rec")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: _up(api_port), "the server answering", timeout=20)
    except AssertionError:
        proc.kill()
        proc.wait()
        raise AssertionError((tmp_path / "server.log").read_text()) from None
    return proc


def _up(port: int) -> bool:
    try:
        return api(port, "records", {})[0] == 200
    except OSError:
        return False


def _outbox_rows(db: Path) -> list[tuple[str, str, str, bytes]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT stream, event_id, type, body FROM outbox ORDER BY seq"
                           ).fetchall()
    except sqlite3.OperationalError:  # not made yet
        return []
    finally:
        con.close()


def test_kill_9_with_undelivered_events_then_restart_delivers_them(clips, receiver, tmp_path):
    """Three tasks done (one recorded a push) and a fourth recording a live push when the
    server is killed: after the restart every queued event is delivered, once, in order per
    stream, with the same bytes, and the file left open comes as file.recovered."""
    clip = clips.flv("wh2", seconds=2, gop=30)
    live_clip = clips.flv("wh6", seconds=6, gop=30)
    down = receiver(mode="fail")
    api_port, rtmp_port = free_ports(2)
    db = tmp_path / "rec" / ".pyrec" / "webhooks.sqlite3"
    server = _serve(tmp_path, down.url, api_port, rtmp_port)
    live = None
    try:
        for i in range(3):
            assert api(api_port, "startRecord", {"id": f"t{i}", "stream": {"name": f"s{i}"}}
                       )[0] == 200
        p = media.rtmp_publish(clip.path, f"rtmp://127.0.0.1:{rtmp_port}/app/s0",
                               realtime=False)
        media.rtmp_wait(p)
        for i in range(3):
            assert api(api_port, "stopRecord", {"id": f"t{i}"})[0] == 200

        def stopped_everywhere() -> bool:
            rows = _outbox_rows(db)
            stopped = {s for s, _, typ, body in rows
                       if typ == "task.state" and json.loads(body)["data"]["state"] == "stopped"}
            ended = any(typ == "stream.ended" for *_, typ, _b in rows)
            return ended and stopped == {f"default/app/s{i}" for i in range(3)}

        wait_for(stopped_everywhere, "every event in the outbox")
        wait_for(lambda: len(down.reqs) >= 3, "attempts failing")
        # a fourth stream recording when the kill comes, with a fragment on disk
        assert api(api_port, "startRecord", {"id": "t3", "stream": {"name": "s3"}})[0] == 200
        live = media.rtmp_publish(live_clip.path, f"rtmp://127.0.0.1:{rtmp_port}/app/s3")
        wait_for(lambda: list((tmp_path / "rec/default/app/s3").glob("*.mp4")), "s3's file")
        [open_file] = (tmp_path / "rec/default/app/s3").glob("*.mp4")
        size0 = open_file.stat().st_size
        wait_for(lambda: open_file.stat().st_size > size0, "a fragment of s3 written")
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        assert server.returncode == -signal.SIGKILL
        rows = _outbox_rows(db)
        want: dict[str, list[str]] = {}
        for stream, eid, _t, _b in rows:
            want.setdefault(stream, []).append(eid)
        assert not down.answered(200)
        assert {"file.opened", "file.finished", "stream.published"} <= {r[2] for r in rows}

        down.mode = "ok"
        server = _serve(tmp_path, down.url, api_port, rtmp_port)
        all_ids = {i for ids in want.values() for i in ids}
        wait_for(lambda: all_ids <= set(down.delivered_ids()), "delivered after the restart")
        got = down.delivered_ids()
        assert len([i for i in got if i in all_ids]) == len(all_ids)  # once each
        for stream, ids in want.items():
            assert [i for i in got if i in set(ids)] == ids, f"{stream}: out of order"
        bodies = {r.headers["X-Pyrec-Delivery"]: r.body for r in down.answered(200)}
        assert all(bodies[eid] == body for _s, eid, _t, body in rows)  # the same bytes
        wait_for(lambda: not {r[1] for r in _outbox_rows(db)} & all_ids, "rows pruned")
        # the file s3 had open was finalised at start-up and told as file.recovered
        wait_for(lambda: any(r.event["type"] == "file.recovered" for r in down.answered(200)),
                 "file.recovered delivered")
        [rec] = [r.event for r in down.answered(200) if r.event["type"] == "file.recovered"]
        assert (rec["stream"], rec["data"]["recording"]["recovered"]) == ("s3", True)
        assert rec["data"]["recording"]["path"] == open_file.relative_to(tmp_path / "rec"
                                                                          ).as_posix()
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        if live is not None and live.poll() is None:
            live.kill()
        if live is not None:
            live.communicate()
        if server.poll() is None:
            server.kill()
            server.wait()


# ---- configuration and schedule ---------------------------------------------------------------

@pytest.mark.parametrize("hook, message", [
    ({"url": "ftp://127.0.0.1/x"}, r"webhooks\[0\]\.url: expected an http:// or https://"),
    ({"url": "127.0.0.1:9000/pyrec"}, r"webhooks\[0\]\.url"),
    ({}, r"webhooks\[0\]\.url"),
    ({"url": "http://h:99999/"}, r"webhooks\[0\]\.url: bad port"),
    ({"url": "http://u:p@h/"}, r"webhooks\[0\]\.url: credentials in the URL"),
    ({"url": "http://h/", "events": ["file.finishd"]},
     r"webhooks\[0\]\.events: unknown event type 'file.finishd'; did you mean 'file.finished'"),
    ({"url": "http://h/", "timeout_ms": -1}, r"webhooks\[0\]\.timeout_ms: must be > 0"),
    ({"url": "http://h/", "timeout_ms": 0}, r"webhooks\[0\]\.timeout_ms: must be > 0"),
    ({"url": "http://h/", "max_attempts": -3}, r"webhooks\[0\]\.max_attempts: must be >= 0"),
    ({"url": "http://h/", "timeout_ms": "5s"}, r"webhooks\[0\]\.timeout_ms: expected int"),
    ({"url": "http://h/", "secrte": "x"}, r"unknown key 'webhooks\[0\]\.secrte'; did you mean "
                                          r"'secret'"),
])
def test_config_errors_name_the_key(tmp_path, hook, message):
    f = tmp_path / "pyrec.toml"
    f.write_text(toml_hooks([hook]) if hook else "[[webhooks]]\n")
    with pytest.raises(ConfigError, match=message):
        load_config(f, access_token=TOKEN)


def test_config_defaults_and_duplicate_urls(tmp_path):
    f = tmp_path / "pyrec.toml"
    f.write_text(toml_hooks([{"url": "https://example.test/h"}]))
    [w] = load_config(f, access_token=TOKEN).webhooks
    assert (w.url, w.events, w.secret, w.timeout_ms, w.max_attempts) == (
        "https://example.test/h", None, "", 5000, 0)
    f.write_text(toml_hooks([{"url": "http://h/"}, {"url": "http://h/"}]))
    with pytest.raises(ConfigError, match="same url twice"):
        load_config(f, access_token=TOKEN)


@pytest.mark.parametrize("failed, low, high", [
    (1, 0.8, 1.2), (2, 1.6, 2.4), (3, 3.2, 4.8), (8, 102.4, 153.6), (9, 204.8, 300.0),
    (10, 240.0, 300.0), (200, 240.0, 300.0)])
def test_backoff_doubles_from_1s_with_jitter_capped_at_5_min(monkeypatch, failed, low, high):
    monkeypatch.delenv("PYREC_WEBHOOK_BACKOFF_MS")
    rng = random.Random(failed)
    got = [backoff_seconds(failed, rng) for _ in range(200)]
    assert low <= min(got) and max(got) <= high
    assert max(got) - min(got) > (high - low) / 4  # jittered, not constant


# ---- README's receiver ------------------------------------------------------------------------

def readme_receiver() -> str:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    start = text.index("```python\n# receiver.py\n") + len("```python\n")
    return text[start:text.index("```", start)]


def test_readme_receiver_verifies_and_handles_each_event_once(service, tmp_path):
    ns: dict[str, Any] = {"__name__": "readme_receiver"}
    exec(compile(readme_receiver(), "README.md receiver.py", "exec"), ns)
    handled: list[dict[str, Any]] = []
    ns["handle"] = handled.append
    srv = ThreadingHTTPServer(("127.0.0.1", 0), ns["Hook"])
    srv.daemon_threads = True
    ns["Hook"].log_message = lambda *a: None
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/pyrec"
        run = service(_config(tmp_path, [{"url": url, "secret": "hook-secret"}]))
        truth = Truth()
        run.svc.bus.subscribe(truth)
        run.api.start("t1", "cam")
        run.api.stop("t1")
        assert run.svc.bus.flush()
        wait_for(lambda: run.svc.webhooks.depth() == 0, "delivered to the README's receiver")
        assert handled == truth.events and run.svc.webhooks.failed_attempts == 0
        # a wrong signature, and a replay of a delivery: refused / not handled twice
        body = json.dumps(truth.events[0]).encode()
        for sig, status in [("t=1,v1=00", 401), ("", 401),
                            (sign_now("hook-secret", body), 204)]:
            c = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
            c.request("POST", "/pyrec", body=body, headers={"X-Pyrec-Signature": sig})
            r = c.getresponse()
            r.read()
            c.close()
            assert r.status == status, sig
        assert handled == truth.events
    finally:
        srv.shutdown()
        srv.server_close()


def sign_now(secret: str, body: bytes) -> str:
    t = int(time.time())
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + body, 'sha256').hexdigest()}"
