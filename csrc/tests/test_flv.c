/* FLV parser: tag bodies (legacy and Enhanced RTMP), the incremental stream parser under any
 * split of its input, error cases with their offsets, and (optionally) a real ffmpeg file:
 *   test_flv [file.flv]   or   PYREC_FLV_FILE=file.flv test_flv */
#include "pyrec/codec.h"
#include "pyrec/flv.h"
#include "t.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define B(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

/* ---- expected tags: the input table ------------------------------------------------------ */

typedef struct trow {
  const char *name;
  uint8_t type;
  uint32_t ts;
  const uint8_t *body;
  size_t len;
  /* expected */
  int codec, supported, pkt, keyframe;
  int32_t cts;
  uint32_t sr, ch;
  size_t hdr; /* payload starts at body + hdr */
  const char *label;
} trow;

static const trow rows[] = {
    {"script onMetaData", 18, 0,
     B(0x02, 0x00, 0x0a, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a', 0x08, 0, 0, 0, 0, 0, 0,
       9),
     PYREC_CODEC_NONE, 1, PYREC_FLV_PKT_OTHER, 0, 0, 0, 0, 0, NULL},
    {"AVC sequence header", 9, 0, B(0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1),
     PYREC_CODEC_H264, 1, PYREC_FLV_PKT_CONFIG, 1, 0, 0, 0, 5, NULL},
    {"AAC sequence header", 8, 0, B(0xaf, 0x00, 0x12, 0x10), PYREC_CODEC_AAC, 1,
     PYREC_FLV_PKT_CONFIG, 1, 0, 44100, 2, 2, NULL},
    {"AVC keyframe cts 33", 9, 0, B(0x17, 0x01, 0, 0, 33, 0, 0, 0, 2, 0x65, 0x88),
     PYREC_CODEC_H264, 1, PYREC_FLV_PKT_FRAME, 1, 33, 0, 0, 5, NULL},
    {"AAC raw", 8, 23, B(0xaf, 0x01, 0x21, 0x10, 0x04), PYREC_CODEC_AAC, 1, PYREC_FLV_PKT_FRAME,
     1, 0, 44100, 2, 2, NULL},
    {"AVC inter cts -33", 9, 33, B(0x27, 0x01, 0xff, 0xff, 0xdf, 0, 0, 0, 1, 0x41),
     PYREC_CODEC_H264, 1, PYREC_FLV_PKT_FRAME, 0, -33, 0, 0, 5, NULL},
    {"AVC empty NALU", 9, 66, B(0x27, 0x01, 0, 0, 0), PYREC_CODEC_H264, 1, PYREC_FLV_PKT_FRAME, 0,
     0, 0, 0, 5, NULL},
    {"HEVC legacy id 12", 9, 70, B(0x1c, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x26),
     PYREC_CODEC_H265, 1, PYREC_FLV_PKT_FRAME, 1, 0, 0, 0, 5, NULL},
    {"E-RTMP hvc1 CodedFrames", 9, 100, B(0x91, 'h', 'v', 'c', '1', 0, 0, 16, 0, 0, 0, 1, 0x26),
     PYREC_CODEC_H265, 1, PYREC_FLV_PKT_FRAME, 1, 16, 0, 0, 8, NULL},
    {"E-RTMP av01 SequenceStart", 9, 100, B(0x90, 'a', 'v', '0', '1', 0x81, 0x00, 0x0c, 0x00),
     PYREC_CODEC_AV1, 1, PYREC_FLV_PKT_CONFIG, 1, 0, 0, 0, 5, NULL},
    {"E-RTMP av01 MPEG2TSSequenceStart", 9, 100, B(0x95, 'a', 'v', '0', '1', 0x80, 0x04),
     PYREC_CODEC_AV1, 1, PYREC_FLV_PKT_CONFIG, 1, 0, 0, 0, 5, NULL},
    {"E-RTMP vp09 CodedFramesX", 9, 133, B(0xa3, 'v', 'p', '0', '9', 0x86, 0x00),
     PYREC_CODEC_VP9, 1, PYREC_FLV_PKT_FRAME, 0, 0, 0, 0, 5, NULL},
    {"E-RTMP av01 CodedFrames (no cts)", 9, 166, B(0xa1, 'a', 'v', '0', '1', 0x12, 0x00),
     PYREC_CODEC_AV1, 1, PYREC_FLV_PKT_FRAME, 0, 0, 0, 0, 5, NULL},
    {"E-RTMP avc1 via ModEx", 9, 200,
     B(0x97, 0x02, 0xaa, 0xbb, 0xcc, 0x01, 'a', 'v', 'c', '1', 0xff, 0xff, 0xff, 0x65),
     PYREC_CODEC_H264, 1, PYREC_FLV_PKT_FRAME, 1, -1, 0, 0, 13, NULL},
    {"E-RTMP hvc1 SequenceEnd", 9, 233, B(0x92, 'h', 'v', 'c', '1'), PYREC_CODEC_H265, 1,
     PYREC_FLV_PKT_EOS, 1, 0, 0, 0, 5, NULL},
    {"E-RTMP hvc1 Metadata", 9, 233, B(0x94, 'h', 'v', 'c', '1', 0x02, 0x00, 0x00),
     PYREC_CODEC_H265, 1, PYREC_FLV_PKT_OTHER, 0, 0, 0, 0, 5, NULL},
    {"E-RTMP command frame", 9, 233, B(0xd1, 0x00), PYREC_CODEC_NONE, 1, PYREC_FLV_PKT_OTHER, 0,
     0, 0, 0, 1, NULL},
    {"E-RTMP multitrack", 9, 233, B(0x96, 0x01, 'a', 'v', 'c', '1'), PYREC_CODEC_NONE, 0,
     PYREC_FLV_PKT_FRAME, 1, 0, 0, 0, 1, "multitrack"},
    {"E-RTMP vvc1 (unknown FourCC)", 9, 233, B(0x90, 'v', 'v', 'c', '1', 0x00), PYREC_CODEC_NONE,
     0, PYREC_FLV_PKT_CONFIG, 1, 0, 0, 0, 5, "vvc1"},
    {"MP3 44.1k stereo", 8, 240, B(0x2f, 0xff, 0xfb, 0x90, 0x00), PYREC_CODEC_MP3, 1,
     PYREC_FLV_PKT_FRAME, 1, 0, 44100, 2, 1, NULL},
    {"MP3 8k mono", 8, 250, B(0xe2, 0xff, 0xf3), PYREC_CODEC_MP3, 1, PYREC_FLV_PKT_FRAME, 1, 0,
     8000, 1, 1, NULL},
    {"MP3 22k mono", 8, 260, B(0x2a, 0xff, 0xf3), PYREC_CODEC_MP3, 1, PYREC_FLV_PKT_FRAME, 1, 0,
     22050, 1, 1, NULL},
    {"Nellymoser", 8, 270, B(0x6a, 0x01, 0x02), PYREC_CODEC_NONE, 0, PYREC_FLV_PKT_FRAME, 1, 0,
     22050, 1, 1, "Nellymoser"},
    {"Speex", 8, 270, B(0xb6, 0x01), PYREC_CODEC_NONE, 0, PYREC_FLV_PKT_FRAME, 1, 0, 11025, 1, 1,
     "Speex"},
    {"Sorenson H.263", 9, 280, B(0x22, 0x00, 0x00, 0x84), PYREC_CODEC_NONE, 0,
     PYREC_FLV_PKT_FRAME, 0, 0, 0, 0, 1, "Sorenson H.263"},
    {"VP6 alpha", 9, 280, B(0x15, 0x00, 0x00), PYREC_CODEC_NONE, 0, PYREC_FLV_PKT_FRAME, 1, 0, 0,
     0, 1, "On2 VP6 alpha"},
    {"AVC info frame", 9, 290, B(0x57, 0x00), PYREC_CODEC_H264, 1, PYREC_FLV_PKT_OTHER, 0, 0, 0,
     0, 1, NULL},
    {"AVC end of sequence", 9, 300, B(0x17, 0x02, 0, 0, 0), PYREC_CODEC_H264, 1,
     PYREC_FLV_PKT_EOS, 1, 0, 0, 0, 5, NULL},
    {"E-RTMP Opus SequenceStart", 8, 300,
     B(0x90, 'O', 'p', 'u', 's', 'O', 'p', 'u', 's', 'H', 'e', 'a', 'd'), PYREC_CODEC_OPUS, 1,
     PYREC_FLV_PKT_CONFIG, 1, 0, 0, 0, 5, NULL},
    {"E-RTMP Opus CodedFrames", 8, 320, B(0x91, 'O', 'p', 'u', 's', 0xfc, 0xff), PYREC_CODEC_OPUS,
     1, PYREC_FLV_PKT_FRAME, 1, 0, 0, 0, 5, NULL},
    {"E-RTMP mp4a via ModEx 16-bit size", 8, 340, NULL, 0, PYREC_CODEC_AAC, 1,
     PYREC_FLV_PKT_FRAME, 1, 0, 0, 0, 0, NULL}, /* body built in main (300 bytes) */
    {"E-RTMP .mp3", 8, 360, B(0x91, '.', 'm', 'p', '3', 0xff, 0xfb), PYREC_CODEC_MP3, 1,
     PYREC_FLV_PKT_FRAME, 1, 0, 0, 0, 5, NULL},
    {"E-RTMP ac-3", 8, 380, B(0x91, 'a', 'c', '-', '3', 0x0b, 0x77), PYREC_CODEC_NONE, 0,
     PYREC_FLV_PKT_FRAME, 1, 0, 0, 0, 5, "ac-3"},
    {"E-RTMP fLaC MultichannelConfig", 8, 380, B(0x94, 'f', 'L', 'a', 'C', 0x00, 0x02),
     PYREC_CODEC_NONE, 0, PYREC_FLV_PKT_OTHER, 1, 0, 0, 0, 5, "fLaC"},
    {"E-RTMP audio multitrack", 8, 380, B(0x95, 0x01, 'O', 'p', 'u', 's'), PYREC_CODEC_NONE, 0,
     PYREC_FLV_PKT_FRAME, 1, 0, 0, 0, 1, "multitrack"},
    {"timestamp with extension byte", 9, 0x81020304u, B(0x27, 0x01, 0, 0, 0, 0x41),
     PYREC_CODEC_H264, 1, PYREC_FLV_PKT_FRAME, 0, 0, 0, 0, 5, NULL},
};
#define NROWS (sizeof rows / sizeof rows[0])

static uint8_t modex_body[300];
static const uint8_t *row_body(size_t i, size_t *len) {
  if (rows[i].body) {
    *len = rows[i].len;
    return rows[i].body;
  }
  /* ModEx with a 16-bit size: 0x97, 0xff, UI16 (289-1), 289 bytes, 0x01, 'mp4a', 2 bytes */
  uint8_t *b = modex_body;
  size_t n = 0;
  b[n++] = 0x97;
  b[n++] = 0xff;
  b[n++] = 0x01;
  b[n++] = 0x20; /* 288 + 1 = 289 */
  memset(b + n, 0x5a, 289);
  n += 289;
  b[n++] = 0x01;
  memcpy(b + n, "mp4a", 4);
  n += 4;
  b[n++] = 0x21;
  b[n++] = 0x10;
  *len = n;
  return b;
}
static size_t row_hdr(size_t i) { return rows[i].body ? rows[i].hdr : 298; }

static void test_bodies(void) {
  for (size_t i = 0; i < NROWS; i++) {
    const trow *r = &rows[i];
    size_t len;
    const uint8_t *body = row_body(i, &len);
    pyrec_flv_tag t;
    pyrec_errinfo e;
    pyrec_clearerr(&e);
    int rc = pyrec_flv_parse_body(r->type, r->ts, body, len, &t, &e);
    if (rc)
      fprintf(stderr, "  %s: %s\n", r->name, e.msg);
    CHECK_EQ(rc, 0);
    int bad = t.codec != r->codec || t.supported != r->supported || t.pkt != r->pkt ||
              t.keyframe != r->keyframe || t.cts != r->cts || t.timestamp != r->ts ||
              t.payload != body + row_hdr(i) || t.payload_len != len - row_hdr(i) ||
              t.offset != -1 || (r->type == 8 && (t.sample_rate != r->sr || t.channels != r->ch));
    if (r->label)
      bad |= !t.codec_label || strcmp(t.codec_label, r->label) != 0;
    else
      bad |= t.codec_label != NULL;
    if (bad)
      fprintf(stderr,
              "  %s: codec %d sup %d pkt %d key %d cts %d sr %u ch %u hdr %td len %zu label %s\n",
              r->name, t.codec, t.supported, t.pkt, t.keyframe, (int)t.cts, t.sample_rate,
              t.channels, t.payload - body, t.payload_len, t.codec_label ? t.codec_label : "-");
    CHECK(!bad);
  }
}

static void test_body_errors(void) {
  const struct {
    uint8_t type;
    const uint8_t *b;
    size_t len;
    int code;
    const char *msg;
  } errs[] = {
      {9, NULL, 0, PYREC_E_MALFORMED, "empty video tag"},
      {8, NULL, 0, PYREC_E_MALFORMED, "empty audio tag"},
      {18, NULL, 0, PYREC_E_MALFORMED, "empty script tag"},
      {7, B(0x00), PYREC_E_INVAL, "type 7"},
      {9, B(0x17), PYREC_E_MALFORMED, "without AVCPacketType"},
      {9, B(0x17, 0x01, 0x00), PYREC_E_MALFORMED, "shorter than its 5-byte header"},
      {9, B(0x17, 0x03, 0, 0, 0), PYREC_E_MALFORMED, "unknown AVCPacketType 3"},
      {8, B(0xaf), PYREC_E_MALFORMED, "without AACPacketType"},
      {8, B(0xaf, 0x02, 0x00), PYREC_E_MALFORMED, "unknown AACPacketType 2"},
      {9, B(0x91, 'h', 'v', 'c'), PYREC_E_MALFORMED, "without its FourCC"},
      {9, B(0x91, 'h', 'v', 'c', '1', 0x00), PYREC_E_MALFORMED, "without composition time"},
      {9, B(0x97), PYREC_E_MALFORMED, "ModEx: missing size"},
      {9, B(0x97, 0x05, 0x00), PYREC_E_MALFORMED, "6 data bytes announced"},
      {9, B(0x97, 0xff, 0x00), PYREC_E_MALFORMED, "missing 16-bit size"},
      {9, B(0x97, 0x00, 0x00), PYREC_E_MALFORMED, "1 data bytes announced, 1 left"},
      {9, B(0xd1), PYREC_E_MALFORMED, "without command"},
      {8, B(0x90, 'O', 'p'), PYREC_E_MALFORMED, "audio tag without its FourCC"},
      {8, B(0x97, 0x00, 0x01, 0x07), PYREC_E_MALFORMED, "audio ModEx"},
  };
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
    pyrec_flv_tag t;
    pyrec_errinfo e;
    pyrec_clearerr(&e);
    int rc = pyrec_flv_parse_body(errs[i].type, 0, errs[i].b, errs[i].len, &t, &e);
    if (rc != errs[i].code || !strstr(e.msg, errs[i].msg))
      fprintf(stderr, "  error case %zu: rc %d msg '%s'\n", i, rc, e.msg);
    CHECK_EQ(rc, errs[i].code);
    CHECK(strstr(e.msg, errs[i].msg) != NULL);
    CHECK_EQ(e.offset, -1);
  }
}

/* Every header length, one byte short: a body that ends exactly one byte before the field
 * its first bytes announce gives a clean MALFORMED (never a tag whose payload starts past the
 * end). Each body is an exact-size heap copy, so the sanitizer build also sees an overread. */
static void test_one_byte_short(void) {
  const struct {
    const char *name;
    uint8_t type;
    const uint8_t *b;
    size_t len;
    const char *msg;
  } cases[] = {
      {"AVC NALU header (5 of 5)", 9, B(0x17, 0x01, 0, 0), "shorter than its 5-byte header"},
      {"AVC sequence header (5 of 5)", 9, B(0x17, 0x00, 0, 0), "shorter than its 5-byte header"},
      {"AVC packet type (2 of 2)", 9, B(0x27), "without AVCPacketType"},
      {"HEVC legacy NALU header", 9, B(0x1c, 0x01, 0, 0), "HEVC video tag shorter than its 5"},
      {"HEVC legacy sequence header", 9, B(0x1c, 0x00, 0, 0), "HEVC video tag shorter"},
      {"HEVC legacy packet type", 9, B(0x1c), "HEVC video tag without AVCPacketType"},
      {"AAC packet type", 8, B(0xaf), "without AACPacketType"},
      {"AAC mono packet type", 8, B(0xae), "without AACPacketType"},
      {"avc1 FourCC", 9, B(0x90, 'a', 'v', 'c'), "video tag without its FourCC (4 bytes)"},
      {"hvc1 FourCC", 9, B(0x91, 'h', 'v', 'c'), "video tag without its FourCC"},
      {"av01 FourCC", 9, B(0x90, 'a', 'v', '0'), "video tag without its FourCC"},
      {"vp09 FourCC", 9, B(0xa3, 'v', 'p', '0'), "video tag without its FourCC"},
      {"avc1 composition time", 9, B(0x91, 'a', 'v', 'c', '1', 0, 0),
       "avc1 CodedFrames without composition time"},
      {"hvc1 composition time", 9, B(0x91, 'h', 'v', 'c', '1', 0, 0),
       "hvc1 CodedFrames without composition time"},
      {"Opus FourCC", 8, B(0x90, 'O', 'p', 'u'), "audio tag without its FourCC (4 bytes)"},
      {"mp4a FourCC", 8, B(0x91, 'm', 'p', '4'), "audio tag without its FourCC"},
      {".mp3 FourCC", 8, B(0x91, '.', 'm', 'p'), "audio tag without its FourCC"},
      {"video ModEx size", 9, B(0x97), "video ModEx: missing size"},
      {"video ModEx 16-bit size", 9, B(0x97, 0xff, 0x00), "video ModEx: missing 16-bit size"},
      {"video ModEx data", 9, B(0x97, 0x02, 0xaa, 0xbb), "3 data bytes announced, 2 left"},
      {"video ModEx type byte", 9, B(0x97, 0x02, 0xaa, 0xbb, 0xcc),
       "3 data bytes announced, 3 left"},
      {"video ModEx 16-bit data", 9, B(0x97, 0xff, 0x00, 0x01, 0xaa, 0xbb),
       "2 data bytes announced, 2 left"},
      {"FourCC after ModEx", 9, B(0x97, 0x00, 0xaa, 0x01, 'a', 'v', 'c'),
       "video tag without its FourCC"},
      {"cts after ModEx", 9, B(0x97, 0x00, 0xaa, 0x01, 'a', 'v', 'c', '1', 0, 0),
       "without composition time"},
      {"audio ModEx size", 8, B(0x97), "audio ModEx: missing size"},
      {"audio ModEx 16-bit size", 8, B(0x97, 0xff, 0x00), "audio ModEx: missing 16-bit size"},
      {"audio ModEx type byte", 8, B(0x97, 0x01, 0xaa, 0xbb), "audio ModEx: 2 data bytes"},
      {"FourCC after audio ModEx", 8, B(0x97, 0x00, 0xaa, 0x01, 'O', 'p', 'u'),
       "audio tag without its FourCC"},
      {"video command", 9, B(0xd3), "without command"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t *body = malloc(cases[i].len);
    memcpy(body, cases[i].b, cases[i].len);
    pyrec_flv_tag t;
    pyrec_errinfo e;
    pyrec_clearerr(&e);
    int rc = pyrec_flv_parse_body(cases[i].type, 0, body, cases[i].len, &t, &e);
    if (rc != PYREC_E_MALFORMED || !strstr(e.msg, cases[i].msg))
      fprintf(stderr, "  one byte short, %s: rc %d msg '%s' (payload at %td, %zu bytes)\n",
              cases[i].name, rc, e.msg, rc ? 0 : t.payload - body, rc ? 0 : t.payload_len);
    CHECK_EQ(rc, PYREC_E_MALFORMED);
    CHECK(strstr(e.msg, cases[i].msg) != NULL);
    free(body);
  }
}

/* Every prefix of every good row (exact-size copies) either fails with a message or reports a
 * payload that lies inside the prefix: no length check can be one byte short unnoticed. */
static void test_prefixes(void) {
  size_t bad = 0;
  for (size_t i = 0; i < NROWS; i++) {
    size_t len;
    const uint8_t *full = row_body(i, &len);
    for (size_t n = 0; n < len; n++) {
      uint8_t *body = malloc(n ? n : 1);
      memcpy(body, full, n);
      pyrec_flv_tag t;
      pyrec_errinfo e;
      pyrec_clearerr(&e);
      int rc = pyrec_flv_parse_body(rows[i].type, 0, body, n, &t, &e);
      int ok = rc ? e.msg[0] != 0
                  : t.payload >= body && (size_t)(t.payload - body) <= n &&
                        t.payload_len == n - (size_t)(t.payload - body);
      if (!ok && bad++ < 10)
        fprintf(stderr, "  %s cut to %zu bytes: rc %d, payload at %td, %zu bytes\n",
                rows[i].name, n, rc, rc ? 0 : t.payload - body, rc ? 0 : t.payload_len);
      /* a prefix that stops inside the headers of the full body is an error */
      if (!rc && n < row_hdr(i) && rows[i].pkt != PYREC_FLV_PKT_EOS && rows[i].supported &&
          rows[i].pkt != PYREC_FLV_PKT_OTHER && bad++ < 10)
        fprintf(stderr, "  %s cut to %zu bytes (headers: %zu) was accepted\n", rows[i].name,
                n, row_hdr(i));
      free(body);
    }
  }
  CHECK_EQ(bad, 0);
}

/* ---- building files and collecting what the parser reports ------------------------------ */

static void put_tag(pyrec_buf *b, uint8_t type, uint32_t ts, const uint8_t *body, size_t len) {
  pyrec_buf_u8(b, type);
  pyrec_buf_u24(b, (uint32_t)len);
  pyrec_buf_u24(b, ts & 0xffffff);
  pyrec_buf_u8(b, (uint8_t)(ts >> 24));
  pyrec_buf_u24(b, 0);
  pyrec_buf_put(b, body, len);
  pyrec_buf_u32(b, (uint32_t)(11 + len));
}

static void put_header(pyrec_buf *b, uint8_t flags, uint32_t data_offset) {
  pyrec_buf_put(b, "FLV\x01", 4);
  pyrec_buf_u8(b, flags);
  pyrec_buf_u32(b, data_offset);
  pyrec_buf_zero(b, data_offset - 9);
  pyrec_buf_u32(b, 0);
}

/* The test file: header with 3 extra bytes, every table row, an unknown tag type in the
 * middle; offsets of each row's tag header recorded. */
static int64_t row_off[NROWS];
static void build_file(pyrec_buf *b) {
  put_header(b, 0x05, 12);
  for (size_t i = 0; i < NROWS; i++) {
    if (i == 3)
      put_tag(b, 15, 0, (const uint8_t *)"xyz", 3); /* unknown type: skipped */
    row_off[i] = (int64_t)b->len;
    size_t len;
    const uint8_t *body = row_body(i, &len);
    put_tag(b, rows[i].type, rows[i].ts, body, len);
  }
}

typedef struct seen {
  pyrec_flv_tag t;
  char label[32];
  uint8_t payload[320];
} seen;

typedef struct sink {
  seen s[64];
  size_t n;
  int stop_at; /* return non-zero at this tag index (-1: never) */
} sink;

static int on_tag(void *opaque, const pyrec_flv_tag *t) {
  sink *k = opaque;
  if ((int)k->n == k->stop_at)
    return 42;
  if (k->n < 64 && t->payload_len <= sizeof k->s[0].payload) {
    seen *s = &k->s[k->n];
    s->t = *t;
    snprintf(s->label, sizeof s->label, "%s", t->codec_label ? t->codec_label : "");
    memcpy(s->payload, t->payload, t->payload_len);
    s->t.payload = NULL;
    s->t.codec_label = NULL;
  }
  k->n++;
  return 0;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static size_t rnd(size_t n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (size_t)(rng % n);
}

/* mode 0: whole; 1: byte by byte; 2: random splits (0..max_split bytes, including empty). */
static int parse(const uint8_t *d, size_t n, int mode, size_t max_split, uint32_t max_tag,
                 sink *k, pyrec_flv_parser *p) {
  pyrec_flv_init(p, 1, max_tag, on_tag, k);
  int rc = 0;
  size_t i = 0;
  while (i < n && !rc) {
    size_t c = mode == 0 ? n : mode == 1 ? 1 : rnd(max_split + 1);
    if (c > n - i)
      c = n - i;
    rc = pyrec_flv_feed(p, d + i, c);
    i += c;
  }
  if (!rc)
    rc = pyrec_flv_finish(p);
  return rc;
}

static int same(const sink *a, const sink *b) {
  if (a->n != b->n)
    return 0;
  for (size_t i = 0; i < a->n && i < 64; i++) {
    const pyrec_flv_tag *x = &a->s[i].t, *y = &b->s[i].t;
    if (memcmp(x, y, sizeof *x) != 0 || strcmp(a->s[i].label, b->s[i].label) != 0 ||
        memcmp(a->s[i].payload, b->s[i].payload, x->payload_len) != 0)
      return 0;
  }
  return 1;
}

static void test_stream_splits(void) {
  pyrec_buf f;
  pyrec_buf_init(&f);
  build_file(&f);
  static sink whole, other;
  pyrec_flv_parser p;
  whole.stop_at = -1;
  CHECK_EQ(parse(f.data, f.len, 0, 0, 0, &whole, &p), 0);
  CHECK_EQ(whole.n, NROWS);
  CHECK_EQ(p.tags, NROWS);
  CHECK_EQ(p.skipped, 1);
  CHECK_EQ(p.has_audio, 1);
  CHECK_EQ(p.has_video, 1);
  CHECK_EQ(p.pos, (int64_t)f.len);
  CHECK_EQ(p.pending.cap, 0); /* complete tags were parsed in place */
  pyrec_flv_free(&p);
  for (size_t i = 0; i < NROWS && i < whole.n; i++) {
    size_t len;
    const uint8_t *body = row_body(i, &len);
    const pyrec_flv_tag *t = &whole.s[i].t;
    CHECK_EQ(t->offset, row_off[i]);
    CHECK_EQ(t->type, rows[i].type);
    CHECK_EQ(t->timestamp, rows[i].ts);
    CHECK_EQ(t->codec, rows[i].codec);
    CHECK_EQ(t->pkt, rows[i].pkt);
    CHECK_EQ(t->cts, rows[i].cts);
    CHECK_EQ(t->payload_len, len - row_hdr(i));
    CHECK_MEM(whole.s[i].payload, body + row_hdr(i), t->payload_len);
    CHECK(strcmp(whole.s[i].label, rows[i].label ? rows[i].label : "") == 0);
  }

  memset(&other, 0, sizeof other);
  other.stop_at = -1;
  CHECK_EQ(parse(f.data, f.len, 1, 0, 0, &other, &p), 0);
  CHECK(same(&whole, &other));
  CHECK(p.pending.cap <= 512); /* bounded by the largest tag, not the file */
  pyrec_flv_free(&p);
  for (int round = 0; round < 200; round++) {
    memset(&other, 0, sizeof other);
    other.stop_at = -1;
    size_t max_split = round < 100 ? 7 : 400;
    int rc = parse(f.data, f.len, 2, max_split, 0, &other, &p);
    pyrec_flv_free(&p);
    CHECK_EQ(rc, 0);
    if (!same(&whole, &other)) {
      fprintf(stderr, "  random split round %d differs\n", round);
      CHECK(0);
      break;
    }
  }
  pyrec_buf_free(&f);
}

/* ---- error cases: code, offset and message, whole and byte by byte ----------------------- */

typedef struct ecase {
  const char *name;
  int code;
  int64_t offset;
  const char *msg;
  size_t tags; /* tags reported before the error */
} ecase;

static void check_error(const ecase *c, const uint8_t *d, size_t n, uint32_t max_tag) {
  for (int mode = 0; mode < 3; mode++) {
    sink k;
    memset(&k, 0, sizeof k);
    k.stop_at = -1;
    pyrec_flv_parser p;
    int rc = parse(d, n, mode, 5, max_tag, &k, &p);
    if (rc != c->code || p.err.offset != c->offset || !strstr(p.err.msg, c->msg) ||
        k.n != c->tags)
      fprintf(stderr, "  %s (mode %d): rc %s offset %lld tags %zu msg '%s'\n", c->name, mode,
              pyrec_errname(rc), (long long)p.err.offset, k.n, p.err.msg);
    CHECK_EQ(rc, c->code);
    CHECK_EQ(p.err.offset, c->offset);
    CHECK(strstr(p.err.msg, c->msg) != NULL);
    CHECK_EQ(k.n, c->tags);
    /* sticky: later calls return the same error */
    CHECK_EQ(pyrec_flv_feed(&p, d, n), c->code);
    CHECK_EQ(pyrec_flv_finish(&p), c->code);
    pyrec_flv_free(&p);
  }
}

static void test_errors(void) {
  const uint8_t avc[] = {0x27, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x41};
  pyrec_buf f;
  pyrec_buf_init(&f);

  /* bad signature / version / DataOffset */
  const uint8_t bad_sig[] = {'F', 'L', 'X', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0};
  check_error(&(ecase){"bad signature", PYREC_E_MALFORMED, 0, "bad FLV signature", 0}, bad_sig,
              sizeof bad_sig, 0);
  const uint8_t bad_ver[] = {'F', 'L', 'V', 2, 5, 0, 0, 0, 9, 0, 0, 0, 0};
  check_error(&(ecase){"bad version", PYREC_E_MALFORMED, 3, "version 2", 0}, bad_ver,
              sizeof bad_ver, 0);
  const uint8_t bad_off[] = {'F', 'L', 'V', 1, 5, 0, 0, 0, 8, 0, 0, 0, 0};
  check_error(&(ecase){"bad DataOffset", PYREC_E_MALFORMED, 5, "DataOffset 8 < 9", 0}, bad_off,
              sizeof bad_off, 0);
  const uint8_t good_hdr[] = {'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0};
  check_error(&(ecase){"truncated header", PYREC_E_TRUNCATED, 0, "4 bytes missing (5 of 9)", 0},
              bad_sig, 5, 0);
  check_error(&(ecase){"empty input", PYREC_E_TRUNCATED, 0, "empty input", 0}, bad_sig, 0, 0);
  check_error(&(ecase){"header without PreviousTagSize0", PYREC_E_TRUNCATED, 9,
                       "2 bytes missing", 0},
              good_hdr, 11, 0);

  /* truncated tag: header 13 bytes, tag 1 at 13 (10-byte body, 25 bytes with size), tag 2 */
  put_header(&f, 1, 9);
  put_tag(&f, 9, 0, avc, sizeof avc);
  put_tag(&f, 9, 33, avc, sizeof avc);
  size_t full = f.len; /* 13 + 25 + 25 = 63 */
  CHECK_EQ(full, 63);
  /* a tag is reported once its PreviousTagSize confirmed it: 25 bytes per tag unit */
  check_error(&(ecase){"truncated tag body", PYREC_E_TRUNCATED, 38, "7 bytes missing (18 of 25)",
                       1},
              f.data, full - 7, 0);
  check_error(&(ecase){"truncated tag header", PYREC_E_TRUNCATED, 38,
                       "truncated tag header at offset 38: 6 bytes missing (5 of 11)", 1},
              f.data, 43, 0);
  check_error(&(ecase){"missing last PreviousTagSize", PYREC_E_TRUNCATED, 38,
                       "truncated tag at offset 38: 4 bytes missing (21 of 25)", 1},
              f.data, full - 4, 0);
  check_error(&(ecase){"missing half PreviousTagSize", PYREC_E_TRUNCATED, 38, "(23 of 25)",
                       1},
              f.data, full - 2, 0);

  /* a zeroed PreviousTagSize (what a writer that never patched it leaves) is wrong too */
  f.data[37] = 0;
  check_error(&(ecase){"zero PreviousTagSize", PYREC_E_MALFORMED, 13,
                       "tag at offset 13: PreviousTagSize 0 != 21 (field at offset 34)", 0},
              f.data, full, 0);
  /* wrong PreviousTagSize after tag 1 */
  f.data[37] = 99;
  check_error(&(ecase){"wrong PreviousTagSize", PYREC_E_MALFORMED, 13,
                       "tag at offset 13: PreviousTagSize 99 != 21 (field at offset 34)", 0},
              f.data, full, 0);
  {
    sink k;
    memset(&k, 0, sizeof k);
    k.stop_at = -1;
    pyrec_flv_parser p;
    pyrec_flv_init(&p, 1, 0, on_tag, &k);
    p.lax_prev_size = 1;
    CHECK_EQ(pyrec_flv_feed(&p, f.data, full), 0);
    CHECK_EQ(pyrec_flv_finish(&p), 0);
    CHECK_EQ(k.n, 2);
    CHECK_EQ(p.bad_prev_size, 1);
    pyrec_flv_free(&p);
  }
  f.data[37] = 21;

  /* DataSize over the limit: tag 2 carries 200 bytes, limit 100 */
  pyrec_buf_reset(&f);
  put_header(&f, 1, 9);
  put_tag(&f, 9, 0, avc, sizeof avc);
  uint8_t big[200];
  memset(big, 0, sizeof big);
  big[0] = 0x27;
  big[1] = 0x01;
  put_tag(&f, 9, 33, big, sizeof big);
  check_error(&(ecase){"TOOBIG", PYREC_E_TOOBIG, 38, "DataSize 200 > limit 100", 1}, f.data,
              f.len, 100);

  /* garbage after two good tags */
  pyrec_buf_reset(&f);
  put_header(&f, 1, 9);
  put_tag(&f, 9, 0, avc, sizeof avc);
  put_tag(&f, 9, 33, avc, sizeof avc);
  pyrec_buf_put(&f, "hello, garbage bytes here", 25);
  check_error(&(ecase){"garbage (reserved bits)", PYREC_E_MALFORMED, 63, "reserved bits", 2},
              f.data, f.len, 0);
  /* garbage that looks like an audio tag header: caught by its PreviousTagSize */
  pyrec_buf_reset(&f);
  put_header(&f, 1, 9);
  put_tag(&f, 9, 0, avc, sizeof avc);
  const uint8_t junk[] = {0x08, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 0xaf, 0x01, 0xde, 0xad, 0xbe, 0xef};
  pyrec_buf_put(&f, junk, sizeof junk);
  check_error(&(ecase){"garbage (PreviousTagSize)", PYREC_E_MALFORMED, 38,
                       "PreviousTagSize 3735928559 != 13", 1},
              f.data, f.len, 0);

  /* encrypted tag */
  pyrec_buf_reset(&f);
  put_header(&f, 1, 9);
  put_tag(&f, 9, 0, avc, sizeof avc);
  put_tag(&f, 0x29, 33, avc, sizeof avc);
  check_error(&(ecase){"encrypted", PYREC_E_CODEC, 38, "encrypted FLV tags are not supported", 1},
              f.data, f.len, 0);

  /* a malformed body: error carries the tag offset */
  pyrec_buf_reset(&f);
  put_header(&f, 1, 9);
  put_tag(&f, 9, 0, avc, sizeof avc);
  put_tag(&f, 8, 10, avc, 0);
  check_error(&(ecase){"empty audio body", PYREC_E_MALFORMED, 38,
                       "tag at offset 38: empty audio tag", 1},
              f.data, f.len, 0);
  pyrec_buf_free(&f);
}

static void test_callback_stop_and_no_header(void) {
  const uint8_t avc[] = {0x27, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x41};
  pyrec_buf f;
  pyrec_buf_init(&f);
  put_tag(&f, 9, 0, avc, sizeof avc);
  put_tag(&f, 9, 33, avc, sizeof avc);
  sink k;
  memset(&k, 0, sizeof k);
  k.stop_at = 1;
  pyrec_flv_parser p;
  pyrec_flv_init(&p, 0, 0, on_tag, &k); /* no FLV header: starts at a tag */
  CHECK_EQ(pyrec_flv_feed(&p, f.data, f.len), PYREC_E_CALLBACK);
  CHECK(strstr(p.err.msg, "returned 42") != NULL);
  CHECK_EQ(p.err.offset, 25);
  pyrec_flv_free(&p);
  k.n = 0;
  k.stop_at = -1;
  pyrec_flv_init(&p, 0, 0, on_tag, &k);
  CHECK_EQ(pyrec_flv_feed(&p, f.data, f.len), 0);
  CHECK_EQ(pyrec_flv_feed(&p, NULL, 0), 0);
  CHECK_EQ(pyrec_flv_finish(&p), 0);
  CHECK_EQ(k.n, 2);
  CHECK_EQ(k.s[1].t.offset, 25);
  pyrec_flv_free(&p);
  pyrec_buf_free(&f);
}

/* Corrupted inputs (bit flips, cut lengths): no crash under the sanitizers, and the outcome
 * (code, offset, message, tags) does not depend on how the input is split. */
static void test_mutations(void) {
  pyrec_buf f;
  pyrec_buf_init(&f);
  build_file(&f);
  uint8_t *m = malloc(f.len);
  static sink a, b;
  size_t errors = 0;
  for (int round = 0; round < 400 && m; round++) {
    memcpy(m, f.data, f.len);
    int flips = 1 + (int)rnd(4);
    for (int i = 0; i < flips; i++)
      m[rnd(f.len)] ^= (uint8_t)(1u << rnd(8));
    size_t n = round % 4 == 0 ? rnd(f.len + 1) : f.len;
    pyrec_flv_parser pa, pb;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.stop_at = b.stop_at = -1;
    int ra = parse(m, n, 0, 0, 0, &a, &pa);
    int rb = parse(m, n, 2, 13, 0, &b, &pb);
    errors += ra != 0;
    int ok = ra == rb && pa.err.offset == pb.err.offset && !strcmp(pa.err.msg, pb.err.msg) &&
             same(&a, &b);
    if (!ok)
      fprintf(stderr, "  mutation round %d: %s@%lld '%s' vs %s@%lld '%s'\n", round,
              pyrec_errname(ra), (long long)pa.err.offset, pa.err.msg, pyrec_errname(rb),
              (long long)pb.err.offset, pb.err.msg);
    CHECK(ok);
    CHECK(ra == 0 || (pa.err.offset >= 0 && pa.err.offset <= (int64_t)n));
    pyrec_flv_free(&pa);
    pyrec_flv_free(&pb);
  }
  CHECK(errors > 50); /* most corruptions are caught */
  free(m);
  pyrec_buf_free(&f);
}

/* ---- a real file (ffmpeg -f flv), when given ------------------------------------------- */

typedef struct counts {
  size_t video, audio, script, vconfig, aconfig, vframes, aframes, keys, unsupported, order_bad;
  int first_video_pkt, first_audio_pkt;
  uint32_t last_ts[32];
} counts;

static int count_tag(void *opaque, const pyrec_flv_tag *t) {
  counts *c = opaque;
  if (!t->supported)
    c->unsupported++;
  if (t->type == PYREC_FLV_SCRIPT) {
    c->script++;
    return 0;
  }
  int v = t->type == PYREC_FLV_VIDEO;
  if (v ? c->video++ == 0 : c->audio++ == 0)
    *(v ? &c->first_video_pkt : &c->first_audio_pkt) = t->pkt;
  if (t->pkt == PYREC_FLV_PKT_CONFIG)
    (*(v ? &c->vconfig : &c->aconfig))++;
  if (t->pkt == PYREC_FLV_PKT_FRAME) {
    (*(v ? &c->vframes : &c->aframes))++;
    if (v && t->keyframe)
      c->keys++;
    if (t->timestamp < c->last_ts[t->type])
      c->order_bad++;
    c->last_ts[t->type] = t->timestamp;
  }
  return 0;
}

static const char *real_path;

static void test_real_file(void) {
  FILE *fp = fopen(real_path, "rb");
  CHECK(fp != NULL);
  if (!fp)
    return;
  pyrec_buf f;
  pyrec_buf_init(&f);
  uint8_t chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
    pyrec_buf_put(&f, chunk, n);
  fclose(fp);
  counts whole;
  for (int mode = 0; mode < 3; mode++) {
    counts c;
    memset(&c, 0, sizeof c);
    pyrec_flv_parser p;
    pyrec_flv_init(&p, 1, 0, count_tag, &c);
    int rc = 0;
    for (size_t i = 0; i < f.len && !rc;) {
      size_t k = mode == 0 ? f.len : mode == 1 ? 1 : 1 + rnd(9000);
      if (k > f.len - i)
        k = f.len - i;
      rc = pyrec_flv_feed(&p, f.data + i, k);
      i += k;
    }
    if (!rc)
      rc = pyrec_flv_finish(&p);
    if (rc)
      fprintf(stderr, "  %s: %s at %lld: %s\n", real_path, pyrec_errname(rc),
              (long long)p.err.offset, p.err.msg);
    CHECK_EQ(rc, 0);
    if (mode == 0) {
      whole = c;
      printf("%s: %zu video (%zu config, %zu frames, %zu key), %zu audio (%zu config, %zu "
             "frames), %zu script, %llu skipped\n",
             real_path, c.video, c.vconfig, c.vframes, c.keys, c.audio, c.aconfig, c.aframes,
             c.script, (unsigned long long)p.skipped);
    } else {
      CHECK(memcmp(&c, &whole, sizeof c) == 0);
    }
    pyrec_flv_free(&p);
  }
  CHECK(whole.video > 0 && whole.audio > 0);
  CHECK_EQ(whole.first_video_pkt, PYREC_FLV_PKT_CONFIG);
  CHECK_EQ(whole.first_audio_pkt, PYREC_FLV_PKT_CONFIG);
  CHECK_EQ(whole.vconfig, 1);
  CHECK_EQ(whole.aconfig, 1);
  CHECK(whole.keys >= 1);
  CHECK_EQ(whole.unsupported, 0);
  CHECK_EQ(whole.order_bad, 0);
  const char *want = getenv("PYREC_FLV_VIDEO_FRAMES"); /* optional exact count */
  if (want)
    CHECK_EQ(whole.vframes, strtoul(want, NULL, 10));
  pyrec_buf_free(&f);
}

int main(int argc, char **argv) {
  RUN(test_bodies);
  RUN(test_body_errors);
  RUN(test_one_byte_short);
  RUN(test_prefixes);
  RUN(test_stream_splits);
  RUN(test_errors);
  RUN(test_callback_stop_and_no_header);
  RUN(test_mutations);
  real_path = argc > 1 ? argv[1] : getenv("PYREC_FLV_FILE");
  if (real_path && *real_path)
    RUN(test_real_file);
  else
    fprintf(stderr, "skip test_real_file (no file given: argv[1] or PYREC_FLV_FILE)\n");
  return T_DONE();
}
