#!/usr/bin/env python3
"""Mutation run: how many plausible one-line bugs do the tests catch?

Each planned mutant is (file, exact original snippet, replacement, the tests that should catch
it). The run copies the working tree to a scratch directory (default /tmp/pyrec-mutation),
builds the C tests (cmake, plain Debug build) and the Python extension (cmake with SKBUILD,
copied with the package's .py files into a scratch site directory that PYTHONPATH puts first),
checks that every named test passes on the unmutated copy, then applies the mutants one at a
time: rebuild what the file needs, run its tests (C tests through ctest, Python tests with
pytest -x) until one fails (killed) or all pass (survived), restore. A mutant whose snippet is
not found exactly once is skipped (the code moves on in parallel); one that does not compile
is reported apart (not a test result). Nothing in the source tree is modified.

  python bench/mutate.py [--only ID,ID] [--work DIR] [--fuzz-seconds N] [--timeout S]
                         [--report FILE]

Run it with the venv whose packages the tests need (the pytest plugins, PyAV, ...). Results:
a table on stdout and, with --report, the same as Markdown (RELIABILITY.md quotes it).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]  # "c:NAME" (a ctest test) or "py:FILE[::NODE]" (pytest)
    why: str


M = Mutant
MUTANTS: list[Mutant] = [
    # ---- FLV / E-RTMP tag body parser (csrc/flv.c) ----------------------------------------
    M("flv-avc-header-short", "csrc/flv.c",
      'if (!rd_has(r, 3))\n    return pyrec_seterr(err, PYREC_E_MALFORMED, -1,\n'
      '                        "%s video tag shorter than its 5-byte header',
      'if (!rd_has(r, 2))\n    return pyrec_seterr(err, PYREC_E_MALFORMED, -1,\n'
      '                        "%s video tag shorter than its 5-byte header',
      ("c:test_flv", "c:fuzz_flvtags"), "AVC/HEVC NALU header length check one byte short"),
    M("flv-cts-short", "csrc/flv.c",
      "if (!rd_has(r, 3))\n        return pyrec_seterr(err, PYREC_E_MALFORMED, -1,\n"
      '                            "%s CodedFrames without composition time"',
      "if (!rd_has(r, 2))\n        return pyrec_seterr(err, PYREC_E_MALFORMED, -1,\n"
      '                            "%s CodedFrames without composition time"',
      ("c:test_flv", "c:fuzz_ertmp"), "E-RTMP composition time check one byte short"),
    M("flv-vfourcc-short", "csrc/flv.c",
      'if (!rd_has(r, 4))\n    return pyrec_seterr(err, PYREC_E_MALFORMED, -1,\n'
      '                        "enhanced video tag without its FourCC',
      'if (!rd_has(r, 3))\n    return pyrec_seterr(err, PYREC_E_MALFORMED, -1,\n'
      '                        "enhanced video tag without its FourCC',
      ("c:test_flv", "c:fuzz_ertmp"), "video FourCC check one byte short"),
    M("flv-modex-short", "csrc/flv.c", "if (!rd_has(r, n + 1))", "if (!rd_has(r, n))",
      ("c:test_flv", "c:fuzz_ertmp"), "ModEx data check forgets the type byte"),
    M("flv-si24-unsigned", "csrc/flv.c",
      "return (v & 0x800000u) ? (int32_t)v - 0x1000000 : (int32_t)v;", "return (int32_t)v;",
      ("c:test_flv",), "composition time read unsigned"),
    M("flv-keyframe", "csrc/flv.c", "  t->keyframe = ftype == 1;\n  if (cid == 7",
      "  t->keyframe = ftype <= 2;\n  if (cid == 7", ("c:test_flv",),
      "inter frames taken for keyframes"),
    M("flv-channels", "csrc/flv.c", "t->channels = (b0 & 1) + 1u;", "t->channels = 2;",
      ("c:test_flv",), "mono audio reported as stereo"),
    M("flv-prevsize-zero", "csrc/flv.c", "    if (v != total) {", "    if (v != total && v != 0) {",
      ("c:test_flv",), "a PreviousTagSize of 0 accepted"),
    # ---- codec configuration records and payloads ----------------------------------------
    M("avcc-short", "csrc/codec_h26x.c", "if (len < 7)\n    return pyrec_seterr(err, PYREC_E_CONFIG, -1, \"h264: avcC too short",
      "if (len < 6)\n    return pyrec_seterr(err, PYREC_E_CONFIG, -1, \"h264: avcC too short",
      ("c:test_codec",), "avcC minimum length one byte short"),
    M("hvcc-short", "csrc/codec_h26x.c", "if (len < 23)", "if (len < 22)", ("c:test_codec",),
      "hvcC minimum length one byte short"),
    M("hvcc-array-short", "csrc/codec_h26x.c", "if (len - pos < 3)", "if (len - pos < 2)",
      ("c:test_codec",), "hvcC array header check one byte short"),
    M("av1c-short", "csrc/codec_av1vp9.c", "if (len < 4)\n      return pyrec_seterr(err, PYREC_E_CONFIG, -1, \"av1: av1C too short",
      "if (len < 3)\n      return pyrec_seterr(err, PYREC_E_CONFIG, -1, \"av1: av1C too short",
      ("c:test_codec",), "av1C minimum length one byte short"),
    M("vpcc-init-short", "csrc/codec_av1vp9.c", "if (init > len - 8)", "if (init > len - 7)",
      ("c:test_codec",), "vpcC codec init data check one byte short"),
    M("opushead-short", "csrc/codec_audio.c", "if (len < 19)", "if (len < 18)",
      ("c:test_codec",), "OpusHead minimum length one byte short"),
    M("adts-short", "csrc/codec_audio.c", "if (len < 7)\n    return pyrec_seterr(err, PYREC_E_MALFORMED, 0, \"aac: truncated ADTS",
      "if (len < 6)\n    return pyrec_seterr(err, PYREC_E_MALFORMED, 0, \"aac: truncated ADTS",
      ("c:test_codec",), "ADTS header length one byte short"),
    # ---- AMF0 and RTMP ------------------------------------------------------------------
    M("amf0-number-short", "csrc/amf0.c", 'need(r, 8, "number")', 'need(r, 7, "number")',
      ("c:test_amf0", "c:fuzz_amf0"), "AMF0 number length one byte short"),
    M("amf0-depth", "csrc/amf0.c", "if (depth >= max_depth)", "if (depth > max_depth)",
      ("c:test_amf0", "c:fuzz_amf0"), "nesting limit off by one"),
    M("rtmp-ctrl-need", "csrc/rtmp_conn.c", "need[7] = {0, 4, 4, 4, 2, 4, 5};",
      "need[7] = {0, 4, 4, 4, 2, 4, 4};", ("c:test_rtmp", "c:fuzz_chunks"),
      "Set Peer Bandwidth length check one byte short"),
    M("rtmp-csid3", "csrc/rtmp_chunk.c", "return 64u + h[1] + 256u * h[2];",
      "return 64u + h[1] + 255u * h[2];", ("c:test_rtmp",), "3-byte chunk stream id misread"),
    M("rtmp-fmt3-ts", "csrc/rtmp_chunk.c", "    s->ts += s->ts_field;\n", "",
      ("c:test_rtmp",), "type-3 chunk starting a message keeps the old timestamp"),
    # ---- timestamp repair, recorder, fMP4 writer ----------------------------------------
    M("tsfix-unwrap", "csrc/tsfix.c", "unwrapped = sat_add(t->last_unwrapped, delta);",
      "unwrapped = raw;", ("c:test_tsfix", "py:test_ts_counters.py"),
      "32-bit wrap not unwrapped (re-anchoring hides it)"),
    M("tsfix-wrap-count", "csrc/tsfix.c", "if (raw < t->last_raw && delta > 0)",
      "if (raw < t->last_raw)", ("c:test_tsfix", "py:test_ts_counters.py"),
      "a backward step counted as a wrap"),
    M("rec-interval", "csrc/rec.c", "ms - r->cur.start_ms >= r->o.interval_ms",
      "ms - r->cur.start_ms > r->o.interval_ms", ("c:test_rec", "py:test_split.py"),
      "interval split one keyframe late when it falls on the boundary"),
    M("rec-anchor-key", "csrc/rec.c", "int key = is_anchor && (p->flags & PYREC_SAMPLE_KEY || !t->video);",
      "int key = (is_anchor | 1) && (p->flags & PYREC_SAMPLE_KEY || !t->video);", ("c:test_rec", "py:test_split.py"),
      "audio-only keyframe decision on a video stream"),
    M("fmp4-sync-flags", "csrc/fmp4_boxes.c", "(s[i].key || !video) ? PYREC_SFLAGS_SYNC : PYREC_SFLAGS_NONSYNC",
      "(s[i].key) ? PYREC_SFLAGS_SYNC : PYREC_SFLAGS_NONSYNC", ("c:test_fmp4", "py:test_fragments.py"),
      "audio samples marked non-sync"),
    M("fmp4-duration", "csrc/fmp4_writer.c", "t->s[k].duration = (uint32_t)(t->s[k + 1].dts - t->s[k].dts);",
      "t->s[k].duration = (uint32_t)(t->s[k + 1].dts - t->s[k].dts - 1);",
      ("c:test_fmp4", "py:test_fragments.py"), "sample duration one tick short"),
    # ---- Python control plane -----------------------------------------------------------
    M("paths-hour12", "pyrec/paths.py", '"hh": f"{t.hour:02d}"', '"hh": f"{t.hour % 12:02d}"',
      ("py:test_localtime.py", "py:test_schedule.py"), "12-hour clock in ${StartTime:hh}"),
    M("paths-endtime", "pyrec/paths.py", "(ctx.end_time or ctx.start_time)", "ctx.start_time",
      ("py:test_localtime.py", "py:test_service_e2e.py::test_end_time_name_appears_at_close_and_never_overwrites"),
      "${EndTime} expands to the start time"),
    M("paths-escape", "pyrec/paths.py", "if full != base and base not in full.parents:",
      "if full != base and base not in full.parents and not path.startswith('..'):",
      ("py:test_security.py",), "a relative path leaving the root accepted"),
    M("paths-now-utc", "pyrec/paths.py", "t = datetime.now().astimezone()",
      "t = datetime.utcnow()", ("py:test_localtime.py",), "default ${StartTime} in UTC"),
    M("schedule-range", "pyrec/schedule.py", "if n is not None and not low <= int(n) <= top:",
      "if n is not None and not low <= int(n) <= top + 1:",
      ("py:test_schedule.py",), "schedule field 60/24 accepted"),
    M("schedule-utc", "pyrec/schedule.py", "ref = t.astimezone()  # a naive",
      "ref = t.astimezone(__import__('datetime').timezone.utc)  # a naive",
      ("py:test_localtime.py",), "schedule evaluated in UTC"),
    M("infoxml-inplace", "pyrec/infoxml.py",
      "fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, MODE)",
      "fd = os.open((tmp := path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, MODE)",
      ("py:test_infoxml_atomic.py",), "info XML rewritten in place (not atomic)"),
    M("infoxml-drop-old", "pyrec/infoxml.py",
      'body = old[start + len("<files>"):end].lstrip("\\n")', 'body = ""',
      ("py:test_infoxml_atomic.py",), "each append drops the earlier entries"),
    M("tasks-both-splits", "pyrec/schemas.py", "if interval is not None and schedule is not None:",
      "if interval is not None and schedule is not None and False:",
      ("py:test_api_conformance.py", "py:test_api_fuzz.py"), "interval and schedule together accepted"),
    M("tasks-interval-negative", "pyrec/schemas.py", "if spec.interval < 0:", "if spec.interval < -1:",
      ("py:test_api_values.py", "py:test_api_conformance.py", "py:test_api_fuzz.py"),
      "interval -1 accepted"),
    M("tasks-stop-twice", "pyrec/tasks.py", "if task is None or task.stopping:", "if task is None:",
      ("py:test_api_conformance.py", "py:test_api_values.py"),
      "a task being stopped can be stopped again"),
    M("tasks-iso-seconds", "pyrec/events.py", 'return t.isoformat(timespec="milliseconds")',
      'return t.isoformat(timespec="seconds")', ("py:test_api_conformance.py",),
      "API times without milliseconds"),
    M("tasks-now-utc", "pyrec/tasks.py", "    return datetime.now().astimezone()\n\n\ndef _fsync_close",
      "    return datetime.now(__import__('datetime').timezone.utc)\n\n\ndef _fsync_close",
      ("py:test_localtime.py",), "task times in UTC"),
    M("api-garbage-empty", "pyrec/api.py", 'raise ApiError(400, f"[JSON] {e}") from None',
      "return {}", ("py:test_api_fuzz.py",), "a body that is not JSON read as {}"),
    M("api-auth-scheme", "pyrec/api.py", 'if scheme.lower() != "basic":', 'if scheme.lower() not in ("basic", "bearer"):',
      ("py:test_security.py", "py:test_api_conformance.py"), "Bearer accepted as Basic"),
    M("recorder-dst", "pyrec/recorder.py",
      "return t.astimezone() if t.utcoffset() == self.t0.astimezone().utcoffset() else t",
      "return t", ("py:test_localtime.py",), "file names keep the offset of the start across DST"),
]


def sh(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None,
       timeout: float | None = None) -> tuple[int, str]:
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")[-2000:] if isinstance(e.stdout, bytes) else (e.stdout or "")
        return -9, f"timeout after {timeout}s\n{out}"
    return r.returncode, (r.stdout + r.stderr)[-4000:]


class Tree:
    def __init__(self, work: Path, fuzz_seconds: int, timeout: float) -> None:
        self.work = work
        self.src = work / "src"
        self.build = work / "build"
        self.ext = work / "ext"
        self.site = work / "site"
        self.fuzz_seconds = fuzz_seconds
        self.timeout = timeout

    def copy(self) -> None:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split("\n")
        if self.src.exists():
            shutil.rmtree(self.src)
        for f in files:
            if f and (ROOT / f).is_file():
                dst = self.src / f
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, dst)

    def build_c(self) -> tuple[int, str]:
        if not (self.build / "CMakeCache.txt").exists():
            rc, out = sh(["cmake", "-S", str(self.src), "-B", str(self.build),
                          "-DPYREC_C_TESTS=ON", f"-DPYREC_FUZZ_SECONDS={self.fuzz_seconds}",
                          "-DCMAKE_BUILD_TYPE=Debug"])
            if rc:
                return rc, out
        return sh(["cmake", "--build", str(self.build), "-j2"])

    def build_ext(self) -> tuple[int, str]:
        if not (self.ext / "CMakeCache.txt").exists():
            rc, out = sh(["cmake", "-S", str(self.src), "-B", str(self.ext), "-DSKBUILD=ON",
                          f"-DPython_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release"])
            if rc:
                return rc, out
        rc, out = sh(["cmake", "--build", str(self.ext), "-j2", "--target", "_core"])
        if rc:
            return rc, out
        pkg = self.site / "pyrec"
        pkg.mkdir(parents=True, exist_ok=True)
        for so in self.ext.glob("_core*.so"):
            shutil.copy2(so, pkg / so.name)
        return 0, ""

    def sync_py(self) -> None:
        pkg = self.site / "pyrec"
        pkg.mkdir(parents=True, exist_ok=True)
        for f in (self.src / "pyrec").iterdir():
            if f.is_file() and f.suffix != ".so":
                shutil.copy2(f, pkg / f.name)

    def run_test(self, spec: str) -> tuple[bool, str]:
        """True when the test passed."""
        kind, _, name = spec.partition(":")
        if kind == "c":
            env = dict(os.environ, PYREC_FUZZ_SECONDS=str(self.fuzz_seconds))
            rc, out = sh(["ctest", "--test-dir", str(self.build), "-R", f"^{name}$",
                          "--output-on-failure"], env=env, timeout=self.timeout)
            if "No tests were found" in out:
                return False, f"no ctest named {name}"
            return rc == 0, out
        env = dict(os.environ, PYTHONPATH=str(self.site))
        rc, out = sh([sys.executable, "-m", "pytest", "-c", "../pyproject.toml", "--rootdir", "..",
                      "-x", "-q", "-p", "no:cacheprovider", name],
                     cwd=self.src / "tests", env=env, timeout=self.timeout)
        return rc == 0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/pyrec-mutation")
    ap.add_argument("--only", default="")
    ap.add_argument("--fuzz-seconds", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--report", default="")
    a = ap.parse_args()
    mutants = [m for m in MUTANTS if not a.only or m.id in a.only.split(",")]
    tree = Tree(Path(a.work), a.fuzz_seconds, a.timeout)
    t_start = time.monotonic()
    print(f"== copying the tree to {tree.src}", flush=True)
    tree.copy()
    for what, fn in (("C tests", tree.build_c), ("extension", tree.build_ext)):
        print(f"== building the {what}", flush=True)
        rc, out = fn()
        if rc:
            print(out)
            return 2
    tree.sync_py()

    specs = sorted({s for m in mutants for s in m.tests})
    print(f"== baseline: {len(specs)} test sets on the unmutated tree", flush=True)
    red = set()
    for s in specs:
        ok, out = tree.run_test(s)
        print(f"   {'ok  ' if ok else 'RED '} {s}", flush=True)
        if not ok:
            red.add(s)
            print("\n".join(out.splitlines()[-15:]))

    results: list[tuple[Mutant, str, str]] = []
    for m in mutants:
        path = tree.src / m.file
        text = path.read_text()
        n = text.count(m.old)
        tests = [s for s in m.tests if s not in red]
        if n != 1:
            results.append((m, "skipped", f"snippet found {n} times"))
        elif not tests:
            results.append((m, "skipped", "its tests are red on the unmutated tree"))
        else:
            t0 = time.monotonic()
            path.write_text(text.replace(m.old, m.new))
            try:
                verdict, detail = "survived", "all passed: " + " ".join(tests)
                built = True
                if m.file.endswith((".c", ".h")):
                    rc, out = tree.build_c()
                    if rc == 0 and any(s.startswith("py:") for s in tests):
                        rc, out = tree.build_ext()
                    if rc:
                        verdict, detail, built = "invalid", "does not compile", False
                elif m.file.endswith(".pyx"):
                    rc, _ = tree.build_ext()
                    if rc:
                        verdict, detail, built = "invalid", "does not compile", False
                else:
                    tree.sync_py()
                if built:
                    for s in tests:
                        ok, out = tree.run_test(s)
                        if not ok:
                            why = "timeout" if out.startswith("timeout") else "failed"
                            verdict, detail = "killed", f"{s} {why}"
                            break
            finally:
                path.write_text(text)
                tree.sync_py()
            detail += f" ({time.monotonic() - t0:.0f} s)"
            results.append((m, verdict, detail))
        r = results[-1]
        print(f"{r[1]:9s} {m.id:24s} {r[2]}", flush=True)
    # leave the scratch builds matching the unmutated tree
    tree.build_c()
    tree.build_ext()

    counted = [r for r in results if r[1] in ("killed", "survived")]
    killed = sum(r[1] == "killed" for r in counted)
    rate = 100.0 * killed / len(counted) if counted else 0.0
    summary = (f"{killed} of {len(counted)} mutants killed ({rate:.0f} %); "
               f"{sum(r[1] == 'skipped' for r in results)} skipped, "
               f"{sum(r[1] == 'invalid' for r in results)} invalid; "
               f"{(time.monotonic() - t_start) / 60:.0f} min")
    print("== " + summary)
    if a.report:
        lines = ["| mutant | file | bug | result |", "|---|---|---|---|"]
        for m, verdict, detail in results:
            lines.append(f"| {m.id} | {m.file} | {m.why} | {verdict}: {detail} |")
        Path(a.report).write_text(summary + "\n\n" + "\n".join(lines) + "\n")
    return 0 if rate >= 90 else 1


if __name__ == "__main__":
    sys.exit(main())
