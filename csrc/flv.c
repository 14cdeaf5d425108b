/* FLV tag parsing: the incremental file/stream parser (FLV v10.1 annex E.2-E.3) and the tag
 * body parser shared with RTMP (E.4.2 AudioTagHeader, E.4.3 VideoTagHeader, and the Enhanced
 * RTMP v1/v2 ExAudioTagHeader / ExVideoTagHeader). Rules and error offsets: pyrec/flv.h. */
#include "pyrec/flv.h"

#include <inttypes.h>
#include <string.h>

#include "pyrec/codec.h"

#define FLV_HEADER_SIZE 9
#define FLV_TAG_HEADER_SIZE 11
#define FLV_PREV_SIZE 4
#define FLV_DEFAULT_MAX_TAG (16u << 20)

enum { ST_HEADER = 0, ST_SKIP, ST_TAG, ST_SIZE };

/* ---- tag bodies ------------------------------------------------------------------------ */

/* A bounds-checked cursor over one body. */
typedef struct rd {
  const uint8_t *p;
  size_t len, pos;
} rd;

static int rd_has(const rd *r, size_t n) { return r->len - r->pos >= n; }

static int32_t si24(const uint8_t *b) {
  uint32_t v = pyrec_rd24(b);
  return (v & 0x800000u) ? (int32_t)v - 0x1000000 : (int32_t)v;
}

static void set_payload(pyrec_flv_tag *t, const rd *r) {
  t->payload = r->p + r->pos;
  t->payload_len = r->len - r->pos;
}

static int unsupported(pyrec_flv_tag *t, const char *label) {
  t->supported = 0;
  t->codec = PYREC_CODEC_NONE;
  t->codec_label = label;
  return PYREC_OK;
}

/* E-RTMP v2 ModEx: while the packet type is ModEx (7), skip one modifier extension
 * (UI8 size-1, or 0xff then UI16 size-1; the data; then UB[4] ModExType | UB[4] next type). */
static int skip_modex(rd *r, int *ptype, const char *what, pyrec_errinfo *err) {
  while (*ptype == 7) {
    if (!rd_has(r, 1))
      return pyrec_seterr(err, PYREC_E_MALFORMED, -1, "%s ModEx: missing size", what);
    size_t n = (size_t)r->p[r->pos++] + 1;
    if (n == 256) {
      if (!rd_has(r, 2))
        return pyrec_seterr(err, PYREC_E_MALFORMED, -1, "%s ModEx: missing 16-bit size", what);
      n = (size_t)pyrec_rd16(r->p + r->pos) + 1;
      r->pos += 2;
    }
    if (!rd_has(r, n + 1))
      return pyrec_seterr(err, PYREC_E_MALFORMED, -1,
                          "%s ModEx: %zu data bytes announced, %zu left", what, n,
                          r->len - r->pos);
    r->pos += n;
    *ptype = r->p[r->pos++] & 0x0f; /* high nibble: ModExType (0 = TimestampOffsetNano) */
  }
  return PYREC_OK;
}

static void read_fourcc(rd *r, pyrec_flv_tag *t) {
  memcpy(t->fourcc, r->p + r->pos, 4);
  t->fourcc[4] = '\0';
  r->pos += 4;
}

static const char *const legacy_video_labels[16] = {
    "FLV video codec 0", "FLV video codec 1", "Sorenson H.263",   "Screen video",
    "On2 VP6",           "On2 VP6 alpha",     "Screen video v2",  "AVC",
    "FLV video codec 8", "FLV video codec 9", "FLV video codec 10", "FLV video codec 11",
    "HEVC",              "FLV video codec 13", "FLV video codec 14", "FLV video codec 15",
};

static int video_legacy(rd *r, pyrec_flv_tag *t, pyrec_errinfo *err) {
  uint8_t b0 = r->p[r->pos++];
  int ftype = b0 >> 4, cid = b0 & 0x0f;
  t->keyframe = ftype == 1;
  if (cid == 7 || cid == 12) {
    t->codec = cid == 7 ? PYREC_CODEC_H264 : PYREC_CODEC_H265;
  } else {
    unsupported(t, legacy_video_labels[cid]);
  }
  if (ftype == 5) { /* video info / command frame: UI8 command, nothing to record */
    t->pkt = PYREC_FLV_PKT_OTHER;
    set_payload(t, r);
    return PYREC_OK;
  }
  if (!t->supported) {
    set_payload(t, r);
    return PYREC_OK;
  }
  if (!rd_has(r, 1))
    return pyrec_seterr(err, PYREC_E_MALFORMED, -1, "%s video tag without AVCPacketType",
                        legacy_video_labels[cid]);
  int ptype = r->p[r->pos++];
  if (ptype == 2) { /* end of sequence: the SI24 is meaningless, tolerate its absence */
    t->pkt = PYREC_FLV_PKT_EOS;
    r->pos += rd_has(r, 3) ? 3 : r->len - r->pos;
    set_payload(t, r);
    return PYREC_OK;
  }
  if (ptype > 2)
    return pyrec_seterr(err, PYREC_E_MALFORMED, -1, "unknown AVCPacketType %d", ptype);
  if (!rd_has(r, 3))
    return pyrec_seterr(err, PYREC_E_MALFORMED, -1,
                        "%s video tag shorter than its 5-byte header (%zu bytes)",
                        legacy_video_labels[cid], r->len);
  int32_t cts = si24(r->p + r->pos);
  r->pos += 3;
  t->pkt = ptype == 0 ? PYREC_FLV_PKT_CONFIG : PYREC_FLV_PKT_FRAME;
  t->cts = ptype == 1 ? cts : 0;
  set_payload(t, r);
  return PYREC_OK;
}

static int video_enhanced(rd *r, pyrec_flv_tag *t, pyrec_errinfo *err) {
  uint8_t b0 = r->p[r->pos++];
  int ftype = (b0 >> 4) & 7, ptype = b0 & 0x0f;
  int rc = skip_modex(r, &ptype, "video", err);
  if (rc)
    return rc;
  t->enhanced = 1;
  t->keyframe = ftype == 1;
  if (ptype != 4 && ftype == 5) { /* command frame: UI8 VideoCommand, no FourCC, no body */
    if (!rd_has(r, 1))
      return pyrec_seterr(err, PYREC_E_MALFORMED, -1, "video command frame without command");
    t->pkt = PYREC_FLV_PKT_OTHER;
    set_payload(t, r);
    return PYREC_OK;
  }
  if (ptype == 6) { /* Multitrack: AvMultitrackType | packet type, then per-track data */
    set_payload(t, r);
    return unsupported(t, "multitrack");
  }
  if (!rd_has(r, 4))
    return pyrec_seterr(err, PYREC_E_MALFORMED, -1,
                        "enhanced video tag without its FourCC (%zu bytes)", r->len);
  read_fourcc(r, t);
  int has_cts = 0;
  if (!memcmp(t->fourcc, "avc1", 4)) {
    t->codec = PYREC_CODEC_H264;
    has_cts = 1;
  } else if (!memcmp(t->fourcc, "hvc1", 4)) {
    t->codec = PYREC_CODEC_H265;
    has_cts = 1;
  } else if (!memcmp(t->fourcc, "av01", 4)) {
    t->codec = PYREC_CODEC_AV1;
  } else if (!memcmp(t->fourcc, "vp09", 4)) {
    t->codec = PYREC_CODEC_VP9;
  } else {
    unsupported(t, t->fourcc);
  }
  switch (ptype) {
  case 0: /* SequenceStart */
    t->pkt = PYREC_FLV_PKT_CONFIG;
    break;
  case 1: /* CodedFrames: SI24 composition time for avc1/hvc1 only */
    t->pkt = PYREC_FLV_PKT_FRAME;
    if (has_cts) {
      if (!rd_has(r, 3))
        return pyrec_seterr(err, PYREC_E_MALFORMED, -1,
                            "%s CodedFrames without composition time", t->fourcc);
      t->cts = si24(r->p + r->pos);
      r->pos += 3;
    }
    break;
  case 2: /* SequenceEnd */
    t->pkt = PYREC_FLV_PKT_EOS;
    break;
  case 3: /* CodedFramesX: composition time 0 */
    t->pkt = PYREC_FLV_PKT_FRAME;
    break;
  case 4: /* Metadata (AMF): frame type is ignored */
    t->pkt = PYREC_FLV_PKT_OTHER;
    t->keyframe = 0;
    break;
  case 5: /* MPEG2TSSequenceStart: an AV1 video descriptor, passed through as config */
    t->pkt = t->codec == PYREC_CODEC_AV1 ? PYREC_FLV_PKT_CONFIG : PYREC_FLV_PKT_OTHER;
    break;
  default:
    t->pkt = PYREC_FLV_PKT_OTHER;
    set_payload(t, r);
    return unsupported(t, "unknown VideoPacketType");
  }
  set_payload(t, r);
  return PYREC_OK;
}

static const char *const legacy_audio_labels[16] = {
    "Linear PCM (platform endian)", "ADPCM",        "MP3",          "Linear PCM (little endian)",
    "Nellymoser 16 kHz mono",       "Nellymoser 8 kHz mono", "Nellymoser", "G.711 A-law",
    "G.711 mu-law",                 "ExHeader",     "AAC",          "Speex",
    "FLV audio format 12",          "FLV audio format 13", "MP3 8 kHz", "Device-specific sound",
};

static int audio_legacy(rd *r, pyrec_flv_tag *t, pyrec_errinfo *err) {
  static const uint32_t rates[4] = {5512, 11025, 22050, 44100};
  uint8_t b0 = r->p[r->pos++];
  int fmt = b0 >> 4;
  t->sample_rate = rates[(b0 >> 2) & 3];
  t->channels = (b0 & 1) + 1u;
  t->pkt = PYREC_FLV_PKT_FRAME;
  if (fmt == 10) {
    t->codec = PYREC_CODEC_AAC;
    if (!rd_has(r, 1))
      return pyrec_seterr(err, PYREC_E_MALFORMED, -1, "AAC audio tag without AACPacketType");
    int ptype = r->p[r->pos++];
    if (ptype > 1)
      return pyrec_seterr(err, PYREC_E_MALFORMED, -1, "unknown AACPacketType %d", ptype);
    t->pkt = ptype == 0 ? PYREC_FLV_PKT_CONFIG : PYREC_FLV_PKT_FRAME;
  } else if (fmt == 2 || fmt == 14) {
    t->codec = PYREC_CODEC_MP3;
    if (fmt == 14)
      t->sample_rate = 8000;
  } else {
    unsupported(t, legacy_audio_labels[fmt]);
  }
  set_payload(t, r);
  return PYREC_OK;
}

static int audio_enhanced(rd *r, pyrec_flv_tag *t, pyrec_errinfo *err) {
  uint8_t b0 = r->p[r->pos++];
  int ptype = b0 & 0x0f;
  int rc = skip_modex(r, &ptype, "audio", err);
  if (rc)
    return rc;
  t->enhanced = 1;
  t->sample_rate = t->channels = 0;
  if (ptype == 5) { /* Multitrack */
    t->pkt = PYREC_FLV_PKT_FRAME;
    set_payload(t, r);
    return unsupported(t, "multitrack");
  }
  if (!rd_has(r, 4))
    return pyrec_seterr(err, PYREC_E_MALFORMED, -1,
                        "enhanced audio tag without its FourCC (%zu bytes)", r->len);
  read_fourcc(r, t);
  if (!memcmp(t->fourcc, "Opus", 4))
    t->codec = PYREC_CODEC_OPUS;
  else if (!memcmp(t->fourcc, "mp4a", 4))
    t->codec = PYREC_CODEC_AAC;
  else if (!memcmp(t->fourcc, ".mp3", 4))
    t->codec = PYREC_CODEC_MP3;
  else
    unsupported(t, t->fourcc); /* ac-3, ec-3, fLaC, ... */
  set_payload(t, r);
  switch (ptype) {
  case 0:
    t->pkt = PYREC_FLV_PKT_CONFIG;
    break;
  case 1:
    t->pkt = PYREC_FLV_PKT_FRAME;
    break;
  case 2:
    t->pkt = PYREC_FLV_PKT_EOS;
    break;
  case 4: /* MultichannelConfig */
    t->pkt = PYREC_FLV_PKT_OTHER;
    break;
  default:
    t->pkt = PYREC_FLV_PKT_OTHER;
    return unsupported(t, "unknown AudioPacketType");
  }
  return PYREC_OK;
}

int pyrec_flv_parse_body(uint8_t type, uint32_t timestamp, const uint8_t *body, size_t len,
                         pyrec_flv_tag *out, pyrec_errinfo *err) {
  memset(out, 0, sizeof *out);
  out->type = type;
  out->timestamp = timestamp;
  out->offset = -1;
  out->supported = 1;
  out->keyframe = 1;
  out->payload = body;
  rd r = {body, body ? len : 0, 0};
  const char *what = type == PYREC_FLV_AUDIO   ? "audio"
                     : type == PYREC_FLV_VIDEO ? "video"
                     : type == PYREC_FLV_SCRIPT ? "script"
                                                : NULL;
  if (!what)
    return pyrec_seterr(err, PYREC_E_INVAL, -1, "FLV tag type %u is not audio, video or script",
                        (unsigned)type);
  if (r.len == 0)
    return pyrec_seterr(err, PYREC_E_MALFORMED, -1, "empty %s tag", what);
  switch (type) {
  case PYREC_FLV_VIDEO:
    return (body[0] & 0x80) ? video_enhanced(&r, out, err) : video_legacy(&r, out, err);
  case PYREC_FLV_AUDIO:
    return (body[0] >> 4) == 9 ? audio_enhanced(&r, out, err) : audio_legacy(&r, out, err);
  default: /* script data: AMF0, passed whole */
    out->codec = PYREC_CODEC_NONE;
    out->pkt = PYREC_FLV_PKT_OTHER;
    out->keyframe = 0;
    set_payload(out, &r);
    return PYREC_OK;
  }
}

/* ---- the stream parser ----------------------------------------------------------------- */

void pyrec_flv_init(pyrec_flv_parser *p, int expect_header, uint32_t max_tag_size,
                    pyrec_flv_tag_cb cb, void *opaque) {
  memset(p, 0, sizeof *p);
  p->cb = cb;
  p->opaque = opaque;
  p->max_tag_size = max_tag_size ? max_tag_size : FLV_DEFAULT_MAX_TAG;
  p->state = expect_header ? ST_HEADER : ST_TAG;
  p->verify_trailer = expect_header;
  pyrec_buf_init(&p->pending);
  pyrec_clearerr(&p->err);
}

void pyrec_flv_free(pyrec_flv_parser *p) { pyrec_buf_free(&p->pending); }

static size_t unit_prefix(int state) {
  return state == ST_HEADER ? FLV_HEADER_SIZE
         : state == ST_TAG  ? FLV_TAG_HEADER_SIZE
                            : FLV_PREV_SIZE;
}

/* Validate the first unit_prefix() bytes of the unit and give its total size. */
static int unit_total(pyrec_flv_parser *p, const uint8_t *b, size_t *total) {
  int64_t off = p->unit_off;
  if (p->state == ST_HEADER) {
    if (memcmp(b, "FLV", 3) != 0)
      return pyrec_seterr(&p->err, PYREC_E_MALFORMED, off,
                          "bad FLV signature %02x %02x %02x (want \"FLV\")", b[0], b[1], b[2]);
    if (b[3] != 1)
      return pyrec_seterr(&p->err, PYREC_E_MALFORMED, off + 3, "unsupported FLV version %u",
                          b[3]);
    if (pyrec_rd32(b + 5) < FLV_HEADER_SIZE)
      return pyrec_seterr(&p->err, PYREC_E_MALFORMED, off + 5, "FLV DataOffset %" PRIu32 " < 9",
                          pyrec_rd32(b + 5));
    *total = FLV_HEADER_SIZE;
  } else if (p->state == ST_TAG) {
    uint32_t ds = pyrec_rd24(b + 1);
    if (b[0] & 0xc0)
      return pyrec_seterr(&p->err, PYREC_E_MALFORMED, off,
                          "tag at offset %" PRId64 ": reserved bits set in tag type 0x%02x", off,
                          b[0]);
    if (b[0] & 0x20)
      return pyrec_seterr(&p->err, PYREC_E_CODEC, off,
                          "tag at offset %" PRId64 ": encrypted FLV tags are not supported", off);
    if (ds > p->max_tag_size)
      return pyrec_seterr(&p->err, PYREC_E_TOOBIG, off,
                          "tag at offset %" PRId64 ": DataSize %" PRIu32 " > limit %" PRIu32,
                          off, ds, p->max_tag_size);
    /* In a file a tag is only reported once its PreviousTagSize confirms it, so a tag torn
     * by corruption is never recorded. */
    *total = FLV_TAG_HEADER_SIZE + (size_t)ds + (p->verify_trailer ? FLV_PREV_SIZE : 0);
  } else {
    *total = FLV_PREV_SIZE;
  }
  return PYREC_OK;
}

static int process_tag(pyrec_flv_parser *p, const uint8_t *b, size_t total) {
  int64_t off = p->unit_off;
  uint8_t type = b[0] & 0x1f;
  uint32_t ts = pyrec_rd24(b + 4) | ((uint32_t)b[7] << 24);
  if (p->verify_trailer) {
    total -= FLV_PREV_SIZE;
    uint32_t v = pyrec_rd32(b + total);
    if (v != total) {
      if (!p->lax_prev_size)
        return pyrec_seterr(&p->err, PYREC_E_MALFORMED, off,
                            "tag at offset %" PRId64 ": PreviousTagSize %" PRIu32 " != %zu"
                            " (field at offset %" PRId64 ")",
                            off, v, total, off + (int64_t)total);
      p->bad_prev_size++;
    }
  }
  p->last_tag_size = (uint32_t)total;
  p->last_tag_off = off;
  p->state = p->verify_trailer ? ST_TAG : ST_SIZE;
  if (type != PYREC_FLV_AUDIO && type != PYREC_FLV_VIDEO && type != PYREC_FLV_SCRIPT) {
    p->skipped++;
    return PYREC_OK;
  }
  pyrec_flv_tag tag;
  pyrec_errinfo e;
  pyrec_clearerr(&e);
  int rc = pyrec_flv_parse_body(type, ts, b + FLV_TAG_HEADER_SIZE, total - FLV_TAG_HEADER_SIZE,
                                &tag, &e);
  if (rc)
    return pyrec_seterr(&p->err, rc, off, "tag at offset %" PRId64 ": %s", off, e.msg);
  tag.offset = off;
  p->tags++;
  if (p->cb) {
    int r = p->cb(p->opaque, &tag);
    if (r)
      return pyrec_seterr(&p->err, PYREC_E_CALLBACK, off,
                          "callback returned %d (tag at offset %" PRId64 ")", r, off);
  }
  return PYREC_OK;
}

/* A complete unit of `total` bytes at `b`: act on it and move to the next state. */
static int process_unit(pyrec_flv_parser *p, const uint8_t *b, size_t total) {
  switch (p->state) {
  case ST_HEADER:
    p->has_audio = (b[4] & 0x04) != 0;
    p->has_video = (b[4] & 0x01) != 0;
    p->skip_left = (uint64_t)pyrec_rd32(b + 5) - FLV_HEADER_SIZE + FLV_PREV_SIZE;
    p->state = ST_SKIP;
    p->unit_off = p->pos; /* the skipped run starts right after the header */
    return PYREC_OK;
  case ST_TAG:
    return process_tag(p, b, total);
  default: { /* ST_SIZE */
    uint32_t v = pyrec_rd32(b);
    p->state = ST_TAG;
    if (v == p->last_tag_size)
      return PYREC_OK;
    if (p->lax_prev_size) {
      p->bad_prev_size++;
      return PYREC_OK;
    }
    return pyrec_seterr(&p->err, PYREC_E_MALFORMED, p->last_tag_off,
                        "tag at offset %" PRId64 ": PreviousTagSize %" PRIu32 " != %" PRIu32
                        " (field at offset %" PRId64 ")",
                        p->last_tag_off, v, p->last_tag_size, p->unit_off);
  }
  }
}

int pyrec_flv_feed(pyrec_flv_parser *p, const uint8_t *data, size_t len) {
  if (p->err.code)
    return p->err.code;
  if (!data)
    len = 0;
  while (len > 0) {
    if (p->state == ST_SKIP) {
      size_t n = p->skip_left < len ? (size_t)p->skip_left : len;
      p->skip_left -= n;
      data += n;
      len -= n;
      p->pos += (int64_t)n;
      if (p->skip_left == 0)
        p->state = ST_TAG;
      continue;
    }
    size_t prefix = unit_prefix(p->state), total = 0;
    int rc;
    if (p->pending.len == 0) {
      p->unit_off = p->pos;
      p->unit_total = 0;
      if (len >= prefix) {
        if ((rc = unit_total(p, data, &total)))
          return rc;
        if (len >= total) { /* the whole unit is here: parse in place */
          p->pos += (int64_t)total;
          rc = process_unit(p, data, total);
          data += total;
          len -= total;
          if (rc)
            return rc;
          continue;
        }
        p->unit_total = total;
      }
    }
    /* gather a unit split across feeds into `pending` */
    size_t target = p->unit_total ? p->unit_total : prefix;
    size_t n = target - p->pending.len;
    if (n > len)
      n = len;
    if (pyrec_buf_reserve(&p->pending, target - p->pending.len))
      return pyrec_seterr(&p->err, PYREC_E_NOMEM, p->unit_off,
                          "no memory for a %zu-byte tag at offset %" PRId64, target, p->unit_off);
    pyrec_buf_put(&p->pending, data, n);
    data += n;
    len -= n;
    p->pos += (int64_t)n;
    p->need = target - p->pending.len;
    if (p->need)
      continue;
    if (!p->unit_total) {
      if ((rc = unit_total(p, p->pending.data, &total)))
        return rc;
      p->unit_total = total;
      p->need = total - p->pending.len;
      if (p->need)
        continue;
    }
    total = p->unit_total;
    p->unit_total = 0;
    rc = process_unit(p, p->pending.data, total);
    pyrec_buf_reset(&p->pending);
    if (rc)
      return rc;
  }
  return PYREC_OK;
}

int pyrec_flv_finish(pyrec_flv_parser *p) {
  if (p->err.code)
    return p->err.code;
  size_t have = p->pending.len;
  int64_t off = p->unit_off;
  switch (p->state) {
  case ST_HEADER:
    if (p->pos == 0)
      return pyrec_seterr(&p->err, PYREC_E_TRUNCATED, 0, "empty input: no FLV header");
    return pyrec_seterr(&p->err, PYREC_E_TRUNCATED, off,
                        "truncated FLV header: %zu bytes missing (%zu of 9)",
                        FLV_HEADER_SIZE - have, have);
  case ST_SKIP:
    return pyrec_seterr(&p->err, PYREC_E_TRUNCATED, off,
                        "truncated FLV header: %" PRIu64 " bytes missing", p->skip_left);
  case ST_TAG:
    if (have == 0)
      return PYREC_OK;
    if (!p->unit_total)
      return pyrec_seterr(&p->err, PYREC_E_TRUNCATED, off,
                          "truncated tag header at offset %" PRId64
                          ": %zu bytes missing (%zu of 11)",
                          off, FLV_TAG_HEADER_SIZE - have, have);
    return pyrec_seterr(&p->err, PYREC_E_TRUNCATED, off,
                        "truncated tag at offset %" PRId64 ": %zu bytes missing (%zu of %zu)",
                        off, p->unit_total - have, have, p->unit_total);
  default:
    return pyrec_seterr(&p->err, PYREC_E_TRUNCATED, p->pos - (int64_t)have,
                        "tag at offset %" PRId64 ": PreviousTagSize missing (%zu bytes missing)",
                        p->last_tag_off, FLV_PREV_SIZE - have);
  }
}
