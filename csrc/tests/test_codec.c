/* Golden tests for the codec layer (csrc/codec*.c). Parameter sets, sequence headers and
 * key frame headers are real encoder output (libx264, libx265, SVT-AV1, libvpx-vp9, libopus,
 * FFmpeg aac via PyAV); the expected configuration records were cross-checked against the
 * boxes FFmpeg's mp4 muxer writes for the same streams. */
#include "pyrec/codec.h"
#include "t.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ----------------------------------------------------------------------------- */

static size_t unhex(const char *s, uint8_t *out, size_t cap) {
  size_t n = 0;
  while (s[0] && s[1] && n < cap) {
    unsigned v;
    if (sscanf(s, "%2x", &v) != 1)
      break;
    out[n++] = (uint8_t)v;
    s += 2;
  }
  return n;
}

static char hexbuf[8192];
static const char *tohex(const uint8_t *p, size_t n) {
  size_t i;
  for (i = 0; i < n && i * 2 + 2 < sizeof hexbuf; i++)
    sprintf(hexbuf + i * 2, "%02x", p[i]);
  hexbuf[i * 2] = 0;
  return hexbuf;
}

#define CHECK_HEX(p, n, hex)                                                   \
  do {                                                                         \
    const char *t_got = tohex((p), (n));                                       \
    if (strcmp(t_got, (hex)) == 0) {                                           \
      t_pass++;                                                                \
    } else {                                                                   \
      t_fail++;                                                                \
      fprintf(stderr, "%s:%d: bytes differ\n  got  %s\n  want %s\n", __FILE__, \
              __LINE__, t_got, (hex));                                         \
    }                                                                          \
  } while (0)

#define CHECK_STR(a, b)                                                        \
  do {                                                                         \
    if (strcmp((a), (b)) == 0) {                                               \
      t_pass++;                                                                \
    } else {                                                                   \
      t_fail++;                                                                \
      fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, (a), (b)); \
    }                                                                          \
  } while (0)

/* Body of the first box `type` inside a sample entry (skipping the entry's own header). */
static const uint8_t *find_box(const pyrec_buf *b, const char *type, size_t *len) {
  for (size_t i = 12; i + 4 <= b->len; i++) {
    if (memcmp(b->data + i, type, 4) == 0) {
      size_t sz = ((size_t)b->data[i - 4] << 24) | ((size_t)b->data[i - 3] << 16) |
                  ((size_t)b->data[i - 2] << 8) | b->data[i - 1];
      if (sz < 8 || i - 4 + sz > b->len)
        return NULL;
      *len = sz - 8;
      return b->data + i + 4;
    }
  }
  return NULL;
}

static unsigned rd16(const uint8_t *p) { return (unsigned)((p[0] << 8) | p[1]); }

/* ---- real parameter sets ------------------------------------------------------------------ */

/* libx264 64x48 constrained baseline, Annex B extradata */
#define H264_SPS_64 "6742c00ada11e840000003004000000c83c489a8"
#define H264_PPS "68ce0fc8"
#define H264_AVCC_64 "0142c00affe10014" H264_SPS_64 "0100" "04" H264_PPS
/* libx264 1920x1080 High (cropped from 1088) */
#define H264_SPS_1080 "67640028acd940780227e584000003000400000300c83c60c658"
#define H264_PPS_HI "68ef8fcb"
/* libx264 64x48 High 4:2:2 10-bit */
#define H264_SPS_422 "677a000ab6cd9447a1000003000100000300320f122596"
/* libx265 64x48 Main */
#define HEVC_VPS_64 "40010c01ffff01600000030090000003000003001e959409"
#define HEVC_SPS_64 "42010101600000030090000003000003001ea0208316595952930b9a020000030002000003003210"
#define HEVC_PPS_64 "4401c073c089"
#define HEVC_HVCC_64                                                                   \
  "0101600000009000000000001ef000fcfdf8f800000f03"                                     \
  "a000010018" HEVC_VPS_64 "a100010028" HEVC_SPS_64 "a200010006" HEVC_PPS_64
/* libx265 1920x1080 Main (conformance window from 1088) */
#define HEVC_VPS_1080 "40010c01ffff016000000300900000030000030078959409"
#define HEVC_SPS_1080 "420101016000000300900000030000030078a003c0801107cb965654a4c2e68080000003008000000c84"
#define HEVC_PPS_1080 "4401c073c189"
/* libx265 64x48 Main 10 */
#define HEVC_VPS_10 "40010c01ffff02200000030090000003000003001e959409"
#define HEVC_SPS_10 "42010102200000030090000003000003001ea02083136595952930b9a02000000300200000030321"
/* SVT-AV1 64x48 sequence header OBUs (8-bit, 10-bit) and a first temporal unit */
#define AV1_SEQ_64 "0a0a00000002aff7805f0008"
#define AV1_SEQ_64_10 "0a0a00000002aff7805f0808"
#define AV1_TU0 "12000a0a00000002aff7895f2008320f1000968010408200000000ebc68ef0"
/* libvpx-vp9 64x48 key frame (first 40 bytes) */
#define VP9_KEY "824983420003f002f60638241c184a00002040006b43ffffe55dbdb7fd2b24857afbcdd3f2a02472"
/* libopus OpusHead: stereo, and 5.1 (mapping family 1) */
#define OPUS_HEAD_2 "4f707573486561640102380180bb0000000000"
#define OPUS_HEAD_51 "4f707573486561640106380180bb00000000010402000401020305"

/* ---- table: init from a config, check the sample entry ------------------------------------ */

typedef struct entry_case {
  const char *name;
  int codec;
  const char *config; /* hex; "" = none */
  uint32_t width, height, rate, chans; /* desc */
  const char *box;       /* config box type in the entry */
  const char *box_body;  /* expected config box body (hex) */
  uint32_t want_w, want_h, want_rate, want_chans;
  const char *codecs;
} entry_case;

static const entry_case entry_cases[] = {
    {"h264 annexb 64x48", PYREC_CODEC_H264, "00000001" H264_SPS_64 "00000001" H264_PPS, 0, 0, 0,
     0, "avcC", H264_AVCC_64, 64, 48, 0, 0, "avc1.42c00a"},
    {"h264 avcC 64x48", PYREC_CODEC_H264, H264_AVCC_64, 0, 0, 0, 0, "avcC", H264_AVCC_64, 64, 48,
     0, 0, "avc1.42c00a"},
    {"h264 avcC 2-byte lengths", PYREC_CODEC_H264,
     "0142c00afde10014" H264_SPS_64 "0100" "04" H264_PPS, 0, 0, 0, 0, "avcC", H264_AVCC_64, 64, 48,
     0, 0, "avc1.42c00a"},
    {"h264 high 1080p crop", PYREC_CODEC_H264,
     "00000001" H264_SPS_1080 "00000001" H264_PPS_HI, 0, 0, 0, 0, "avcC",
     "01640028ffe1001a" H264_SPS_1080 "010004" H264_PPS_HI "fdf8f800", 1920, 1080, 0, 0,
     "avc1.640028"},
    {"h264 high422 10-bit", PYREC_CODEC_H264, "000001" H264_SPS_422 "000001" H264_PPS_HI, 0, 0,
     0, 0, "avcC", "017a000affe10017" H264_SPS_422 "010004" H264_PPS_HI "fefafa00", 64, 48, 0, 0,
     "avc1.7a000a"},
    {"h264 desc size wins", PYREC_CODEC_H264, H264_AVCC_64, 640, 360, 0, 0, "avcC", H264_AVCC_64,
     640, 360, 0, 0, "avc1.42c00a"},
    {"hevc annexb 64x48", PYREC_CODEC_H265,
     "00000001" HEVC_VPS_64 "00000001" HEVC_SPS_64 "00000001" HEVC_PPS_64, 0, 0, 0, 0, "hvcC",
     HEVC_HVCC_64, 64, 48, 0, 0, "hvc1.1.6.L30.90"},
    {"hevc hvcC 64x48", PYREC_CODEC_H265, HEVC_HVCC_64, 0, 0, 0, 0, "hvcC", HEVC_HVCC_64, 64, 48,
     0, 0, "hvc1.1.6.L30.90"},
    {"hevc 1080p conformance window", PYREC_CODEC_H265,
     "00000001" HEVC_VPS_1080 "00000001" HEVC_SPS_1080 "00000001" HEVC_PPS_1080, 0, 0, 0, 0,
     "hvcC",
     "01016000000090000000000078f000fcfdf8f800000f03a000010018" HEVC_VPS_1080
     "a10001002a" HEVC_SPS_1080 "a200010006" HEVC_PPS_1080,
     1920, 1080, 0, 0, "hvc1.1.6.L120.90"},
    {"hevc main10", PYREC_CODEC_H265,
     "00000001" HEVC_VPS_10 "00000001" HEVC_SPS_10 "00000001" HEVC_PPS_64, 0, 0, 0, 0, "hvcC",
     "0102200000009000000000001ef000fcfdfafa00000f03a000010018" HEVC_VPS_10
     "a100010028" HEVC_SPS_10 "a200010006" HEVC_PPS_64,
     64, 48, 0, 0, "hvc1.2.4.L30.90"},
    {"av1 sequence header OBU", PYREC_CODEC_AV1, AV1_SEQ_64, 0, 0, 0, 0, "av1C", "81000c00", 64,
     48, 0, 0, "av01.0.00M.08"},
    {"av1 10-bit sequence header", PYREC_CODEC_AV1, AV1_SEQ_64_10, 0, 0, 0, 0, "av1C", "81004c00",
     64, 48, 0, 0, "av01.0.00M.10"},
    {"av1 av1C with configOBUs", PYREC_CODEC_AV1, "81000c00" AV1_SEQ_64, 0, 0, 0, 0, "av1C",
     "81000c00" AV1_SEQ_64, 64, 48, 0, 0, "av01.0.00M.08"},
    {"av1 bare av1C + desc size", PYREC_CODEC_AV1, "81000c00", 320, 240, 0, 0, "av1C", "81000c00",
     320, 240, 0, 0, "av01.0.00M.08"},
    {"vp9 vpcC + desc size", PYREC_CODEC_VP9, "000a820202020000", 64, 48, 0, 0, "vpcC",
     "01000000000a820202020000", 64, 48, 0, 0, "vp09.00.10.08"},
    {"vp9 vpcC with fullbox header", PYREC_CODEC_VP9, "01000000010a820202020000", 64, 48, 0, 0,
     "vpcC", "01000000010a820202020000", 64, 48, 0, 0, "vp09.01.10.08"},
    {"aac ASC", PYREC_CODEC_AAC, "121056e500", 0, 0, 0, 0, "esds",
     "00000000031c0000000414401500000000000000000000000505121056e500060102", 0, 0, 44100, 2,
     "mp4a.40.2"},
    {"aac HE-AAC explicit SBR", PYREC_CODEC_AAC, "2b920800", 0, 0, 0, 0, "esds",
     "00000000031b00000004134015000000000000000000000005042b920800060102", 0, 0, 44100, 2,
     "mp4a.40.5"},
    {"mp3 from desc", PYREC_CODEC_MP3, "", 0, 0, 44100, 2, "esds",
     "000000000315000000040d6b150000000000000000000000060102", 0, 0, 44100, 2, "mp4a.6B"},
    {"opus stereo OpusHead", PYREC_CODEC_OPUS, OPUS_HEAD_2, 0, 0, 0, 0, "dOps",
     "000201380000bb80000000", 0, 0, 48000, 2, "opus"},
    {"opus 5.1 OpusHead", PYREC_CODEC_OPUS, OPUS_HEAD_51, 0, 0, 0, 0, "dOps",
     "000601380000bb8000000104020004" "01020305", 0, 0, 48000, 6, "opus"},
    {"opus dOps body", PYREC_CODEC_OPUS, "000201380000bb80000000", 0, 0, 0, 0, "dOps",
     "000201380000bb80000000", 0, 0, 48000, 2, "opus"},
    {"opus no config", PYREC_CODEC_OPUS, "", 0, 0, 0, 1, "dOps", "000100000000bb80000000", 0, 0,
     48000, 1, "opus"},
};

static void test_entry_table(void) {
  static uint8_t cfg[4096];
  for (size_t i = 0; i < sizeof entry_cases / sizeof entry_cases[0]; i++) {
    const entry_case *c = &entry_cases[i];
    pyrec_track_desc d = {c->codec, 90000, c->width, c->height, c->rate, c->chans, NULL, 0};
    d.config_len = unhex(c->config, cfg, sizeof cfg);
    d.config = d.config_len ? cfg : NULL;
    pyrec_codec_state cs;
    pyrec_errinfo err;
    pyrec_clearerr(&err);
    int rc = pyrec_codec_init(&cs, &d, &err);
    if (rc) {
      fprintf(stderr, "  case %s: init failed: %s\n", c->name, err.msg);
      CHECK_EQ(rc, 0);
      continue;
    }
    CHECK(cs.ready);
    pyrec_buf b;
    pyrec_buf_init(&b);
    CHECK_EQ(pyrec_codec_sample_entry(&cs, &b, &err), 0);
    size_t blen = 0;
    const uint8_t *body = find_box(&b, c->box, &blen);
    CHECK(body != NULL);
    if (body) {
      CHECK_HEX(body, blen, c->box_body);
      if (strcmp(tohex(body, blen), c->box_body) != 0)
        fprintf(stderr, "  (case %s)\n", c->name);
    }
    CHECK_EQ(b.len >= 8 ? ((uint32_t)b.data[0] << 24 | b.data[1] << 16 | b.data[2] << 8 |
                           b.data[3])
                        : 0,
             b.len);
    if (pyrec_codec_media(c->codec) == PYREC_MEDIA_VIDEO) {
      CHECK_EQ(rd16(b.data + 32), c->want_w);
      CHECK_EQ(rd16(b.data + 34), c->want_h);
      CHECK_EQ(cs.width, c->want_w);
      CHECK_EQ(cs.height, c->want_h);
    } else {
      CHECK_EQ(rd16(b.data + 24), c->want_chans);
      CHECK_EQ(rd16(b.data + 26), 16);
      CHECK_EQ(rd16(b.data + 32), c->want_rate);
      CHECK_EQ(cs.sample_rate, c->want_rate);
      CHECK_EQ(cs.channels, c->want_chans);
    }
    char s[64];
    pyrec_codec_string(&cs, s, sizeof s);
    CHECK_STR(s, c->codecs);
    pyrec_buf_free(&b);
    pyrec_codec_free(&cs);
  }
}

/* The whole avc1 entry, byte for byte (FFmpeg's, minus its btrt). */
static void test_avc1_entry_golden(void) {
  static uint8_t cfg[256];
  pyrec_track_desc d = {PYREC_CODEC_H264, 90000, 0, 0, 0, 0, cfg, 0};
  d.config_len = unhex(H264_AVCC_64, cfg, sizeof cfg);
  pyrec_codec_state cs;
  CHECK_EQ(pyrec_codec_init(&cs, &d, NULL), 0);
  pyrec_buf b;
  pyrec_buf_init(&b);
  CHECK_EQ(pyrec_codec_sample_entry(&cs, &b, NULL), 0);
  CHECK_HEX(b.data, b.len,
            "00000081617663310000000000000001000000000000000000000000000000000040003000480000"
            "0048000000000000000100000000000000000000000000000000000000000000000000000000000000"
            "000018ffff0000002b61766343" H264_AVCC_64);
  pyrec_buf_free(&b);
  pyrec_codec_free(&cs);
}

/* The whole mp4a entry for AAC. */
static void test_mp4a_entry_golden(void) {
  static const uint8_t asc[] = {0x12, 0x10};
  pyrec_track_desc d = {PYREC_CODEC_AAC, 44100, 0, 0, 0, 0, asc, 2};
  pyrec_codec_state cs;
  CHECK_EQ(pyrec_codec_init(&cs, &d, NULL), 0);
  pyrec_buf b;
  pyrec_buf_init(&b);
  CHECK_EQ(pyrec_codec_sample_entry(&cs, &b, NULL), 0);
  CHECK_HEX(b.data, b.len,
            "0000004b6d703461000000000000000100000000000000000002001000000000ac440000"
            "000000276573647300000000031900000004114015000000000000000000000005021210060102");
  pyrec_buf_free(&b);
  pyrec_codec_free(&cs);
}

/* ---- payload conversion and learning ------------------------------------------------------- */

typedef struct run_ctx {
  pyrec_codec_state cs;
  pyrec_errinfo err;
  pyrec_buf out;
} run_ctx;

static int ctx_init(run_ctx *c, int codec, const char *cfg_hex, uint32_t rate, uint32_t chans) {
  static uint8_t cfg[4096];
  pyrec_track_desc d = {codec, 90000, 0, 0, rate, chans, NULL, 0};
  d.config_len = unhex(cfg_hex, cfg, sizeof cfg);
  d.config = d.config_len ? cfg : NULL;
  pyrec_clearerr(&c->err);
  pyrec_buf_init(&c->out);
  return pyrec_codec_init(&c->cs, &d, &c->err);
}

static void ctx_free(run_ctx *c) {
  pyrec_buf_free(&c->out);
  pyrec_codec_free(&c->cs);
}

/* Feed one hex payload; returns the code. */
static int feed(run_ctx *c, const char *hex) {
  static uint8_t in[8192];
  size_t n = unhex(hex, in, sizeof in);
  return pyrec_codec_sample(&c->cs, in, n, &c->out, &c->err);
}

static const char *config_hex(const run_ctx *c) { return tohex(c->cs.config.data, c->cs.config.len); }

static void test_h264_learn_annexb(void) {
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_H264, "", 0, 0), 0);
  CHECK(!c.cs.ready);
  /* SPS, PPS with 4-byte start codes, SEI with a 3-byte one, IDR with trailing zeros */
  CHECK_EQ(feed(&c, "00000001" H264_SPS_64 "00000001" H264_PPS "0000010605ff80"
                    "000000016588840a0bff0000"),
           0);
  CHECK(c.cs.ready);
  CHECK(c.cs.annexb);
  CHECK_HEX(c.out.data, c.out.len,
            "00000014" H264_SPS_64 "00000004" H264_PPS "000000040605ff80"
            "000000066588840a0bff");
  CHECK_STR(config_hex(&c), H264_AVCC_64);
  CHECK_EQ(c.cs.width, 64);
  CHECK_EQ(c.cs.height, 48);
  /* once ready, later SPS are not collected again, payloads still converted */
  c.out.len = 0;
  CHECK_EQ(feed(&c, "000000014188aa"), 0);
  CHECK_HEX(c.out.data, c.out.len, "000000034188aa");
  ctx_free(&c);
}

static void test_h264_learn_length_prefixed(void) {
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_H264, "", 0, 0), 0);
  CHECK_EQ(feed(&c, "0000000541e0aabbcc"), 0); /* non-IDR first: not ready yet */
  CHECK(!c.cs.ready);
  pyrec_buf e;
  pyrec_buf_init(&e);
  CHECK_EQ(pyrec_codec_sample_entry(&c.cs, &e, &c.err), PYREC_E_CONFIG);
  CHECK_EQ(e.len, 0);
  c.out.len = 0;
  CHECK_EQ(feed(&c, "00000014" H264_SPS_64 "00000004" H264_PPS "000000036588aa"), 0);
  CHECK(c.cs.ready);
  CHECK(!c.cs.annexb);
  CHECK_HEX(c.out.data, c.out.len, "00000014" H264_SPS_64 "00000004" H264_PPS "000000036588aa");
  CHECK_STR(config_hex(&c), H264_AVCC_64);
  CHECK_EQ(pyrec_codec_sample_entry(&c.cs, &e, &c.err), 0);
  pyrec_buf_free(&e);
  ctx_free(&c);
}

static void test_h264_two_byte_lengths(void) {
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_H264, "0142c00afde10014" H264_SPS_64 "0100" "04" H264_PPS, 0, 0),
           0);
  CHECK_EQ(c.cs.nal_len_size, 2);
  CHECK_EQ(c.cs.config.data[4], 0xff); /* stored record says 4-byte lengths */
  CHECK_EQ(feed(&c, "000209f00003658899"), 0);
  CHECK_HEX(c.out.data, c.out.len, "0000000209f000000003658899");
  ctx_free(&c);
}

static void test_h264_length_looks_like_start_code(void) {
  /* a 300-byte NAL with a 4-byte length starts 00 00 01 2c: still length-prefixed */
  static uint8_t in[304];
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_H264, H264_AVCC_64, 0, 0), 0);
  in[0] = 0, in[1] = 0, in[2] = 1, in[3] = 0x2c, in[4] = 0x65;
  for (size_t i = 5; i < sizeof in; i++)
    in[i] = (uint8_t)(i * 7 + 1);
  CHECK_EQ(pyrec_codec_sample(&c.cs, in, sizeof in, &c.out, &c.err), 0);
  CHECK_EQ(c.out.len, sizeof in);
  CHECK_MEM(c.out.data, in, sizeof in);
  CHECK(!c.cs.annexb);
  /* and a real Annex B payload on the same track is detected */
  c.out.len = 0;
  CHECK_EQ(feed(&c, "0000000109f0000001658899"), 0);
  CHECK(c.cs.annexb);
  CHECK_HEX(c.out.data, c.out.len, "0000000209f000000003658899");
  ctx_free(&c);
}

static void test_hevc_learn_annexb(void) {
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_H265, "", 0, 0), 0);
  CHECK_EQ(feed(&c, "00000001" HEVC_SPS_64 "00000001" HEVC_PPS_64 "000000012601af"), 0);
  CHECK(!c.cs.ready); /* no VPS yet */
  c.out.len = 0;
  CHECK_EQ(feed(&c, "0000000146010c" "00000001" HEVC_VPS_64 "00000001" HEVC_SPS_64
                    "00000001" HEVC_PPS_64 "000000012601af"),
           0);
  CHECK(c.cs.ready);
  CHECK_HEX(c.out.data, c.out.len,
            "0000000346010c00000018" HEVC_VPS_64 "00000028" HEVC_SPS_64 "00000006" HEVC_PPS_64
            "000000032601af");
  CHECK_STR(config_hex(&c), HEVC_HVCC_64);
  char s[64];
  pyrec_codec_string(&c.cs, s, sizeof s);
  CHECK_STR(s, "hvc1.1.6.L30.90");
  ctx_free(&c);
}

static void test_aac_adts(void) {
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_AAC, "", 0, 0), 0);
  CHECK(!c.cs.ready);
  /* FFmpeg aac ADTS header (LC, 44.1 kHz, stereo) with frame_length 11 */
  CHECK_EQ(feed(&c, "fff15080017ffc" "deadbeef"), 0);
  CHECK(c.cs.ready);
  CHECK(c.cs.adts);
  CHECK_HEX(c.out.data, c.out.len, "deadbeef");
  CHECK_STR(config_hex(&c), "1210");
  CHECK_EQ(c.cs.sample_rate, 44100);
  CHECK_EQ(c.cs.channels, 2);
  /* with CRC (protection_absent 0): 9-byte header, frame_length 13 */
  c.out.len = 0;
  CHECK_EQ(feed(&c, "fff0508001bffc1234" "cafef00d"), 0);
  CHECK_HEX(c.out.data, c.out.len, "cafef00d");
  char s[32];
  pyrec_codec_string(&c.cs, s, sizeof s);
  CHECK_STR(s, "mp4a.40.2");
  /* HE-AAC profile / 48 kHz mono header -> ASC learned only once (first one wins) */
  CHECK_STR(config_hex(&c), "1210");
  ctx_free(&c);

  /* an ADTS header for 48 kHz mono HE (profile LC=1, sfi 3, chan 1) */
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_AAC, "", 0, 0), 0);
  CHECK_EQ(feed(&c, "fff14c40017ffc" "01020304"), 0);
  CHECK_STR(config_hex(&c), "1188");
  CHECK_EQ(c.cs.sample_rate, 48000);
  CHECK_EQ(c.cs.channels, 1);
  ctx_free(&c);

  /* config given: raw payloads copied, ADTS ones stripped */
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_AAC, "1210", 0, 0), 0);
  CHECK_EQ(feed(&c, "211004"), 0);
  CHECK_EQ(feed(&c, "fff15080017ffc" "deadbeef"), 0);
  CHECK_HEX(c.out.data, c.out.len, "211004deadbeef");
  ctx_free(&c);
}

static void test_mp3_learn(void) {
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_MP3, "", 0, 0), 0);
  CHECK(!c.cs.ready);
  CHECK_EQ(feed(&c, "fffb9064000000"), 0);
  CHECK(c.cs.ready);
  CHECK_EQ(c.cs.sample_rate, 44100);
  CHECK_EQ(c.cs.channels, 2);
  CHECK_HEX(c.out.data, c.out.len, "fffb9064000000");
  ctx_free(&c);
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_MP3, "", 0, 0), 0);
  CHECK_EQ(feed(&c, "fff390c40000"), 0); /* MPEG-2 layer III, 22.05 kHz mono */
  CHECK_EQ(c.cs.sample_rate, 22050);
  CHECK_EQ(c.cs.channels, 1);
  ctx_free(&c);
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_MP3, "", 0, 0), 0);
  CHECK_EQ(feed(&c, "00112233"), PYREC_E_MALFORMED);
  CHECK(strstr(c.err.msg, "mp3") != NULL);
  ctx_free(&c);
}

static void test_av1_learn(void) {
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_AV1, "", 0, 0), 0);
  CHECK(!c.cs.ready);
  CHECK_EQ(feed(&c, AV1_TU0), 0);
  CHECK(c.cs.ready);
  CHECK_STR(config_hex(&c), "81000c00");
  CHECK_EQ(c.cs.width, 64);
  CHECK_EQ(c.cs.height, 48);
  CHECK_HEX(c.out.data, c.out.len, AV1_TU0 + 4); /* temporal delimiter dropped */
  char s[32];
  pyrec_codec_string(&c.cs, s, sizeof s);
  CHECK_STR(s, "av01.0.00M.08");
  size_t before = c.out.len;
  CHECK_EQ(feed(&c, "0a10aa"), PYREC_E_MALFORMED); /* OBU size beyond the payload */
  CHECK_EQ(c.out.len, before);
  CHECK_EQ(feed(&c, "1200"), PYREC_E_MALFORMED); /* only a temporal delimiter */
  CHECK_EQ(feed(&c, "8a00"), PYREC_E_MALFORMED); /* forbidden bit */
  ctx_free(&c);
}

static void test_vp9_learn(void) {
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_VP9, "", 0, 0), 0);
  CHECK_EQ(feed(&c, "8600112233"), 0); /* inter frame first: copied, not ready */
  CHECK(!c.cs.ready);
  c.out.len = 0;
  CHECK_EQ(feed(&c, VP9_KEY), 0);
  CHECK(c.cs.ready);
  CHECK_STR(config_hex(&c), "000a820202020000");
  CHECK_EQ(c.cs.width, 64);
  CHECK_EQ(c.cs.height, 48);
  CHECK_HEX(c.out.data, c.out.len, VP9_KEY);
  char s[32];
  pyrec_codec_string(&c.cs, s, sizeof s);
  CHECK_STR(s, "vp09.00.10.08");
  CHECK_EQ(feed(&c, "00"), PYREC_E_MALFORMED); /* frame_marker != 2 */
  ctx_free(&c);
}

static void test_opus_copy(void) {
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_OPUS, OPUS_HEAD_2, 0, 0), 0);
  CHECK_EQ(c.cs.opus_preskip, 312);
  CHECK_EQ(feed(&c, "fcfffe"), 0);
  CHECK_HEX(c.out.data, c.out.len, "fcfffe");
  ctx_free(&c);
}


/* x265 with temporal layers (sub-layer PTL, 200x120 with a conformance window) and 4:4:4:
 * the hvcC header must match FFmpeg's. */
static void test_hevc_more(void) {
  static const struct {
    const char *config, *head;
    uint32_t w, h;
    const char *codecs;
  } cases[] = {
      {"0000000140010c04ffff01600000030090000003000003003c00009594aca56502400000000142010401600000"
       "030090000003000003003c0000a01a202072cb965652b295952930b9a02000000300200000030321000000014401"
       "c073c189",
       "0101600000009000000000003cf000fcfdf8f800001b03", 200, 120, "hvc1.1.6.L60.90"},
      {"0000000140010c01ffff0408000003009e0800000300001e959409000000014201010408000003009e08000003"
       "00001e90041062cb2b2a5261734040000003004000000642000000014401c07318300890",
       "0104080000009e08000000001ef000fcfff8f800000f03", 64, 48, "hvc1.4.10.L30.9E.8"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run_ctx c;
    CHECK_EQ(ctx_init(&c, PYREC_CODEC_H265, cases[i].config, 0, 0), 0);
    CHECK(c.cs.config.len > 23);
    CHECK_HEX(c.cs.config.data, 23, cases[i].head);
    CHECK_EQ(c.cs.width, cases[i].w);
    CHECK_EQ(c.cs.height, cases[i].h);
    char s[64];
    pyrec_codec_string(&c.cs, s, sizeof s);
    CHECK_STR(s, cases[i].codecs);
    ctx_free(&c);
  }
}

/* AV1 / VP9 with a config but no size: the size comes from the stream. */
static void test_size_from_stream(void) {
  run_ctx c;
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_AV1, "81000c00", 0, 0), 0);
  CHECK(!c.cs.ready);
  CHECK_EQ(feed(&c, AV1_TU0), 0);
  CHECK(c.cs.ready);
  CHECK_EQ(c.cs.width, 64);
  CHECK_STR(config_hex(&c), "81000c00");
  ctx_free(&c);
  CHECK_EQ(ctx_init(&c, PYREC_CODEC_VP9, "010a820202020000", 0, 0), 0);
  CHECK(!c.cs.ready);
  CHECK_EQ(feed(&c, VP9_KEY), 0);
  CHECK(c.cs.ready);
  CHECK_EQ(c.cs.height, 48);
  CHECK_STR(config_hex(&c), "010a820202020000"); /* the given record is kept */
  ctx_free(&c);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_payload_errors(void) {
  static const struct {
    int codec;
    const char *config, *payload, *msg_part;
  } cases[] = {
      {PYREC_CODEC_H264, H264_AVCC_64, "", "empty"},
      {PYREC_CODEC_H264, H264_AVCC_64, "000000106588", "truncated"},
      {PYREC_CODEC_H264, H264_AVCC_64, "000000", "truncated"},
      {PYREC_CODEC_H264, H264_AVCC_64, "00000001", "no NAL"},
      {PYREC_CODEC_H264, H264_AVCC_64, "0000000100000001000000", "no NAL"},
      {PYREC_CODEC_H264, H264_AVCC_64, "00000000", "no NAL"},
      {PYREC_CODEC_H264, "", "0000000167ff", "SPS"},
      {PYREC_CODEC_H265, HEVC_HVCC_64, "0000ffff26", "truncated"},
      {PYREC_CODEC_AAC, "", "2110aabb", "ADTS"},
      {PYREC_CODEC_AAC, "", "fff15080", "truncated ADTS"},
      {PYREC_CODEC_AAC, "", "fff15080017ffc" "deadbeefaa", "more than one"},
      {PYREC_CODEC_AAC, "", "fff15080017ffc" "dead", "frame_length"},
      {PYREC_CODEC_AAC, "", "fff15080017ffd" "deadbeef", "raw data blocks"},
      {PYREC_CODEC_AAC, "", "fff17480017ffc" "deadbeef", "sampling_frequency_index"},
      {PYREC_CODEC_AV1, "", "", "empty"},
      {PYREC_CODEC_OPUS, "", "", "empty"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run_ctx c;
    CHECK_EQ(ctx_init(&c, cases[i].codec, cases[i].config, 0, 0), 0);
    pyrec_buf_put(&c.out, "abc", 3);
    int rc = feed(&c, cases[i].payload);
    CHECK_EQ(rc, PYREC_E_MALFORMED);
    CHECK_EQ(c.out.len, 3);
    CHECK_MEM(c.out.data, "abc", 3);
    if (!strstr(c.err.msg, cases[i].msg_part)) {
      t_fail++;
      fprintf(stderr, "case %zu: message \"%s\" lacks \"%s\"\n", i, c.err.msg, cases[i].msg_part);
    }
    ctx_free(&c);
  }
}

static void test_config_errors(void) {
  static const struct {
    int codec;
    const char *config, *msg_part;
  } cases[] = {
      {PYREC_CODEC_H264, "0142", "h264: avcC too short"},
      {PYREC_CODEC_H264, "0242c00affe10014" H264_SPS_64 "01000468ce0fc8", "h264: avcC configurationVersion 2"},
      {PYREC_CODEC_H264, "0142c00affe1" "0030" H264_SPS_64, "h264: avcC parameter set 0 truncated"},
      {PYREC_CODEC_H264, "0142c00affe0" "01000468ce0fc8", "h264: avcC has no SPS"},
      {PYREC_CODEC_H264, "0142c00affe1000367ffff01000468ce0fc8", "h264: SPS"},
      {PYREC_CODEC_H264, "00000001" H264_SPS_64, "h264: Annex B config lacks"},
      {PYREC_CODEC_H264, "deadbeef00112233", "h264: avcC configurationVersion"},
      {PYREC_CODEC_H265, "010203", "hevc: hvcC too short"},
      {PYREC_CODEC_H265, "0101600000009000000000001ef000fcfdf8f800000f01a1000100ff42", "hevc: hvcC NAL unit 0"},
      {PYREC_CODEC_H265, "0101600000009000000000001ef000fcfdf8f800000f00", "hevc: hvcC has no SPS"},
      {PYREC_CODEC_H265, "00000001" HEVC_SPS_64 "00000001" HEVC_PPS_64, "hevc: Annex B config lacks"},
      {PYREC_CODEC_AAC, "ffff", "aac: invalid AudioSpecificConfig"},
      {PYREC_CODEC_AAC, "12", "aac: invalid AudioSpecificConfig"},
      {PYREC_CODEC_OPUS, "4f70757348656164", "opus: OpusHead too short"},
      {PYREC_CODEC_OPUS, "4f707573486561640106380180bb0000000000", "opus: 6 channels"},
      {PYREC_CODEC_OPUS, "4f707573486561640106380180bb0000000001040200", "opus: channel mapping"},
      {PYREC_CODEC_OPUS, "ff", "opus: config is neither"},
      {PYREC_CODEC_AV1, "8000", "av1: av1C marker/version"},
      {PYREC_CODEC_AV1, "81000c", "av1: av1C too short"},
      {PYREC_CODEC_AV1, "12000a10", "av1: config is neither"},
      {PYREC_CODEC_VP9, "000a", "vp9: vpcC too short"},
      {PYREC_CODEC_VP9, "000a020202020000", "vp9: vpcC profile"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run_ctx c;
    int rc = ctx_init(&c, cases[i].codec, cases[i].config, 0, 0);
    CHECK_EQ(rc, PYREC_E_CONFIG);
    if (!strstr(c.err.msg, cases[i].msg_part)) {
      t_fail++;
      fprintf(stderr, "config case %zu: message \"%s\" lacks \"%s\"\n", i, c.err.msg,
              cases[i].msg_part);
    }
    ctx_free(&c); /* safe after a failed init */
  }
  run_ctx c;
  CHECK_EQ(ctx_init(&c, 42, "", 0, 0), PYREC_E_CODEC);
  CHECK_STR(c.err.msg, "unsupported codec id 42");
  ctx_free(&c);
}

/* ---- every header length, one byte short ------------------------------------------------- */

/* Init from an exact-size heap copy of `hex` (ASAN sees a read one byte past it). */
static int init_exact(pyrec_codec_state *cs, int codec, const char *hex, size_t cut,
                      pyrec_errinfo *err) {
  static uint8_t tmp[4096];
  size_t n = unhex(hex, tmp, sizeof tmp);
  n = cut < n ? n - cut : 0;
  uint8_t *cfg = malloc(n ? n : 1);
  memcpy(cfg, tmp, n);
  pyrec_track_desc d = {codec, 90000, 0, 0, 0, 0, n ? cfg : NULL, n};
  pyrec_clearerr(err);
  int rc = pyrec_codec_init(cs, &d, err);
  free(cfg);
  return rc;
}

static void test_configs_one_byte_short(void) {
  static const struct {
    int codec;
    const char *config;
    size_t cut; /* bytes dropped from the end of `config` */
    const char *msg_part;
  } cases[] = {
      {PYREC_CODEC_H264, "0142c00affe1", 0, "h264: avcC too short (6 bytes)"},
      {PYREC_CODEC_H264, "0142c00affe100", 0, "h264: avcC parameter set 0 truncated"},
      {PYREC_CODEC_H264, "0142c00affe10014" H264_SPS_64, 1, "h264: avcC parameter set 0 truncated"},
      {PYREC_CODEC_H264, "0142c00affe10014" H264_SPS_64, 0, "h264: avcC truncated"},
      {PYREC_CODEC_H264, "0142c00affe10014" H264_SPS_64 "0100", 0, "h264: avcC parameter set 0 truncated"},
      {PYREC_CODEC_H264, H264_AVCC_64, 1, "h264: avcC parameter set 0 truncated"},
      {PYREC_CODEC_H265, HEVC_HVCC_64, 0 + 0, NULL}, /* the whole record: good (control row) */
      {PYREC_CODEC_H265, "0101600000009000000000001ef000fcfdf8f800000f", 0, "hevc: hvcC too short (22 bytes)"},
      {PYREC_CODEC_H265, "0101600000009000000000001ef000fcfdf8f800000f01a000", 0, "hevc: hvcC array 0 truncated"},
      {PYREC_CODEC_H265, "0101600000009000000000001ef000fcfdf8f800000f01a0000100", 0, "hevc: hvcC NAL unit 0 of array 0 truncated"},
      {PYREC_CODEC_H265, HEVC_HVCC_64, 1, "hevc: hvcC NAL unit 0 of array 2 truncated"},
      {PYREC_CODEC_AV1, "81000c", 0, "av1: av1C too short (3 bytes)"},
      {PYREC_CODEC_AV1, "81000c00" AV1_SEQ_64, 1, "av1: bad configOBUs"},
      {PYREC_CODEC_AV1, AV1_SEQ_64, 1, "av1: config is neither"},
      {PYREC_CODEC_VP9, "010a8202020200", 0, "vp9: vpcC too short (7 bytes)"},
      {PYREC_CODEC_VP9, "010a820202020001", 0, "vp9: vpcC codec initialization data truncated"},
      {PYREC_CODEC_VP9, "010a8202020200031122", 0, "vp9: vpcC codec initialization data truncated"},
      {PYREC_CODEC_OPUS, OPUS_HEAD_2, 1, "opus: OpusHead too short (18 bytes)"},
      {PYREC_CODEC_OPUS, OPUS_HEAD_51, 1, "opus: channel mapping table truncated"},
      {PYREC_CODEC_AAC, "12", 0, "aac: invalid AudioSpecificConfig"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pyrec_codec_state cs;
    pyrec_errinfo err;
    int rc = init_exact(&cs, cases[i].codec, cases[i].config, cases[i].cut, &err);
    if (!cases[i].msg_part) {
      CHECK_EQ(rc, 0);
    } else {
      CHECK_EQ(rc, PYREC_E_CONFIG);
      if (!strstr(err.msg, cases[i].msg_part)) {
        t_fail++;
        fprintf(stderr, "one byte short config %zu: rc %d message \"%s\" lacks \"%s\"\n", i, rc,
                err.msg, cases[i].msg_part);
      }
    }
    pyrec_codec_free(&cs);
  }
}

static void test_payloads_one_byte_short(void) {
  static const struct {
    int codec;
    const char *config, *payload, *msg_part;
  } cases[] = {
      {PYREC_CODEC_H264, H264_AVCC_64, "000000", "h264: truncated NAL unit length"},
      {PYREC_CODEC_H264, H264_AVCC_64, "000000036588", "h264: truncated NAL unit length"},
      {PYREC_CODEC_H264, H264_AVCC_64, "0000000265880000", "h264: truncated NAL unit length"},
      {PYREC_CODEC_H265, HEVC_HVCC_64, "000000032601", "hevc: truncated NAL unit length"},
      {PYREC_CODEC_H265, HEVC_HVCC_64, "00000002260100", "hevc: truncated NAL unit length"},
      {PYREC_CODEC_AAC, "", "fff150800170", "aac: truncated ADTS header (6 bytes)"},
      {PYREC_CODEC_AAC, "", "fff15080017ffc" "deadbe", "frame_length"},
      {PYREC_CODEC_AV1, "81000c00" AV1_SEQ_64, "3205aabbccdd", "av1: malformed OBU"},
      {PYREC_CODEC_AV1, "81000c00" AV1_SEQ_64, "1200" "32", "av1: malformed OBU"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run_ctx c;
    CHECK_EQ(ctx_init(&c, cases[i].codec, cases[i].config, 0, 0), 0);
    static uint8_t tmp[1024];
    size_t n = unhex(cases[i].payload, tmp, sizeof tmp);
    uint8_t *in = malloc(n ? n : 1); /* exact size */
    memcpy(in, tmp, n);
    int rc = pyrec_codec_sample(&c.cs, in, n, &c.out, &c.err);
    free(in);
    CHECK_EQ(rc, PYREC_E_MALFORMED);
    CHECK_EQ(c.out.len, 0);
    if (!strstr(c.err.msg, cases[i].msg_part)) {
      t_fail++;
      fprintf(stderr, "one byte short payload %zu: rc %d message \"%s\" lacks \"%s\"\n", i, rc,
              c.err.msg, cases[i].msg_part);
    }
    ctx_free(&c);
  }
}

/* Every prefix of every real config record initialises cleanly or fails with a message; a
 * prefix accepted as complete writes its sample entry (exact-size copies: ASAN checks reads). */
static void test_config_prefixes(void) {
  static const struct {
    int codec;
    const char *config;
  } full[] = {
      {PYREC_CODEC_H264, H264_AVCC_64}, {PYREC_CODEC_H265, HEVC_HVCC_64},
      {PYREC_CODEC_AV1, "81000c00" AV1_SEQ_64}, {PYREC_CODEC_AV1, AV1_SEQ_64},
      {PYREC_CODEC_VP9, "010a820202020000"}, {PYREC_CODEC_OPUS, OPUS_HEAD_2},
      {PYREC_CODEC_OPUS, OPUS_HEAD_51}, {PYREC_CODEC_AAC, "1210"},
  };
  int bad = 0;
  for (size_t i = 0; i < sizeof full / sizeof full[0]; i++) {
    size_t len = strlen(full[i].config) / 2;
    for (size_t cut = 1; cut <= len; cut++) {
      pyrec_codec_state cs;
      pyrec_errinfo err;
      int rc = init_exact(&cs, full[i].codec, full[i].config, cut, &err);
      if (rc && !err.msg[0])
        bad++;
      if (!rc && cs.ready) {
        pyrec_buf entry;
        pyrec_buf_init(&entry);
        if (pyrec_codec_sample_entry(&cs, &entry, &err) != 0)
          bad++;
        pyrec_buf_free(&entry);
      }
      pyrec_codec_free(&cs);
    }
  }
  CHECK_EQ(bad, 0);
}

/* Every prefix of real payloads (exact-size copies: ASAN checks every read) converts or fails
 * with a message, leaving `out` untouched on failure. */
static void test_payload_prefixes(void) {
  static const struct {
    int codec;
    const char *config, *payload;
  } full[] = {
      {PYREC_CODEC_VP9, "", VP9_KEY},
      {PYREC_CODEC_VP9, "010a820202020000", VP9_KEY},
      {PYREC_CODEC_AV1, "", AV1_TU0},
      {PYREC_CODEC_AV1, "81000c00" AV1_SEQ_64, AV1_TU0},
      {PYREC_CODEC_AAC, "", "fff15080017ffc" "deadbeef"},
      {PYREC_CODEC_H264, H264_AVCC_64, "00000014" H264_SPS_64 "00000004" H264_PPS},
      {PYREC_CODEC_H264, "", "00000001" H264_SPS_1080 "00000001" H264_PPS_HI "0000016588aa"},
      {PYREC_CODEC_H265, HEVC_HVCC_64, "000000032601af"},
  };
  int bad = 0;
  for (size_t i = 0; i < sizeof full / sizeof full[0]; i++) {
    static uint8_t tmp[1024];
    size_t len = unhex(full[i].payload, tmp, sizeof tmp);
    for (size_t n = 0; n < len; n++) {
      run_ctx c;
      if (ctx_init(&c, full[i].codec, full[i].config, 0, 0) != 0) {
        bad++;
        ctx_free(&c);
        continue;
      }
      uint8_t *in = malloc(n ? n : 1);
      memcpy(in, tmp, n);
      pyrec_buf_put(&c.out, "abc", 3);
      int rc = pyrec_codec_sample(&c.cs, in, n, &c.out, &c.err);
      if (rc && (!c.err.msg[0] || c.out.len != 3 || memcmp(c.out.data, "abc", 3) != 0)) {
        if (bad++ < 5)
          fprintf(stderr, "payload %zu cut to %zu: rc %d, '%s', out %zu bytes\n", i, n, rc,
                  c.err.msg, c.out.len);
      }
      free(in);
      ctx_free(&c);
    }
  }
  CHECK_EQ(bad, 0);
}

static void test_names(void) {
  CHECK_STR(pyrec_codec_name(PYREC_CODEC_H264), "h264");
  CHECK_STR(pyrec_codec_name(PYREC_CODEC_H265), "hevc");
  CHECK_STR(pyrec_codec_name(PYREC_CODEC_MP3), "mp3");
  CHECK(pyrec_codec_name(0) == NULL);
  CHECK(pyrec_codec_name(99) == NULL);
  CHECK_EQ(pyrec_codec_from_name("h265"), PYREC_CODEC_H265);
  CHECK_EQ(pyrec_codec_from_name("hev1"), PYREC_CODEC_H265);
  CHECK_EQ(pyrec_codec_from_name("avc1"), PYREC_CODEC_H264);
  CHECK_EQ(pyrec_codec_from_name("Opus"), PYREC_CODEC_OPUS);
  CHECK_EQ(pyrec_codec_from_name("mp4a"), PYREC_CODEC_AAC);
  CHECK_EQ(pyrec_codec_from_name("vp8"), PYREC_CODEC_NONE);
  CHECK_EQ(pyrec_codec_from_name(NULL), PYREC_CODEC_NONE);
  CHECK_EQ(pyrec_codec_media(PYREC_CODEC_VP9), PYREC_MEDIA_VIDEO);
  CHECK_EQ(pyrec_codec_media(PYREC_CODEC_OPUS), PYREC_MEDIA_AUDIO);
  CHECK_EQ(pyrec_codec_media(0), 0);
}

/* ---- robustness: mutated configs and payloads never crash, and errors leave `out` alone --- */

static uint32_t rng_state = 12345;
static uint32_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}

static size_t mutate(uint8_t *p, size_t n, size_t cap) {
  switch (rng() % 4) {
  case 0: /* truncate */
    return n ? rng() % n : 0;
  case 1: /* flip bytes */
    for (int k = 0; k < 3 && n; k++)
      p[rng() % n] ^= (uint8_t)(1u << (rng() % 8));
    return n;
  case 2: /* random byte */
    if (n)
      p[rng() % n] = (uint8_t)rng();
    return n;
  default: /* grow with junk */
    while (n < cap && rng() % 4)
      p[n++] = (uint8_t)rng();
    return n;
  }
}

static void test_mutations(void) {
  static const struct {
    int codec;
    const char *config, *payload;
  } seeds[] = {
      {PYREC_CODEC_H264, "", "00000001" H264_SPS_1080 "00000001" H264_PPS_HI "0000016588aa"},
      {PYREC_CODEC_H264, H264_AVCC_64, "00000014" H264_SPS_64 "00000004" H264_PPS},
      {PYREC_CODEC_H265, "", "00000001" HEVC_VPS_1080 "00000001" HEVC_SPS_1080 "00000001" HEVC_PPS_1080},
      {PYREC_CODEC_H265, HEVC_HVCC_64, "000000032601af"},
      {PYREC_CODEC_AV1, "", AV1_TU0},
      {PYREC_CODEC_AV1, "81000c00" AV1_SEQ_64, AV1_TU0},
      {PYREC_CODEC_VP9, "", VP9_KEY},
      {PYREC_CODEC_AAC, "", "fff0508001bffc1234cafef00d"},
      {PYREC_CODEC_AAC, "121056e500", "211004"},
      {PYREC_CODEC_MP3, "", "fffb9064000000"},
      {PYREC_CODEC_OPUS, OPUS_HEAD_51, "fcfffe"},
  };
  static uint8_t cfg[512], pl[1024];
  for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
    for (int iter = 0; iter < 3000; iter++) {
      size_t cn = unhex(seeds[s].config, cfg, sizeof cfg);
      size_t pn = unhex(seeds[s].payload, pl, sizeof pl);
      if (iter % 3 == 0)
        cn = mutate(cfg, cn, sizeof cfg);
      pn = mutate(pl, pn, sizeof pl);
      pyrec_track_desc d = {seeds[s].codec, 1000, 0, 0, 0, 0, cn ? cfg : NULL, cn};
      pyrec_codec_state cs;
      pyrec_errinfo err;
      pyrec_buf out, entry;
      pyrec_buf_init(&out);
      pyrec_buf_init(&entry);
      if (pyrec_codec_init(&cs, &d, &err) != 0) {
        pyrec_codec_free(&cs);
        continue;
      }
      for (int k = 0; k < 2; k++) {
        size_t before = out.len;
        int rc = pyrec_codec_sample(&cs, pl, pn, &out, &err);
        if (rc != 0 && out.len != before) {
          t_fail++;
          fprintf(stderr, "mutation seed %zu: out changed on error %d\n", s, rc);
        }
      }
      if (cs.ready)
        CHECK_EQ(pyrec_codec_sample_entry(&cs, &entry, &err), 0);
      char str[64];
      pyrec_codec_string(&cs, str, sizeof str);
      pyrec_buf_free(&out);
      pyrec_buf_free(&entry);
      pyrec_codec_free(&cs);
    }
  }
  t_pass++;
}

static void run_stream_tests(void) {
  RUN(test_h264_learn_annexb);
  RUN(test_h264_learn_length_prefixed);
  RUN(test_h264_two_byte_lengths);
  RUN(test_h264_length_looks_like_start_code);
  RUN(test_hevc_learn_annexb);
  RUN(test_hevc_more);
  RUN(test_size_from_stream);
  RUN(test_aac_adts);
  RUN(test_mp3_learn);
  RUN(test_av1_learn);
  RUN(test_vp9_learn);
  RUN(test_opus_copy);
  RUN(test_payload_errors);
  RUN(test_config_errors);
  RUN(test_configs_one_byte_short);
  RUN(test_payloads_one_byte_short);
  RUN(test_config_prefixes);
  RUN(test_payload_prefixes);
  RUN(test_names);
  RUN(test_mutations);
}

int main(void) {
  RUN(test_entry_table);
  RUN(test_avc1_entry_golden);
  RUN(test_mp4a_entry_golden);
  run_stream_tests();
  return T_DONE();
}
