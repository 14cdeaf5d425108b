"""Configuration: one TOML file (vhosts, apps, AccessToken, root directory, templates, track
names, ports, limits, auto-record rules); command-line flags override it. With no file the
embedded defaults run: vhost `default`, app `app`, root `./records`, a generated token."""
from __future__ import annotations

import fnmatch
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrec.ingest import IngestLimits
from pyrec.paths import DEFAULT_FILE_TEMPLATE, DEFAULT_INFO_TEMPLATE
from pyrec.tracks import DEFAULT_AUDIO_NAME, DEFAULT_VIDEO_NAME

__all__ = ["Config", "VhostConfig", "AppConfig", "AutoRecordRule", "load_config", "ConfigError"]


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AutoRecordRule:
    """Like OME's StreamMap: streams whose name matches `pattern` (shell wildcards) are
    recorded with these options as soon as they are published (tasks with isConfig: true)."""

    pattern: str
    options: dict[str, Any]

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)


@dataclass
class AppConfig:
    name: str
    root: Path
    file_path: str = DEFAULT_FILE_TEMPLATE
    info_path: str = DEFAULT_INFO_TEMPLATE
    video_name: str = DEFAULT_VIDEO_NAME
    audio_name: str = DEFAULT_AUDIO_NAME
    auto_record: list[AutoRecordRule] = field(default_factory=list)
    finish: str = "hybrid"  # or "fragmented" (see pyrec.recorder.FINISH_MODES)


@dataclass
class VhostConfig:
    name: str
    hosts: list[str] = field(default_factory=lambda: ["*"])
    apps: dict[str, AppConfig] = field(default_factory=dict)

    def matches_host(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host.lower(), h.lower()) for h in self.hosts)


@dataclass
class Config:
    host: str = "0.0.0.0"
    api_port: int = 8081
    rtmp_port: int = 1935
    access_token: str = ""
    token_generated: bool = False
    no_auth: bool = False
    realm: str = "OvenMediaEngine"
    record_root: Path = Path("records")
    db_path: Path | None = None            # default: <record_root>/.pyrec/tasks.sqlite3
    part_duration_ms: int = 1000
    reconnect_grace_ms: int = 0            # keep the file open this long for a reconnect
    max_tasks: int = 10_000
    limits: IngestLimits = IngestLimits()
    vhosts: dict[str, VhostConfig] = field(default_factory=dict)

    def app(self, vhost: str, app: str) -> AppConfig | None:
        v = self.vhosts.get(vhost)
        return v.apps.get(app) if v else None

    def vhost_for_host(self, host: str) -> VhostConfig:
        for v in self.vhosts.values():
            if v.matches_host(host):
                return v
        return next(iter(self.vhosts.values()))

    @property
    def database(self) -> Path:
        return self.db_path or (self.record_root / ".pyrec" / "tasks.sqlite3")


def _get(d: dict[str, Any], key: str, typ: type | tuple[type, ...], default: Any, where: str) -> Any:
    v = d.get(key, default)
    if v is not default and not isinstance(v, typ):
        raise ConfigError(f"{where}.{key}: expected {getattr(typ, '__name__', typ)}, got {v!r}")
    return v


def _finish(adata: dict[str, Any], where: str) -> str:
    v = _get(adata, "finish", str, "hybrid", where)
    if v not in ("hybrid", "fragmented"):
        raise ConfigError(f"{where}.finish: expected \"hybrid\" or \"fragmented\", got {v!r}")
    return v


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Read the TOML file (if any), apply non-None overrides (host, api_port, rtmp_port,
    access_token, record_root, no_auth, db_path), fill defaults."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None
    server = data.get("server", {})
    cfg = Config()
    cfg.host = _get(server, "host", str, cfg.host, "server")
    cfg.api_port = _get(server, "api_port", int, cfg.api_port, "server")
    cfg.rtmp_port = _get(server, "rtmp_port", int, cfg.rtmp_port, "server")
    cfg.access_token = _get(server, "access_token", str, "", "server")
    cfg.realm = _get(server, "realm", str, cfg.realm, "server")
    cfg.record_root = Path(_get(server, "record_root", str, str(cfg.record_root), "server"))
    db = _get(server, "database", str, "", "server")
    cfg.db_path = Path(db) if db else None
    cfg.part_duration_ms = _get(server, "part_duration_ms", int, cfg.part_duration_ms, "server")
    cfg.max_tasks = _get(server, "max_tasks", int, cfg.max_tasks, "server")
    cfg.reconnect_grace_ms = _get(server, "reconnect_grace_ms", int, 0, "server")
    lim = data.get("limits", {})
    base = IngestLimits()
    cfg.limits = IngestLimits(**{k: _get(lim, k, int, getattr(base, k), "limits")
                                 for k in base.__dataclass_fields__})
    for k, v in overrides.items():
        if v is None:
            continue
        if k == "record_root" or k == "db_path":
            v = Path(v)
        if not hasattr(cfg, k):
            raise ConfigError(f"unknown setting {k}")
        setattr(cfg, k, v)
    vhosts = data.get("vhosts") or {"default": {"apps": {"app": {}}}}
    for vname, vdata in vhosts.items():
        where = f"vhosts.{vname}"
        v = VhostConfig(vname, list(_get(vdata, "hosts", list, ["*"], where)))
        for aname, adata in (vdata.get("apps") or {}).items():
            aw = f"{where}.apps.{aname}"
            root = Path(_get(adata, "root", str, str(cfg.record_root), aw))
            tracks = _get(adata, "track_names", dict, {}, aw)
            rules = [AutoRecordRule(_get(r, "stream", str, "*", f"{aw}.auto_record"),
                                    {k: val for k, val in r.items() if k != "stream"})
                     for r in _get(adata, "auto_record", list, [], aw)]
            v.apps[aname] = AppConfig(
                aname, root, _get(adata, "file_path", str, DEFAULT_FILE_TEMPLATE, aw),
                _get(adata, "info_path", str, DEFAULT_INFO_TEMPLATE, aw),
                tracks.get("video", DEFAULT_VIDEO_NAME), tracks.get("audio", DEFAULT_AUDIO_NAME),
                rules, _finish(adata, aw))
        cfg.vhosts[vname] = v
    if not cfg.access_token and not cfg.no_auth:
        cfg.access_token = f"pyrec:{secrets.token_urlsafe(18)}"
        cfg.token_generated = True
    if cfg.no_auth and cfg.host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError("no-auth mode is only allowed when bound to loopback (--host 127.0.0.1)")
    return cfg
