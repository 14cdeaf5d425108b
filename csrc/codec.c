/* Codec registry and dispatch: names, state init/free, per-sample conversion, sample entries
 * and RFC 6381 codecs strings. The per-codec work lives in codec_h26x.c (H.264/H.265),
 * codec_av1vp9.c (AV1/VP9), codec_audio.c (AAC/MP3/Opus) and codec_entry.c (boxes). */
#include "codec_internal.h"

#include <stdio.h>
#include <string.h>

#define N_CANONICAL 7 /* the first entries are the canonical names */
static const struct {
  const char *name;
  int codec;
} codec_names[] = {
    {"h264", PYREC_CODEC_H264}, {"hevc", PYREC_CODEC_H265}, {"av1", PYREC_CODEC_AV1},
    {"vp9", PYREC_CODEC_VP9},   {"aac", PYREC_CODEC_AAC},   {"opus", PYREC_CODEC_OPUS},
    {"mp3", PYREC_CODEC_MP3},
    /* aliases (only found by pyrec_codec_from_name) */
    {"h265", PYREC_CODEC_H265}, {"avc", PYREC_CODEC_H264},  {"avc1", PYREC_CODEC_H264},
    {"hvc1", PYREC_CODEC_H265}, {"hev1", PYREC_CODEC_H265}, {"av01", PYREC_CODEC_AV1},
    {"vp09", PYREC_CODEC_VP9},  {"mp4a", PYREC_CODEC_AAC},  {"Opus", PYREC_CODEC_OPUS},
};

const char *pyrec_codec_name(int codec) {
  for (size_t i = 0; i < N_CANONICAL; i++)
    if (codec_names[i].codec == codec)
      return codec_names[i].name;
  return NULL;
}

int pyrec_codec_from_name(const char *name) {
  if (!name)
    return PYREC_CODEC_NONE;
  for (size_t i = 0; i < sizeof codec_names / sizeof codec_names[0]; i++)
    if (strcmp(codec_names[i].name, name) == 0)
      return codec_names[i].codec;
  return PYREC_CODEC_NONE;
}

int pyrec_codec_media(int codec) {
  switch (codec) {
  case PYREC_CODEC_H264:
  case PYREC_CODEC_H265:
  case PYREC_CODEC_AV1:
  case PYREC_CODEC_VP9:
    return PYREC_MEDIA_VIDEO;
  case PYREC_CODEC_AAC:
  case PYREC_CODEC_OPUS:
  case PYREC_CODEC_MP3:
    return PYREC_MEDIA_AUDIO;
  default:
    return 0;
  }
}

/* ---- bit reader ------------------------------------------------------------------------ */

void pyrec_bits_init(pyrec_bits *br, const uint8_t *p, size_t len, int ep) {
  memset(br, 0, sizeof *br);
  br->p = p;
  br->len = len;
  br->ep = ep;
}

static int bits_fetch(pyrec_bits *br) {
  if (br->pos >= br->len) {
    br->err = 1;
    return 0;
  }
  uint8_t b = br->p[br->pos++];
  if (br->ep && br->zeros >= 2 && b == 3) { /* emulation_prevention_three_byte */
    br->zeros = 0;
    if (br->pos >= br->len) {
      br->err = 1;
      return 0;
    }
    b = br->p[br->pos++];
  }
  br->zeros = b == 0 ? br->zeros + 1 : 0;
  br->cur = b;
  br->left = 8;
  return 1;
}

uint32_t pyrec_bits_u(pyrec_bits *br, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; i++) {
    if (br->left == 0 && !bits_fetch(br))
      return 0;
    br->left--;
    v = (v << 1) | ((br->cur >> br->left) & 1u);
  }
  return v;
}

uint64_t pyrec_bits_u64(pyrec_bits *br, int n) {
  uint64_t v = 0;
  while (n > 0) {
    int k = n > 32 ? 32 : n;
    v = (v << k) | pyrec_bits_u(br, k);
    n -= k;
  }
  return v;
}

void pyrec_bits_skip(pyrec_bits *br, size_t n) {
  while (n > 0 && !br->err) {
    int k = n > 32 ? 32 : (int)n;
    pyrec_bits_u(br, k);
    n -= (size_t)k;
  }
}

uint32_t pyrec_bits_ue(pyrec_bits *br) {
  int zeros = 0;
  while (!br->err && pyrec_bits_u(br, 1) == 0) {
    if (++zeros > 31) {
      br->err = 1;
      return 0;
    }
  }
  if (br->err)
    return 0;
  if (zeros == 0)
    return 0;
  return (uint32_t)(((uint64_t)1 << zeros) - 1 + pyrec_bits_u(br, zeros));
}

int32_t pyrec_bits_se(pyrec_bits *br) {
  uint32_t k = pyrec_bits_ue(br);
  if (k & 1)
    return (int32_t)((k + 1) / 2);
  return -(int32_t)(k / 2);
}

uint32_t pyrec_bits_uvlc(pyrec_bits *br) {
  int zeros = 0;
  while (!br->err && pyrec_bits_u(br, 1) == 0)
    zeros++;
  if (br->err || zeros >= 32) {
    br->err = br->err || zeros >= 32;
    return UINT32_MAX;
  }
  return (uint32_t)(((uint64_t)1 << zeros) - 1 + pyrec_bits_u(br, zeros));
}

size_t pyrec_leb128(const uint8_t *p, size_t len, uint64_t *val) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < len; i++) {
    v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) {
      *val = v;
      return i + 1;
    }
  }
  return 0;
}

/* ---- state ------------------------------------------------------------------------------ */

int pyrec_codec_init(pyrec_codec_state *cs, const pyrec_track_desc *d, pyrec_errinfo *err) {
  memset(cs, 0, sizeof *cs);
  pyrec_buf_init(&cs->config);
  pyrec_buf_init(&cs->paramsets);
  if (!d)
    return pyrec_seterr(err, PYREC_E_INVAL, -1, "no track description");
  cs->codec = d->codec;
  cs->media = pyrec_codec_media(d->codec);
  if (!cs->media)
    return pyrec_seterr(err, PYREC_E_CODEC, -1, "unsupported codec id %d", d->codec);
  if (d->config_len && !d->config)
    return pyrec_seterr(err, PYREC_E_INVAL, -1, "%s: config_len %zu with no config",
                        pyrec_codec_name(d->codec), d->config_len);
  cs->nal_len_size = 4;
  cs->width = d->width;
  cs->height = d->height;
  cs->sample_rate = d->sample_rate;
  cs->channels = d->channels;
  const uint8_t *cfg = d->config_len ? d->config : NULL;
  int rc;
  switch (d->codec) {
  case PYREC_CODEC_H264:
  case PYREC_CODEC_H265:
    rc = pyrec_h26x_init(cs, cfg, d->config_len, err);
    break;
  case PYREC_CODEC_AV1:
    rc = pyrec_av1_init(cs, cfg, d->config_len, err);
    break;
  case PYREC_CODEC_VP9:
    rc = pyrec_vp9_init(cs, cfg, d->config_len, err);
    break;
  case PYREC_CODEC_AAC:
    rc = pyrec_aac_init(cs, cfg, d->config_len, err);
    break;
  case PYREC_CODEC_OPUS:
    rc = pyrec_opus_init(cs, cfg, d->config_len, err);
    break;
  default: /* PYREC_CODEC_MP3 */
    rc = pyrec_mp3_init(cs, err);
    break;
  }
  if (rc == PYREC_OK && (cs->config.oom || cs->paramsets.oom))
    rc = pyrec_seterr(err, PYREC_E_NOMEM, -1, "%s: out of memory", pyrec_codec_name(cs->codec));
  if (rc != PYREC_OK)
    pyrec_codec_free(cs);
  return rc;
}

void pyrec_codec_free(pyrec_codec_state *cs) {
  if (!cs)
    return;
  pyrec_buf_free(&cs->config);
  pyrec_buf_free(&cs->paramsets);
  cs->ready = 0;
}

int pyrec_codec_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                       pyrec_errinfo *err) {
  const char *name = pyrec_codec_name(cs->codec);
  if (!name)
    return pyrec_seterr(err, PYREC_E_CODEC, -1, "unsupported codec id %d", cs->codec);
  if (len == 0 || !in)
    return pyrec_seterr(err, PYREC_E_MALFORMED, 0, "%s: empty payload", name);
  if (out->oom)
    return pyrec_seterr(err, PYREC_E_NOMEM, -1, "%s: output buffer out of memory", name);
  size_t orig = out->len;
  int rc;
  switch (cs->codec) {
  case PYREC_CODEC_H264:
  case PYREC_CODEC_H265:
    rc = pyrec_h26x_sample(cs, in, len, out, err);
    break;
  case PYREC_CODEC_AV1:
    rc = pyrec_av1_sample(cs, in, len, out, err);
    break;
  case PYREC_CODEC_VP9:
    rc = pyrec_vp9_sample(cs, in, len, out, err);
    break;
  case PYREC_CODEC_AAC:
    rc = pyrec_aac_sample(cs, in, len, out, err);
    break;
  case PYREC_CODEC_MP3:
    rc = pyrec_mp3_sample(cs, in, len, out, err);
    break;
  default: /* Opus packets are stored as they come (Opus-in-ISOBMFF 4.3) */
    pyrec_buf_put(out, in, len);
    rc = PYREC_OK;
    break;
  }
  if (rc == PYREC_OK && (out->oom || cs->config.oom || cs->paramsets.oom))
    rc = pyrec_seterr(err, PYREC_E_NOMEM, -1, "%s: out of memory", name);
  if (rc != PYREC_OK) {
    if (out->len > orig)
      out->len = orig;
    return rc;
  }
  cs->bitrate_bytes += len;
  return PYREC_OK;
}

int pyrec_codec_sample_entry(const pyrec_codec_state *cs, pyrec_buf *out, pyrec_errinfo *err) {
  const char *name = pyrec_codec_name(cs->codec);
  if (!name)
    return pyrec_seterr(err, PYREC_E_CODEC, -1, "unsupported codec id %d", cs->codec);
  if (!cs->ready)
    return pyrec_seterr(err, PYREC_E_CONFIG, -1, "%s: configuration not known yet", name);
  size_t orig = out->len;
  int rc = pyrec_entry_write(cs, out, err);
  if (rc == PYREC_OK && out->oom)
    rc = pyrec_seterr(err, PYREC_E_NOMEM, -1, "%s: out of memory", name);
  if (rc != PYREC_OK && out->len > orig)
    out->len = orig;
  return rc;
}

/* ---- RFC 6381 codecs strings ---------------------------------------------------------- */

static uint32_t reverse32(uint32_t v) {
  uint32_t r = 0;
  for (int i = 0; i < 32; i++, v >>= 1)
    r = (r << 1) | (v & 1);
  return r;
}

/* ISO/IEC 14496-15 E.3: hvc1.[A-C]?profile.compat(reversed hex).[LH]level(.constraint)* */
static void hevc_string(const uint8_t *c, char *out, size_t outlen) {
  static const char *space[4] = {"", "A", "B", "C"};
  uint32_t compat = pyrec_rd32(c + 2);
  int n = snprintf(out, outlen, "hvc1.%s%u.%X.%c%u", space[c[1] >> 6], c[1] & 0x1f,
                   reverse32(compat), (c[1] & 0x20) ? 'H' : 'L', c[12]);
  int last = -1; /* trailing zero constraint bytes are omitted */
  for (int i = 0; i < 6; i++)
    if (c[6 + i])
      last = i;
  for (int i = 0; i <= last && n > 0 && (size_t)n < outlen; i++)
    n += snprintf(out + n, outlen - (size_t)n, ".%X", c[6 + i]);
}

void pyrec_codec_string(const pyrec_codec_state *cs, char *out, size_t outlen) {
  if (!out || outlen == 0)
    return;
  out[0] = 0;
  const uint8_t *c = cs->config.data;
  size_t clen = cs->ready ? cs->config.len : 0;
  switch (cs->codec) {
  case PYREC_CODEC_H264:
    if (clen >= 4)
      snprintf(out, outlen, "avc1.%02x%02x%02x", c[1], c[2], c[3]);
    else
      snprintf(out, outlen, "avc1");
    break;
  case PYREC_CODEC_H265:
    if (clen >= 23)
      hevc_string(c, out, outlen);
    else
      snprintf(out, outlen, "hvc1");
    break;
  case PYREC_CODEC_AV1: /* AV1-ISOBMFF 5: av01.P.LLT.DD */
    if (clen >= 4) {
      unsigned depth = (c[2] & 0x40) ? ((c[2] & 0x20) ? 12 : 10) : 8;
      snprintf(out, outlen, "av01.%u.%02u%c.%02u", c[1] >> 5, c[1] & 0x1f,
               (c[2] & 0x80) ? 'H' : 'M', depth);
    } else {
      snprintf(out, outlen, "av01");
    }
    break;
  case PYREC_CODEC_VP9: /* VP codec ISO binding, codecs parameter: vp09.PP.LL.DD */
    if (clen >= 3)
      snprintf(out, outlen, "vp09.%02u.%02u.%02u", c[0], c[1], c[2] >> 4);
    else
      snprintf(out, outlen, "vp09");
    break;
  case PYREC_CODEC_AAC: {
    pyrec_asc_info ai;
    if (clen && pyrec_asc_parse(c, clen, &ai) == 0)
      snprintf(out, outlen, "mp4a.40.%u", ai.aot);
    else
      snprintf(out, outlen, "mp4a.40.2");
    break;
  }
  case PYREC_CODEC_MP3:
    snprintf(out, outlen, "mp4a.6B");
    break;
  case PYREC_CODEC_OPUS:
    snprintf(out, outlen, "opus");
    break;
  default:
    break;
  }
}
