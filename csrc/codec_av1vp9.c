/* AV1 and VP9: the AV1CodecConfigurationRecord (AV1-ISOBMFF 2.3) built from a sequence
 * header OBU (AV1 spec 5.5), and the VPCodecConfigurationRecord (VP codec ISO binding 2.2)
 * built from a key frame's uncompressed header (VP9 spec 6.2). */
#include "codec_internal.h"

#include <string.h>

#define OBU_SEQUENCE_HEADER 1
#define OBU_TEMPORAL_DELIMITER 2

/* ---- AV1 ------------------------------------------------------------------------------- */

typedef struct av1_obu {
  int type;
  size_t start, hdr_len; /* OBU header (+extension) size, without the size field */
  size_t payload, size;  /* payload offset and size */
  size_t end;
} av1_obu;

/* open_bitstream_unit() header (AV1 5.3.1-5.3.3). Returns 1 with *o, 0 at the end, -1 when
 * malformed. */
static int obu_next(const uint8_t *p, size_t len, size_t *pos, av1_obu *o) {
  if (*pos >= len)
    return 0;
  size_t i = *pos;
  uint8_t h = p[i];
  if (h & 0x80) /* obu_forbidden_bit */
    return -1;
  o->type = (h >> 3) & 15;
  o->start = i;
  o->hdr_len = (h & 4) ? 2 : 1; /* obu_extension_flag */
  if (len - i < o->hdr_len)
    return -1;
  i += o->hdr_len;
  if (h & 2) { /* obu_has_size_field */
    uint64_t sz;
    size_t n = pyrec_leb128(p + i, len - i, &sz);
    if (n == 0 || sz > len - i - n)
      return -1;
    o->payload = i + n;
    o->size = (size_t)sz;
  } else {
    o->payload = i;
    o->size = len - i;
  }
  o->end = o->payload + o->size;
  *pos = o->end;
  return 1;
}

typedef struct av1_seq {
  unsigned profile, level, tier, high_bitdepth, twelve_bit, mono, ssx, ssy, csp;
  uint32_t width, height;
} av1_seq;

/* color_config() (AV1 5.5.2) */
static void av1_color_config(pyrec_bits *br, av1_seq *s) {
  s->high_bitdepth = pyrec_bits_u(br, 1);
  if (s->profile == 2 && s->high_bitdepth)
    s->twelve_bit = pyrec_bits_u(br, 1);
  unsigned bit_depth = s->twelve_bit ? 12 : s->high_bitdepth ? 10 : 8;
  s->mono = s->profile == 1 ? 0 : pyrec_bits_u(br, 1);
  unsigned cp = 2, tc = 2, mc = 2;
  if (pyrec_bits_u(br, 1)) { /* color_description_present_flag */
    cp = pyrec_bits_u(br, 8);
    tc = pyrec_bits_u(br, 8);
    mc = pyrec_bits_u(br, 8);
  }
  s->csp = 0;
  if (s->mono) {
    pyrec_bits_u(br, 1); /* color_range */
    s->ssx = s->ssy = 1;
    return;
  }
  if (cp == 1 && tc == 13 && mc == 0) { /* sRGB: 4:4:4 */
    s->ssx = s->ssy = 0;
    return;
  }
  pyrec_bits_u(br, 1); /* color_range */
  if (s->profile == 0) {
    s->ssx = s->ssy = 1;
  } else if (s->profile == 1) {
    s->ssx = s->ssy = 0;
  } else if (bit_depth == 12) {
    s->ssx = pyrec_bits_u(br, 1);
    s->ssy = s->ssx ? pyrec_bits_u(br, 1) : 0;
  } else {
    s->ssx = 1;
    s->ssy = 0;
  }
  if (s->ssx && s->ssy)
    s->csp = pyrec_bits_u(br, 2); /* chroma_sample_position */
}

/* sequence_header_obu() (AV1 5.5.1) up to color_config(). */
static int av1_parse_seq(const uint8_t *p, size_t len, av1_seq *s) {
  pyrec_bits br;
  memset(s, 0, sizeof *s);
  pyrec_bits_init(&br, p, len, 0);
  s->profile = pyrec_bits_u(&br, 3);
  if (s->profile > 2)
    return -1;
  pyrec_bits_u(&br, 1); /* still_picture */
  unsigned reduced = pyrec_bits_u(&br, 1);
  if (reduced) {
    s->level = pyrec_bits_u(&br, 5);
  } else {
    unsigned buffer_delay_len = 0, dmi = 0;
    if (pyrec_bits_u(&br, 1)) { /* timing_info_present_flag: timing_info() */
      pyrec_bits_skip(&br, 64);   /* num_units_in_display_tick, time_scale */
      if (pyrec_bits_u(&br, 1))   /* equal_picture_interval */
        pyrec_bits_uvlc(&br);     /* num_ticks_per_picture_minus_1 */
      dmi = pyrec_bits_u(&br, 1); /* decoder_model_info_present_flag */
      if (dmi) {                  /* decoder_model_info() */
        buffer_delay_len = pyrec_bits_u(&br, 5) + 1;
        pyrec_bits_skip(&br, 32 + 5 + 5);
      }
    }
    unsigned idd = pyrec_bits_u(&br, 1); /* initial_display_delay_present_flag */
    unsigned nops = pyrec_bits_u(&br, 5) + 1;
    for (unsigned i = 0; i < nops && !br.err; i++) {
      pyrec_bits_u(&br, 12); /* operating_point_idc */
      unsigned lvl = pyrec_bits_u(&br, 5), tier = lvl > 7 ? pyrec_bits_u(&br, 1) : 0;
      if (i == 0) {
        s->level = lvl;
        s->tier = tier;
      }
      if (dmi && pyrec_bits_u(&br, 1)) /* decoder_model_present_for_this_op */
        pyrec_bits_skip(&br, 2 * (size_t)buffer_delay_len + 1); /* operating_parameters_info */
      if (idd && pyrec_bits_u(&br, 1))
        pyrec_bits_u(&br, 4); /* initial_display_delay_minus_1 */
    }
  }
  unsigned wbits = pyrec_bits_u(&br, 4) + 1, hbits = pyrec_bits_u(&br, 4) + 1;
  s->width = pyrec_bits_u(&br, (int)wbits) + 1;
  s->height = pyrec_bits_u(&br, (int)hbits) + 1;
  if (!reduced && pyrec_bits_u(&br, 1)) /* frame_id_numbers_present_flag */
    pyrec_bits_u(&br, 7);               /* delta_frame_id_length_minus_2, additional_.. */
  pyrec_bits_u(&br, 3); /* use_128x128_superblock, enable_filter_intra, enable_intra_edge */
  if (!reduced) {
    pyrec_bits_u(&br, 4); /* interintra, masked compound, warped motion, dual filter */
    unsigned order_hint = pyrec_bits_u(&br, 1);
    if (order_hint)
      pyrec_bits_u(&br, 2); /* enable_jnt_comp, enable_ref_frame_mvs */
    unsigned force_sct = 2;  /* SELECT_SCREEN_CONTENT_TOOLS */
    if (!pyrec_bits_u(&br, 1)) /* seq_choose_screen_content_tools */
      force_sct = pyrec_bits_u(&br, 1);
    if (force_sct > 0 && !pyrec_bits_u(&br, 1)) /* seq_choose_integer_mv */
      pyrec_bits_u(&br, 1);                      /* seq_force_integer_mv */
    if (order_hint)
      pyrec_bits_u(&br, 3); /* order_hint_bits_minus_1 */
  }
  pyrec_bits_u(&br, 3); /* enable_superres, enable_cdef, enable_restoration */
  av1_color_config(&br, s);
  return br.err ? -1 : 0;
}

/* AV1CodecConfigurationRecord (AV1-ISOBMFF 2.3.3), without configOBUs. */
static void build_av1c(pyrec_buf *b, const av1_seq *s) {
  pyrec_buf_reset(b);
  pyrec_buf_u8(b, 0x81); /* marker 1, version 1 */
  pyrec_buf_u8(b, (uint8_t)((s->profile << 5) | (s->level & 0x1f)));
  pyrec_buf_u8(b, (uint8_t)((s->tier << 7) | (s->high_bitdepth << 6) | (s->twelve_bit << 5) |
                            (s->mono << 4) | (s->ssx << 3) | (s->ssy << 2) | (s->csp & 3)));
  pyrec_buf_u8(b, 0); /* initial_presentation_delay_present = 0 */
}

/* Find and parse the first sequence header OBU in [p, p+len). 1 found, 0 none, -1 bad. */
static int av1_find_seq(const uint8_t *p, size_t len, av1_seq *s) {
  size_t pos = 0;
  av1_obu o;
  int r;
  while ((r = obu_next(p, len, &pos, &o)) == 1)
    if (o.type == OBU_SEQUENCE_HEADER)
      return av1_parse_seq(p + o.payload, o.size, s) == 0 ? 1 : -1;
  return r;
}

static void av1_take(pyrec_codec_state *cs, const av1_seq *s, int build) {
  if (build)
    build_av1c(&cs->config, s);
  if (!cs->width)
    cs->width = s->width;
  if (!cs->height)
    cs->height = s->height;
  cs->ready = cs->config.len >= 4 && cs->width && cs->height;
}

int pyrec_av1_init(pyrec_codec_state *cs, const uint8_t *cfg, size_t len, pyrec_errinfo *err) {
  av1_seq s;
  if (!cfg)
    return PYREC_OK;
  if (cfg[0] & 0x80) { /* av1C: marker bit set (an OBU header has forbidden bit 0 there) */
    if (cfg[0] != 0x81)
      return pyrec_seterr(err, PYREC_E_CONFIG, 0, "av1: av1C marker/version byte 0x%02x, "
                          "expected 0x81", cfg[0]);
    if (len < 4)
      return pyrec_seterr(err, PYREC_E_CONFIG, -1, "av1: av1C too short (%zu bytes)", len);
    int r = av1_find_seq(cfg + 4, len - 4, &s);
    if (r < 0)
      return pyrec_seterr(err, PYREC_E_CONFIG, 4, "av1: bad configOBUs in av1C");
    pyrec_buf_put(&cs->config, cfg, len);
    if (r == 1)
      av1_take(cs, &s, 0);
    else
      cs->ready = cs->width && cs->height;
    return PYREC_OK;
  }
  int r = av1_find_seq(cfg, len, &s);
  if (r <= 0)
    return pyrec_seterr(err, PYREC_E_CONFIG, 0, "av1: config is neither an av1C record nor a "
                        "sequence header OBU");
  av1_take(cs, &s, 1);
  return PYREC_OK;
}

int pyrec_av1_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                     pyrec_errinfo *err) {
  size_t pos = 0, seq_at = 0, seq_len = 0, seq_start = 0;
  av1_obu o;
  int r, found = 0, kept = 0;
  while ((r = obu_next(in, len, &pos, &o)) == 1) {
    kept += o.type != OBU_TEMPORAL_DELIMITER;
    if (o.type == OBU_SEQUENCE_HEADER && !found) {
      found = 1;
      seq_start = o.start;
      seq_at = o.payload;
      seq_len = o.size;
    }
  }
  if (r < 0)
    return pyrec_seterr(err, PYREC_E_MALFORMED, (int64_t)pos,
                        "av1: malformed OBU at offset %zu of %zu", pos, len);
  if (!kept)
    return pyrec_seterr(err, PYREC_E_MALFORMED, 0, "av1: payload holds only temporal delimiters");
  if (found && !cs->ready) {
    av1_seq s;
    if (av1_parse_seq(in + seq_at, seq_len, &s) != 0)
      return pyrec_seterr(err, PYREC_E_MALFORMED, (int64_t)seq_start,
                          "av1: sequence header OBU could not be parsed");
    av1_take(cs, &s, cs->config.len < 4);
  }
  /* Temporal delimiters are dropped (AV1-ISOBMFF 2.4: samples should not contain them). */
  pos = 0;
  while (obu_next(in, len, &pos, &o) == 1)
    if (o.type != OBU_TEMPORAL_DELIMITER)
      pyrec_buf_put(out, in + o.start, o.end - o.start);
  return PYREC_OK;
}

/* ---- VP9 ------------------------------------------------------------------------------- */

/* Smallest VP9 level (Annex A) whose max luma picture size holds w*h. */
static unsigned vp9_level(uint32_t w, uint32_t h) {
  static const struct {
    uint64_t size;
    unsigned level;
  } t[] = {{36864, 10},   {73728, 11},   {122880, 20},  {245760, 21},  {552960, 30},
           {983040, 31},  {2228224, 40}, {8912896, 50}, {35651584, 60}};
  uint64_t px = (uint64_t)w * h;
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (px <= t[i].size)
      return t[i].level;
  return 62;
}

/* uncompressed_header() of a key frame (VP9 6.2): profile, color_config(), frame_size().
 * Returns 1 when parsed, 0 for a non-key frame, -1 when malformed. */
static int vp9_parse_key(const uint8_t *p, size_t len, pyrec_buf *cfg, uint32_t *w,
                         uint32_t *h) {
  pyrec_bits br;
  pyrec_bits_init(&br, p, len, 0);
  if (pyrec_bits_u(&br, 2) != 2) /* frame_marker */
    return -1;
  unsigned lo = pyrec_bits_u(&br, 1), hi = pyrec_bits_u(&br, 1), profile = (hi << 1) | lo;
  if (profile == 3)
    pyrec_bits_u(&br, 1); /* reserved_zero */
  if (pyrec_bits_u(&br, 1)) /* show_existing_frame */
    return br.err ? -1 : 0;
  if (pyrec_bits_u(&br, 1) != 0) /* frame_type: 0 = KEY_FRAME */
    return br.err ? -1 : 0;
  pyrec_bits_u(&br, 2); /* show_frame, error_resilient_mode */
  if (pyrec_bits_u(&br, 24) != 0x498342) /* frame_sync_code */
    return -1;
  unsigned bit_depth = 8, ssx = 1, ssy = 1, full = 0;
  if (profile >= 2)
    bit_depth = pyrec_bits_u(&br, 1) ? 12 : 10;
  unsigned color_space = pyrec_bits_u(&br, 3);
  if (color_space != 7) { /* != CS_RGB */
    full = pyrec_bits_u(&br, 1);
    if (profile == 1 || profile == 3) {
      ssx = pyrec_bits_u(&br, 1);
      ssy = pyrec_bits_u(&br, 1);
      pyrec_bits_u(&br, 1);
    }
  } else {
    full = 1;
    if (profile == 1 || profile == 3) {
      ssx = ssy = 0;
      pyrec_bits_u(&br, 1);
    }
  }
  *w = pyrec_bits_u(&br, 16) + 1;
  *h = pyrec_bits_u(&br, 16) + 1;
  if (br.err)
    return -1;
  /* matrix_coefficients (ISO/IEC 23091-2) for VP9 color_space 0..7 */
  static const uint8_t mc[8] = {2, 5, 1, 6, 7, 9, 2, 0};
  unsigned chroma = ssx && ssy ? 1 : ssx ? 2 : 3; /* 4:2:0 colocated / 4:2:2 / 4:4:4 */
  unsigned prim = color_space == 2 ? 1 : color_space == 5 ? 9 : 2;
  unsigned trc = color_space == 2 ? 1 : 2;
  pyrec_buf_reset(cfg);
  pyrec_buf_u8(cfg, (uint8_t)profile);
  pyrec_buf_u8(cfg, (uint8_t)vp9_level(*w, *h));
  pyrec_buf_u8(cfg, (uint8_t)((bit_depth << 4) | (chroma << 1) | full));
  pyrec_buf_u8(cfg, (uint8_t)prim);
  pyrec_buf_u8(cfg, (uint8_t)trc);
  pyrec_buf_u8(cfg, mc[color_space]);
  pyrec_buf_u16(cfg, 0); /* codecIntializationDataSize */
  return 1;
}

int pyrec_vp9_init(pyrec_codec_state *cs, const uint8_t *cfg, size_t len, pyrec_errinfo *err) {
  if (!cfg)
    return PYREC_OK;
  /* tolerate a body that still starts with the FullBox version 1 / flags 0 */
  if (len >= 12 && cfg[0] == 1 && cfg[1] == 0 && cfg[2] == 0 && cfg[3] == 0) {
    cfg += 4;
    len -= 4;
  }
  if (len < 8)
    return pyrec_seterr(err, PYREC_E_CONFIG, -1, "vp9: vpcC too short (%zu bytes)", len);
  unsigned depth = cfg[2] >> 4;
  if (cfg[0] > 3 || (depth != 8 && depth != 10 && depth != 12))
    return pyrec_seterr(err, PYREC_E_CONFIG, 0, "vp9: vpcC profile %u / bit depth %u invalid",
                        cfg[0], depth);
  size_t init = pyrec_rd16(cfg + 6);
  if (init > len - 8)
    return pyrec_seterr(err, PYREC_E_CONFIG, 6, "vp9: vpcC codec initialization data truncated");
  pyrec_buf_put(&cs->config, cfg, 8 + init);
  cs->ready = cs->width && cs->height;
  return PYREC_OK;
}

int pyrec_vp9_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                     pyrec_errinfo *err) {
  if ((in[0] >> 6) != 2)
    return pyrec_seterr(err, PYREC_E_MALFORMED, 0, "vp9: bad frame marker (first byte 0x%02x)",
                        in[0]);
  if (!cs->ready) {
    pyrec_buf tmp;
    uint32_t w = 0, h = 0;
    pyrec_buf_init(&tmp);
    int r = vp9_parse_key(in, len, &tmp, &w, &h);
    if (r < 0) {
      pyrec_buf_free(&tmp);
      return pyrec_seterr(err, PYREC_E_MALFORMED, 0, "vp9: key frame header could not be parsed");
    }
    if (r == 1) {
      if (cs->config.len < 8) {
        pyrec_buf_reset(&cs->config);
        pyrec_buf_put(&cs->config, tmp.data, tmp.len);
      }
      if (!cs->width)
        cs->width = w;
      if (!cs->height)
        cs->height = h;
      cs->ready = cs->config.len >= 8 && !cs->config.oom;
    }
    pyrec_buf_free(&tmp);
  }
  pyrec_buf_put(out, in, len);
  return PYREC_OK;
}
