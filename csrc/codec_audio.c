/* Audio: AAC (ADTS headers, ISO/IEC 14496-3 1.A.2; AudioSpecificConfig 1.6.2.1), MP3
 * (ISO/IEC 11172-3 2.4.2.3 frame header) and Opus (OpusHead, RFC 7845 5.1 -> dOps body,
 * Opus-in-ISOBMFF 4.3.2). */
#include "codec_internal.h"

#include <string.h>

static const unsigned aac_rates[16] = {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050,
                                       16000, 12000, 11025, 8000,  7350,  0,     0,     0};
/* channelConfiguration -> channel count (14496-3 Table 1.19; 0 = program_config_element) */
static const unsigned aac_chans[16] = {0, 1, 2, 3, 4, 5, 6, 8, 0, 0, 0, 7, 8, 24, 8, 0};

static unsigned asc_aot(pyrec_bits *br) {
  unsigned aot = pyrec_bits_u(br, 5);
  return aot == 31 ? 32 + pyrec_bits_u(br, 6) : aot;
}

static unsigned asc_rate(pyrec_bits *br) {
  unsigned sfi = pyrec_bits_u(br, 4);
  return sfi == 15 ? pyrec_bits_u(br, 24) : aac_rates[sfi];
}

int pyrec_asc_parse(const uint8_t *p, size_t len, pyrec_asc_info *ai) {
  pyrec_bits br;
  memset(ai, 0, sizeof *ai);
  pyrec_bits_init(&br, p, len, 0);
  ai->aot = asc_aot(&br);
  ai->sample_rate = asc_rate(&br);
  ai->channels = aac_chans[pyrec_bits_u(&br, 4)];
  if (ai->aot == 5 || ai->aot == 29) { /* explicit SBR / PS: extension sampling rate */
    unsigned ext = asc_rate(&br);
    if (ext)
      ai->sample_rate = ext;
  }
  if (br.err || ai->aot == 0 || ai->aot > 45 || ai->sample_rate == 0)
    return -1;
  return 0;
}

static void aac_take(pyrec_codec_state *cs, const pyrec_asc_info *ai) {
  if (!cs->sample_rate)
    cs->sample_rate = ai->sample_rate;
  if (!cs->channels)
    cs->channels = ai->channels ? ai->channels : 2;
}

int pyrec_aac_init(pyrec_codec_state *cs, const uint8_t *cfg, size_t len, pyrec_errinfo *err) {
  pyrec_asc_info ai;
  if (!cfg)
    return PYREC_OK; /* learn from the first ADTS header */
  if (len < 2 || pyrec_asc_parse(cfg, len, &ai) != 0)
    return pyrec_seterr(err, PYREC_E_CONFIG, 0,
                        "aac: invalid AudioSpecificConfig (%zu bytes, first byte 0x%02x)", len,
                        cfg[0]);
  pyrec_buf_put(&cs->config, cfg, len);
  aac_take(cs, &ai);
  cs->ready = 1;
  return PYREC_OK;
}

static int is_adts(const uint8_t *p, size_t len) {
  return len >= 2 && p[0] == 0xff && (p[1] & 0xf6) == 0xf0; /* syncword, layer 00 */
}

/* adts_fixed_header() + adts_variable_header() (14496-3 1.A.2.2.1): strip it, and learn
 * the AudioSpecificConfig from the first one. */
int pyrec_aac_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                     pyrec_errinfo *err) {
  if (!is_adts(in, len)) {
    if (!cs->ready)
      return pyrec_seterr(err, PYREC_E_MALFORMED, 0,
                          "aac: no AudioSpecificConfig and payload is not ADTS (bad sync "
                          "0x%02x%02x)", in[0], len > 1 ? in[1] : 0);
    pyrec_buf_put(out, in, len); /* raw access unit */
    return PYREC_OK;
  }
  if (len < 7)
    return pyrec_seterr(err, PYREC_E_MALFORMED, 0, "aac: truncated ADTS header (%zu bytes)", len);
  unsigned protection_absent = in[1] & 1;
  unsigned profile = in[2] >> 6, sfi = (in[2] >> 2) & 15;
  unsigned chan = ((in[2] & 1) << 2) | (in[3] >> 6);
  size_t frame_len = ((size_t)(in[3] & 3) << 11) | ((size_t)in[4] << 3) | (in[5] >> 5);
  unsigned blocks = (in[6] & 3) + 1;
  size_t hdr = protection_absent ? 7 : 9;
  if (aac_rates[sfi] == 0)
    return pyrec_seterr(err, PYREC_E_MALFORMED, 2, "aac: ADTS sampling_frequency_index %u", sfi);
  if (blocks != 1)
    return pyrec_seterr(err, PYREC_E_MALFORMED, 6,
                        "aac: ADTS frame with %u raw data blocks is not supported", blocks);
  if (frame_len < hdr || frame_len > len)
    return pyrec_seterr(err, PYREC_E_MALFORMED, 3,
                        "aac: ADTS frame_length %zu does not fit the %zu-byte payload",
                        frame_len, len);
  if (frame_len < len)
    return pyrec_seterr(err, PYREC_E_MALFORMED, (int64_t)frame_len,
                        "aac: payload holds more than one ADTS frame (%zu of %zu bytes)",
                        frame_len, len);
  if (frame_len == hdr)
    return pyrec_seterr(err, PYREC_E_MALFORMED, 0, "aac: ADTS frame without payload");
  cs->adts = 1;
  if (!cs->ready) {
    /* AudioSpecificConfig: AOT = profile + 1, frequency index, channel configuration,
     * GASpecificConfig with all flags 0 */
    uint8_t asc[2] = {(uint8_t)(((profile + 1) << 3) | (sfi >> 1)),
                      (uint8_t)(((sfi & 1) << 7) | (chan << 3))};
    pyrec_asc_info ai = {profile + 1, aac_rates[sfi], aac_chans[chan]};
    pyrec_buf_reset(&cs->config);
    pyrec_buf_put(&cs->config, asc, 2);
    aac_take(cs, &ai);
    cs->ready = !cs->config.oom;
  }
  pyrec_buf_put(out, in + hdr, frame_len - hdr);
  return PYREC_OK;
}

/* ---- MP3 -------------------------------------------------------------------------------- */

int pyrec_mp3_init(pyrec_codec_state *cs, pyrec_errinfo *err) {
  cs->ready = cs->sample_rate && cs->channels;
  return PYREC_OK;
}

/* MPEG audio frame header (11172-3 2.4.1.3 / 13818-3): sampling rate and mode. */
static int mp3_header(const uint8_t *p, size_t len, unsigned *rate, unsigned *chans) {
  static const unsigned base[3] = {44100, 48000, 32000};
  if (len < 4 || p[0] != 0xff || (p[1] & 0xe0) != 0xe0)
    return -1;
  unsigned ver = (p[1] >> 3) & 3, layer = (p[1] >> 1) & 3, sri = (p[2] >> 2) & 3;
  if (ver == 1 || layer == 0 || sri == 3 || (p[2] >> 4) == 15)
    return -1;
  *rate = base[sri] >> (ver == 3 ? 0 : ver == 2 ? 1 : 2);
  *chans = (p[3] >> 6) == 3 ? 1 : 2;
  return 0;
}

uint32_t pyrec_mp3_sample_rate(const uint8_t *p, size_t len) {
  unsigned rate, chans;
  return p && mp3_header(p, len, &rate, &chans) == 0 ? rate : 0;
}

int pyrec_mp3_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                     pyrec_errinfo *err) {
  if (!cs->ready) {
    unsigned rate, chans;
    if (mp3_header(in, len, &rate, &chans) != 0)
      return pyrec_seterr(err, PYREC_E_MALFORMED, 0,
                          "mp3: payload does not start with an MPEG audio frame header");
    if (!cs->sample_rate)
      cs->sample_rate = rate;
    if (!cs->channels)
      cs->channels = chans;
    cs->ready = 1;
  }
  pyrec_buf_put(out, in, len);
  return PYREC_OK;
}

/* ---- frame lengths --------------------------------------------------------------------- */

/* MPEG audio frame header (11172-3 2.4.1.3, 13818-3 2.4.1.3): samples per frame. */
static uint32_t mp3_frame_samples(const uint8_t *p, size_t len) {
  if (len < 4 || p[0] != 0xff || (p[1] & 0xe0) != 0xe0)
    return 0;
  unsigned ver = (p[1] >> 3) & 3, layer = (p[1] >> 1) & 3; /* ver 3 = MPEG-1; layer 3 = I */
  if (ver == 1 || layer == 0)
    return 0;
  if (layer == 3)
    return 384;
  if (layer == 2)
    return 1152;
  return ver == 3 ? 1152 : 576;
}

/* Opus packet (RFC 6716 3.1): TOC configuration -> frame size, frame count code -> frames. */
static uint32_t opus_frame_samples(const uint8_t *p, size_t len) {
  static const uint32_t silk[4] = {480, 960, 1920, 2880}; /* 10, 20, 40, 60 ms */
  static const uint32_t celt[4] = {120, 240, 480, 960};   /* 2.5, 5, 10, 20 ms */
  if (len < 1)
    return 0;
  unsigned config = p[0] >> 3, code = p[0] & 3;
  uint32_t size = config < 12 ? silk[config & 3] : config < 16 ? (config & 1 ? 960 : 480)
                                                               : celt[config & 3];
  uint32_t frames = 1;
  if (code == 1 || code == 2)
    frames = 2;
  else if (code == 3) {
    if (len < 2)
      return 0;
    frames = p[1] & 0x3f;
  }
  uint32_t n = size * frames;
  return n <= 5760 ? n : 0; /* at most 120 ms per packet (3.2.5) */
}

uint32_t pyrec_audio_frame_samples(int codec, const uint8_t *p, size_t len) {
  if (!p || len == 0)
    return 0;
  switch (codec) {
  case PYREC_CODEC_AAC:
    return 1024;
  case PYREC_CODEC_MP3:
    return mp3_frame_samples(p, len);
  case PYREC_CODEC_OPUS:
    return opus_frame_samples(p, len);
  default:
    return 0;
  }
}

/* ---- Opus ------------------------------------------------------------------------------- */

/* dOps body (Opus-in-ISOBMFF 4.3.2) from the fields of an OpusHead / dOps. */
static int opus_take(pyrec_codec_state *cs, unsigned chans, unsigned preskip, uint32_t rate,
                     int16_t gain, unsigned family, const uint8_t *map, size_t maplen,
                     pyrec_errinfo *err) {
  if (chans == 0)
    return pyrec_seterr(err, PYREC_E_CONFIG, -1, "opus: channel count 0");
  if (family == 0 && chans > 2)
    return pyrec_seterr(err, PYREC_E_CONFIG, -1,
                        "opus: %u channels need a channel mapping family other than 0", chans);
  if (family != 0 && maplen < 2 + (size_t)chans)
    return pyrec_seterr(err, PYREC_E_CONFIG, -1, "opus: channel mapping table truncated");
  pyrec_buf *b = &cs->config;
  pyrec_buf_reset(b);
  pyrec_buf_u8(b, 0); /* Version */
  pyrec_buf_u8(b, (uint8_t)chans);
  pyrec_buf_u16(b, (uint16_t)preskip);
  pyrec_buf_u32(b, rate);
  pyrec_buf_u16(b, (uint16_t)gain);
  pyrec_buf_u8(b, (uint8_t)family);
  if (family != 0)
    pyrec_buf_put(b, map, 2 + (size_t)chans); /* StreamCount, CoupledCount, ChannelMapping */
  cs->channels = chans;
  cs->sample_rate = 48000; /* Opus-in-ISOBMFF 4.3.1: the sample entry rate is 48000 */
  cs->opus_preskip = (uint16_t)preskip;
  cs->ready = !b->oom;
  return PYREC_OK;
}

static uint16_t rd16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

int pyrec_opus_init(pyrec_codec_state *cs, const uint8_t *cfg, size_t len, pyrec_errinfo *err) {
  if (!cfg)
    return opus_take(cs, cs->channels ? cs->channels : 2, 0,
                     cs->sample_rate ? cs->sample_rate : 48000, 0, 0, NULL, 0, err);
  if (len >= 8 && memcmp(cfg, "OpusHead", 8) == 0) { /* RFC 7845 5.1 */
    if (len < 19)
      return pyrec_seterr(err, PYREC_E_CONFIG, -1, "opus: OpusHead too short (%zu bytes)", len);
    if (cfg[8] >> 4)
      return pyrec_seterr(err, PYREC_E_CONFIG, 8, "opus: OpusHead version %u unsupported",
                          cfg[8]);
    uint32_t rate = (uint32_t)rd16le(cfg + 12) | ((uint32_t)rd16le(cfg + 14) << 16);
    return opus_take(cs, cfg[9], rd16le(cfg + 10), rate, (int16_t)rd16le(cfg + 16), cfg[18],
                     cfg + 19, len - 19, err);
  }
  if (len >= 11 && cfg[0] == 0) /* already a dOps body (big-endian fields) */
    return opus_take(cs, cfg[1], pyrec_rd16(cfg + 2), pyrec_rd32(cfg + 4),
                     (int16_t)pyrec_rd16(cfg + 8), cfg[10], cfg + 11, len - 11, err);
  return pyrec_seterr(err, PYREC_E_CONFIG, 0, "opus: config is neither OpusHead nor dOps "
                      "(%zu bytes)", len);
}
