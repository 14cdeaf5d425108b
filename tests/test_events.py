"""Events (lifecycle spec section 1) and the control plane around them: produced once, in
order per stream, with the contract's JSON fields, during a real ffmpeg push driven through
the Record API; a subscriber that blocks never holds up ingest; the task store migrates a
database of the previous schema; the bus's own rules (failing subscriber, drain at close)."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

import pytest

import media
from pyrec.config import load_config
from pyrec.events import Event, EventBus, EventSource, FileFinished, StreamEnded, TaskState
from pyrec.store import SCHEMA_VERSION, StoreError, TaskStore
from pyrec.tasks import TaskManager
from test_service_e2e import (TIME_RE, TOKEN, by_sequence, check_series, clip2,  # noqa: F401
                              clip4, mp4_files, publish, read_rec, service)

COMMON = {"id", "type", "time", "node", "vhost", "app", "stream", "data"}
DATA_KEYS = {
    "stream.published": {"tracks", "remote"},
    "stream.ended": {"reason"},
    "task.state": {"taskId", "state", "previousState"},
    "file.opened": {"recording"},
    "file.finished": {"recording"},
}
RECORDING_KEYS = {"id", "vhost", "app", "stream", "taskId", "sequence", "path", "startTime",
                  "durationMs", "bytes", "state", "recovered", "tracks", "local"}


class Collector:
    """A subscriber keeping every event as its JSON (and, for file.finished, whether the info
    XML already listed the file when the event arrived)."""

    def __init__(self, root) -> None:
        self.root = root
        self.events: list[dict] = []
        self.xml_had_file: dict[str, bool] = {}

    def __call__(self, ev: Event) -> None:
        d = json.loads(ev.to_json())
        self.events.append(d)
        if isinstance(ev, FileFinished):
            info = ET.parse(ev.info_path).getroot()
            listed = [e.findtext("filePath") for e in info.iter("file")]
            self.xml_had_file[ev.recording.id] = ev.recording.path in listed


def _config(tmp_path, **kw):
    return load_config(None, host="127.0.0.1", api_port=0, rtmp_port=0, access_token=TOKEN,
                       record_root=str(tmp_path / "rec"), **kw)


def test_events_of_a_push_with_start_split_stop(service, publish, clip4, tmp_path):
    run = service(_config(tmp_path, node_name="node-a"))
    seen = Collector(run.root)
    run.svc.bus.subscribe(seen)
    run.api.start("ev", "cam", interval=1000)
    p = publish(clip4, run.url("cam"))
    run.api.wait("ev", lambda t: t.get("sequence", 0) >= 2, "past two splits", timeout=20)
    stopped = run.api.stop("ev")
    media.rtmp_wait(p)
    run.stop()  # the bus is drained: every event delivered

    evs = seen.events
    assert len({e["id"] for e in evs}) == len(evs), "an event id twice"
    for e in evs:
        assert set(e) == COMMON, e
        assert TIME_RE.match(e["time"]), e["time"]
        assert (e["node"], e["vhost"], e["app"], e["stream"]) == ("node-a", "default", "app",
                                                                  "cam")
        assert set(e["data"]) >= DATA_KEYS[e["type"]], e
    types = [e["type"] for e in evs]
    # once each, in the order things happened on this stream
    assert types.count("stream.published") == 1 and types.count("stream.ended") == 1
    assert types.index("stream.published") < types.index("file.opened")
    assert types[-1] == "stream.ended"
    states = [(e["data"]["previousState"], e["data"]["state"]) for e in evs
              if e["type"] == "task.state"]
    assert states == [(None, "ready"), ("ready", "recording"), ("recording", "stopped")]
    assert types.index("task.state", 1) < types.index("file.opened")
    files = by_sequence(mp4_files(run.root, "default/app/cam"))
    opened = [e["data"]["recording"] for e in evs if e["type"] == "file.opened"]
    finished = [e["data"]["recording"] for e in evs if e["type"] == "file.finished"]
    assert [r["sequence"] for r in opened] == list(range(len(files)))
    assert [r["sequence"] for r in finished] == list(range(len(files)))
    for f, r, o in zip(files, finished, opened):
        assert set(r) >= RECORDING_KEYS | {"finishTime"} and "finishTime" not in o, r
        assert r["id"] == o["id"] and r["startTime"] == o["startTime"]
        assert (r["state"], o["state"], r["recovered"]) == ("finished", "recording", False)
        assert r["path"] == f.relative_to(run.root).as_posix() == o["path"]
        assert r["bytes"] == f.stat().st_size
        assert [t["kind"] for t in r["tracks"]] == ["video", "audio"]
        assert seen.xml_had_file[r["id"]], "file.finished before its info XML entry"
    # each file's opened comes before its finished, and a split opens the next file first
    pos = {(e["type"], e["data"].get("recording", {}).get("sequence")): i
           for i, e in enumerate(evs)}
    for s in range(len(files)):
        assert pos[("file.opened", s)] < pos[("file.finished", s)]
    # the stop's answer came after the last file was finished (its totals include it)
    assert stopped["totalRecordBytes"] == sum(f.stat().st_size for f in files)
    assert types.index("file.finished") < len(types) - 1
    check_series([read_rec(f, clip4) for f in files], clip4, complete=False)


def test_a_blocked_subscriber_does_not_hold_up_ingest(service, publish, clip4, clip2, tmp_path):
    """The dispatcher is held inside a subscriber from camA's first file.opened on: camB's
    whole push is still received and recorded (its file finished and complete), and its file
    work (info XML) waits for the dispatcher -- it was not done on the ingest loop."""
    run = service(_config(tmp_path))
    gate = threading.Event()
    holding = threading.Event()
    seen: list[Event] = []

    def slow(ev: Event) -> None:
        seen.append(ev)
        if ev.type == "file.opened" and ev.stream == "camA" and not holding.is_set():
            holding.set()
            gate.wait(60)

    run.svc.bus.subscribe(slow)
    run.api.start("a", "camA")
    run.api.start("b", "camB")
    pa = publish(clip4, run.url("camA"))
    try:
        assert holding.wait(20), "camA's file.opened never came"
        received = run.svc.ingest.stats()["media_messages"]
        pb = publish(clip2, run.url("camB"), realtime=False)
        media.rtmp_wait(pb)
        end = time.monotonic() + 10
        while not mp4_files(run.root, "default/app/camB"):
            assert time.monotonic() < end, "camB's file never appeared"
            time.sleep(0.05)
        [fb] = mp4_files(run.root, "default/app/camB")
        end = time.monotonic() + 10
        while run.svc.ingest.find("app", "camB", "default") is not None:
            assert time.monotonic() < end, "camB did not end"
            time.sleep(0.05)
        # camB: every packet of the clip, in a finished file, while the dispatcher is held
        assert run.svc.ingest.stats()["media_messages"] - received >= (
            len(clip2.video.packets) + len(clip2.audio.packets))
        check_series([read_rec(fb, clip2)], clip2)
        assert not (run.root / "default/app/camB/b.xml").exists()
        # nothing of camB's push reached the subscribers yet (only its task's creation)
        assert [e.type for e in seen if e.stream == "camB"] == ["task.state"]
    finally:
        gate.set()
    media.rtmp_wait(pa)
    run.stop()
    b_types = [e.type for e in seen if e.stream == "camB"]
    assert b_types.count("file.finished") == 1 and b_types[-1] == "stream.ended", b_types
    assert (run.root / "default/app/camB/b.xml").exists()


# ---- the bus ---------------------------------------------------------------------------------

def test_bus_failing_subscriber_is_logged_and_others_still_get_every_event(caplog):
    bus = EventBus("n").start()
    got: list[str] = []

    def bad(ev: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(bad)
    bus.subscribe(lambda ev: got.append(ev.id), ["stream.ended"])
    src = EventSource(bus)
    for i in range(50):
        src.emit(StreamEnded, vhost="v", app="a", stream=f"s{i % 3}", reason=str(i))
    src.emit(TaskState, vhost="v", app="a", stream="s", task_id="t", state="ready",
             previous_state=None)
    bus.close()  # drains: everything queued is delivered
    assert len(got) == 50 and got == sorted(got, key=lambda i: int(i.rsplit("-", 1)[1], 16))
    assert bus.failures == 51
    assert sum("subscriber bug" in (r.exc_text or "") or "failed on" in r.getMessage()
               for r in caplog.records) >= 51


def test_bus_event_published_by_work_follows_it_before_later_events():
    bus = EventBus("n").start()
    order: list[str] = []
    src = EventSource(bus)
    bus.subscribe(lambda ev: order.append(ev.data()["reason"]))
    src.call(lambda: src.emit(StreamEnded, vhost="v", app="a", stream="s", reason="from work"))
    src.emit(StreamEnded, vhost="v", app="a", stream="s", reason="later")
    assert bus.flush()
    bus.close()
    assert order == ["from work", "later"]


def test_bus_rejects_unknown_types():
    with pytest.raises(ValueError, match="file.finishd"):
        EventBus("n").subscribe(lambda ev: None, ["file.finishd"])


# ---- the store -------------------------------------------------------------------------------

# A row as the previous schema (version 1, user_version 0) stored it: the spec nested.
V1_ROW = {"spec": {"id": "old", "stream_name": "cam", "variant_names": [], "track_ids": [1],
                   "interval": 5000, "schedule": None, "segmentation_rule": None,
                   "file_path": None, "info_path": None, "metadata": "m", "is_config": False},
          "created": "2026-11-30T10:00:00.000+00:00", "transaction_id": "abcdefghijklmnop",
          "state": "recording", "error": None, "next_sequence": 3, "sequence": 2,
          "output_file": "default/app/cam/old_2.mp4", "output_info": "default/app/cam/old.xml",
          "open_path": None, "start_time": "2026-11-30T10:05:00.000+00:00",
          "finish_time": None, "record_bytes": 10, "record_time": 20, "total_bytes": 100,
          "total_time": 200, "files": 2, "recovered": []}


def test_store_migrates_a_database_of_the_previous_schema(tmp_path):
    db = tmp_path / "tasks.sqlite3"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE tasks (vhost TEXT NOT NULL, app TEXT NOT NULL, id TEXT NOT NULL, "
                "data TEXT NOT NULL, PRIMARY KEY (vhost, app, id))")
    con.execute("INSERT INTO tasks VALUES ('default', 'app', 'old', ?)", (json.dumps(V1_ROW),))
    con.commit()
    con.close()
    cfg = load_config(None, access_token=TOKEN, record_root=str(tmp_path / "rec"))
    store = TaskStore(db)
    assert store.schema_version == SCHEMA_VERSION
    mgr = TaskManager(cfg, store=store)
    try:
        [t] = mgr.records("default", "app")
        assert (t["id"], t["state"], t["sequence"], t["totalRecordBytes"], t["files"]) == (
            "old", "ready", 2, 100, 2)  # interrupted while recording: waits for its stream
        assert t["stream"] == {"name": "cam", "trackIds": [1], "variantNames": []}
        assert (t["interval"], t["metadata"], t["outputFilePath"]) == (
            5000, "m", "default/app/cam/old_2.mp4")
    finally:
        mgr.close()
    con = sqlite3.connect(db)
    [(text,)] = con.execute("SELECT data FROM tasks").fetchall()
    con.close()
    row = json.loads(text)
    assert "spec" not in row and row["stream_name"] == "cam" and row["next_sequence"] == 3
    assert "skipped_tracks" in row  # every field of the record is stored


def test_store_refuses_a_newer_schema(tmp_path):
    db = tmp_path / "tasks.sqlite3"
    cfg = tmp_path / "pyrec.toml"
    cfg.write_text(f'[server]\ndatabase = "{db}"\n')
    TaskStore(db).close()
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        TaskStore(db)
    # `pyrec serve` says so and exits, leaving the database as it was
    r = subprocess.run([sys.executable, "-m", "pyrec", "serve", "--host", "127.0.0.1",
                        "--api-port", "0", "--rtmp-port", "0", "--access-token", TOKEN,
                        "--record-root", str(tmp_path / "rec"), "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().endswith(
        f"task database schema {SCHEMA_VERSION + 1} is newer than this pyrec's "
        f"({SCHEMA_VERSION}); refusing to change it"), r.stderr
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    con.close()


def test_task_record_round_trip_keeps_every_field(tmp_path):
    cfg = load_config(None, access_token=TOKEN, record_root=str(tmp_path / "rec"))
    db = tmp_path / "t.sqlite3"
    mgr = TaskManager(cfg, store=TaskStore(db))
    from pyrec.schemas import parse_start

    mgr.start_record("default", "app", parse_start(
        {"id": "x", "stream": {"name": "s", "variantNames": ["v"]}, "schedule": "0 */5 *",
         "segmentationRule": "continuity", "filePath": "a/${Sequence}.mp4", "metadata": "q"}))
    task = mgr.get("default", "app", "x")
    with mgr.lock:
        task.skipped_tracks = ["1:bypass_audio (pcm)"]
    mgr.persist(task)
    before = mgr.records("default", "app")
    mgr.close()
    mgr2 = TaskManager(cfg, store=TaskStore(db))
    try:
        assert mgr2.records("default", "app") == before
        assert mgr2.get("default", "app", "x").to_record() == task.to_record()
    finally:
        mgr2.close()


def test_events_json_of_every_type_has_the_common_fields():
    from pyrec.events import EVENT_TYPES, DiskPressure, Recording

    rec = Recording(id="r", vhost="v", app="a", stream="s", task_id="t", sequence=0,
                    path="p.mp4", start_time=None, state="recording")
    extra = {"stream.published": {}, "stream.ended": {}, "task.state": {
        "task_id": "t", "state": "error", "previous_state": "recording", "error": "disk"},
        "disk.pressure": {"used_percent": 91.5, "free_bytes": 7, "state": "high"}}
    for cls in EVENT_TYPES:
        kw = extra.get(cls.type, {"recording": rec})
        ev = cls(vhost="v", app="a", stream=None if cls is DiskPressure else "s", node="n",
                 **kw)
        d = json.loads(ev.to_json())
        assert d["type"] == cls.type and TIME_RE.match(d["time"])
        assert set(d) == (COMMON - {"stream"} if cls is DiskPressure else COMMON), d
    d = TaskState(vhost="v", app="a", stream="s", task_id="t", state="error",
                  previous_state="recording", error="disk full").to_dict()
    assert d["data"] == {"taskId": "t", "state": "error", "previousState": "recording",
                         "error": "disk full"}


# ---- the stream registry -------------------------------------------------------------------

def test_registry_claims_names_and_tells_listeners_in_order(caplog):
    """Any source's stream (here a plain record: the registry needs no RTMP) is claimed by
    name once; listeners hear ready/closing/end; a failing listener is logged and the next
    one still hears; stream.published / stream.ended go to the bus, ended only if published."""
    from dataclasses import dataclass, field as dfield

    from pyrec.streams import StreamRegistry

    @dataclass(eq=False)
    class Src:
        vhost: str
        app: str
        name: str
        peer: str = "10.0.0.1:5000"
        ready: bool = False
        ended: bool = False
        tracks: list = dfield(default_factory=list)

    bus = EventBus("n").start()
    events: list[dict] = []
    bus.subscribe(lambda ev: events.append(ev.to_dict()))
    reg = StreamRegistry(EventSource(bus))
    heard: list[str] = []

    def broken(st):
        raise RuntimeError("listener bug")

    reg.add_listener(on_ready=broken, on_end=lambda st, why: heard.append(f"end1 {why}"))
    reg.add_listener(on_ready=lambda st: heard.append("ready2"),
                     on_closing=lambda st: heard.append("closing2"),
                     on_end=lambda st, why: heard.append(f"end2 {why}"))
    a, dup, never = Src("v", "a", "cam"), Src("v", "a", "cam"), Src("v", "a", "quiet")
    assert reg.claim(a) and not reg.claim(dup) and reg.claim(never)
    assert reg.find("v", "a", "cam") is a
    a.ready = True
    reg.ready(a)
    reg.closing(a)
    reg.ended(a, "publisher left")
    reg.ended(never, "timeout")  # never ready: listeners told, no stream.ended
    bus.close()
    assert heard == ["ready2", "closing2", "end1 publisher left", "end2 publisher left",
                     "end1 timeout", "end2 timeout"]
    assert reg.find("v", "a", "cam") is None and a.ended and reg.claim(dup)
    assert [(e["type"], e["stream"]) for e in events] == [("stream.published", "cam"),
                                                          ("stream.ended", "cam")]
    assert events[0]["data"] == {"tracks": [], "remote": "10.0.0.1:5000"}
    assert events[1]["data"] == {"reason": "publisher left"}
    assert any("listener" in r.getMessage() and r.exc_info for r in caplog.records)
