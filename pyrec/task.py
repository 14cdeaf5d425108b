"""A recording task (the Record API's model, spec sections 4-10): what was asked (TaskSpec),
its state, its current file and totals, its live binding; its API JSON and its stored
record."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pyrec.events import iso_time
from pyrec.store import TaskRecord

if TYPE_CHECKING:
    from pyrec.ingest import LiveRecording, LiveStream

__all__ = ["TaskSpec", "Task", "STATES"]

STATES = ("ready", "recording", "stopping", "stopped", "error")


@dataclass
class TaskSpec:
    """A validated :startRecord request."""

    id: str
    stream_name: str
    variant_names: list[str] = field(default_factory=list)
    track_ids: list[int] = field(default_factory=list)
    interval: int | None = None
    schedule: str | None = None
    segmentation_rule: str | None = None
    file_path: str | None = None
    info_path: str | None = None
    metadata: str | None = None
    is_config: bool = False

    @property
    def continuity(self) -> bool:
        return self.segmentation_rule == "continuity"


_SPEC_FIELDS = ("variant_names", "track_ids", "interval", "schedule", "segmentation_rule",
                "file_path", "info_path", "metadata", "is_config")
_STATE_FIELDS = ("state", "error", "next_sequence", "sequence", "output_file", "output_info",
                 "open_path", "record_bytes", "record_time", "total_bytes", "total_time",
                 "files", "skipped_tracks", "recovered")


@dataclass
class Task:
    spec: TaskSpec
    vhost: str
    app: str
    created: datetime
    transaction_id: str
    state: str = "ready"
    error: str | None = None
    next_sequence: int = 0
    # the file being written (or the last one)
    sequence: int | None = None
    output_file: str | None = None       # relative to the root
    output_info: str | None = None
    open_path: str | None = None          # absolute path while a file is open (crash recovery)
    start_time: datetime | None = None
    finish_time: datetime | None = None
    record_bytes: int = 0
    record_time: int = 0
    total_bytes: int = 0
    total_time: int = 0
    files: int = 0
    skipped_tracks: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    # live binding
    recording: LiveRecording | None = None
    stream: LiveStream | None = None
    tracks: tuple[dict[str, Any], ...] = ()  # the recorded tracks ({id, kind, codec})
    attaching: bool = False
    open_failed: bool = False  # the recording being attached could not create its file
    stopping: bool = False
    removed: bool = False      # stopped and deleted: nothing more is stored
    next_boundary: datetime | None = None
    parked_until: datetime | None = None  # reconnect grace: file kept open until then

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.vhost, self.app, self.spec.id)

    def recording_id(self, sequence: int) -> str:
        """The stable id of the task's file `sequence` (events, later the catalog)."""
        return f"{self.transaction_id}-{sequence}"

    def to_json(self, live: dict[str, Any] | None = None) -> dict[str, Any]:
        s = self.spec
        out: dict[str, Any] = {
            "id": s.id, "vhost": self.vhost, "app": self.app, "state": self.state,
            "createdTime": iso_time(self.created),
            "stream": {"name": s.stream_name, "trackIds": list(s.track_ids),
                       "variantNames": list(s.variant_names)},
            "isConfig": s.is_config,
        }
        # OME answers segmentationRule for every API task ("discontinuity" when the request
        # had none); a task of an auto-record rule shows it when the rule sets it.
        rule = s.segmentation_rule or (None if s.is_config else "discontinuity")
        for key, val in (("interval", s.interval), ("schedule", s.schedule),
                         ("segmentationRule", rule), ("metadata", s.metadata),
                         ("filePath", s.file_path), ("infoPath", s.info_path)):
            if val:
                out[key] = val
        if self.output_file:
            out["outputFilePath"] = self.output_file
        if self.output_info:
            out["outputInfoPath"] = self.output_info
        rec_bytes, rec_time = self.record_bytes, self.record_time
        if live is not None:
            rec_bytes, rec_time = live["bytes"], live["time"]
        if self.sequence is not None:
            out["sequence"] = self.sequence
            out["startTime"] = iso_time(self.start_time)
            out["recordBytes"] = rec_bytes
            out["recordTime"] = rec_time
            out["totalRecordBytes"] = self.total_bytes + (rec_bytes if live else 0)
            out["totalRecordTime"] = self.total_time + (rec_time if live else 0)
        if self.state in ("stopped", "error") and self.finish_time is not None:
            out["finishTime"] = iso_time(self.finish_time)
        if self.error:
            out["error"] = self.error
        if self.skipped_tracks:
            out["skippedTracks"] = list(self.skipped_tracks)
        if self.recovered:
            out["recoveredFiles"] = list(self.recovered)
        out["files"] = self.files
        return out

    def to_record(self) -> TaskRecord:
        s = self.spec
        rec = TaskRecord(vhost=self.vhost, app=self.app, id=s.id, stream_name=s.stream_name,
                         created=iso_time(self.created) or "",
                         transaction_id=self.transaction_id,
                         start_time=iso_time(self.start_time),
                         finish_time=iso_time(self.finish_time))
        for k in _SPEC_FIELDS:
            v = getattr(s, k)
            setattr(rec, k, list(v) if isinstance(v, list) else v)
        for k in _STATE_FIELDS:
            v = getattr(self, k)
            setattr(rec, k, list(v) if isinstance(v, list) else v)
        return rec

    @classmethod
    def from_record(cls, r: TaskRecord) -> Task:
        spec = TaskSpec(r.id, r.stream_name, **{k: getattr(r, k) for k in _SPEC_FIELDS})
        t = cls(spec, r.vhost, r.app, datetime.fromisoformat(r.created), r.transaction_id)
        for k in _STATE_FIELDS:
            setattr(t, k, getattr(r, k))
        if r.start_time:
            t.start_time = datetime.fromisoformat(r.start_time)
        if r.finish_time:
            t.finish_time = datetime.fromisoformat(r.finish_time)
        return t
