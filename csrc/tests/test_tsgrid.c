/* Sample grid (pyrec/tsgrid.h) and audio frame lengths: table-driven rows with exact outputs. */
#include "pyrec/codec.h"
#include "pyrec/tsfix.h"
#include "pyrec/tsgrid.h"
#include "t.h"

#include <stdint.h>

#define NP PYREC_NOPTS

typedef struct row {
  int64_t dts, pts; /* input ticks */
  uint32_t frame;   /* samples of the packet */
  int64_t want_dts, want_pts;
} row;

typedef struct tcase {
  const char *name;
  uint32_t in_ts, out_ts;
  int wrap_bits;
  int64_t first_at;
  const row *rows;
  size_t n;
  uint64_t wraps, snapped, kept;
} tcase;

/* AAC at 44.1 kHz in FLV milliseconds: 1024 samples = 23.22 ms, truncated or rounded */
static const row r_aac_ms[] = {
    {0, NP, 1024, 0, NP},        {23, NP, 1024, 1024, NP},    {46, NP, 1024, 2048, NP},
    {70, NP, 1024, 3072, NP},    {92, NP, 1024, 4096, NP},    {116, NP, 1024, 5120, NP},
    {139, NP, 1024, 6144, NP},   {163, NP, 1024, 7168, NP},
};

/* a gap (a lost packet) and a late packet beyond 1 ms keep the source's time */
static const row r_gap[] = {
    {1000, NP, 1024, 48000, NP}, {1021, NP, 1024, 49024, NP},
    {1064, NP, 1024, 51072, NP}, /* one frame lost: 1043 skipped; 1064 is on the grid */
    {1100, NP, 1024, 52800, NP}, /* 2 ms later than 1085.3: kept */
    {1121, NP, 1024, 53824, NP}, /* back on the grid from there */
};

/* Opus timed like Matroska: the first packet at -pre-skip (-6.5 ms shown as -7) */
static const row r_opus_preskip[] = {
    {-7, NP, 960, -312, NP}, {13, NP, 960, 648, NP}, {33, NP, 960, 1608, NP},
    {53, NP, 480, 2568, NP}, {63, NP, 960, 3048, NP},
};

/* 32-bit millisecond wrap (RTMP): the output keeps going, on the grid */
static const row r_wrap[] = {
    {4294967280LL, NP, 1024, 206158429440LL, NP},
    {5, NP, 1024, 206158429440LL + 1024, NP}, /* 4294967301 ms */
    {26, NP, 1024, 206158429440LL + 2048, NP},
};

/* missing DTS: the PTS; both missing: the end of the previous packet */
static const row r_nopts[] = {
    {NP, 0, 1024, 0, 0},
    {NP, NP, 1024, 1024, 1024},
    {NP, NP, 1024, 2048, 2048},
    {64, NP, 1024, 3072, NP},
};

/* 90 kHz (MPEG-TS via PyAV) to 48 kHz: 1920 ticks per AAC frame, exactly on the grid */
static const row r_90k[] = {
    {900000, NP, 1024, 480000, NP}, {901920, NP, 1024, 481024, NP},
    {903841, NP, 1024, 482048, NP}, /* one tick of jitter */
};

/* no frame length (video, unknown codec): plain rounding; the PTS keeps its offset */
static const row r_plain[] = {
    {0, 67, 0, 0, 6030}, {33, 33, 0, 2970, 2970}, {67, 200, 0, 6030, 18000},
};

static const tcase cases[] = {
    {"aac_ms", 1000, 44100, 32, INT64_MIN, r_aac_ms, 8, 0, 7, 1},
    {"gap", 1000, 48000, 32, INT64_MIN, r_gap, 5, 0, 2, 3},
    {"opus_preskip", 1000, 48000, 0, -312, r_opus_preskip, 5, 0, 5, 0},
    {"wrap", 1000, 48000, 32, INT64_MIN, r_wrap, 3, 1, 2, 1},
    {"nopts", 1000, 48000, 0, INT64_MIN, r_nopts, 4, 0, 1, 1},
    {"90k", 90000, 48000, 33, INT64_MIN, r_90k, 3, 0, 2, 1},
    {"plain", 1000, 90000, 0, INT64_MIN, r_plain, 3, 0, 0, 3},
};

static void test_table(void) {
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const tcase *tc = &cases[c];
    pyrec_tsgrid g;
    pyrec_tsgrid_init(&g, tc->in_ts, tc->out_ts, tc->wrap_bits, tc->first_at);
    for (size_t i = 0; i < tc->n; i++) {
      const row *r = &tc->rows[i];
      int64_t d, p;
      pyrec_tsgrid_apply(&g, r->dts, r->pts, r->frame, &d, &p);
      if (d != r->want_dts || p != r->want_pts)
        fprintf(stderr, "%s row %zu: got (%lld, %lld), want (%lld, %lld)\n", tc->name, i,
                (long long)d, (long long)p, (long long)r->want_dts, (long long)r->want_pts);
      CHECK_EQ(d, r->want_dts);
      CHECK_EQ(p, r->want_pts);
    }
    if (g.wraps != tc->wraps || g.snapped != tc->snapped || g.kept != tc->kept)
      fprintf(stderr, "%s: wraps %llu snapped %llu kept %llu\n", tc->name,
              (unsigned long long)g.wraps, (unsigned long long)g.snapped,
              (unsigned long long)g.kept);
    CHECK_EQ(g.wraps, tc->wraps);
    CHECK_EQ(g.snapped, tc->snapped);
    CHECK_EQ(g.kept, tc->kept);
  }
}

/* Frame lengths from the payload: MP3 headers (every version/layer) and Opus TOC bytes. */
static void test_frame_samples(void) {
  static const struct {
    int codec;
    uint8_t b[4];
    size_t len;
    uint32_t want;
  } rows[] = {
      {PYREC_CODEC_AAC, {0x21, 0x00}, 2, 1024},
      {PYREC_CODEC_MP3, {0xff, 0xfb, 0x90, 0x64}, 4, 1152}, /* MPEG-1 layer III */
      {PYREC_CODEC_MP3, {0xff, 0xfd, 0x90, 0x64}, 4, 1152}, /* MPEG-1 layer II */
      {PYREC_CODEC_MP3, {0xff, 0xff, 0x90, 0x64}, 4, 384},  /* MPEG-1 layer I */
      {PYREC_CODEC_MP3, {0xff, 0xf3, 0x90, 0x64}, 4, 576},  /* MPEG-2 layer III */
      {PYREC_CODEC_MP3, {0xff, 0xe3, 0x90, 0x64}, 4, 576},  /* MPEG-2.5 layer III */
      {PYREC_CODEC_MP3, {0xff, 0xf5, 0x90, 0x64}, 4, 1152}, /* MPEG-2 layer II */
      {PYREC_CODEC_MP3, {0xff, 0xeb, 0x90, 0x64}, 4, 0},    /* reserved version */
      {PYREC_CODEC_MP3, {0xff, 0xf9, 0x90, 0x64}, 4, 0},    /* reserved layer */
      {PYREC_CODEC_MP3, {0x00, 0xfb, 0x90, 0x64}, 4, 0},    /* no sync */
      {PYREC_CODEC_MP3, {0xff, 0xfb, 0x90}, 3, 0}, /* truncated header */
      {PYREC_CODEC_OPUS, {0 << 3, 0}, 1, 480},  /* SILK 10 ms */
      {PYREC_CODEC_OPUS, {1 << 3, 0}, 1, 960},  /* SILK 20 ms */
      {PYREC_CODEC_OPUS, {3 << 3, 0}, 1, 2880}, /* SILK 60 ms */
      {PYREC_CODEC_OPUS, {12 << 3, 0}, 1, 480}, /* hybrid 10 ms */
      {PYREC_CODEC_OPUS, {13 << 3, 0}, 1, 960}, /* hybrid 20 ms */
      {PYREC_CODEC_OPUS, {16 << 3, 0}, 1, 120}, /* CELT 2.5 ms */
      {PYREC_CODEC_OPUS, {31 << 3, 0}, 1, 960}, /* CELT 20 ms */
      {PYREC_CODEC_OPUS, {(31 << 3) | 1, 0}, 1, 1920}, /* two frames */
      {PYREC_CODEC_OPUS, {(31 << 3) | 2, 0}, 1, 1920}, /* two frames, different sizes */
      {PYREC_CODEC_OPUS, {(31 << 3) | 3, 3}, 2, 2880}, /* code 3: three frames */
      {PYREC_CODEC_OPUS, {(31 << 3) | 3, 0}, 1, 0},    /* code 3 without its count byte */
      {PYREC_CODEC_OPUS, {(3 << 3) | 3, 3}, 2, 0},     /* 180 ms: more than 120 ms */
      {PYREC_CODEC_OPUS, {0, 0}, 0, 0},                /* empty */
      {PYREC_CODEC_H264, {0x65, 0}, 2, 0},             /* video */
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    uint32_t got = pyrec_audio_frame_samples(rows[i].codec, rows[i].b, rows[i].len);
    if (got != rows[i].want)
      fprintf(stderr, "row %zu: %u samples, want %u\n", i, got, rows[i].want);
    CHECK_EQ(got, rows[i].want);
  }
  static const uint8_t mp3_48k[4] = {0xff, 0xfb, 0x94, 0x64}, mp3_22k[4] = {0xff, 0xf3, 0x80, 0xc4};
  CHECK_EQ(pyrec_mp3_sample_rate(mp3_48k, 4), 48000);
  CHECK_EQ(pyrec_mp3_sample_rate(mp3_22k, 4), 22050);
  CHECK_EQ(pyrec_mp3_sample_rate(mp3_22k, 3), 0);
}

int main(void) {
  RUN(test_table);
  RUN(test_frame_samples);
  return T_DONE();
}
