"""Shared fixtures: clips encoded once per session (cached by their parameters), output dirs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/ helpers: media, boxes, probe, checks

import media  # noqa: E402
import probe  # noqa: E402


def pytest_configure(config):
    # ffprobe/ffmpeg are required peers: fail loudly instead of skipping.
    probe.require_tools()


class ClipCache:
    """Encode each distinct clip once per session."""

    def __init__(self, root: Path):
        self.root = root
        self._clips: dict[tuple, media.Clip] = {}

    def get(self, ext: str = ".mp4", **params) -> media.Clip:
        key = (ext, tuple(sorted(params.items())))
        clip = self._clips.get(key)
        if clip is None:
            name = "_".join(f"{k}-{v}" for k, v in sorted(params.items())) or "default"
            path = self.root / f"{name}{ext}"
            clip = media.encode_clip(path, **params)
            self._clips[key] = clip
        return clip

    def flv(self, name: str = "cli", **params) -> media.Clip:
        """An FLV made by the ffmpeg CLI (see media.make_flv_cli)."""
        key = ("flv-cli", name, tuple(sorted(params.items())))
        clip = self._clips.get(key)
        if clip is None:
            path = self.root / f"{name}.flv"
            media.make_flv_cli(path, **params)
            clip = media.read_truth(path)
            self._clips[key] = clip
        return clip


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> ClipCache:
    return ClipCache(tmp_path_factory.mktemp("clips"))


@pytest.fixture
def out_dir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d
