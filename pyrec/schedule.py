"""Split schedules "S M H" (OME's grammar: each field `*`, `N` or `*/N`; pyrec also accepts
lists and ranges), evaluated like cron `S M H * * *` in server local time."""
from __future__ import annotations

import re
from datetime import datetime

__all__ = ["Schedule", "ScheduleError"]

_ITEM = r"(\*|\d{1,2}(-\d{1,2})?)(/\d{1,2})?"
_FIELD = re.compile(rf"^{_ITEM}(,{_ITEM})*$")
_LIMITS = (("second", 59), ("minute", 59), ("hour", 23))


class ScheduleError(ValueError):
    pass


class Schedule:
    """Next split boundary strictly after a given time."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise ScheduleError("schedule must be a string \"S M H\"")
        fields = text.split()
        if len(fields) != 3:
            raise ScheduleError(f"schedule {text!r} must have 3 fields: seconds minutes hours")
        for f, (what, top) in zip(fields, _LIMITS):
            if not _FIELD.match(f):
                raise ScheduleError(f"schedule {what} field {f!r} is not *, N, */N, a range or a list")
            for part in f.split(","):
                base, _, step = part.partition("/")
                if step and int(step) == 0:
                    raise ScheduleError(f"schedule {what} field {f!r}: step 0")
                for n in re.findall(r"\d+", base):
                    if int(n) > top:
                        raise ScheduleError(f"schedule {what} field {f!r}: {n} > {top}")
        self.text = text
        self._expr = f"{fields[0]} {fields[1]} {fields[2]} * * *"
        from croniter import croniter

        if not croniter.is_valid(self._expr, second_at_beginning=True):
            raise ScheduleError(f"schedule {text!r} is not valid")

    def next_after(self, t: datetime) -> datetime:
        """The first boundary strictly after `t` (any aware datetime), in server local time:
        the fields are matched on the local wall clock (the system's zone rules, so a
        boundary past a DST change is at its local hour, not one hour off as with the fixed
        offset of `datetime.now().astimezone()`); returned aware, with the offset in effect
        at that moment."""
        from croniter import croniter

        ref = t.astimezone()  # a naive `t` is local time (and gets a naive answer)
        local = ref.replace(tzinfo=None)  # naive local wall clock
        it = croniter(self._expr, local, second_at_beginning=True)
        while True:
            nxt = it.get_next(datetime)
            assert isinstance(nxt, datetime)
            # A wall time in a DST gap maps to two instants, one before `t`: the boundary is
            # the moment the clock passes it. In a repeated hour: its first occurrence.
            later = [c for c in (nxt.astimezone(), nxt.replace(fold=1).astimezone()) if c > ref]
            if later:
                best = min(later)
                return best if t.tzinfo is not None else best.astimezone().replace(tzinfo=None)

    def __repr__(self) -> str:
        return f"Schedule({self.text!r})"
