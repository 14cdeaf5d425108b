"""Retention (lifecycle spec section 4) on a real small filesystem: a tmpfs of a few MiB mounted
by the test (skipped, with the reason, where mounting is not permitted), never a faked
statvfs. Files are registered in the catalog through the event bus (file.opened /
file.finished, as the task manager emits them) with real bytes on the tmpfs, or recorded by a
real ffmpeg push through the server."""
from __future__ import annotations

import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import media
from pyrec.catalog import Catalog, CatalogQuery
from pyrec.config import ConfigError, load_config
from pyrec.events import Event, EventBus, FileFinished, FileOpened, Recording
from pyrec.retention import Retention, disk_usage, parse_duration, parse_size
from test_service_e2e import TOKEN, clip4, publish, service  # noqa: F401

pytestmark = pytest.mark.timeout(60)

KIB = 1024


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"retention disk tests need to mount a tmpfs (root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _config(tmp_path: Path, root: Path, retention: str):
    conf = tmp_path / "pyrec.toml"
    conf.write_text(f"""
[server]
database = "{tmp_path / 'db' / 'tasks.sqlite3'}"
[vhosts.default.apps.app]
root = "{root}"
[vhosts.default.apps.app.retention]
{retention}
""")
    return load_config(conf, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN)


class Setup:
    """A catalog and a retention worker on an event bus; every event is kept."""

    def __init__(self, tmp_path: Path, root: Path, retention: str, clock=time.time) -> None:
        self.root = root
        self.cfg = _config(tmp_path, root, retention)
        self.bus = EventBus("test").start()
        self.catalog = Catalog(self.cfg)
        self.catalog.subscribe(self.bus)
        self.events: list[Event] = []
        self.bus.subscribe(self.events.append)
        self.ret = Retention(self.cfg, self.catalog, self.bus, clock=clock)

    def close(self) -> None:
        self.bus.close()
        self.catalog.close()

    def add(self, rid: str, rel: str, size: int, finished: datetime | None) -> Path:
        """A file of `size` bytes, in the catalog as finished at `finished` (None: still
        being recorded)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x5a" * size)
        start = (finished or datetime.now(timezone.utc)) - timedelta(seconds=10)
        rec = Recording(id=rid, vhost="default", app="app", stream="cam", task_id="t",
                        sequence=0, path=rel, start_time=start,
                        state="recording" if finished is None else "finished",
                        finish_time=finished, duration_ms=10_000, bytes=size)
        cls = FileOpened if finished is None else FileFinished
        self.bus.publish(cls(vhost="default", app="app", stream="cam", recording=rec))
        self.bus.flush()
        return path

    def run(self) -> None:
        self.ret.run_once()
        self.bus.flush()

    def of(self, typ: str) -> list[dict]:
        return [e.to_dict() for e in self.events if e.type == typ]

    def state(self, rid: str) -> str:
        row = self.catalog.get("default", "app", rid)
        assert row is not None
        return row["state"]


@pytest.fixture
def setup(tmp_path):
    made: list[Setup] = []

    def make(root: Path, retention: str, clock=time.time) -> Setup:
        s = Setup(tmp_path, root, retention, clock)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_age_deletes_old_files_and_their_empty_folders(setup, tmp_path):
    now = datetime.now(timezone.utc)
    s = setup(tmp_path / "rec", 'max_age = "1h"')
    old = s.add("old", "cam/2026/01/old.mp4", 1000, now - timedelta(hours=3))
    s.add("keep", "cam/2026/01/keep2.mp4", 0, None)  # not yet: its folder stays
    young = s.add("young", "cam/young.mp4", 1000, now - timedelta(minutes=10))
    lonely = s.add("lonely", "other/deep/er/lonely.mp4", 1000, now - timedelta(hours=2))
    live = s.add("live", "cam/live.mp4", 1000, None)
    s.run()
    assert not old.exists() and not lonely.exists()
    assert young.exists() and live.exists()
    assert [s.state(r) for r in ("old", "lonely", "young", "live")] == [
        "deleted", "deleted", "finished", "recording"]
    deleted = s.of("file.deleted")
    assert sorted((e["data"]["recording"]["id"], e["data"]["reason"]) for e in deleted) == [
        ("lonely", "max_age"), ("old", "max_age")]
    # empty folders removed up to the app root; a folder with a file left is kept
    assert not (s.root / "other").exists()
    assert (s.root / "cam" / "2026" / "01").is_dir() and s.root.is_dir()
    assert s.ret.counts() == {"max_age": 2, "disk": 0}
    # an injected clock a day later: the young file goes too, never the one being recorded
    s.ret.clock = lambda: time.time() + 86400
    s.run()
    assert not young.exists() and live.exists() and s.state("live") == "recording"
    assert len(s.of("file.deleted")) == 3
    assert s.of("disk.pressure") == []  # no disk limit set


def test_disk_limit_deletes_oldest_first_down_to_target(setup, tmp_path, small_disk):
    s = setup(small_disk, "max_disk_percent = 50\ntarget_disk_percent = 30\n"
                          "critical_disk_percent = 90")
    base = datetime.now(timezone.utc) - timedelta(hours=1)
    # the file being recorded is the oldest started; finish order differs from name order
    s.add("rec", "live/rec.mp4", 400 * KIB, None)
    order = [3, 0, 5, 1, 4, 2]  # file i finished at base + order[i] minutes
    for i, m in enumerate(order):
        s.add(f"f{i}", f"cam/d{i}/f{i}.mp4", 400 * KIB, base + timedelta(minutes=m))
    before = disk_usage(small_disk)
    assert before.used_percent > 50, before
    s.run()
    after = disk_usage(small_disk)
    assert after.used_percent <= 30, after
    deleted = [e["data"]["recording"]["id"] for e in s.of("file.deleted")]
    assert all(e["data"]["reason"] == "disk" for e in s.of("file.deleted"))
    oldest_first = [f"f{i}" for i in sorted(range(6), key=lambda i: order[i])]
    assert deleted == oldest_first[:len(deleted)]
    assert len(deleted) == 4  # 400 KiB recording + 2 x 400 KiB is at most 30% of 4 MiB
    assert (small_disk / "live" / "rec.mp4").exists() and s.state("rec") == "recording"
    for rid in deleted:  # each in its own folder: gone with it
        assert not (small_disk / "cam" / f"d{rid[1:]}").exists()
    pressure = [(e["data"]["state"], e["app"]) for e in s.of("disk.pressure")]
    assert pressure == [("high", "app"), ("ok", "app")]
    ev = s.of("disk.pressure")[0]
    assert "stream" not in ev and ev["data"]["usedPercent"] > 50 and ev["data"]["freeBytes"] > 0
    s.run()  # nothing changed: no event, no deletion
    assert len(s.of("disk.pressure")) == 2 and len(s.of("file.deleted")) == 4
    assert s.ret.counts()["disk"] == 4

    # critical and nothing deletable: new recordings refused; leaving it: accepted again
    filler = small_disk / "filler"
    free = disk_usage(small_disk).free_bytes
    filler.write_bytes(b"\0" * (free - 8 * KIB))
    s.run()  # critical: the two finished files go, which is enough to leave critical
    assert len(s.of("file.deleted")) == 6
    assert s.ret.refusal("default", "app") is None
    (small_disk / "filler2").write_bytes(b"\0" * (disk_usage(small_disk).free_bytes - 8 * KIB))
    s.run()  # critical again, and only the file being recorded is left
    assert len(s.of("file.deleted")) == 6 and (small_disk / "live" / "rec.mp4").exists()
    assert s.ret.refusal("default", "app") == "disk full"
    states = [e["data"]["state"] for e in s.of("disk.pressure")]
    assert states == ["high", "ok", "critical", "high", "critical"], states
    n = len(states)
    s.run()
    assert len(s.of("disk.pressure")) == n
    filler.unlink()
    (small_disk / "filler2").unlink()
    s.run()
    assert s.ret.refusal("default", "app") is None
    assert s.of("disk.pressure")[-1]["data"]["state"] == "ok"


def test_min_free_bytes_triggers(setup, tmp_path, small_disk):
    s = setup(small_disk, 'min_free_bytes = "3MiB"')
    base = datetime.now(timezone.utc) - timedelta(hours=1)
    for i in range(4):
        s.add(f"f{i}", f"f{i}.mp4", 400 * KIB, base + timedelta(minutes=i))
    s.run()
    assert disk_usage(small_disk).free_bytes >= 3 * 1024 * KIB
    assert [e["data"]["recording"]["id"] for e in s.of("file.deleted")] == ["f0", "f1"]
    assert [e["data"]["state"] for e in s.of("disk.pressure")] == ["high", "ok"]


def test_critical_disk_refuses_new_recordings(service, publish, clip4, tmp_path, small_disk):
    """Filled past critical_disk_percent with nothing deletable: a task started on a live
    stream goes to error "disk full"; once space returns, a new start records."""
    cfg = _config(tmp_path, small_disk, 'max_disk_percent = 80\ninterval = "1h"')
    run = service(cfg)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (disk_usage(small_disk).free_bytes - 16 * KIB))
    events: list[Event] = []
    run.svc.bus.subscribe(events.append)
    run.svc.retention.run_once()
    assert run.svc.retention.refusal("default", "app") == "disk full"
    p = publish(clip4, run.url("cam"))
    run.wait_live("cam")
    run.api.start("full", "cam")
    run.api.wait_state("full", "error")
    run.svc.bus.flush()
    errors = [e for e in events if e.type == "task.state" and e.state == "error"]
    assert errors and errors[-1].error == "disk full"
    assert [e.state for e in events if e.type == "disk.pressure"] == ["critical"]
    assert not list(small_disk.rglob("*.mp4"))
    filler.unlink()
    run.svc.retention.run_once()
    assert run.svc.retention.refusal("default", "app") is None
    run.api.stop("full")
    run.api.start("ok", "cam")
    run.api.wait("ok", lambda x: "sequence" in x, "recording a file", timeout=20)
    run.api.stop("ok")
    media.rtmp_wait(p)


def test_never_deletes_the_file_being_recorded(service, publish, clip4, tmp_path, small_disk):
    """A real push split every second; a policy that wants everything gone (0%) deletes the
    finished parts while the open file goes on and plays in full afterwards."""
    cfg = _config(tmp_path, small_disk,
                  'max_disk_percent = 0\ntarget_disk_percent = 0\ninterval = "1h"')
    run = service(cfg)
    run.api.start("cut", "cam", interval=1000)
    p = publish(clip4, run.url("cam"))
    run.api.wait("cut", lambda t: t.get("sequence", 0) >= 2, "past two splits", timeout=20)
    cat = run.svc.catalog
    end = time.monotonic() + 20
    while not (before := cat.deletable("default", "app")):  # a finished part in the catalog
        assert time.monotonic() < end, "no finished file in the catalog"
        time.sleep(0.05)
    run.svc.retention.run_once()
    run.svc.bus.flush()
    rows = cat.list(CatalogQuery("default", "app"))[0]
    live = [r for r in rows if r["state"] == "recording"]  # the open file (and one finishing)
    assert live and all((small_disk / r["path"]).exists() for r in live), rows
    gone = [r for r in rows if r["state"] == "deleted"]
    assert gone and not (small_disk / gone[0]["path"]).exists(), rows
    # what was finished when the run began is gone (a part finishing meanwhile may remain)
    assert {rid for rid, _p, _f in before} <= {r["id"] for r in gone}
    assert (f'pyrec_retention_deleted_files_total{{reason="disk"}} {float(len(gone))}'
            in run.svc.metrics.render().decode())
    media.rtmp_wait(p)
    run.api.stop("cut")
    run.svc.bus.flush()
    row = cat.get("default", "app", live[-1]["id"])
    assert row is not None and row["state"] == "finished"
    path = small_disk / row["path"]
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
                            "stream=codec_type,nb_read_packets", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, check=True)
    counts = [int(x.split(",")[1]) for x in probe.stdout.split() if x.startswith("video")]
    assert counts and counts[0] > 0, probe.stdout
    assert row["durationMs"] > 0


@pytest.mark.parametrize("retention, key, words", [
    ('max_age = "7 days"', "max_age", "duration"),
    ('max_age = "0s"', "max_age", "more than 0"),
    ("max_age = 7", "max_age", "expected str"),
    ('interval = "soon"', "interval", "duration"),
    ("max_disk_percent = 120", "max_disk_percent", "0 to 100"),
    ("max_disk_percent = -1", "max_disk_percent", "0 to 100"),
    ("max_disk_percent = 80\ntarget_disk_percent = 90", "target_disk_percent",
     "at most max_disk_percent"),
    ("target_disk_percent = 50", "target_disk_percent", "without max_disk_percent"),
    ("max_disk_percent = 90\ncritical_disk_percent = 80", "critical_disk_percent",
     "at least max_disk_percent"),
    ('min_free_bytes = "2 gigs"', "min_free_bytes", "size"),
    ("min_free_bytes = -5", "min_free_bytes", ">= 0"),
    ('keep_unuploaded = "yes"', "keep_unuploaded", "expected bool"),
    ("max_ages = \"1d\"", "max_ages", "did you mean 'max_age'"),
])
def test_config_errors_name_the_key(tmp_path, retention, key, words):
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, tmp_path / "rec", retention)
    assert f"retention.{key}" in str(e.value) and words in str(e.value), str(e.value)


def test_config_server_default_and_app_override(tmp_path):
    conf = tmp_path / "p.toml"
    conf.write_text("""
[retention]
max_age = "7d"
max_disk_percent = 90
min_free_bytes = "2GiB"
[vhosts.default.apps.a]
[vhosts.default.apps.b.retention]
max_age = "30m"
interval = "10s"
[vhosts.default.apps.c]
""")
    cfg = load_config(conf)
    a, b = cfg.app("default", "a").retention, cfg.app("default", "b").retention
    assert (a.max_age_s, a.max_disk_percent, a.target, a.min_free_bytes, a.interval_s,
            a.critical_disk_percent, a.configured) == (7 * 86400, 90, 85, 2 << 30, 30, 98, True)
    assert (b.max_age_s, b.max_disk_percent, b.min_free_bytes, b.interval_s) == (
        1800, 90, 2 << 30, 10)
    assert not load_config(None).app("default", "app").retention.configured


@pytest.mark.parametrize("text, secs", [("30s", 30), ("30m", 1800), ("12h", 43200),
                                        ("7d", 604800), ("1.5h", 5400)])
def test_parse_duration(text, secs):
    assert parse_duration(text) == secs


@pytest.mark.parametrize("v, n", [(0, 0), (4096, 4096), ("2GiB", 2 << 30), ("10GB", 10**10),
                                  ("512MiB", 512 << 20), ("100", 100), ("1.5KiB", 1536)])
def test_parse_size(v, n):
    assert parse_size(v) == n


def test_the_worker_runs_the_policy_every_interval(setup, tmp_path):
    import threading

    now = datetime.now(timezone.utc)
    s = setup(tmp_path / "rec", 'max_age = "1h"\ninterval = "0.2s"')
    s.ret.start()
    try:
        assert "pyrec-retention" in [t.name for t in threading.enumerate()]
        old = s.add("old", "a/old.mp4", 100, now - timedelta(hours=2))  # after the first run
        end = time.monotonic() + 10
        while old.exists():
            assert time.monotonic() < end, "the worker did not delete the old file"
            time.sleep(0.05)
        # the file goes first, then its row and file.deleted (published by the worker)
        while not s.of("file.deleted"):
            assert time.monotonic() < end, "no file.deleted after the file went"
            s.bus.flush()
            time.sleep(0.05)
        assert [e["data"]["reason"] for e in s.of("file.deleted")] == ["max_age"]
    finally:
        s.ret.close()
    assert "pyrec-retention" not in [t.name for t in threading.enumerate()]
