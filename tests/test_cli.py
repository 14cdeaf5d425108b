"""`pyrec record` as a user runs it (python -m pyrec record ...): FLV sources made by the ffmpeg
CLI, interval splits, continuity, track selection, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import checks
import media
import probe


def run_cli(*args: str, cwd=None, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyrec", "record", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def flv6(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "in.flv"
    media.make_flv_cli(path, seconds=6.0, gop=30, fps=30)
    return media.read_truth(path)


def _mp4s(d):
    return sorted((p for p in d.iterdir() if p.suffix == ".mp4"),
                  key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def _check_all_packets(clip, paths, streams):
    """The files together hold exactly the source's packets (bytes, order, timestamp steps)."""
    expected = media.expected_packets(clip, streams, keep_leading=True)
    pos = {st.index: 0 for st in streams}
    for path in paths:
        mp4 = checks.parse_recording(path)
        tracks = checks.tracks_in_order(mp4, streams)
        exp = []
        for trk, st in zip(tracks, streams):
            n = len(trk.samples)
            e = expected[st.index][pos[st.index]:pos[st.index] + n]
            checks.assert_samples_match(trk, st, e, mp4)
            pos[st.index] += n
            exp.append(e)
        checks.assert_readers_agree(path, streams, exp)
    for st in streams:
        assert pos[st.index] == len(expected[st.index]), (
            f"{st.kind}: {pos[st.index]} packets recorded, {len(expected[st.index])} expected")


def test_record_single_file(flv6, tmp_path):
    out = tmp_path / "single_${Sequence}.mp4"
    r = run_cli(str(flv6.path), "-o", str(out))
    assert r.returncode == 0, r.stderr
    paths = _mp4s(tmp_path)
    assert [p.name for p in paths] == ["single_0.mp4"]
    _check_all_packets(flv6, paths, flv6.streams)
    mp4 = checks.parse_recording(paths[0])
    checks.assert_durations(mp4, checks.tracks_in_order(mp4, flv6.streams))


def test_record_plain_output_name(flv6, tmp_path):
    """The bench's form: `-o out.mp4` without macros."""
    r = run_cli(str(flv6.path), "-o", str(tmp_path / "out.mp4"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.mp4").exists()
    assert probe.count_packets(tmp_path / "out.mp4") == [len(s.packets) for s in flv6.streams]


@pytest.mark.parametrize("rule", ["discontinuity", "continuity"])
def test_record_interval(flv6, tmp_path, rule):
    r = run_cli(str(flv6.path), "-o", str(tmp_path / "iv_${Sequence}.mp4"), "--interval", "2000",
                "--segmentation-rule", rule)
    assert r.returncode == 0, r.stderr
    paths = _mp4s(tmp_path)
    assert len(paths) == 3, [p.name for p in paths]
    _check_all_packets(flv6, paths, flv6.streams)
    mp4s = [checks.parse_recording(p) for p in paths]
    for k, m in enumerate(mp4s):
        assert m.video.samples[0].sync
        if rule == "discontinuity" or k == 0:
            assert m.video.samples[0].dts == 0
        else:
            for tid in m.track_ids():  # exact in presentation time (edit lists included)
                trk, prev = m.tracks[tid], mp4s[k - 1].tracks[tid]
                assert (trk.samples[0].dts - trk.presentation_offset()
                        == prev.end_dts - prev.presentation_offset())


@pytest.mark.parametrize("sel", ["bypass_video", "0"])
def test_record_tracks_video_only(flv6, tmp_path, sel):
    r = run_cli(str(flv6.path), "-o", str(tmp_path / "v_${Sequence}.mp4"), "--tracks", sel)
    assert r.returncode == 0, r.stderr
    paths = _mp4s(tmp_path)
    assert len(paths) == 1
    mp4 = checks.parse_recording(paths[0])
    assert [t.handler for t in mp4.tracks.values()] == ["vide"]
    _check_all_packets(flv6, paths, [flv6.video])


def test_record_tracks_audio_only(flv6, tmp_path):
    r = run_cli(str(flv6.path), "-o", str(tmp_path / "a_${Sequence}.mp4"), "--tracks",
                "bypass_audio")
    assert r.returncode == 0, r.stderr
    paths = _mp4s(tmp_path)
    mp4 = checks.parse_recording(paths[0])
    assert [t.handler for t in mp4.tracks.values()] == ["soun"]
    _check_all_packets(flv6, paths, [flv6.audio])


def test_record_part_duration(flv6, tmp_path):
    r = run_cli(str(flv6.path), "-o", str(tmp_path / "p_${Sequence}.mp4"), "--part-duration",
                "250")
    assert r.returncode == 0, r.stderr
    mp4 = checks.parse_recording(_mp4s(tmp_path)[0])
    assert len(mp4.fragments) >= 20, len(mp4.fragments)


def test_record_mp4_source_through_pyav(clips, tmp_path):
    clip = clips.get(video="h264", audio="aac", seconds=2.0)
    r = run_cli(str(clip.path), "-o", str(tmp_path / "m_${Sequence}.mp4"))
    assert r.returncode == 0, r.stderr
    _check_all_packets(clip, _mp4s(tmp_path), clip.streams)


# words: the message must contain at least one of them
@pytest.mark.parametrize("args,words", [
    (["{missing}", "-o", "{out}"], ["no such file"]),
    (["{noise}", "-o", "{out}"], ["malformed", "invalid data"]),
    (["{flv}", "-o", "{out}", "--segmentation-rule", "sideways"], ["segmentation"]),
    (["{flv}", "-o", "{out}", "--tracks", "bypass_subtitles"], ["bypass_subtitles"]),
    (["{flv}", "-o", "{out}", "--interval", "-5"], ["interval"]),
    (["{flv}", "-o", "{out}", "--schedule", "0 0 */25"],
     ["--schedule: hours field '*/25': step 25 is outside 1-23"]),
    (["{flv}", "-o", "{out}", "--schedule", "0 61 *"],
     ["--schedule: minutes field '61': 61 is outside 0-59"]),
])
def test_cli_errors_are_clear(flv6, tmp_path, args, words):
    noise = tmp_path / "noise.flv"
    noise.write_bytes(os.urandom(4096))
    fill = dict(missing=str(tmp_path / "missing.flv"), noise=str(noise), flv=str(flv6.path),
                out=str(tmp_path / "e_${Sequence}.mp4"))
    r = run_cli(*[a.format(**fill) if a.startswith("{") else a for a in args])
    assert r.returncode != 0
    err = r.stderr.lower()
    assert "traceback" not in err, r.stderr
    assert any(w in err for w in words), f"none of {words} in stderr: {r.stderr!r}"


# --- what a new user hit (issue 8, section 5) ---------------------------------------------

@pytest.fixture(scope="module")
def big_flv(tmp_path_factory):
    """An FLV larger than the reader's 1 MiB read, so an error found in the first read leaves
    input unread (lossless x264)."""
    path = tmp_path_factory.mktemp("big") / "big.flv"
    media.make_flv_cli(path, seconds=2.0, size="854x480", extra=("-qp", "0"))
    assert path.stat().st_size > (1 << 20) + 65536
    return path


@pytest.mark.parametrize("track", ["subtitles", "2", "bypass_data"])
def test_track_not_in_the_source_is_reported_as_such(big_flv, tmp_path, track):
    r = run_cli(str(big_flv), "-o", str(tmp_path / "t_${Sequence}.mp4"), "--tracks", track)
    assert r.returncode == 1
    assert r.stderr == (f"pyrec: error: track {track!r} is not in the source; it has "
                        "0:bypass_video (video), 1:bypass_audio (audio)\n")
    assert list(tmp_path.glob("*.mp4")) == []


def test_missing_input_says_no_such_file(tmp_path):
    missing = tmp_path / "missing.flv"
    r = run_cli(str(missing), "-o", str(tmp_path / "x.mp4"))
    assert (r.returncode, r.stderr) == (1, f"pyrec: error: {missing}: No such file or directory\n")


def test_split_without_sequence_numbers_the_files_like_the_server(flv6, tmp_path):
    """out.mp4, out-1.mp4, out-2.mp4 (the server's rule for a taken name), every packet kept;
    a second run with --overwrite replaces the same names instead of adding new ones."""
    for extra in ([], ["--overwrite"]):
        r = run_cli(str(flv6.path), "-o", str(tmp_path / "out.mp4"), "--interval", "2000",
                    "-q", *extra)
        assert r.returncode == 0, r.stderr
        names = sorted(p.name for p in tmp_path.glob("*.mp4"))
        assert names == ["out-1.mp4", "out-2.mp4", "out.mp4"], names
        paths = [tmp_path / "out.mp4", tmp_path / "out-1.mp4", tmp_path / "out-2.mp4"]
        _check_all_packets(flv6, paths, flv6.streams)
    # Without --overwrite the existing first name is refused, nothing is replaced.
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.mp4")}
    r = run_cli(str(flv6.path), "-o", str(tmp_path / "out.mp4"), "--interval", "2000")
    assert r.returncode == 1 and "output file exists" in r.stderr, r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.mp4")} == before


def test_transaction_id_is_generated(flv6, tmp_path):
    ids = []
    for run in ("a", "b"):
        r = run_cli(str(flv6.path), "-o", str(tmp_path / f"{run}_${{TransactionId}}_${{Sequence}}.mp4"),
                    "--interval", "3000", "-q")
        assert r.returncode == 0, r.stderr
        names = sorted(p.name for p in tmp_path.glob(f"{run}_*.mp4"))
        assert len(names) == 2, names
        txn = {n.split("_")[1] for n in names}
        assert len(txn) == 1, names  # one id per recording, in every file's name
        [t] = txn
        assert len(t) == 16 and t.isalnum() and t.isascii(), t
        ids.append(t)
    assert ids[0] != ids[1]


def test_version():
    from importlib.metadata import version
    r = subprocess.run([sys.executable, "-m", "pyrec", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, f"pyrec {version('pyrec')}\n")
