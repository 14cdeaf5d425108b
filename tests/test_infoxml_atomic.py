"""The info XML is replaced atomically (README: "written atomically"): a reader racing the
writer never sees a partial file, a writer killed mid-write (SIGKILL, a real crash) leaves the
previous version, and a full disk (a real size-limited tmpfs) fails the append with ENOSPC and
keeps the previous version whole."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pyrec.infoxml import InfoEntry, append_entry


def entry(i: int, pad: int = 2000) -> InfoEntry:
    # `metadata` padded so that one rewrite spans many pages: a non-atomic write would be
    # visible half-done.
    return InfoEntry(
        transaction_id=f"tx{i}", id="task", metadata="m" * pad, vhost="default", app="app",
        stream="s", file_path=f"rec/s-{i}.mp4", record_bytes=1000 + i, record_time=6000,
        sequence=i, last_sequence=False, created_time="2026-03-01T10:00:00.000+0000",
        start_time="2026-03-01T10:00:00.000+0000", finish_time="2026-03-01T10:00:06.000+0000")


def sequences(path: Path) -> list[int]:
    """The <sequence> of every <file>, or an AssertionError naming what was wrong."""
    data = path.read_bytes()
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise AssertionError(f"partial info XML ({len(data)} bytes): {e}") from None
    assert root.tag == "files"
    return [int(f.findtext("sequence")) for f in root.findall("file")]


def test_reader_racing_the_writer_never_sees_a_partial_file(tmp_path):
    path = tmp_path / "info.xml"
    n = 150
    append_entry(str(path), entry(0))
    done = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    def reader() -> None:
        last = 0
        while not done.is_set():
            try:
                seqs = sequences(path)
            except AssertionError as e:
                errors.append(str(e))
                return
            # every version is a prefix of the final list: entries are only ever appended
            assert seqs == list(range(len(seqs))), seqs[:5]
            assert len(seqs) >= last, (len(seqs), last)
            last = len(seqs)
            seen.append(last)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for i in range(1, n):
            append_entry(str(path), entry(i))
    finally:
        done.set()
        for t in readers:
            t.join()
    assert not errors, errors[0]
    assert sequences(path) == list(range(n))
    # the readers did race the writer: they saw many different versions, not just the last
    assert len(set(seen)) > 10, sorted(set(seen))
    assert not list(tmp_path.glob(".pyrec-info-*")), "temporary files left behind"


_CHILD = """
import sys
from pyrec.infoxml import InfoEntry, append_entry
path, start = sys.argv[1], int(sys.argv[2])
i = start
while True:
    append_entry(path, InfoEntry(f"tx{i}", "task", "m" * 20000, "default", "app", "s",
                 f"rec/s-{i}.mp4", 1, 1, i, False, "c", "s", "f"))
    print(i, flush=True)
    i += 1
"""


def test_writer_killed_mid_write_keeps_a_whole_previous_version(tmp_path):
    """A real crash: a writer process appending big entries in a loop is SIGKILLed at varied
    moments; after each kill the info file parses and holds every entry the writer reported
    done (and possibly the one in flight), in order."""
    path = tmp_path / "info.xml"
    done = 0
    for k in range(6):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(done)],
                                 stdout=subprocess.PIPE, text=True)
        reported = []
        assert child.stdout is not None
        while len(reported) < 3 + k:  # let it finish a few, then kill it while it writes
            line = child.stdout.readline()
            assert line, "writer died on its own"
            reported.append(int(line))
        time.sleep(0.001 * k)
        child.send_signal(signal.SIGKILL)
        child.wait()
        reported += [int(x) for x in child.stdout.read().split()]  # printed before the kill
        child.stdout.close()
        seqs = sequences(path)
        assert seqs == list(range(len(seqs)))
        assert len(seqs) in (reported[-1] + 1, reported[-1] + 2), (len(seqs), reported[-1])
        done = len(seqs)
    assert done >= 6 * 3


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"needs to mount a size-limited tmpfs (root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_keeps_the_previous_version(tiny_disk):
    path = tiny_disk / "info.xml"
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"\0" * (96 << 10))
    ok = 0
    failure = None
    for i in range(200):  # 4 KiB entries on 256 KiB: a rewrite soon runs out of room
        try:
            append_entry(str(path), entry(i, pad=4000))
        except OSError as e:
            failure = e
            break
        ok += 1
    assert failure is not None and failure.errno == errno.ENOSPC, failure
    assert ok > 5
    assert sequences(path) == list(range(ok))  # the previous version, whole
    assert not list(tiny_disk.glob(".pyrec-info-*")), "temporary file left on the full disk"
    with pytest.raises(OSError):  # again, while still full: the same whole file
        append_entry(str(path), entry(ok, pad=4000))
    assert sequences(path) == list(range(ok))
    ballast.unlink()  # space returns: the next append works and nothing was lost
    append_entry(str(path), entry(ok, pad=4000))
    assert sequences(path) == list(range(ok + 1))
