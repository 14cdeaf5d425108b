/* H.264 / H.265: Annex B and length-prefixed NAL units, SPS parsing (ITU-T H.264 7.3.2.1,
 * H.265 7.3.2.2), and the decoder configuration records of ISO/IEC 14496-15
 * (AVCDecoderConfigurationRecord 5.3.3.1, HEVCDecoderConfigurationRecord 8.3.3.1). */
#include "codec_internal.h"

#include <string.h>

#define H264_NAL_SPS 7
#define H264_NAL_PPS 8
#define HEVC_NAL_VPS 32
#define HEVC_NAL_SPS 33
#define HEVC_NAL_PPS 34

#define PS_MAX_COUNT 32        /* parameter sets remembered while learning the config */
#define PS_MAX_BYTES (64 * 1024)

typedef struct h26x_sps {
  uint8_t ptl[12]; /* H.265 general profile_tier_level (space/tier/idc .. level_idc) */
  unsigned profile, compat, level; /* H.264 */
  unsigned chroma_format, bit_depth_luma, bit_depth_chroma; /* minus 8 */
  unsigned sub_layers, temporal_id_nesting;                 /* H.265 */
  uint32_t width, height;
} h26x_sps;

static int nal_type(int codec, const uint8_t *nal) {
  return codec == PYREC_CODEC_H265 ? (nal[0] >> 1) & 0x3f : nal[0] & 0x1f;
}

static const char *cname(const pyrec_codec_state *cs) { return pyrec_codec_name(cs->codec); }

/* ---- Annex B / length-prefixed iteration ---------------------------------------------- */

/* Offset of the next 00 00 01 at or after `from`, or len. */
static size_t find_start(const uint8_t *p, size_t len, size_t from) {
  size_t i = from + 2;
  while (i < len) {
    const uint8_t *q = memchr(p + i, 1, len - i);
    if (!q)
      return len;
    i = (size_t)(q - p);
    if (p[i - 1] == 0 && p[i - 2] == 0)
      return i - 2;
    i++;
  }
  return len;
}

/* Walk length-prefixed NAL units; returns 1 if they cover [0,len) exactly, 0 otherwise.
 * On a bad layout *bad is the offset where it broke. */
static int lp_walk(const uint8_t *p, size_t len, int nls, size_t *bad, size_t *count) {
  size_t pos = 0, n = 0;
  while (pos < len) {
    if ((size_t)nls > len - pos) {
      *bad = pos;
      return 0;
    }
    size_t nl = 0;
    for (int i = 0; i < nls; i++)
      nl = (nl << 8) | p[pos + (size_t)i];
    pos += (size_t)nls;
    if (nl > len - pos) {
      *bad = pos - (size_t)nls;
      return 0;
    }
    if (nl)
      n++;
    pos += nl;
  }
  if (count)
    *count = n;
  return 1;
}

int pyrec_h26x_is_annexb(const uint8_t *p, size_t len, int nal_len_size) {
  size_t z = 0;
  while (z < len && p[z] == 0)
    z++;
  if (z < 2 || z >= len || p[z] != 1)
    return 0;
  /* 00 00 01 xx is also a 4-byte length of 256..511: keep the length-prefixed reading when
   * it covers the payload exactly with sane NAL headers. */
  if (nal_len_size == 4 && z == 2) {
    size_t bad, pos = 0;
    if (!lp_walk(p, len, 4, &bad, NULL))
      return 1;
    while (pos + 4 < len) {
      size_t nl = pyrec_rd32(p + pos);
      if (nl && (p[pos + 4] & 0x80))
        return 1;
      pos += 4 + nl;
    }
    return 0;
  }
  return 1;
}

typedef struct nal_iter {
  const uint8_t *p;
  size_t len, pos;
  int annexb, nls;
} nal_iter;

/* Next non-empty NAL unit; 1 when found, 0 at the end (layout already validated). */
static int nal_next(nal_iter *it, const uint8_t **nal, size_t *nlen) {
  while (it->pos < it->len) {
    if (it->annexb) {
      size_t sc = find_start(it->p, it->len, it->pos);
      if (sc >= it->len) {
        it->pos = it->len;
        return 0;
      }
      size_t s = sc + 3, e = find_start(it->p, it->len, s);
      it->pos = e;
      while (e > s && it->p[e - 1] == 0) /* trailing_zero_8bits / next zero_byte */
        e--;
      if (e > s) {
        *nal = it->p + s;
        *nlen = e - s;
        return 1;
      }
    } else {
      size_t nl = 0;
      if ((size_t)it->nls > it->len - it->pos)
        return 0;
      for (int i = 0; i < it->nls; i++)
        nl = (nl << 8) | it->p[it->pos + (size_t)i];
      it->pos += (size_t)it->nls;
      if (nl > it->len - it->pos)
        return 0;
      *nal = it->p + it->pos;
      it->pos += nl;
      if (nl) {
        *nlen = nl;
        return 1;
      }
    }
  }
  return 0;
}

/* ---- SPS parsing ------------------------------------------------------------------------ */

/* scaling_list() (H.264 7.3.2.1.1.1): only skipped. */
static void h264_skip_scaling_list(pyrec_bits *br, int size) {
  int last = 8, next = 8;
  for (int j = 0; j < size && !br->err; j++) {
    if (next != 0) {
      int32_t delta = pyrec_bits_se(br);
      if (delta < -128 || delta > 127) {
        br->err = 1;
        return;
      }
      next = (last + delta + 256) % 256;
    }
    last = next == 0 ? last : next;
  }
}

static int crop_dims(uint64_t w, uint64_t h, uint64_t cl, uint64_t cr, uint64_t ct, uint64_t cb,
                     h26x_sps *s) {
  if (w == 0 || h == 0 || w > 65535 || h > 65535 || cl + cr >= w || ct + cb >= h)
    return -1;
  s->width = (uint32_t)(w - cl - cr);
  s->height = (uint32_t)(h - ct - cb);
  return 0;
}

/* seq_parameter_set_data() (H.264 7.3.2.1.1) up to frame cropping. */
static int h264_parse_sps(const uint8_t *nal, size_t len, h26x_sps *s) {
  pyrec_bits br;
  memset(s, 0, sizeof *s);
  if (len < 4 || (nal[0] & 0x1f) != H264_NAL_SPS)
    return -1;
  pyrec_bits_init(&br, nal + 1, len - 1, 1);
  s->profile = pyrec_bits_u(&br, 8);
  s->compat = pyrec_bits_u(&br, 8);
  s->level = pyrec_bits_u(&br, 8);
  if (pyrec_bits_ue(&br) > 31)
    return -1;
  s->chroma_format = 1;
  unsigned sep = 0;
  switch (s->profile) {
  case 100: case 110: case 122: case 244: case 44: case 83: case 86: case 118: case 128:
  case 138: case 139: case 134: case 135:
    s->chroma_format = pyrec_bits_ue(&br);
    if (s->chroma_format > 3)
      return -1;
    if (s->chroma_format == 3)
      sep = pyrec_bits_u(&br, 1);
    s->bit_depth_luma = pyrec_bits_ue(&br);
    s->bit_depth_chroma = pyrec_bits_ue(&br);
    if (s->bit_depth_luma > 6 || s->bit_depth_chroma > 6)
      return -1;
    pyrec_bits_u(&br, 1); /* qpprime_y_zero_transform_bypass_flag */
    if (pyrec_bits_u(&br, 1)) { /* seq_scaling_matrix_present_flag */
      int n = s->chroma_format != 3 ? 8 : 12;
      for (int i = 0; i < n; i++)
        if (pyrec_bits_u(&br, 1))
          h264_skip_scaling_list(&br, i < 6 ? 16 : 64);
    }
    break;
  default:
    break;
  }
  if (pyrec_bits_ue(&br) > 12) /* log2_max_frame_num_minus4 */
    return -1;
  uint32_t poc_type = pyrec_bits_ue(&br);
  if (poc_type == 0) {
    if (pyrec_bits_ue(&br) > 12) /* log2_max_pic_order_cnt_lsb_minus4 */
      return -1;
  } else if (poc_type == 1) {
    pyrec_bits_u(&br, 1); /* delta_pic_order_always_zero_flag */
    pyrec_bits_se(&br);   /* offset_for_non_ref_pic */
    pyrec_bits_se(&br);   /* offset_for_top_to_bottom_field */
    uint32_t n = pyrec_bits_ue(&br);
    if (n > 255)
      return -1;
    for (uint32_t i = 0; i < n && !br.err; i++)
      pyrec_bits_se(&br);
  } else if (poc_type != 2) {
    return -1;
  }
  pyrec_bits_ue(&br);   /* max_num_ref_frames */
  pyrec_bits_u(&br, 1); /* gaps_in_frame_num_value_allowed_flag */
  uint64_t wmb = (uint64_t)pyrec_bits_ue(&br) + 1, hmu = (uint64_t)pyrec_bits_ue(&br) + 1;
  unsigned frame_mbs_only = pyrec_bits_u(&br, 1);
  if (!frame_mbs_only)
    pyrec_bits_u(&br, 1); /* mb_adaptive_frame_field_flag */
  pyrec_bits_u(&br, 1);   /* direct_8x8_inference_flag */
  uint64_t cl = 0, cr = 0, ct = 0, cb = 0;
  if (pyrec_bits_u(&br, 1)) { /* frame_cropping_flag */
    cl = pyrec_bits_ue(&br);
    cr = pyrec_bits_ue(&br);
    ct = pyrec_bits_ue(&br);
    cb = pyrec_bits_ue(&br);
  }
  if (br.err)
    return -1;
  /* 7.4.2.1.1: CropUnitX/Y from ChromaArrayType */
  unsigned cat = sep ? 0 : s->chroma_format;
  uint64_t ux = 1, uy = 2 - frame_mbs_only;
  if (cat != 0) {
    ux = (cat == 1 || cat == 2) ? 2 : 1;
    uy = (cat == 1 ? 2 : 1) * (2 - frame_mbs_only);
  }
  return crop_dims(wmb * 16, hmu * 16 * (2 - frame_mbs_only), cl * ux, cr * ux, ct * uy, cb * uy,
                   s);
}

/* seq_parameter_set_rbsp() (H.265 7.3.2.2.1) with profile_tier_level() (7.3.3) up to the
 * bit depths. */
static int hevc_parse_sps(const uint8_t *nal, size_t len, h26x_sps *s) {
  pyrec_bits br;
  memset(s, 0, sizeof *s);
  if (len < 4 || ((nal[0] >> 1) & 0x3f) != HEVC_NAL_SPS)
    return -1;
  pyrec_bits_init(&br, nal + 2, len - 2, 1);
  pyrec_bits_u(&br, 4); /* sps_video_parameter_set_id */
  unsigned msl = pyrec_bits_u(&br, 3);
  s->sub_layers = msl + 1;
  s->temporal_id_nesting = pyrec_bits_u(&br, 1);
  for (int i = 0; i < 12; i++)
    s->ptl[i] = (uint8_t)pyrec_bits_u(&br, 8);
  unsigned prof_present[8] = {0}, level_present[8] = {0};
  for (unsigned i = 0; i < msl; i++) {
    prof_present[i] = pyrec_bits_u(&br, 1);
    level_present[i] = pyrec_bits_u(&br, 1);
  }
  if (msl > 0)
    for (unsigned i = msl; i < 8; i++)
      pyrec_bits_u(&br, 2); /* reserved_zero_2bits */
  for (unsigned i = 0; i < msl; i++) {
    if (prof_present[i])
      pyrec_bits_skip(&br, 88);
    if (level_present[i])
      pyrec_bits_skip(&br, 8);
  }
  if (pyrec_bits_ue(&br) > 15) /* sps_seq_parameter_set_id */
    return -1;
  s->chroma_format = pyrec_bits_ue(&br);
  if (s->chroma_format > 3)
    return -1;
  unsigned sep = 0;
  if (s->chroma_format == 3)
    sep = pyrec_bits_u(&br, 1);
  uint64_t w = pyrec_bits_ue(&br), h = pyrec_bits_ue(&br);
  uint64_t cl = 0, cr = 0, ct = 0, cb = 0;
  if (pyrec_bits_u(&br, 1)) { /* conformance_window_flag */
    cl = pyrec_bits_ue(&br);
    cr = pyrec_bits_ue(&br);
    ct = pyrec_bits_ue(&br);
    cb = pyrec_bits_ue(&br);
  }
  s->bit_depth_luma = pyrec_bits_ue(&br);
  s->bit_depth_chroma = pyrec_bits_ue(&br);
  if (br.err || s->bit_depth_luma > 8 || s->bit_depth_chroma > 8)
    return -1;
  /* Table 6-1: SubWidthC / SubHeightC */
  uint64_t sw = (!sep && (s->chroma_format == 1 || s->chroma_format == 2)) ? 2 : 1;
  uint64_t sh = (!sep && s->chroma_format == 1) ? 2 : 1;
  return crop_dims(w, h, cl * sw, cr * sw, ct * sh, cb * sh, s);
}

static int parse_sps(int codec, const uint8_t *nal, size_t len, h26x_sps *s) {
  return codec == PYREC_CODEC_H265 ? hevc_parse_sps(nal, len, s) : h264_parse_sps(nal, len, s);
}

/* ---- parameter set store (cs->paramsets: records of type u8, length u16, bytes) -------- */

static void ps_add(pyrec_codec_state *cs, int type, const uint8_t *nal, size_t len) {
  pyrec_buf *b = &cs->paramsets;
  size_t pos = 0, n = 0;
  if (len > 0xffff || b->len + 3 + len > PS_MAX_BYTES)
    return;
  while (pos + 3 <= b->len) {
    size_t l = pyrec_rd16(b->data + pos + 1);
    if (b->data[pos] == type && l == len && memcmp(b->data + pos + 3, nal, len) == 0)
      return;
    pos += 3 + l;
    n++;
  }
  if (n >= PS_MAX_COUNT)
    return;
  pyrec_buf_u8(b, (uint8_t)type);
  pyrec_buf_u16(b, (uint16_t)len);
  pyrec_buf_put(b, nal, len);
}

/* i-th stored parameter set of `type` (0-based), or NULL. */
static const uint8_t *ps_get(const pyrec_codec_state *cs, int type, size_t idx, size_t *len) {
  const pyrec_buf *b = &cs->paramsets;
  size_t pos = 0;
  while (pos + 3 <= b->len) {
    size_t l = pyrec_rd16(b->data + pos + 1);
    if (b->data[pos] == type && idx-- == 0) {
      *len = l;
      return b->data + pos + 3;
    }
    pos += 3 + l;
  }
  return NULL;
}

static size_t ps_count(const pyrec_codec_state *cs, int type) {
  size_t n = 0, l;
  while (ps_get(cs, type, n, &l))
    n++;
  return n;
}

/* Remember a NAL unit if it is a parameter set; a bad SPS is an error. */
static int ps_collect(pyrec_codec_state *cs, const uint8_t *nal, size_t len, size_t off,
                      pyrec_errinfo *err) {
  int hevc = cs->codec == PYREC_CODEC_H265;
  if (len < (size_t)(hevc ? 2 : 1))
    return PYREC_OK;
  int t = nal_type(cs->codec, nal);
  int sps = hevc ? HEVC_NAL_SPS : H264_NAL_SPS;
  if (t == sps) {
    h26x_sps s;
    if (parse_sps(cs->codec, nal, len, &s) != 0)
      return pyrec_seterr(err, PYREC_E_MALFORMED, (int64_t)off,
                          "%s: SPS (%zu bytes) could not be parsed", cname(cs), len);
  }
  if (t == sps || t == (hevc ? HEVC_NAL_PPS : H264_NAL_PPS) || (hevc && t == HEVC_NAL_VPS))
    ps_add(cs, t, nal, len);
  return PYREC_OK;
}

/* ---- configuration records ------------------------------------------------------------- */

static void put_ps_list(pyrec_buf *b, const pyrec_codec_state *cs, int type, size_t n) {
  for (size_t i = 0; i < n; i++) {
    size_t l = 0;
    const uint8_t *p = ps_get(cs, type, i, &l);
    pyrec_buf_u16(b, (uint16_t)l);
    pyrec_buf_put(b, p, l);
  }
}

/* AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) from the stored SPS/PPS. */
static void build_avcc(pyrec_codec_state *cs, const h26x_sps *s) {
  pyrec_buf *b = &cs->config;
  size_t nsps = ps_count(cs, H264_NAL_SPS), npps = ps_count(cs, H264_NAL_PPS);
  nsps = nsps > 31 ? 31 : nsps;
  npps = npps > 255 ? 255 : npps;
  pyrec_buf_reset(b);
  pyrec_buf_u8(b, 1); /* configurationVersion */
  pyrec_buf_u8(b, (uint8_t)s->profile);
  pyrec_buf_u8(b, (uint8_t)s->compat);
  pyrec_buf_u8(b, (uint8_t)s->level);
  pyrec_buf_u8(b, 0xfc | 3);                 /* lengthSizeMinusOne = 3 */
  pyrec_buf_u8(b, (uint8_t)(0xe0 | nsps));   /* numOfSequenceParameterSets */
  put_ps_list(b, cs, H264_NAL_SPS, nsps);
  pyrec_buf_u8(b, (uint8_t)npps);
  put_ps_list(b, cs, H264_NAL_PPS, npps);
  if (s->profile == 100 || s->profile == 110 || s->profile == 122 || s->profile == 144) {
    pyrec_buf_u8(b, (uint8_t)(0xfc | s->chroma_format));
    pyrec_buf_u8(b, (uint8_t)(0xf8 | s->bit_depth_luma));
    pyrec_buf_u8(b, (uint8_t)(0xf8 | s->bit_depth_chroma));
    pyrec_buf_u8(b, 0); /* numOfSequenceParameterSetExt */
  }
}

/* HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1) from the stored VPS/SPS/PPS. */
static void build_hvcc(pyrec_codec_state *cs, const h26x_sps *s) {
  static const int types[3] = {HEVC_NAL_VPS, HEVC_NAL_SPS, HEVC_NAL_PPS};
  pyrec_buf *b = &cs->config;
  pyrec_buf_reset(b);
  pyrec_buf_u8(b, 1);         /* configurationVersion */
  pyrec_buf_put(b, s->ptl, 12); /* profile_space..general_level_idc */
  pyrec_buf_u16(b, 0xf000);   /* min_spatial_segmentation_idc = 0 */
  pyrec_buf_u8(b, 0xfc);      /* parallelismType = 0 (unknown) */
  pyrec_buf_u8(b, (uint8_t)(0xfc | s->chroma_format));
  pyrec_buf_u8(b, (uint8_t)(0xf8 | s->bit_depth_luma));
  pyrec_buf_u8(b, (uint8_t)(0xf8 | s->bit_depth_chroma));
  pyrec_buf_u16(b, 0); /* avgFrameRate unknown */
  /* constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3 */
  pyrec_buf_u8(b, (uint8_t)(((s->sub_layers & 7) << 3) | (s->temporal_id_nesting << 2) | 3));
  pyrec_buf_u8(b, 3); /* numOfArrays */
  for (int i = 0; i < 3; i++) {
    size_t n = ps_count(cs, types[i]);
    pyrec_buf_u8(b, (uint8_t)(0x80 | types[i])); /* array_completeness = 1 */
    pyrec_buf_u16(b, (uint16_t)n);
    put_ps_list(b, cs, types[i], n);
  }
}

static void take_dims(pyrec_codec_state *cs, const h26x_sps *s) {
  if (!cs->width)
    cs->width = s->width;
  if (!cs->height)
    cs->height = s->height;
}

/* Once SPS+PPS (+VPS) are known, build the record and become ready. */
static int try_ready(pyrec_codec_state *cs, pyrec_errinfo *err) {
  int hevc = cs->codec == PYREC_CODEC_H265;
  size_t len = 0;
  const uint8_t *sps = ps_get(cs, hevc ? HEVC_NAL_SPS : H264_NAL_SPS, 0, &len);
  if (!sps || !ps_count(cs, hevc ? HEVC_NAL_PPS : H264_NAL_PPS) ||
      (hevc && !ps_count(cs, HEVC_NAL_VPS)))
    return PYREC_OK;
  h26x_sps s;
  if (parse_sps(cs->codec, sps, len, &s) != 0) /* checked when collected */
    return pyrec_seterr(err, PYREC_E_MALFORMED, -1, "%s: SPS could not be parsed", cname(cs));
  if (hevc)
    build_hvcc(cs, &s);
  else
    build_avcc(cs, &s);
  take_dims(cs, &s);
  cs->ready = !cs->config.oom;
  return PYREC_OK;
}

/* Check an avcC body; returns the first SPS through *sps. */
static int check_avcc(const pyrec_codec_state *cs, const uint8_t *p, size_t len,
                      const uint8_t **sps, size_t *sps_len, pyrec_errinfo *err) {
  if (len < 7)
    return pyrec_seterr(err, PYREC_E_CONFIG, -1, "h264: avcC too short (%zu bytes)", len);
  if (p[0] != 1)
    return pyrec_seterr(err, PYREC_E_CONFIG, 0, "h264: avcC configurationVersion %u, expected 1",
                        p[0]);
  if ((p[4] & 3) == 2)
    return pyrec_seterr(err, PYREC_E_CONFIG, 4, "h264: avcC lengthSizeMinusOne 2 is invalid");
  size_t pos = 5;
  for (int list = 0; list < 2; list++) {
    if (pos >= len)
      return pyrec_seterr(err, PYREC_E_CONFIG, (int64_t)pos, "h264: avcC truncated");
    unsigned n = list == 0 ? (p[pos] & 0x1f) : p[pos];
    if (n == 0)
      return pyrec_seterr(err, PYREC_E_CONFIG, (int64_t)pos, "h264: avcC has no %s",
                          list == 0 ? "SPS" : "PPS");
    pos++;
    for (unsigned i = 0; i < n; i++) {
      if (len - pos < 2 || pyrec_rd16(p + pos) > len - pos - 2 || pyrec_rd16(p + pos) == 0)
        return pyrec_seterr(err, PYREC_E_CONFIG, (int64_t)pos,
                            "h264: avcC parameter set %u truncated", i);
      if (list == 0 && i == 0) {
        *sps = p + pos + 2;
        *sps_len = pyrec_rd16(p + pos);
      }
      pos += 2 + (size_t)pyrec_rd16(p + pos);
    }
  }
  return PYREC_OK;
}

/* Check an hvcC body; returns the first SPS through *sps. */
static int check_hvcc(const pyrec_codec_state *cs, const uint8_t *p, size_t len,
                      const uint8_t **sps, size_t *sps_len, pyrec_errinfo *err) {
  if (len < 23)
    return pyrec_seterr(err, PYREC_E_CONFIG, -1, "hevc: hvcC too short (%zu bytes)", len);
  if (p[0] != 1)
    return pyrec_seterr(err, PYREC_E_CONFIG, 0, "hevc: hvcC configurationVersion %u, expected 1",
                        p[0]);
  if ((p[21] & 3) == 2)
    return pyrec_seterr(err, PYREC_E_CONFIG, 21, "hevc: hvcC lengthSizeMinusOne 2 is invalid");
  size_t pos = 23;
  *sps = NULL;
  for (unsigned a = 0; a < p[22]; a++) {
    if (len - pos < 3)
      return pyrec_seterr(err, PYREC_E_CONFIG, (int64_t)pos, "hevc: hvcC array %u truncated", a);
    int type = p[pos] & 0x3f;
    unsigned n = pyrec_rd16(p + pos + 1);
    pos += 3;
    for (unsigned i = 0; i < n; i++) {
      if (len - pos < 2 || pyrec_rd16(p + pos) > len - pos - 2)
        return pyrec_seterr(err, PYREC_E_CONFIG, (int64_t)pos,
                            "hevc: hvcC NAL unit %u of array %u truncated", i, a);
      if (type == HEVC_NAL_SPS && !*sps) {
        *sps = p + pos + 2;
        *sps_len = pyrec_rd16(p + pos);
      }
      pos += 2 + (size_t)pyrec_rd16(p + pos);
    }
  }
  if (!*sps)
    return pyrec_seterr(err, PYREC_E_CONFIG, -1, "hevc: hvcC has no SPS");
  return PYREC_OK;
}

int pyrec_h26x_init(pyrec_codec_state *cs, const uint8_t *cfg, size_t len, pyrec_errinfo *err) {
  int hevc = cs->codec == PYREC_CODEC_H265;
  if (!cfg)
    return PYREC_OK; /* learn from the payloads */
  if (pyrec_h26x_is_annexb(cfg, len, 0)) {
    nal_iter it = {cfg, len, 0, 1, 4};
    const uint8_t *nal;
    size_t nlen;
    while (nal_next(&it, &nal, &nlen)) {
      int rc = ps_collect(cs, nal, nlen, (size_t)(nal - cfg), err);
      if (rc) { /* same message, but the config (not a payload) is what is wrong */
        if (err)
          err->code = PYREC_E_CONFIG;
        return PYREC_E_CONFIG;
      }
    }
    int rc = try_ready(cs, err);
    if (rc)
      return rc;
    if (!cs->ready)
      return pyrec_seterr(err, PYREC_E_CONFIG, -1, "%s: Annex B config lacks %s", cname(cs),
                          hevc ? "VPS, SPS or PPS" : "SPS or PPS");
    return PYREC_OK;
  }
  const uint8_t *sps = NULL;
  size_t sps_len = 0;
  int rc = hevc ? check_hvcc(cs, cfg, len, &sps, &sps_len, err)
                : check_avcc(cs, cfg, len, &sps, &sps_len, err);
  if (rc)
    return rc;
  h26x_sps s;
  if (parse_sps(cs->codec, sps, sps_len, &s) != 0)
    return pyrec_seterr(err, PYREC_E_CONFIG, (int64_t)(sps - cfg),
                        "%s: SPS in the %s could not be parsed", cname(cs),
                        hevc ? "hvcC" : "avcC");
  cs->nal_len_size = (cfg[hevc ? 21 : 4] & 3) + 1;
  pyrec_buf_put(&cs->config, cfg, len);
  if (cs->config.oom)
    return PYREC_E_NOMEM;
  cs->config.data[hevc ? 21 : 4] |= 3; /* output is always 4-byte length-prefixed */
  take_dims(cs, &s);
  cs->ready = 1;
  return PYREC_OK;
}

int pyrec_h26x_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                      pyrec_errinfo *err) {
  int annexb = pyrec_h26x_is_annexb(in, len, cs->nal_len_size);
  cs->annexb = annexb;
  if (!annexb) {
    size_t bad = 0, count = 0;
    if (!lp_walk(in, len, cs->nal_len_size, &bad, &count))
      return pyrec_seterr(err, PYREC_E_MALFORMED, (int64_t)bad,
                          "%s: truncated NAL unit length at offset %zu (%d-byte lengths, "
                          "payload %zu bytes)",
                          cname(cs), bad, cs->nal_len_size, len);
    if (count == 0)
      return pyrec_seterr(err, PYREC_E_MALFORMED, 0, "%s: payload holds no NAL unit", cname(cs));
    if (cs->nal_len_size == 4 && cs->ready) { /* already in MP4 form */
      pyrec_buf_put(out, in, len);
      return PYREC_OK;
    }
  }
  nal_iter it = {in, len, 0, annexb, cs->nal_len_size};
  const uint8_t *nal;
  size_t nlen, count = 0;
  if (pyrec_buf_reserve(out, len + 64))
    return pyrec_seterr(err, PYREC_E_NOMEM, -1, "%s: out of memory", cname(cs));
  while (nal_next(&it, &nal, &nlen)) {
    if (nlen > UINT32_MAX)
      return pyrec_seterr(err, PYREC_E_TOOBIG, -1, "%s: NAL unit too large", cname(cs));
    pyrec_buf_u32(out, (uint32_t)nlen);
    pyrec_buf_put(out, nal, nlen);
    count++;
    if (!cs->ready) {
      int rc = ps_collect(cs, nal, nlen, (size_t)(nal - in), err);
      if (rc)
        return rc;
    }
  }
  if (count == 0)
    return pyrec_seterr(err, PYREC_E_MALFORMED, 0, "%s: Annex B payload holds no NAL unit",
                        cname(cs));
  return cs->ready ? PYREC_OK : try_ready(cs, err);
}
