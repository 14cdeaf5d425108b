"""Track descriptions handed to the C core."""
from __future__ import annotations

from pyrec import _core
from pyrec.lightdata import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from fractions import Fraction

__all__ = ["TrackSpec", "CODECS", "DEFAULT_VIDEO_NAME", "DEFAULT_AUDIO_NAME", "timescale_for",
           "audio_timescale"]

CODECS = ("h264", "hevc", "av1", "vp9", "aac", "opus", "mp3")
DEFAULT_VIDEO_NAME = "bypass_video"
DEFAULT_AUDIO_NAME = "bypass_audio"

# Names FFmpeg/PyAV use for the codecs pyrec records.
_ALIASES = {"h265": "hevc", "mp3float": "mp3", "libopus": "opus", "libdav1d": "av1",
            "libaom-av1": "av1", "libsvtav1": "av1", "libvpx-vp9": "vp9"}


@dataclass(frozen=True)
class TrackSpec:
    """One track: `codec` name, `timescale` (ticks per second of the timestamps written),
    optional geometry/audio format, and `config` (codec extradata: avcC/hvcC/av1C/vpcC body,
    AudioSpecificConfig, OpusHead; empty for Annex B H.264/H.265 and ADTS AAC)."""

    codec: str
    timescale: int
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    config: bytes = b""
    name: str = ""

    @property
    def codec_id(self) -> int:
        cid = _core.codec_id(_ALIASES.get(self.codec, self.codec))
        if not cid:
            raise _core.make_error(_core.Err.CODEC, f"unsupported codec {self.codec!r} "
                                   f"(pyrec records {', '.join(CODECS)})")
        return cid

    @property
    def is_video(self) -> bool:
        return bool(_core.codec_is_video(self.codec_id))

    def as_core(self) -> tuple[int, int, int, int, int, int, bytes]:
        if self.timescale <= 0:
            raise ValueError(f"timescale must be > 0, got {self.timescale}")
        return (self.codec_id, int(self.timescale), int(self.width), int(self.height),
                int(self.sample_rate), int(self.channels), bytes(self.config or b""))


def timescale_for(time_base: Fraction) -> tuple[int, int]:
    """(timescale, multiplier): timestamps in `time_base` units times `multiplier` are ticks of
    `timescale`, exactly (1/90000 -> (90000, 1); 2/50 -> (25, 1)... or (50, 2))."""
    if time_base.numerator == 1:
        return time_base.denominator, 1
    return time_base.denominator, time_base.numerator


def audio_timescale(codec: str, sample_rate: int) -> int:
    """The timescale an audio track is written in: its sample rate (48000 for Opus, whatever
    its input rate, RFC 7845 4), so every frame has its exact length (AAC 1024, MP3 1152 or
    576, Opus from its TOC byte). 0 when the rate is not known."""
    if _ALIASES.get(codec, codec) == "opus":
        return 48000
    return sample_rate if sample_rate > 0 else 0
