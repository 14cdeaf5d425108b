"""Split schedules "S M H" (OME's grammar: each field `*`, `N` or `*/N`; pyrec also accepts
lists and ranges), evaluated like cron `S M H * * *` in server local time.

Every number is checked against its field's range (seconds and minutes 0-59, hours 0-23):
values, both ends of a range (low <= high) and steps (1 up to the field's top), so a schedule
that cron would read differently from what was meant ("0 0 */25") is refused with a message
naming the field and the number."""
from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (pyrec record loads this)

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["Schedule", "ScheduleError", "FIELDS"]

# (name, lowest, highest) of the three fields, in order
FIELDS = (("seconds", 0, 59), ("minutes", 0, 59), ("hours", 0, 23))
_ITEM = re.compile(r"^(?:(\*)|([0-9]+)(?:-([0-9]+))?)(?:/([0-9]+))?$")


class ScheduleError(ValueError):
    pass


def _check_field(text: str, what: str, low: int, top: int) -> None:
    for item in text.split(","):
        m = _ITEM.match(item)
        if m is None:
            raise ScheduleError(f"{what} field {text!r}: {item!r} is not *, N, N-M, */S, N-M/S "
                                f"or a comma-separated list of them")
        star, first, last, step = m.groups()
        for n in (first, last):
            if n is not None and not low <= int(n) <= top:
                raise ScheduleError(f"{what} field {text!r}: {int(n)} is outside {low}-{top}")
        if last is not None and int(first) > int(last):
            raise ScheduleError(f"{what} field {text!r}: range {first}-{last} runs backwards")
        if step is not None and not 1 <= int(step) <= top:
            raise ScheduleError(f"{what} field {text!r}: step {int(step)} is outside 1-{top}")


def validate(text: object) -> list[str]:
    """The three fields of a valid schedule; ScheduleError (naming the field) otherwise."""
    if not isinstance(text, str):
        raise ScheduleError('schedule must be a string "S M H"')
    fields = text.split()
    if len(fields) != 3:
        raise ScheduleError(f"{text!r} must have 3 fields: seconds minutes hours")
    for f, (what, low, top) in zip(fields, FIELDS):
        _check_field(f, what, low, top)
    return fields


class Schedule:
    """Next split boundary strictly after a given time."""

    def __init__(self, text: str) -> None:
        fields = validate(text)
        self.text = text
        self._expr = f"{fields[0]} {fields[1]} {fields[2]} * * *"

    def next_after(self, t: datetime) -> datetime:
        """The first boundary strictly after `t` (any aware datetime), in server local time:
        the fields are matched on the local wall clock (the system's zone rules, so a
        boundary past a DST change is at its local hour, not one hour off as with the fixed
        offset of `datetime.now().astimezone()`); returned aware, with the offset in effect
        at that moment."""
        from datetime import datetime

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
