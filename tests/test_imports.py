"""Commands import only what they use: `import pyrec` and `pyrec record` of an FLV load none
of the heavy modules (numpy, PyAV, the server, dataclasses/inspect, typing, ...), so the
command's start-up stays small (bench/imports.py measures it; no timing is asserted here).

Each case runs in a fresh `python -S` (site-packages given on PYTHONPATH), so modules that
this machine's site/.pth files happen to preload do not hide an eager import. The
light data classes that replace `dataclasses` on that path are checked against the standard
decorator's behaviour."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import media

import pyrec
from pyrec import lightdata

# Modules the record path must not load (each one eager import would cost 1-30 ms).
HEAVY = ["numpy", "av", "dataclasses", "inspect", "ast", "dis", "typing", "pathlib",
         "fractions", "decimal", "queue", "asyncio", "json", "logging", "sqlite3", "tomllib",
         "xml.sax", "falcon", "waitress", "tempfile", "secrets",
         "pyrec.ingest", "pyrec.serve", "pyrec.tasks", "pyrec.repair", "pyrec.api",
         "pyrec.config", "pyrec.store", "pyrec.infoxml"]



def _modules_after(code: str) -> set[str]:
    """sys.modules after `code` in a fresh interpreter without site (json is imported for
    the report only, after the snapshot)."""
    pkg_root = os.path.dirname(os.path.dirname(pyrec.__file__))
    env = dict(os.environ, PYTHONPATH=pkg_root)
    prog = f"{code}\nimport sys\n_mods = sorted(sys.modules)\n" \
           "import json\nprint(json.dumps(_mods))"
    r = subprocess.run([sys.executable, "-S", "-c", prog], capture_output=True, text=True,
                       env=env, cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.splitlines()[-1]))


@pytest.fixture(scope="module")
def flv(tmp_path_factory):
    path = tmp_path_factory.mktemp("imports") / "in.flv"
    media.make_flv_cli(path, seconds=1.0)
    return path


@pytest.mark.parametrize("what,code", [
    ("import pyrec", "import pyrec"),
    ("import pyrec.cli", "import pyrec.cli"),
    ("parser built", "import pyrec.cli\npyrec.cli.build_parser()"),
])
def test_importing_loads_no_pyrec_module_beyond_the_cli(what, code):
    mods = _modules_after(code)
    loaded = {m for m in mods if m.startswith("pyrec.")}
    assert loaded <= {"pyrec.cli"}, f"{what} loaded {sorted(loaded)}"
    assert not mods & set(HEAVY), f"{what} loaded {sorted(mods & set(HEAVY))}"


def test_record_of_an_flv_loads_no_heavy_module(flv, tmp_path):
    out = tmp_path / "out.mp4"
    code = ("import pyrec.cli\n"
            f"rc = pyrec.cli.main(['record', {str(flv)!r}, '-o', {str(out)!r}, '-q'])\n"
            "assert rc == 0, rc")
    mods = _modules_after(code)
    assert out.stat().st_size > 0
    heavy = sorted(mods & set(HEAVY))
    assert not heavy, f"`pyrec record in.flv` loaded {heavy}"
    # what it does need, so that this test notices if the path stops being exercised
    assert {"pyrec._core", "pyrec.source", "pyrec.recorder", "pyrec.paths"} <= mods


def test_lazy_public_names_resolve():
    code = ("import pyrec\n"
            "names = [getattr(pyrec, n) for n in pyrec.__all__]\n"
            "assert pyrec.Recorder.__module__ == 'pyrec.recorder'\n"
            "assert pyrec.PyrecError is __import__('pyrec._core').\\\n"
            "    _core.PyrecError\n"
            "assert set(pyrec.__all__) <= set(dir(pyrec))\n"
            "try:\n    pyrec.no_such_name\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('no AttributeError')")
    assert "pyrec.source" in _modules_after(code)
    from pyrec import TrackSpec, record_file
    assert callable(record_file) and TrackSpec.__name__ == "TrackSpec"


# ---- light data classes behave like the standard ones ----------------------------------

def _pair(frozen: bool):
    """The same class made by each decorator."""
    out = []
    for dc, fld in ((dataclasses.dataclass, dataclasses.field),
                    (lightdata.dataclass, lightdata.field)):
        @dc(frozen=frozen)
        class Thing:
            """doc"""
            a: int
            b: str = "x"
            c: list[int] = fld(default_factory=list)

            @property
            def twice(self) -> int:
                return 2 * self.a

        out.append(Thing)
    return out


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("case", [
    "positional", "keywords", "defaults", "factory per instance", "repr", "eq", "ne",
    "eq other class", "hash", "assign", "missing argument", "too many", "property",
])
def test_lightdata_matches_dataclasses(frozen, case):
    def run(cls):
        try:
            if case == "positional":
                o = cls(1, "y", [2])
                return (o.a, o.b, o.c)
            if case == "keywords":
                o = cls(c=[3], a=2)
                return (o.a, o.b, o.c)
            if case == "defaults":
                o = cls(5)
                return (o.b, o.c)
            if case == "factory per instance":
                o1, o2 = cls(1), cls(1)
                o1.c.append(1)
                return (o1.c, o2.c, o1.c is o2.c)
            if case == "repr":
                return repr(cls(1, "q")).split("(", 1)[1]
            if case == "eq":
                return cls(1, "z", [1]) == cls(1, "z", [1])
            if case == "ne":
                return cls(1) != cls(2)
            if case == "eq other class":
                return cls(1) == (1, "x", [])
            if case == "hash":
                try:
                    return hash(cls(1, "h", None)) == hash(cls(1, "h", None))
                except TypeError:
                    return "unhashable"
            if case == "assign":
                o = cls(1)
                o.a = 7
                return o.a
            if case == "missing argument":
                cls()
            if case == "too many":
                cls(1, "b", [], 4)
            if case == "property":
                return cls(21).twice
        except AttributeError:  # FrozenInstanceError in both
            return "frozen"
        except TypeError:
            return "TypeError"
        return None

    std, light = _pair(frozen)
    assert run(light) == run(std)


def test_lightdata_frozen_error_is_an_attribute_error():
    @lightdata.dataclass(frozen=True)
    class P:
        x: int = 0

    with pytest.raises(AttributeError, match="cannot assign to field 'x'"):
        P().x = 1  # type: ignore[misc]
    assert lightdata.fields(P) == ("x",)


def test_lightdata_refuses_what_dataclasses_refuses():
    with pytest.raises(ValueError, match="mutable default"):
        @lightdata.dataclass
        class M:
            x: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="non-default argument"):
        @lightdata.dataclass
        class O:
            x: int = 0
            y: int
