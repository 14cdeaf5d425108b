/* Codecs: track descriptions, configuration records, sample-entry boxes and payload
 * conversion (Annex B -> length-prefixed NAL units, ADTS -> raw AAC). */
#ifndef PYREC_CODEC_H
#define PYREC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/buf.h"
#include "pyrec/error.h"

typedef enum {
  PYREC_CODEC_NONE = 0,
  PYREC_CODEC_H264 = 1,
  PYREC_CODEC_H265 = 2,
  PYREC_CODEC_AV1 = 3,
  PYREC_CODEC_VP9 = 4,
  PYREC_CODEC_AAC = 5,
  PYREC_CODEC_OPUS = 6,
  PYREC_CODEC_MP3 = 7,
} pyrec_codec_id;

typedef enum { PYREC_MEDIA_VIDEO = 1, PYREC_MEDIA_AUDIO = 2 } pyrec_media;

/* "h264", "hevc", "av1", "vp9", "aac", "opus", "mp3"; NULL for unknown ids. */
const char *pyrec_codec_name(int codec);
/* Inverse of pyrec_codec_name; also accepts "h265", "avc", "avc1", "hvc1", "hev1", "av01",
 * "vp09", "mp4a", "Opus". Returns PYREC_CODEC_NONE when unknown. */
int pyrec_codec_from_name(const char *name);
int pyrec_codec_media(int codec); /* PYREC_MEDIA_VIDEO / _AUDIO, 0 for unknown */

/* What the caller knows about a track. `config` is the codec configuration record as found in
 * FLV sequence headers, MP4 sample entries or FFmpeg extradata:
 *   H.264: AVCDecoderConfigurationRecord (avcC body) or Annex B SPS/PPS
 *   H.265: HEVCDecoderConfigurationRecord (hvcC body) or Annex B VPS/SPS/PPS
 *   AV1:   AV1CodecConfigurationRecord (av1C body, may carry a sequence header OBU)
 *   VP9:   VPCodecConfigurationRecord (vpcC body without version/flags) or empty
 *   AAC:   AudioSpecificConfig, or empty when the payloads are ADTS
 *   Opus:  OpusHead (19+ bytes, as in Ogg/FFmpeg extradata) or empty
 *   MP3:   empty
 * An empty config for H.264/H.265/AAC means "learn it from the first payloads". */
typedef struct pyrec_track_desc {
  int codec;              /* pyrec_codec_id */
  uint32_t timescale;     /* ticks per second of this track's timestamps; > 0 */
  uint32_t width, height; /* video; 0 = take from the SPS / sequence header */
  uint32_t sample_rate;   /* audio; 0 = take from the config */
  uint32_t channels;      /* audio; 0 = take from the config */
  const uint8_t *config;
  size_t config_len;
} pyrec_track_desc;

/* Per-track codec state owned by the fMP4 writer. */
typedef struct pyrec_codec_state {
  int codec;
  int media;
  int ready;        /* the sample entry can be written (config known) */
  int annexb;       /* video payloads are Annex B start-code delimited (detected) */
  int adts;         /* AAC payloads carry ADTS headers (detected) */
  int nal_len_size; /* 1, 2 or 4 for length-prefixed H.264/H.265 input; output always 4 */
  uint32_t width, height;
  uint32_t sample_rate, channels;
  uint16_t opus_preskip;
  pyrec_buf config;    /* normalised config record body (avcC/hvcC/av1C/vpcC/ASC/dOps body) */
  pyrec_buf paramsets; /* H.264/H.265 parameter sets collected from Annex B input */
  uint64_t bitrate_bytes; /* payload bytes seen, for esds/btrt avg bitrate (informational) */
} pyrec_codec_state;

int pyrec_codec_init(pyrec_codec_state *cs, const pyrec_track_desc *d, pyrec_errinfo *err);
void pyrec_codec_free(pyrec_codec_state *cs);

/* Convert one input payload to MP4 sample format and append it to `out`:
 * H.264/H.265 -> 4-byte length-prefixed NAL units (Annex B converted, AUD/parameter sets kept
 *                in band is allowed), learning parameter sets when no config was given;
 * AAC         -> raw access unit (ADTS headers stripped; config learned from the first one);
 * others      -> copied.
 * Rejects empty or malformed payloads with PYREC_E_MALFORMED and a message; `out` is left
 * as it was on error. May set cs->ready. */
int pyrec_codec_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                       pyrec_errinfo *err);

/* Append the complete sample-entry box for the stsd (avc1+avcC, hvc1+hvcC, av01+av1C,
 * vp09+vpcC, mp4a+esds (AAC: OTI 0x40; MP3: OTI 0x6B), Opus+dOps). PYREC_E_CONFIG when
 * !cs->ready. */
int pyrec_codec_sample_entry(const pyrec_codec_state *cs, pyrec_buf *out, pyrec_errinfo *err);

/* Samples one audio payload decodes to, at the track's sample rate: AAC 1024 (an ADTS frame
 * or a raw access unit), MP3 from its frame header (ISO/IEC 11172-3 / 13818-3: layer I 384,
 * layer II 1152, layer III 1152 (MPEG-1) or 576 (MPEG-2/2.5)), Opus from its TOC byte
 * (RFC 6716 3.1, at 48 kHz). 0 when not known (video, a malformed header). */
uint32_t pyrec_audio_frame_samples(int codec, const uint8_t *p, size_t len);
/* Sampling rate in an MPEG audio frame header (11172-3 2.4.2.3), 0 when there is none. */
uint32_t pyrec_mp3_sample_rate(const uint8_t *p, size_t len);

/* RFC 6381 codecs string, e.g. "avc1.64001f", "mp4a.40.2" (into out, NUL-terminated). */
void pyrec_codec_string(const pyrec_codec_state *cs, char *out, size_t outlen);

#endif
