"""File path templates: the macros of the Record API (spec section 7)."""
from __future__ import annotations

import os
import re
from datetime import datetime

from pyrec.lightdata import dataclass, field

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["PathContext", "new_transaction_id", "expand", "format_time", "has_end_time",
           "resolve_under", "PathEscapeError", "DEFAULT_FILE_TEMPLATE", "DEFAULT_INFO_TEMPLATE"]

DEFAULT_FILE_TEMPLATE = (
    "${VirtualHost}/${Application}/${Stream}/${Id}_${StartTime:YYYYMMDDhhmmss}_${Sequence}.mp4"
)
DEFAULT_INFO_TEMPLATE = "${VirtualHost}/${Application}/${Stream}/${Id}.xml"

_MACRO = re.compile(r"\$\{([A-Za-z]+)(?::([^}]*))?\}")
_TIME_TOKENS = ("YYYY", "MM", "DD", "hh", "mm", "ss")
_DEFAULT_TIME_FORMAT = "YYYYMMDDhhmmss"


class PathEscapeError(ValueError):
    """A path that would leave its root directory."""


_TXN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_transaction_id() -> str:
    """16 random alphanumerics, as OME's ${TransactionId} (one per task or recording)."""
    return "".join(_TXN_ALPHABET[b % 62] for b in os.urandom(16))


@dataclass
class PathContext:
    vhost: str = "default"
    app: str = "app"
    stream: str = "stream"
    id: str = "record"
    transaction_id: str = field(default_factory=new_transaction_id)
    sequence: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None


def format_time(fmt: str, t: datetime) -> str:
    """YYYY MM DD hh mm ss (case-sensitive) replaced by the fields of `t`; other characters
    stay as written."""
    values = {"YYYY": f"{t.year:04d}", "MM": f"{t.month:02d}", "DD": f"{t.day:02d}",
              "hh": f"{t.hour:02d}", "mm": f"{t.minute:02d}", "ss": f"{t.second:02d}"}
    out = []
    i = 0
    while i < len(fmt):
        for tok in _TIME_TOKENS:
            if fmt.startswith(tok, i):
                out.append(values[tok])
                i += len(tok)
                break
        else:
            out.append(fmt[i])
            i += 1
    return "".join(out)


def has_end_time(template: str) -> bool:
    return any(m.group(1) == "EndTime" for m in _MACRO.finditer(template))


def expand(template: str, ctx: PathContext) -> str:
    """Replace every known macro; unknown macros stay literal (as OME does). ${EndTime} with
    no end time yet expands to the start time (callers rename at close)."""

    def sub(m: re.Match[str]) -> str:
        name, fmt = m.group(1), m.group(2)
        if name == "VirtualHost":
            return ctx.vhost
        if name == "Application":
            return ctx.app
        if name in ("Stream", "SourceStream"):
            return ctx.stream
        if name == "Id":
            return ctx.id
        if name == "TransactionId":
            return ctx.transaction_id
        if name == "Sequence":
            return str(ctx.sequence)
        if name in ("StartTime", "EndTime"):
            t = ctx.start_time if name == "StartTime" else (ctx.end_time or ctx.start_time)
            if t is None:
                t = datetime.now().astimezone()
            return format_time(fmt if fmt else _DEFAULT_TIME_FORMAT, t)
        return m.group(0)

    return _MACRO.sub(sub, template)


def resolve_under(root: str | os.PathLike[str], path: str) -> Path:
    """`path` (absolute or relative) placed under `root`; PathEscapeError if it would leave it.
    Absolute paths are taken relative to the root, as OME prefixes its RootPath."""
    from pathlib import Path

    base = Path(root).resolve()
    rel = path.lstrip("/")
    if not rel:
        raise PathEscapeError(f"empty path under {base}")
    full = (base / rel).resolve()
    if full != base and base not in full.parents:
        raise PathEscapeError(f"path {path!r} leaves the root directory")
    return full
