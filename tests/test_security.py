"""Security properties of `pyrec serve`: every endpoint needs auth (CORS preflight aside), no
path leaves the root (`..`, absolute paths, symlinks), task limits answer with clear errors,
and the AccessToken never appears in logs — in-process (every logger at DEBUG) and in the
output of a real `pyrec serve` process, which prints a generated token once on stdout only."""
from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pyrec.config import load_config
from pyrec.serve import Service

TOKEN = "alice:s3cr3t-Tok3n"
ACTIONS = ("startRecord", "stopRecord", "records")


def request(port: int, method: str, path: str, body: dict | None = None,
            token: str | None = TOKEN) -> tuple[int, dict | None, dict[str, str]]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {}
    if token is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    raw = r.read()
    c.close()
    data = json.loads(raw) if raw else None
    return r.status, data, {k.lower(): v for k, v in r.getheaders()}


@pytest.fixture
def svc(tmp_path):
    cfg = load_config(None, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN,
                      record_root=str(tmp_path / "records"))
    cfg.max_tasks = 5
    s = Service(cfg).start()
    yield s
    s.stop()


@pytest.mark.parametrize("method, path", [
    *[("POST", f"/v1/vhosts/default/apps/app:{a}") for a in ACTIONS],
    ("GET", "/v1/vhosts/default/apps/app:records"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/vhosts/nope/apps/app:records"),
    ("GET", "/not/a/path"),
])
def test_every_endpoint_needs_auth(svc, method, path):
    for token in (None, "alice:wrong", TOKEN + "x", TOKEN[:-1]):
        status, data, headers = request(svc.api_port, method, path, {}, token=token)
        assert status == 401, (path, token, data)
        assert headers["www-authenticate"] == 'Basic realm="OvenMediaEngine"'
    status, _, _ = request(svc.api_port, "OPTIONS", path, None, token=None)
    assert status == 204


def test_paths_never_leave_the_root(svc, tmp_path):
    root = svc.config.record_root
    root.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    base = "/v1/vhosts/default/apps/app:startRecord"
    for i, fp in enumerate(["../x.mp4", "a/../../x.mp4", "${Stream}/../../../x.mp4",
                            "link/x.mp4", "/../../etc/x.mp4"]):
        status, data, _ = request(svc.api_port, "POST", base,
                                  {"id": f"e{i}", "stream": {"name": "s"}, "filePath": fp})
        assert status == 400, (fp, data)
        assert "leaves the application's root directory" in data["message"]
    status, data, _ = request(svc.api_port, "POST", base,
                              {"id": "i", "stream": {"name": "s"}, "infoPath": "../../i.xml"})
    assert status == 400 and "[infoPath]" in data["message"]
    # An absolute path is taken under the root, as OME does.
    status, data, _ = request(svc.api_port, "POST", base,
                              {"id": "abs", "stream": {"name": "s"}, "filePath": "/abs/x.mp4"})
    assert status == 200, data


def test_task_limit_is_a_clear_error(svc):
    base = "/v1/vhosts/default/apps/app:startRecord"
    for i in range(5):
        assert request(svc.api_port, "POST", base, {"id": f"t{i}", "stream": {"name": "s"}})[0] == 200
    status, data, _ = request(svc.api_port, "POST", base, {"id": "t5", "stream": {"name": "s"}})
    assert status == 400 and "Too many recording tasks (limit 5)" in data["message"]


def test_token_never_logged_in_process(svc, caplog):
    caplog.set_level(logging.DEBUG)
    b64 = base64.b64encode(TOKEN.encode()).decode()
    for token in (TOKEN, "alice:wrong", "garbage-no-colon"):
        for a in ACTIONS:
            request(svc.api_port, "POST", f"/v1/vhosts/default/apps/app:{a}",
                    {"id": "x", "stream": {"name": "s"}}, token=token)
    request(svc.api_port, "POST", "/v1/vhosts/default/apps/app:startRecord", None)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (TOKEN, "s3cr3t", b64):
        assert secret not in text


def free_ports(n: int) -> list[int]:
    """n distinct free ports (held together while chosen, so never the same twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_generated_token_printed_once_never_logged(tmp_path):
    api_port, rtmp_port, rtmp_port2 = free_ports(3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyrec", "serve", "--host", "127.0.0.1", "--api-port",
         str(api_port), "--rtmp-port", str(rtmp_port), "--record-root", str(tmp_path / "r")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        token = None
        end = time.monotonic() + 20
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "generated access token" not in line:
            proc.kill()
            raise AssertionError(f"no token line: {line!r}; stderr: {proc.communicate()[1]}")
        token = line.rsplit(" ", 1)[1].strip()
        assert ":" in token and len(token) > 20
        while time.monotonic() < end:
            try:
                status, _, _ = request(api_port, "POST", "/v1/vhosts/default/apps/app:records",
                                       {}, token=token)
                if status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        for t in (token, "pyrec:wrong"):
            request(api_port, "POST", "/v1/vhosts/default/apps/app:startRecord",
                    {"id": "a", "stream": {"name": "s"}}, token=t)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert token not in out and token not in err  # printed once: the first line, read above
    # Kept for the next start (clients keep working), readable by the owner only, not printed.
    kept = tmp_path / "r" / ".pyrec" / "access_token"
    assert kept.read_text().strip() == token and (kept.stat().st_mode & 0o777) == 0o600
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyrec", "serve", "--host", "127.0.0.1", "--api-port",
         str(api_port), "--rtmp-port", str(rtmp_port2), "--record-root", str(tmp_path / "r")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 20
        status = 0
        while time.monotonic() < end and status != 200:
            try:
                status = request(api_port, "POST", "/v1/vhosts/default/apps/app:records", {},
                                 token=token)[0]
            except OSError:
                time.sleep(0.1)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert token not in out and token not in err
    secret = token.split(":", 1)[1]
    assert secret not in err and base64.b64encode(token.encode()).decode() not in err
    assert "Record API on" in err
    assert os.path.isdir(tmp_path / "r")
