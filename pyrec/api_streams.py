"""The OvenMediaEngine-compatible read APIs of live streams and their statistics
(lifecycle.md section 7, ome-api.md): virtual hosts, applications, live streams with their input
and tracks, DELETE of a stream (disconnects its publisher), and `/v1/stats/current[...]`.

Everything is read on request from the stream registry and the C data plane's per-stream
counters (`_core.Server.stream_stats`: bytes read from the publisher, media bytes, the picture
size from the sequence header); nothing runs per packet. Throughput is the byte counter's
growth between two reads of the same scope (avg: since the stream was created).
Same envelope, auth and 404 texts as the Record API (pyrec.api)."""
from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import falcon

from pyrec.api import AppActionResource, TaskManagerLike, _ok
from pyrec.config import Config
from pyrec.events import iso_time
from pyrec.streams import StreamRegistry
from pyrec.errors import ApiError
from pyrec.task_errors import UnknownApp, UnknownVhost

__all__ = ["add_stream_routes", "UnknownStream"]

# pyrec codec names -> OME's
VIDEO_CODECS = {"h264": "H264", "hevc": "H265", "vp9": "VP9", "av1": "AV1"}
AUDIO_CODECS = {"aac": "AAC", "opus": "OPUS", "mp3": "MP3"}
# OME's output kinds; pyrec has only files (recording tasks writing)
CONNECTION_KINDS = ("file", "hlsv3", "llhls", "ovt", "push", "srt", "thumbnail", "webrtc")
RTMP_TIMEBASE = {"num": 1, "den": 1000}  # RTMP timestamps are milliseconds
KICK_WAIT_S = 5.0


class UnknownStream(ApiError):
    def __init__(self, vhost: str, app: str, stream: str) -> None:
        super().__init__(404, f"Could not find the stream: [{vhost}/{app}/{stream}]")


def _source_url(peer: str) -> str:
    """`TCP://ip:port` of the publisher (an IPv6 peer in brackets, as OME prints it)."""
    host, sep, port = peer.rpartition(":")
    if not sep:
        return f"TCP://{peer}"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"TCP://{host}:{port}"


class _Window:
    """Throughput of one scope between two reads: bytes, bits/s, the maximum seen."""

    def __init__(self, created_mono: float) -> None:
        self.created = created_mono
        self.last_t = created_mono
        self.last_bytes = 0
        self.last_delta = 0
        self.last_bps = 0.0
        self.max_bps = 0.0
        self.max_conns = 0
        self.max_conns_time = datetime.now().astimezone()

    def update(self, total: int, conns: int, now: float) -> None:
        dt = now - self.last_t
        if dt >= 0.2 or self.last_t == self.created:  # too short a window says nothing
            self.last_delta = max(0, total - self.last_bytes)
            self.last_bps = self.last_delta * 8 / dt if dt > 0 else 0.0
            self.max_bps = max(self.max_bps, self.last_bps)
            self.last_t, self.last_bytes = now, total
        if conns > self.max_conns:
            self.max_conns = conns
            self.max_conns_time = datetime.now().astimezone()


class StreamInfo:
    """Reads of the registry, the C counters and the task manager, shaped as OME's."""

    def __init__(self, config: Config, registry: StreamRegistry,
                 manager: TaskManagerLike) -> None:
        self.config = config
        self.registry = registry
        self.manager = manager
        self.created = datetime.now().astimezone()
        self.created_mono = time.monotonic()
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, ...], tuple[Any, _Window]] = {}

    # ---- lookups ------------------------------------------------------------------------

    def vhost(self, vh: str) -> Any:
        v = self.config.vhosts.get(vh)
        if v is None:
            raise UnknownVhost(vh)
        return v

    def app(self, vh: str, app: str) -> Any:
        a = self.vhost(vh).apps.get(app)
        if a is None:
            raise UnknownApp(vh, app)
        return a

    def streams(self, vh: str | None = None, app: str | None = None) -> list[Any]:
        """Live (ready) streams in scope, by name."""
        out = [s for s in self.registry.live() if s.ready and not s.ended
               and (vh is None or s.vhost == vh) and (app is None or s.app == app)]
        return sorted(out, key=lambda s: (s.vhost, s.app, s.name))

    def stream(self, vh: str, app: str, name: str) -> Any:
        self.app(vh, app)
        st = self.registry.find(vh, app, name)
        if st is None or not st.ready or st.ended:
            raise UnknownStream(vh, app, name)
        return st

    @staticmethod
    def counters(st: Any) -> dict[str, Any]:
        core = getattr(getattr(st, "server", None), "core", None)
        found = core.stream_stats(st.key) if core is not None else None
        return found or {"bytes_in": 0, "media_bytes": 0, "width": 0, "height": 0}

    def file_connections(self, streams: list[Any]) -> int:
        """Recording tasks writing from these streams."""
        live = {id(s) for s in streams}
        tasks = getattr(self.manager, "all_tasks", lambda: [])()
        return sum(1 for t in tasks if t.state == "recording" and t.recording is not None
                   and not t.recording.closed and id(t.recording.stream) in live)

    # ---- JSON ---------------------------------------------------------------------------

    def stream_json(self, st: Any) -> dict[str, Any]:
        c = self.counters(st)
        tracks = []
        measured = c.get("tracks", [])
        for t in st.tracks:
            m = _measures(measured[t.id] if t.id < len(measured) else None)
            if t.codec is None:  # not recordable: OME would not have it either
                continue
            if t.kind == "video":
                tracks.append({"id": t.id, "name": t.name, "type": "Video", "video": {
                    "bypass": True, "codec": VIDEO_CODECS.get(t.codec, t.codec.upper()),
                    "width": c["width"], "height": c["height"],
                    "framerate": m["framerate"], "bitrate": m["bitrate"],
                    "timebase": dict(RTMP_TIMEBASE), "hasBframes": m["reordered"],
                    "keyFrameInterval": m["gop"]}})
            else:
                tracks.append({"id": t.id, "name": t.name, "type": "Audio", "audio": {
                    "bypass": True, "codec": AUDIO_CODECS.get(t.codec, t.codec.upper()),
                    "samplerate": t.sample_rate, "channel": t.channels, "bitrate": m["bitrate"],
                    "timebase": dict(RTMP_TIMEBASE)}})
        return {"name": st.name, "outputs": [], "input": {
            "sourceType": "Rtmp", "sourceUrl": _source_url(st.peer),
            "createdTime": iso_time(st.created), "tracks": tracks}}

    def stats_json(self, scope: tuple[str, ...], streams: list[Any], created: datetime,
                   created_mono: float, owner: Any) -> dict[str, Any]:
        now_mono = time.monotonic()
        now = datetime.now().astimezone()
        total = sum(self.counters(s)["bytes_in"] for s in streams)
        files = self.file_connections(streams)
        with self._lock:
            entry = self._windows.get(scope)
            if entry is None or entry[0] is not owner:
                entry = (owner, _Window(created_mono))
                self._windows[scope] = entry
                # forget windows of streams gone (bounded by the live streams)
                live = {id(s) for s in self.registry.live()}
                for k in [k for k, (o, _) in self._windows.items()
                          if len(k) == 3 and id(o) not in live]:
                    del self._windows[k]
            w = entry[1]
            w.update(total, files, now_mono)
            elapsed = max(now_mono - created_mono, 1e-3)
            doc = {
                "createdTime": iso_time(created), "lastUpdatedTime": iso_time(now),
                "lastRecvTime": iso_time(now if streams else created),
                "lastSentTime": iso_time(created),
                "totalBytesIn": total, "totalBytesOut": 0,
                "avgThroughputIn": int(total * 8 / elapsed), "avgThroughputOut": 0,
                "maxThroughputIn": int(w.max_bps), "maxThroughputOut": 0,
                "lastThroughputIn": w.last_delta, "lastThroughputOut": 0,
                "totalConnections": files, "maxTotalConnections": w.max_conns,
                "maxTotalConnectionTime": iso_time(w.max_conns_time),
                "connections": {k: (files if k == "file" else 0) for k in CONNECTION_KINDS},
            }
        return doc


def _measures(t: dict[str, Any] | None) -> dict[str, Any]:
    """A track's frame rate (frames/s), bitrate (bits/s of payload), GOP length (frames between
    its last two keyframes) and B-frames, from the C per-track counters over the media time
    seen so far (FLV timestamps, ms); 0 until two frames (two keyframes for the GOP)."""
    if not t or t["frames"] < 2 or t["last_ts"] <= t["first_ts"]:
        return {"framerate": 0.0, "bitrate": 0, "gop": 0,
                "reordered": bool(t and t["reordered"])}
    span_ms = t["last_ts"] - t["first_ts"]
    return {"framerate": round((t["frames"] - 1) * 1000 / span_ms, 3),
            "bitrate": int(t["bytes"] * 8 * 1000 / span_ms), "gop": t["gop_frames"],
            "reordered": t["reordered"]}


# ---- resources ------------------------------------------------------------------------------

class VhostsResource:
    def __init__(self, info: StreamInfo) -> None:
        self.info = info

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _ok(resp, sorted(self.info.config.vhosts))


class VhostResource:
    def __init__(self, info: StreamInfo) -> None:
        self.info = info

    def on_get(self, req: falcon.Request, resp: falcon.Response, vhost: str) -> None:
        v = self.info.vhost(vhost)
        _ok(resp, {"name": v.name, "host": {"names": list(v.hosts)}})


class AppsResource:
    def __init__(self, info: StreamInfo) -> None:
        self.info = info

    def on_get(self, req: falcon.Request, resp: falcon.Response, vhost: str) -> None:
        _ok(resp, sorted(self.info.vhost(vhost).apps))


class AppResource(AppActionResource):
    """`/v1/vhosts/{vh}/apps/{app}`: GET without an action is the application's info; the
    Record API's `{app}:{action}` (same path segment) is served as before."""

    def __init__(self, manager: TaskManagerLike, info: StreamInfo) -> None:
        super().__init__(manager)
        self.info = info

    def on_get(self, req: falcon.Request, resp: falcon.Response, vhost: str,
               app_action: str) -> None:
        if ":" in app_action:
            super().on_get(req, resp, vhost, app_action)
            return
        a = self.info.app(vhost, app_action)
        _ok(resp, {"name": a.name, "type": "live", "dynamic": False})


class StreamsResource:
    def __init__(self, info: StreamInfo) -> None:
        self.info = info

    def on_get(self, req: falcon.Request, resp: falcon.Response, vhost: str,
               app_action: str) -> None:
        self.info.app(vhost, app_action)
        _ok(resp, [s.name for s in self.info.streams(vhost, app_action)])


class StreamResource:
    def __init__(self, info: StreamInfo) -> None:
        self.info = info

    def on_get(self, req: falcon.Request, resp: falcon.Response, vhost: str,
               app_action: str, stream: str) -> None:
        _ok(resp, self.info.stream_json(self.info.stream(vhost, app_action, stream)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, vhost: str,
                  app_action: str, stream: str) -> None:
        """Disconnect the publisher; answered once the stream has ended (its recordings'
        files finished or parked), or after KICK_WAIT_S."""
        st = self.info.stream(vhost, app_action, stream)
        st.server.core.kick(st.key)
        deadline = time.monotonic() + KICK_WAIT_S
        while not st.ended and time.monotonic() < deadline:
            time.sleep(0.02)
        resp.status = 200
        resp.content_type = "application/json;charset=UTF-8"
        resp.text = '{"message":"OK","statusCode":200}'


class StatsResource:
    """`/v1/stats/current[/vhosts/{vh}[/apps/{app}[/streams/{stream}]]]`."""

    def __init__(self, info: StreamInfo) -> None:
        self.info = info

    def on_get(self, req: falcon.Request, resp: falcon.Response, vhost: str | None = None,
               app: str | None = None, stream: str | None = None) -> None:
        i = self.info
        if stream is not None:
            assert vhost is not None and app is not None
            st = i.stream(vhost, app, stream)
            doc = i.stats_json((vhost, app, stream), [st], st.created, st.created_mono, st)
        else:
            if app is not None:
                assert vhost is not None
                i.app(vhost, app)
            elif vhost is not None:
                i.vhost(vhost)
            scope = tuple(x for x in (vhost, app) if x is not None)
            doc = i.stats_json(scope, i.streams(vhost, app), i.created, i.created_mono, i)
        _ok(resp, doc)


def add_stream_routes(app: falcon.App, config: Config, registry: StreamRegistry,
                      manager: TaskManagerLike) -> None:
    """Register the routes on the Record API's app (replaces its `{app}:{action}` resource by
    one that also answers GET of the application)."""
    info = StreamInfo(config, registry, manager)
    base = "/v1/vhosts/{vhost}/apps/{app_action}"
    app.add_route("/v1/vhosts", VhostsResource(info))
    app.add_route("/v1/vhosts/{vhost}", VhostResource(info))
    app.add_route("/v1/vhosts/{vhost}/apps", AppsResource(info))
    app.add_route(base, AppResource(manager, info))
    app.add_route(base + "/streams", StreamsResource(info))
    app.add_route(base + "/streams/{stream}", StreamResource(info))
    stats = StatsResource(info)
    app.add_route("/v1/stats/current", stats)
    app.add_route("/v1/stats/current/vhosts/{vhost}", stats)
    app.add_route("/v1/stats/current/vhosts/{vhost}/apps/{app}", stats)
    app.add_route("/v1/stats/current/vhosts/{vhost}/apps/{app}/streams/{stream}", stats)
