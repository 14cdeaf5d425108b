"""Schedules ("S M H", spec section 8) and schedule-driven splits with an injected clock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import boxes
import media
import pyrec
from pyrec.schedule import Schedule, ScheduleError

T0 = datetime(2025, 1, 1, 10, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, after, want", [
    ("0 */1 *", T0 + timedelta(seconds=5), T0 + timedelta(minutes=1)),       # every minute at :00
    ("0 */10 *", T0 + timedelta(minutes=3), T0 + timedelta(minutes=10)),     # every 10 minutes
    ("10 */1 *", T0, T0 + timedelta(seconds=10)),                            # second 10 of each minute
    ("10 */1 *", T0 + timedelta(seconds=10), T0 + timedelta(minutes=1, seconds=10)),
    ("0 0 0", T0, datetime(2025, 1, 2, 0, 0, 0, tzinfo=timezone.utc)),       # daily at midnight
    ("*/2 * *", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)),
    ("0,30 * *", T0 + timedelta(seconds=1), T0 + timedelta(seconds=30)),     # pyrec: lists
    ("0 15-16 *", T0, T0 + timedelta(minutes=15)),                           # pyrec: ranges
])
def test_next_boundary(text, after, want):
    assert Schedule(text).next_after(after) == want


@pytest.mark.parametrize("text", ["", "0 0", "0 0 0 0", "60 * *", "* 61 *", "* * 24", "a b c",
                                  "*/0 * *", "1-2-3 * *"])
def test_invalid_schedules(text):
    with pytest.raises(ScheduleError):
        Schedule(text)


@pytest.mark.parametrize("text, message", [
    ("0 0 */25", "hours field '*/25': step 25 is outside 1-23"),
    ("0 0 */24", "hours field '*/24': step 24 is outside 1-23"),
    ("*/60 * *", "seconds field '*/60': step 60 is outside 1-59"),
    ("0 */0 *", "minutes field '*/0': step 0 is outside 1-59"),
    ("0,61 * *", "seconds field '0,61': 61 is outside 0-59"),
    ("0 0-60 *", "minutes field '0-60': 60 is outside 0-59"),
    ("0 0 9-24", "hours field '9-24': 24 is outside 0-23"),
    ("0 50-10 *", "minutes field '50-10': range 50-10 runs backwards"),
    ("0 0 x", "hours field 'x': 'x' is not *, N, N-M, */S, N-M/S or a comma-separated list"),
    ("0 0", "'0 0' must have 3 fields: seconds minutes hours"),
])
def test_schedule_range_messages(text, message):
    """Every number is checked against its field (seconds/minutes 0-59, hours 0-23), and the
    message names the field and the number."""
    with pytest.raises(ScheduleError) as e:
        Schedule(text)
    assert message in str(e.value)


@pytest.mark.parametrize("text", ["59 59 23", "0 0 */23", "*/59 */59 *", "0-59/15 0,30 9-17",
                                  "5/10 * *", "00 05 07"])
def test_range_edges_accepted(text):
    """The highest values and steps of each field are valid, and croniter evaluates them."""
    nxt = Schedule(text).next_after(T0)
    assert T0 < nxt <= T0 + timedelta(days=1)


def test_schedule_split_with_injected_clock(clips, out_dir):
    """Media time 0 is 10:00:00.500 on the injected clock; "*/2 * *" splits at every even
    second: boundaries at media 1.5, then (after the 2 s keyframe) 3.5 s -> 4 s, 5.5 -> 6 s,
    7.5 -> 8 s. Each split lands on the first keyframe at or after its boundary."""
    clip = clips.get(".mp4", video="h264", audio="aac", seconds=9, gop=30, fps=30)
    specs = [media.track_spec(pyrec, st) for st in clip.streams]
    t0 = T0 + timedelta(milliseconds=500)
    rec = pyrec.Recorder(specs, str(out_dir / "s_${Sequence}_${StartTime:hhmmss}.mp4"),
                         schedule="*/2 * *", clock=lambda: t0)
    media.feed(rec, clip)
    files = rec.close()
    assert [f.start_ms for f in files] == [0, 2000, 4000, 6000, 8000]
    # File names carry the media-consistent wall time of each file's start.
    assert [f.path.rsplit("_", 1)[1] for f in files] == [
        "100000.mp4", "100002.mp4", "100004.mp4", "100006.mp4", "100008.mp4"]
    video = clip.video
    total = 0
    for f in files:
        mp4 = boxes.parse_mp4(f.path)
        boxes.check_fragmented(mp4)
        samples = mp4.tracks[1].samples
        assert samples[0].flags & 0x00010000 == 0, "file does not start on a sync sample"
        total += len(samples)
    assert total == len(video.packets)
