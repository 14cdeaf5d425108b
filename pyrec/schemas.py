"""Request schemas of the Record API: a :startRecord / :stopRecord / :records body checked in
the contract's order (spec section 4) and turned into what the task manager takes. Errors are
InvalidTaskSpec (400) with the contract's messages; auto-record rules use the same schema."""
from __future__ import annotations

from typing import Any

from pyrec.schedule import Schedule, ScheduleError
from pyrec.task import TaskSpec
from pyrec.task_errors import InvalidTaskSpec

__all__ = ["parse_start", "parse_stop", "parse_records"]

_bad = InvalidTaskSpec.field


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, "expected integer milliseconds")
    if isinstance(value, float) and not value.is_integer():
        raise _bad(name, "expected integer milliseconds")
    return int(value)


def _required_id(body: dict[str, Any]) -> str:
    rid = body.get("id")
    if rid is None or rid == "":
        raise InvalidTaskSpec("There is no required parameter [ id]")
    if not isinstance(rid, str):
        raise _bad("id", "expected a string")
    return rid


def parse_start(body: dict[str, Any], *, is_config: bool = False) -> TaskSpec:
    """Validate a :startRecord body in the contract's order (spec section 4): required fields,
    interval+schedule, schedule syntax, then types and values. Duplicates are the manager's."""
    rid = body.get("id")
    stream = body.get("stream")
    name = stream.get("name") if isinstance(stream, dict) else None
    missing = []
    if rid is None or rid == "":
        missing.append(" id")
    if name is None or name == "":
        missing.append(" stream.name")
    if missing:
        raise InvalidTaskSpec(f"There is no required parameter [{''.join(missing)}]")
    if not isinstance(rid, str):
        raise _bad("id", "expected a string")
    if not isinstance(stream, dict):
        raise _bad("stream", "expected an object")
    if not isinstance(name, str):
        raise _bad("stream.name", "expected a string")
    interval, schedule = body.get("interval"), body.get("schedule")
    if interval is not None and schedule is not None:
        raise InvalidTaskSpec("[Interval] and [Schedule] cannot be used at the same time")
    if schedule is not None:
        try:
            Schedule(schedule)
        except ScheduleError as e:
            # OME's message, then what is wrong (the field and the number)
            raise InvalidTaskSpec(f"Invalid [schedule] parameter: {e}") from None
    spec = TaskSpec(id=rid, stream_name=name, is_config=is_config, schedule=schedule)
    if interval is not None:
        spec.interval = _int(interval, "interval")
        if spec.interval < 0:
            raise _bad("interval", "must be >= 0 milliseconds (0: no interval split)")
        if spec.interval == 0:
            spec.interval = None
    variants = stream.get("variantNames")
    if variants is not None:
        if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
            raise _bad("stream.variantNames", "expected an array of strings")
        spec.variant_names = list(variants)
    for key in ("trackIds", "tracks"):
        ids = stream.get(key)
        if ids is None:
            continue
        if not isinstance(ids, list) or not all(
                isinstance(i, (int, float)) and not isinstance(i, bool)
                and float(i).is_integer() for i in ids):
            raise _bad(f"stream.{key}", "expected an array of integers")
        spec.track_ids.extend(int(i) for i in ids if int(i) not in spec.track_ids)
    rule = body.get("segmentationRule")
    if rule is not None:
        if rule not in ("continuity", "discontinuity"):
            raise _bad("segmentationRule", "expected \"continuity\" or \"discontinuity\"")
        spec.segmentation_rule = rule
    for key, attr in (("filePath", "file_path"), ("infoPath", "info_path"),
                      ("metadata", "metadata")):
        v = body.get(key)
        if v is None:
            continue
        if not isinstance(v, str):
            raise _bad(key, "expected a string")
        setattr(spec, attr, v)
    return spec


def parse_stop(body: dict[str, Any]) -> str:
    """The id a :stopRecord body names."""
    return _required_id(body)


def parse_records(body: dict[str, Any] | None) -> Any:
    """The id a :records body filters on (None: every task; a non-string matches none)."""
    rid = (body or {}).get("id")
    return rid if rid is not None and rid != "" else None
