#!/usr/bin/env python3
"""Import cost of a pyrec command: what `python -X importtime` charges beyond the interpreter's
own start-up.

    python bench/imports.py                       # `-m pyrec record <120 s FLV> -o out.mp4`
    python bench/imports.py --runs 21 -- -m pyrec --help

How it counts: `-X importtime` prints one line per module imported, with its self time (the
module's own body) and its cumulative time (self + everything it imported first). The
interpreter's start-up ends when the top-level `site` import completes (`site` runs the
.pth files of site-packages, which on some machines import far more than the interpreter
itself). Every module that `python -c pass` does not load is charged to the command: `runpy`
for `-m`, `pyrec` and all it loads, and modules imported later while the command runs (e.g.
`locale` by argparse's gettext). The figure is the sum of their **self** times (each module
counted once; a stdlib module that start-up already loaded costs nothing because it is not
imported again). Two variants are reported:

  site      the command as a user types it (`python -X importtime -m pyrec ...`): modules that
            this machine's site/.pth processing preloads (here re, typing, pathlib, ... via a
            CA-injection .pth of the sandbox) are free;
  no-site   `python -S` with site-packages on PYTHONPATH, start-up = the modules of
            `python -S -c "import site"` (the bare interpreter plus a stock site's own imports:
            os, stat, posixpath, _sitebuiltins, ..., no .pth): pyrec pays for every other stdlib
            module it needs, which is the cost on an interpreter whose site imports nothing.

Times are wall microseconds of a noisy machine: each variant is run --runs times and the
minimum and median of the per-run sums are printed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse(stderr: str) -> list[tuple[str, int, int]]:
    """(module name with its indentation, self us, cumulative us) per importtime line."""
    out = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        selfus, cum, name = line[len("import time:"):].split("|", 2)
        out.append((name.rstrip()[1:] if name.startswith(" ") else name.rstrip(),
                    int(selfus), int(cum)))
    return out


def charged(stderr: str, baseline: set[str]) -> tuple[int, list[tuple[str, int, int]]]:
    """Sum of self us of the modules the interpreter's start-up (`baseline`) did not load,
    and those modules."""
    mods = [r for r in parse(stderr) if r[0].strip() not in baseline]
    return sum(s for _, s, _ in mods), mods


def startup_modules(no_site: bool) -> set[str]:
    """Modules of the interpreter's own start-up: `python -c pass`, or with -S the bare
    interpreter plus what a stock `site` imports (`import site` without running its .pth)."""
    args = ["-c", "import site"] if no_site else ["-c", "pass"]
    return {n.strip() for n, _, _ in parse(run_once(args, no_site))}


def run_once(args: list[str], no_site: bool) -> str:
    env = dict(os.environ)
    cmd = [sys.executable]
    if no_site:
        purelib = sysconfig.get_paths()["purelib"]
        platlib = sysconfig.get_paths()["platlib"]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([platlib, purelib]))
        cmd.append("-S")
    cmd += ["-X", "importtime", *args]
    # cwd "/": not a source tree whose pyrec/ would shadow the installed package
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       env=env, cwd="/")
    if p.returncode != 0:
        tail = "\n".join(l for l in p.stderr.splitlines() if not l.startswith("import time:"))
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {tail}")
    return p.stderr


def measure(args: list[str], runs: int, no_site: bool) -> dict:
    base = startup_modules(no_site)
    sums: list[int] = []
    best_mods: list[tuple[str, int, int]] = []
    for _ in range(runs):
        total, mods = charged(run_once(args, no_site), base)
        if not sums or total < min(sums):
            best_mods = mods
        sums.append(total)
    return {"min_ms": min(sums) / 1000, "median_ms": statistics.median(sums) / 1000,
            "modules": [n.strip() for n, _, _ in best_mods], "rows": best_mods}


def default_args(out_dir: str) -> list[str]:
    sys.path.insert(0, str(HERE))
    from remux import make_input  # noqa: PLC0415  (bench helper, not pyrec)
    src = make_input(120)
    return ["-m", "pyrec", "record", str(src), "-o", os.path.join(out_dir, "out.mp4"),
            "--overwrite", "-q"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--verbose", action="store_true", help="print the cheapest run's modules")
    ap.add_argument("cmd", nargs=argparse.REMAINDER,
                    help="arguments after `python -X importtime` (default: pyrec record)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyrec-imports-") as d:
        args = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
        args = args or default_args(d)
        for no_site in (False, True):
            m = measure(args, a.runs, no_site)
            label = "no-site" if no_site else "site"
            print(f"{label:8s} imports charged: min {m['min_ms']:.1f} ms, median "
                  f"{m['median_ms']:.1f} ms over {a.runs} runs; {len(m['modules'])} modules: "
                  f"{' '.join(m['modules'])}")
            if a.verbose:
                for n, s, c in m["rows"]:
                    print(f"    {s:7d} {c:7d} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
