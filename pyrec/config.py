"""Configuration: one TOML file (vhosts, apps, AccessToken, root directory, templates, track
names, ports, limits, auto-record rules); command-line flags override it. With no file the
embedded defaults run: vhost `default`, app `app`, root `./records`, a generated token.

A key the configuration does not know is an error naming the nearest known key (a typo never
leaves a setting silently at its default). Relative paths written in the file are taken
relative to the file's folder; relative paths given as flags, relative to the working
directory. Every path of the loaded Config is absolute."""
from __future__ import annotations

import difflib
import fnmatch
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyrec.ingest import IngestLimits
from pyrec.paths import DEFAULT_FILE_TEMPLATE, DEFAULT_INFO_TEMPLATE
from pyrec.retention import RetentionPolicy, parse_duration, parse_size
from pyrec.tracks import DEFAULT_AUDIO_NAME, DEFAULT_VIDEO_NAME
from pyrec.webhooks import WebhookConfig

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
    retention: RetentionPolicy = RetentionPolicy()


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
    metrics_auth: bool = True              # /metrics behind the API's Basic auth
    node_name: str = ""                    # in every event; default: the host name
    record_root: Path = Path("records")
    db_path: Path | None = None            # default: <record_root>/.pyrec/tasks.sqlite3
    part_duration_ms: int = 1000
    reconnect_grace_ms: int = 0            # keep the file open this long for a reconnect
    max_tasks: int = 10_000
    limits: IngestLimits = IngestLimits()
    vhosts: dict[str, VhostConfig] = field(default_factory=dict)
    webhooks: list[WebhookConfig] = field(default_factory=list)
    retention: RetentionPolicy = RetentionPolicy()  # [retention]: the apps' default
    source: Path | None = None             # the configuration file read, if any

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

    @property
    def webhook_database(self) -> Path:
        return self.database.parent / "webhooks.sqlite3"


# Keys of an auto-record rule: `stream` (the pattern) and the :startRecord fields it sets.
RULE_KEYS = ("stream", "id", "interval", "schedule", "segmentationRule", "filePath", "infoPath",
             "metadata", "variantNames", "trackIds")

# The keys each table of the file was asked for while it was read (id of the table -> (table,
# where, keys)). A table's other keys are unknown: _check_unknown() reports them.
_asked: dict[int, tuple[dict[str, Any], str, set[str]]] = {}


def _get(d: dict[str, Any], key: str, typ: type | tuple[type, ...], default: Any, where: str) -> Any:
    _asked.setdefault(id(d), (d, where, set()))[2].add(key)
    v = d.get(key, default)
    if v is not default and not isinstance(v, typ):
        raise ConfigError(f"{where}.{key}: expected {getattr(typ, '__name__', typ)}, got {v!r}")
    return v


def _check_unknown(source: str) -> None:
    """ConfigError for the first key no reader asked for, with the nearest known key."""
    for table, where, known in _asked.values():
        for key in table:
            if key in known:
                continue
            near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else (
                f"; known keys: {', '.join(sorted(known))}")
            name = f"{where}.{key}" if where else key
            raise ConfigError(f"{source}: unknown key {name!r}{hint}")


def _table(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    return _get(d, key, dict, {}, where)


def _abspath(p: str | os.PathLike[str], base: str | None = None) -> Path:
    """`p` made absolute against `base` (the config file's folder) or the working directory."""
    p = os.path.expanduser(os.fspath(p))
    if base is not None and not os.path.isabs(p):
        p = os.path.join(base, p)
    return Path(os.path.abspath(p))


def _finish(adata: dict[str, Any], where: str) -> str:
    v = _get(adata, "finish", str, "hybrid", where)
    if v not in ("hybrid", "fragmented"):
        raise ConfigError(f"{where}.finish: expected \"hybrid\" or \"fragmented\", got {v!r}")
    return v


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Read the TOML file (if any), apply non-None overrides (host, api_port, rtmp_port,
    access_token, realm, record_root, no_auth, db_path), fill defaults. Unknown keys are
    errors; relative paths in the file are relative to its folder, those given as overrides
    to the working directory."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None
    _asked.clear()
    try:
        cfg = _load(data, os.path.dirname(os.path.abspath(path)) if path is not None else None,
                    overrides)
        _check_unknown(str(path) if path is not None else "configuration")
    finally:
        _asked.clear()
    cfg.source = _abspath(path) if path is not None else None
    return cfg


def known_keys() -> list[str]:
    """Every key the configuration file accepts, dotted (`server.api_port`,
    `vhosts.<vhost>.apps.<app>.auto_record[].interval`, ...)."""
    sample = {"vhosts": {"<vhost>": {"apps": {"<app>": {"auto_record": [{}],
                                                        "track_names": {},
                                                        "retention": {}}}}},
              "retention": {},
              "webhooks": [{"url": "http://h/"}]}
    _asked.clear()
    try:
        _load(sample, None, {})
        names = [f"{where}.{k}" if where else k for _t, where, keys in _asked.values()
                 for k in keys]
    finally:
        _asked.clear()
    return sorted(n.replace("auto_record[0]", "auto_record[]")
                  .replace("webhooks[0]", "webhooks[]") for n in names)


def _load(data: dict[str, Any], base: str | None, overrides: dict[str, Any]) -> Config:
    server = _table(data, "server", "")
    cfg = Config()
    cfg.host = _get(server, "host", str, cfg.host, "server")
    cfg.api_port = _get(server, "api_port", int, cfg.api_port, "server")
    cfg.rtmp_port = _get(server, "rtmp_port", int, cfg.rtmp_port, "server")
    cfg.access_token = _get(server, "access_token", str, "", "server")
    cfg.realm = _get(server, "realm", str, cfg.realm, "server")
    cfg.node_name = _get(server, "node_name", str, "", "server")
    cfg.metrics_auth = _get(server, "metrics_auth", bool, True, "server")
    root = _get(server, "record_root", str, None, "server")
    cfg.record_root = _abspath(root, base) if root is not None else _abspath(cfg.record_root)
    db = _get(server, "database", str, "", "server")
    cfg.db_path = _abspath(db, base) if db else None
    cfg.part_duration_ms = _get(server, "part_duration_ms", int, cfg.part_duration_ms, "server")
    cfg.max_tasks = _get(server, "max_tasks", int, cfg.max_tasks, "server")
    cfg.reconnect_grace_ms = _get(server, "reconnect_grace_ms", int, 0, "server")
    lim = _table(data, "limits", "")
    dflt = IngestLimits()
    cfg.limits = IngestLimits(**{k: _get(lim, k, int, getattr(dflt, k), "limits")
                                 for k in dflt.__dataclass_fields__})
    for k, v in overrides.items():
        if v is None:
            continue
        if k == "record_root" or k == "db_path":
            v = _abspath(v)
        if not hasattr(cfg, k):
            raise ConfigError(f"unknown setting {k}")
        setattr(cfg, k, v)
    cfg.retention = _retention(_table(data, "retention", ""), "retention", RetentionPolicy())
    vhosts = _table(data, "vhosts", "") or {"default": {"apps": {"app": {}}}}
    for vname, vdata in vhosts.items():
        where = f"vhosts.{vname}"
        if not isinstance(vdata, dict):
            raise ConfigError(f"{where}: expected a table, got {vdata!r}")
        v = VhostConfig(vname, list(_get(vdata, "hosts", list, ["*"], where)))
        for aname, adata in _table(vdata, "apps", where).items():
            aw = f"{where}.apps.{aname}"
            if not isinstance(adata, dict):
                raise ConfigError(f"{aw}: expected a table, got {adata!r}")
            root = _get(adata, "root", str, None, aw)
            tracks = _get(adata, "track_names", dict, {}, aw)
            rules = []
            for i, r in enumerate(_get(adata, "auto_record", list, [], aw)):
                rw = f"{aw}.auto_record[{i}]"
                if not isinstance(r, dict):
                    raise ConfigError(f"{rw}: expected a table, got {r!r}")
                for k in RULE_KEYS:
                    _asked.setdefault(id(r), (r, rw, set()))[2].add(k)
                rules.append(AutoRecordRule(_get(r, "stream", str, "*", rw),
                                            {k: val for k, val in r.items() if k != "stream"}))
            v.apps[aname] = AppConfig(
                aname, _abspath(root, base) if root is not None else cfg.record_root,
                _get(adata, "file_path", str, DEFAULT_FILE_TEMPLATE, aw),
                _get(adata, "info_path", str, DEFAULT_INFO_TEMPLATE, aw),
                _get(tracks, "video", str, DEFAULT_VIDEO_NAME, f"{aw}.track_names"),
                _get(tracks, "audio", str, DEFAULT_AUDIO_NAME, f"{aw}.track_names"),
                rules, _finish(adata, aw),
                _retention(_table(adata, "retention", aw), f"{aw}.retention", cfg.retention))
        cfg.vhosts[vname] = v
    for i, w in enumerate(_get(data, "webhooks", list, [], "")):
        cfg.webhooks.append(_webhook(w, f"webhooks[{i}]"))
    if len({w.url for w in cfg.webhooks}) != len(cfg.webhooks):
        raise ConfigError("webhooks: the same url twice (one [[webhooks]] per URL)")
    if not cfg.access_token and not cfg.no_auth:
        cfg.access_token = f"pyrec:{secrets.token_urlsafe(18)}"
        cfg.token_generated = True
    if cfg.no_auth and cfg.host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError("no-auth mode is only allowed when bound to loopback (--host 127.0.0.1)")
    return cfg


def _retention(d: dict[str, Any], where: str, base: RetentionPolicy) -> RetentionPolicy:
    """A [retention] table (lifecycle spec section 4) over `base` (the server's default for an
    app's table), checked: a nonsense value is an error naming its key."""
    def val(key: str, typ: type | tuple[type, ...], conv: Any, cur: Any) -> Any:
        v = _get(d, key, typ, None, where)
        if v is None:
            return cur
        try:
            return conv(v)
        except ValueError as e:
            raise ConfigError(f"{where}.{key}: {e}") from None

    def percent(v: Any) -> float:
        if isinstance(v, bool) or not 0 <= v <= 100:
            raise ValueError(f"expected a percentage from 0 to 100, got {v!r}")
        return float(v)

    num = (int, float)
    pol = RetentionPolicy(
        max_age_s=val("max_age", str, parse_duration, base.max_age_s),
        max_disk_percent=val("max_disk_percent", num, percent, base.max_disk_percent),
        target_disk_percent=val("target_disk_percent", num, percent, base.target_disk_percent),
        min_free_bytes=val("min_free_bytes", (int, str), parse_size, base.min_free_bytes),
        keep_unuploaded=val("keep_unuploaded", bool, bool, base.keep_unuploaded),
        interval_s=val("interval", str, parse_duration, base.interval_s),
        critical_disk_percent=val("critical_disk_percent", num, percent,
                                  base.critical_disk_percent),
        configured=base.configured or bool(d))
    if (pol.target_disk_percent is not None and pol.max_disk_percent is not None
            and pol.target_disk_percent > pol.max_disk_percent):
        raise ConfigError(f"{where}.target_disk_percent: must be at most max_disk_percent "
                          f"({pol.max_disk_percent:g}), got {pol.target_disk_percent:g}")
    if pol.target_disk_percent is not None and pol.max_disk_percent is None:
        raise ConfigError(f"{where}.target_disk_percent: set without max_disk_percent")
    if pol.max_disk_percent is not None and pol.critical_disk_percent < pol.max_disk_percent:
        raise ConfigError(f"{where}.critical_disk_percent: must be at least max_disk_percent "
                          f"({pol.max_disk_percent:g}), got {pol.critical_disk_percent:g}")
    return pol


def _webhook(w: Any, where: str) -> WebhookConfig:
    """One [[webhooks]] table (lifecycle spec section 2), checked."""
    from pyrec.events import EVENT_TYPES

    if not isinstance(w, dict):
        raise ConfigError(f"{where}: expected a table, got {w!r}")
    url = _get(w, "url", str, "", where)
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(f"{where}.url: expected an http:// or https:// URL with a host, "
                          f"got {url!r}")
    try:
        u.port
    except ValueError:
        raise ConfigError(f"{where}.url: bad port in {url!r}") from None
    if u.username is not None or u.password is not None:  # would be logged with the URL
        raise ConfigError(f"{where}.url: credentials in the URL are not supported; "
                          f"set secret and verify the signature")
    events = _get(w, "events", list, None, where)
    if events is not None:
        known = [t.type for t in EVENT_TYPES]
        for e in events:
            if e not in known:
                near = difflib.get_close_matches(str(e), known, n=1, cutoff=0.6)
                hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(known)}"
                raise ConfigError(f"{where}.events: unknown event type {e!r}{hint}")
    timeout_ms = _get(w, "timeout_ms", int, 5000, where)
    if timeout_ms <= 0:
        raise ConfigError(f"{where}.timeout_ms: must be > 0, got {timeout_ms}")
    max_attempts = _get(w, "max_attempts", int, 0, where)
    if max_attempts < 0:
        raise ConfigError(f"{where}.max_attempts: must be >= 0 (0 = until delivered), "
                          f"got {max_attempts}")
    return WebhookConfig(url, frozenset(events) if events is not None else None,
                         _get(w, "secret", str, "", where), timeout_ms, max_attempts)
