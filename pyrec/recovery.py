"""Crash recovery at start-up (DESIGN principle 1), in one place: every pyrec file left open
under the record roots is finalised (or removed when no media reached it) and reported; a
file a stored task had open is also counted by its task (totals, current file, info XML)."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from pyrec import repair
from pyrec.config import Config

__all__ = ["scan_roots", "record_roots", "repair_one"]

log = logging.getLogger("pyrec.recovery")


def record_roots(config: Config) -> list[tuple[Path, str]]:
    """The existing record roots, each with its app's `finish` (the record root alone: the
    default, hybrid)."""
    roots = {config.record_root.resolve(): "hybrid"}
    roots |= {a.root.resolve(): a.finish for v in config.vhosts.values()
              for a in v.apps.values()}
    return sorted((r, f) for r, f in roots.items() if r.exists())


def repair_one(path: str, finish: str = "hybrid") -> repair.RepairReport | None:
    """Finalise `path` (as `finish` says); None when it was removed (opened just before a
    crash: the init segment is written with the first fragment, so no media reached it) or
    cannot be read."""
    try:
        rep = repair.repair(path, finish=finish)
    except OSError as e:
        log.error("cannot finalise %s left open by a crash: %s", path, e)
        return None
    if rep.status == repair.UNRECOVERABLE and rep.fragments == 0:
        try:
            os.unlink(path)
            log.warning("removed %s: opened just before a crash, it holds no media", path)
        except OSError as e:
            log.error("cannot remove %s: %s", path, e)
        return None
    if rep.status != repair.FINALIZED:
        log.warning("found %s left open by a crash: %s (%s)", path, rep.status, rep.message)
    return rep


def scan_roots(roots: Iterable[tuple[Path, str]],
               claim: Callable[[str, repair.RepairReport], None]) -> list[str]:
    """Finalise every unfinished file under each (root, finish) of `roots`; `claim(path,
    report)` is called for each kept file (a task counts its own). Returns the kept files'
    paths."""
    out = []
    for root, finish in roots:
        for path in repair.find_unfinished(root):
            rep = repair_one(str(path), finish)
            if rep is not None:
                claim(str(path), rep)
                out.append(str(path))
    return out
