"""The `pyrec` command line."""
from __future__ import annotations

import argparse
import os
import sys

from pyrec import __version__

# Each command imports what it uses, when it runs (`pyrec record` of an FLV loads neither
# PyAV, numpy nor the server: tests/test_imports.py).
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence

    from pyrec.recorder import RecordedFile

__all__ = ["main"]


class _Bar:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: float) -> None:
        if not self.enabled:
            return
        pct = int(done * 100)
        if pct == self.last:
            return
        self.last = pct
        filled = pct * 30 // 100
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {pct:3d}%")
        sys.stderr.flush()

    def end(self) -> None:
        if self.enabled and self.last >= 0:
            sys.stderr.write("\n")


def _record(args: argparse.Namespace) -> int:
    from pyrec._core import PyrecError
    from pyrec.schedule import ScheduleError
    from pyrec.source import record_file

    tracks = [t.strip() for t in args.tracks.split(",") if t.strip()] if args.tracks else None
    if args.source != "-" and "://" not in args.source and not os.path.exists(args.source):
        print(f"pyrec: error: {args.source}: No such file or directory", file=sys.stderr)
        return 1
    bar = _Bar(not args.quiet)

    def report(f: RecordedFile) -> None:
        if not args.quiet:
            bar.end()
            bar.last = -1
            err = f" ERROR {f.error}" if f.error else ""
            print(f"{f.path}\t{f.duration_ms / 1000:.3f}s\t{f.bytes} bytes\t{f.packets} packets{err}")

    try:
        record_file(args.source, args.output, tracks=tracks, interval_ms=args.interval or 0,
                    schedule=args.schedule, segmentation=args.segmentation_rule,
                    part_duration_ms=args.part_duration, overwrite=args.overwrite,
                    progress=bar, on_file=report, finish=args.finish)
    except KeyboardInterrupt:
        bar.end()
        print("pyrec: interrupted; open files were finalised", file=sys.stderr)
        return 130
    except PyrecError as e:
        bar.end()
        where = f" at byte {e.offset}" if e.offset >= 0 else ""
        print(f"pyrec: error: {e.name}: {e.message}{where}", file=sys.stderr)
        return 1
    except (OSError, ValueError, ScheduleError) as e:
        bar.end()
        print(f"pyrec: error: {e}", file=sys.stderr)
        return 1
    bar.end()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyrec", description="Record live streams to fragmented MP4.")
    p.add_argument("--version", action="version", version=f"pyrec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("record", help="record a file or URL (FLV, MPEG-TS, MP4, MKV, RTSP, HLS) to fMP4")
    r.add_argument("source", help="an FLV file (read by the C reader), '-' for FLV on standard "
                                   "input, or anything PyAV opens (MPEG-TS, MP4, MKV, RTSP, HLS)")
    r.add_argument("-o", "--output", required=True,
                   help="output path template; macros: ${Sequence}, ${StartTime:YYYYMMDDhhmmss}, "
                        "${EndTime:...}, ${Stream}, ${Id}, ...")
    split = r.add_mutually_exclusive_group()
    split.add_argument("--interval", type=int, metavar="MS",
                       help="split every MS of media time, on the next keyframe")
    split.add_argument("--schedule", metavar='"S M H"',
                       help='split on a wall-clock schedule, e.g. "0 */10 *" (every 10 minutes)')
    r.add_argument("--segmentation-rule", choices=("discontinuity", "continuity"),
                   default="discontinuity",
                   help="each file starts at 0 (discontinuity) or timestamps continue (continuity)")
    r.add_argument("--tracks", metavar="NAMES",
                   help="comma-separated track names or ids to record (default: all), "
                        "e.g. bypass_video")
    r.add_argument("--part-duration", type=int, default=1000, metavar="MS",
                   help="write a fragment at least every MS of media (crash safety), default 1000")
    r.add_argument("--finish", choices=("hybrid", "fragmented"), default="hybrid",
                   help="hybrid (default): a finished file is also a progressive MP4 that every "
                        "player seeks; fragmented: it stays fMP4 with an mfra index (for MSE)")
    r.add_argument("--overwrite", action="store_true", help="replace existing output files")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar or file list")
    r.set_defaults(func=_record)

    s = sub.add_parser("serve", help="RTMP ingest + OvenMediaEngine-compatible Record API")
    s.add_argument("--config", metavar="FILE", help="TOML configuration file")
    s.add_argument("--host", help="bind address (default 0.0.0.0)")
    s.add_argument("--api-port", type=int, help="Record API port (default 8081)")
    s.add_argument("--rtmp-port", type=int, help="RTMP port (default 1935)")
    s.add_argument("--access-token", help="API AccessToken, usually user:password "
                                          "(default: generated and printed once)")
    s.add_argument("--record-root", metavar="DIR", help="root directory of recordings (default ./records)")
    s.add_argument("--no-auth", action="store_true",
                   help="no API authentication (only allowed with --host 127.0.0.1)")
    s.set_defaults(func=_serve)
    return p


def _serve(args: argparse.Namespace) -> int:
    from pyrec._core import PyrecError
    from pyrec.config import ConfigError, load_config
    from pyrec.serve import run
    from pyrec.store import StoreError

    try:
        cfg = load_config(args.config, host=args.host, api_port=args.api_port,
                          rtmp_port=args.rtmp_port, access_token=args.access_token,
                          record_root=args.record_root, no_auth=args.no_auth or None)
    except (ConfigError, OSError) as e:
        print(f"pyrec: error: {e}", file=sys.stderr)
        return 2
    try:
        return run(cfg)
    except StoreError as e:
        print(f"pyrec: error: {e}", file=sys.stderr)
        return 1
    except PyrecError as e:
        print(f"pyrec: error: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pyrec: error: {e}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "interval", None) is not None and args.interval <= 0:
        print("pyrec: error: --interval must be > 0", file=sys.stderr)
        return 2
    if getattr(args, "schedule", None) is not None:
        from pyrec.schedule import ScheduleError
        from pyrec.schedule import validate as validate_schedule

        try:
            validate_schedule(args.schedule)
        except ScheduleError as e:
            print(f"pyrec: error: --schedule: {e}", file=sys.stderr)
            return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
