"""The info XML file (spec section 9): permissions like the media files', entries appended."""
from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from contextlib import contextmanager

import pytest

from pyrec.infoxml import InfoEntry, append_entry
from pyrec.recorder import FileSink


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def entry(seq: int) -> InfoEntry:
    return InfoEntry(transaction_id="t" * 16, id="rec", metadata="m", vhost="default", app="app",
                     stream="s", file_path=f"s/rec_{seq}.mp4", record_bytes=100 + seq,
                     record_time=1000, sequence=seq, last_sequence=False,
                     created_time="2025-01-01T10:00:00.000+00:00",
                     start_time="2025-01-01T10:00:00.000+00:00",
                     finish_time="2025-01-01T10:00:01.000+00:00")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_info_file_has_the_media_files_permissions(tmp_path, mask):
    with umask(mask):
        sink = FileSink(str(tmp_path / "s" / "rec_${Sequence}.mp4"))
        fd = sink.open(0, 0)
        os.close(fd)
        append_entry(str(tmp_path / "s" / "rec.xml"), entry(0))
    assert mode(tmp_path / "s" / "rec.xml") == mode(tmp_path / "s" / "rec_0.mp4") == 0o644 & ~mask
    assert [p.name for p in (tmp_path / "s").iterdir() if p.name.startswith(".")] == []


def test_an_operators_chmod_is_kept_across_appends(tmp_path):
    info = tmp_path / "rec.xml"
    append_entry(str(info), entry(0))
    info.chmod(0o640)
    append_entry(str(info), entry(1))
    assert mode(info) == 0o640
    root = ET.parse(info).getroot()
    assert [f.findtext("sequence") for f in root.iter("file")] == ["0", "1"]
