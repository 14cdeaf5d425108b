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
