/* Recorder + FLV source tests on a real FLV (data/small.flv: 160x120 H.264 with B-frames,
 * 25 fps, GOP 1 s, 100 video + 88 AAC packets, made by the ffmpeg CLI). */
#include "pyrec/flvsrc.h"
#include "pyrec/rec.h"
#include "t.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXF 16

typedef struct sink {
  char dir[64];
  int nfiles;
  int fail_open_at; /* sequence whose open fails, -1 none */
  pyrec_rec_file info[MAXF];
  uint64_t samples[MAXF][2];
  int64_t first_dts[MAXF][2], end_dts[MAXF][2];
  int closed_fds;
} sink;

static uint8_t *flv;
static size_t flv_len;

static int load(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  fseek(f, 0, SEEK_END);
  flv_len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  flv = malloc(flv_len);
  size_t got = fread(flv, 1, flv_len, f);
  fclose(f);
  return got == flv_len ? 0 : -1;
}

static void path_of(const sink *s, uint32_t seq, char *out, size_t n) {
  snprintf(out, n, "%s/f%u.mp4", s->dir, seq);
}

static int on_open(void *opaque, uint32_t seq, int64_t start_ms, int *fd) {
  sink *s = opaque;
  if ((int)seq == s->fail_open_at)
    return -1;
  char p[128];
  path_of(s, seq, p, sizeof p);
  *fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  return *fd < 0 ? -1 : 0;
}

static int on_close(void *opaque, const pyrec_rec_file *f) {
  sink *s = opaque;
  if (s->nfiles < MAXF) {
    s->info[s->nfiles] = *f;
    for (unsigned t = 0; f->stats && t < f->stats->ntracks && t < 2; t++) {
      s->samples[s->nfiles][t] = f->stats->track[t].samples;
      s->first_dts[s->nfiles][t] = f->stats->track[t].first_dts;
      s->end_dts[s->nfiles][t] = f->stats->track[t].end_dts;
    }
    s->info[s->nfiles].stats = NULL;
  }
  s->nfiles++;
  close(f->fd);
  s->closed_fds++;
  return 0;
}

static void sink_init(sink *s, const char *tag) {
  memset(s, 0, sizeof *s);
  s->fail_open_at = -1;
  snprintf(s->dir, sizeof s->dir, "/tmp/pyrec-test-rec-%s-%d", tag, (int)getpid());
  mkdir(s->dir, 0755);
}

static uint8_t *slurp(const char *p, size_t *n) {
  FILE *f = fopen(p, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *d = malloc(*n ? *n : 1);
  if (fread(d, 1, *n, f) != *n) {
    free(d);
    d = NULL;
  }
  fclose(f);
  return d;
}

/* Top-level boxes tile the file exactly; returns the count, or -1. First must be ftyp. */
/* Top-level boxes: count, moofs, and whether the file is finished: an mfra (fragmented
 * finish) or ftyp, mdat, moov (hybrid finish) sets *has_mfra. */
static int top_boxes(const uint8_t *d, size_t n, int *moofs, int *has_mfra) {
  size_t off = 0;
  int count = 0;
  *moofs = 0;
  *has_mfra = 0;
  int hybrid = 0;
  while (off < n) {
    if (n - off < 8)
      return -1;
    uint32_t sz = pyrec_rd32(d + off);
    if (sz < 8 || sz > n - off)
      return -1;
    if (count == 0 && memcmp(d + off + 4, "ftyp", 4))
      return -1;
    if (!memcmp(d + off + 4, "moof", 4))
      (*moofs)++;
    if (!memcmp(d + off + 4, "mfra", 4))
      *has_mfra = 1;
    if (count == 1 && !memcmp(d + off + 4, "mdat", 4))
      hybrid = 1;
    if (count == 2 && hybrid && !memcmp(d + off + 4, "moov", 4) && off + sz == n)
      *has_mfra = 1;
    off += sz;
    count++;
  }
  return count;
}

/* tfdt of track `track_id` in the first moof. */
static int64_t first_tfdt(const uint8_t *d, size_t n, uint32_t track_id) {
  for (size_t i = 0; i + 20 <= n; i++) {
    if (memcmp(d + i, "tfhd", 4) || pyrec_rd32(d + i + 8) != track_id)
      continue;
    for (size_t j = i; j + 16 <= n; j++)
      if (!memcmp(d + j, "tfdt", 4)) {
        if (d[j + 4] == 1)
          return (int64_t)(((uint64_t)pyrec_rd32(d + j + 8) << 32) | pyrec_rd32(d + j + 12));
        return pyrec_rd32(d + j + 8);
      }
  }
  return -1;
}

static int g_finish = PYREC_FINISH_HYBRID; /* the writer's finish for run() */

typedef struct runctx {
  sink *s;
  pyrec_rec_opts ro;
  int sink_id;
  int attach_rc;
} runctx;

/* The media_time of a track's edit list (track_id = trak order + 1), 0 without one. */
static int64_t edit_media_time(const uint8_t *d, size_t n, uint32_t track_id) {
  uint32_t k = 0;
  for (size_t i = 4; i + 4 <= n; i++) {
    if (!memcmp(d + i, "moof", 4))
      break;
    if (memcmp(d + i, "trak", 4))
      continue;
    size_t size = pyrec_rd32(d + i - 4);
    if (++k != track_id)
      continue;
    for (size_t j = i; j + 28 <= n && j < i - 4 + size; j++)
      if (!memcmp(d + j, "elst", 4)) {
        const uint8_t *m = d + j + 8 + 4 + (d[j + 4] == 1 ? 8 : 4); /* entry 0 media_time */
        if (d[j + 4] == 1)
          return (int64_t)(((uint64_t)pyrec_rd32(m) << 32) | pyrec_rd32(m + 4));
        return (int32_t)pyrec_rd32(m);
      }
    return 0;
  }
  return 0;
}

static void on_ready(void *opaque, pyrec_flvsrc *src) {
  runctx *c = opaque;
  pyrec_rec_callbacks cb = {on_open, on_close, c->s};
  pyrec_errinfo e;
  c->attach_rc = pyrec_flvsrc_attach(src, 0x3, &c->ro, &cb, &c->sink_id, &e);
}

/* Returns the source's error, else the sink's. */
static int run(sink *s, int64_t interval, int continuity, size_t step, size_t limit) {
  runctx c;
  memset(&c, 0, sizeof c);
  c.s = s;
  c.sink_id = -1;
  c.ro.interval_ms = interval;
  c.ro.continuity = continuity;
  c.ro.part_duration_ms = 500;
  c.ro.finish = g_finish;
  pyrec_flvsrc_opts o;
  memset(&o, 0, sizeof o);
  o.on_ready = on_ready;
  o.opaque = &c;
  pyrec_flvsrc *src;
  pyrec_errinfo e;
  int rc = pyrec_flvsrc_new(&src, &o, &e);
  if (rc)
    return rc;
  size_t n = limit ? limit : flv_len;
  for (size_t off = 0; off < n && !rc; off += step)
    rc = pyrec_flvsrc_feed(src, flv + off, off + step <= n ? step : n - off);
  int rc2 = pyrec_flvsrc_close(src);
  int rc3 = c.sink_id >= 0 ? pyrec_flvsrc_sink_error(src, c.sink_id, NULL) : c.attach_rc;
  pyrec_flvsrc_free(src);
  return rc ? rc : rc2 ? rc2 : rc3;
}

/* Table: the same recording with the fragmented finish (moofs and an mfra at the top level)
 * and the hybrid finish (ftyp, one mdat, moov). */
static void test_whole_file(void) {
  for (int fin = 0; fin < 2; fin++) {
  sink s;
  sink_init(&s, fin ? "whole_frag" : "whole");
  g_finish = fin ? PYREC_FINISH_FRAGMENTED : PYREC_FINISH_HYBRID;
  CHECK_EQ(run(&s, 0, 0, flv_len, 0), 0);
  g_finish = PYREC_FINISH_HYBRID;
  CHECK_EQ(s.nfiles, 1);
  CHECK_EQ(s.samples[0][0], 100);
  CHECK_EQ(s.samples[0][1], 88);
  /* audio timed at its 22.05 kHz sample rate: every AAC frame exactly 1024 samples long,
   * the last one included */
  CHECK_EQ(s.end_dts[0][1] - s.first_dts[0][1], 88 * 1024);
  CHECK_EQ(s.info[0].error, 0);
  CHECK_EQ(s.info[0].start_ms, 0);
  if (!(s.info[0].end_ms >= 3990 && s.info[0].end_ms <= 4200))
    fprintf(stderr, "end_ms %lld\n", (long long)s.info[0].end_ms);
  CHECK(s.info[0].end_ms >= 3990 && s.info[0].end_ms <= 4200);
  char p[128];
  path_of(&s, 0, p, sizeof p);
  size_t n;
  uint8_t *d = slurp(p, &n);
  CHECK(d != NULL);
  int moofs, mfra;
  if (fin) {
    CHECK(top_boxes(d, n, &moofs, &mfra) > 3);
    CHECK(moofs >= 4); /* 4 s at 500 ms parts, waiting for the 1 s keyframes */
  } else {
    CHECK_EQ(top_boxes(d, n, &moofs, &mfra), 3); /* ftyp, mdat, moov */
    CHECK_EQ(moofs, 0);
  }
  CHECK(mfra);
  CHECK_EQ(n, s.info[0].bytes);
  free(d);
  }
}

/* Feeding byte by byte (or in odd chunks) writes exactly the same bytes. */
static void test_split_feeding_same_bytes(void) {
  sink a, b;
  sink_init(&a, "chunkA");
  sink_init(&b, "chunkB");
  CHECK_EQ(run(&a, 1000, 0, flv_len, 0), 0);
  CHECK_EQ(run(&b, 1000, 0, 1, 0), 0);
  CHECK_EQ(a.nfiles, b.nfiles);
  for (int i = 0; i < a.nfiles && i < MAXF; i++) {
    char pa[128], pb[128];
    path_of(&a, (uint32_t)i, pa, sizeof pa);
    path_of(&b, (uint32_t)i, pb, sizeof pb);
    size_t na, nb;
    uint8_t *da = slurp(pa, &na), *db = slurp(pb, &nb);
    CHECK(da && db && na == nb && memcmp(da, db, na) == 0);
    free(da);
    free(db);
  }
}

static void test_interval_split(void) {
  for (int continuity = 0; continuity <= 1; continuity++) {
    sink s;
    sink_init(&s, continuity ? "cont" : "disc");
    CHECK_EQ(run(&s, 1000, continuity, 4096, 0), 0);
    CHECK_EQ(s.nfiles, 4);
    uint64_t v = 0, a = 0;
    for (int i = 0; i < s.nfiles; i++) {
      v += s.samples[i][0];
      a += s.samples[i][1];
      CHECK_EQ(s.samples[i][0], 25); /* one GOP per file */
      CHECK_EQ(s.info[i].sequence, (uint32_t)i);
      CHECK_EQ(s.info[i].start_ms, 1000 * i);
    }
    CHECK_EQ(v, 100);
    CHECK_EQ(a, 88);
    for (int i = 0; i + 1 < s.nfiles; i++) {
      char p[128], p0[128];
      path_of(&s, (uint32_t)(i + 1), p, sizeof p);
      path_of(&s, (uint32_t)i, p0, sizeof p0);
      size_t n, n0;
      uint8_t *d = slurp(p, &n), *d0 = slurp(p0, &n0);
      CHECK(d != NULL && d0 != NULL);
      for (uint32_t t = 0; t < 2 && d && d0; t++) {
        int64_t tfdt = first_tfdt(d, n, t + 1);
        if (continuity) /* the next file starts where this one ended, per track, in
                           presentation time (edit lists included: the first file has one) */
          CHECK_EQ(tfdt - edit_media_time(d, n, t + 1),
                   s.end_dts[i][t] - edit_media_time(d0, n0, t + 1));
        else if (t == 0)
          CHECK_EQ(tfdt, 0);
        else
          CHECK(tfdt >= 0 && tfdt < 22050 / 20); /* < 50 ms at the clip's 22.05 kHz */
      }
      if (continuity && i == 0) /* B-frames: the first file's timeline starts with an edit */
        CHECK(d0 && edit_media_time(d0, n0, 1) > 0);
      free(d);
      free(d0);
    }
  }
}

static void test_truncated_keeps_output(void) {
  sink s;
  sink_init(&s, "trunc");
  int rc = run(&s, 0, 0, 1000, flv_len / 2 + 7);
  CHECK_EQ(rc, PYREC_E_TRUNCATED);
  CHECK_EQ(s.nfiles, 1);
  CHECK(s.samples[0][0] > 30 && s.samples[0][0] < 70);
  char p[128];
  path_of(&s, 0, p, sizeof p);
  size_t n;
  uint8_t *d = slurp(p, &n);
  int moofs, mfra;
  CHECK(d && top_boxes(d, n, &moofs, &mfra) > 0 && mfra);
  free(d);
}

static void test_mutations_never_crash(void) {
  uint8_t *orig = malloc(flv_len);
  memcpy(orig, flv, flv_len);
  uint32_t seed = 12345;
  for (int iter = 0; iter < 60; iter++) {
    memcpy(flv, orig, flv_len);
    int flips = 1 + iter % 8;
    for (int k = 0; k < flips; k++) {
      seed = seed * 1103515245u + 12345u;
      size_t at = 13 + (seed >> 8) % (flv_len - 13);
      seed = seed * 1103515245u + 12345u;
      flv[at] = (uint8_t)(seed >> 16);
    }
    sink s;
    sink_init(&s, "mut");
    run(&s, iter % 2 ? 700 : 0, iter % 3 == 0, 777, 0);
    CHECK_EQ(s.closed_fds, s.nfiles); /* every opened file was handed back */
  }
  memcpy(flv, orig, flv_len);
  free(orig);
}

static void test_open_failure(void) {
  sink s;
  sink_init(&s, "openfail");
  s.fail_open_at = 1;
  int rc = run(&s, 1000, 0, 4096, 0);
  CHECK_EQ(rc, PYREC_E_CALLBACK);
  CHECK_EQ(s.nfiles, 1); /* the first file is still finished and handed back */
  CHECK_EQ(s.samples[0][0], 25);
}

static int nop_open(void *o, uint32_t seq, int64_t ms, int *fd) {
  *fd = open("/dev/null", O_WRONLY);
  return 0;
}
static int nop_close(void *o, const pyrec_rec_file *f) {
  close(f->fd);
  return 0;
}

static void test_direct_api_errors(void) {
  pyrec_track_desc d = {0};
  d.codec = PYREC_CODEC_MP3;
  d.timescale = 1000;
  pyrec_rec_callbacks cb = {nop_open, nop_close, NULL};
  pyrec_rec *r;
  pyrec_errinfo e;
  CHECK_EQ(pyrec_rec_new(&r, &d, 1, NULL, &cb, &e), 0);
  uint8_t frame[417] = {0xff, 0xfb, 0x90, 0x64};
  CHECK_EQ(pyrec_rec_write(r, 0, 0, PYREC_NOPTS, PYREC_SAMPLE_KEY, frame, 0), PYREC_E_MALFORMED);
  CHECK_EQ(pyrec_rec_write(r, 3, 0, PYREC_NOPTS, PYREC_SAMPLE_KEY, frame, sizeof frame),
           PYREC_E_NOTRACK);
  for (int i = 0; i < 50; i++) /* equal and backward times are repaired, not fatal */
    CHECK_EQ(pyrec_rec_write(r, 0, i < 10 ? 0 : 26 * i, PYREC_NOPTS, PYREC_SAMPLE_KEY, frame,
                             sizeof frame),
             0);
  pyrec_rec_stats st;
  pyrec_rec_get_stats(r, &st);
  CHECK_EQ(st.track[0].ts.equal + st.track[0].ts.backward, 9);
  CHECK_EQ(st.track[0].rejected, 1);
  CHECK_EQ(pyrec_rec_close(r), 0);
  CHECK_EQ(pyrec_rec_write(r, 0, 99999, PYREC_NOPTS, 1, frame, sizeof frame), PYREC_E_STATE);
  pyrec_rec_free(r);

  d.codec = 99;
  CHECK_EQ(pyrec_rec_new(&r, &d, 1, NULL, &cb, &e), PYREC_E_CODEC);
  CHECK(strstr(e.msg, "99") != NULL);
}

/* A file source through the direct API (keep_leading, millisecond input times): audio that
 * starts after video keeps its offset (its own base decode time), AAC lands on the 44.1 kHz
 * sample grid with exact 1024-sample frames, the first file's edit starts the presentation at
 * the earliest presented sample, and continuity files join it exactly (no edit needed). */
static void test_file_source_offsets_and_joins(void) {
  static const uint8_t avcc[] = {
      0x01, 0x64, 0x00, 0x0a, 0xff, 0xe1, 0x00, 0x17, 0x67, 0x64, 0x00, 0x0a, 0xac, 0xd9,
      0x44, 0x7a, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1,
      0x22, 0x59, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8,
      0xf8, 0x00};
  static const uint8_t asc[] = {0x12, 0x10}; /* AAC-LC 44100 Hz stereo */
  static const uint8_t key[] = {0, 0, 0, 2, 0x65, 0x88}, nonkey[] = {0, 0, 0, 2, 0x41, 0x9a};
  static const uint8_t au[] = {0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c};
  pyrec_track_desc d[2];
  memset(d, 0, sizeof d);
  d[0].codec = PYREC_CODEC_H264;
  d[0].timescale = 1000;
  d[0].config = avcc;
  d[0].config_len = sizeof avcc;
  d[1].codec = PYREC_CODEC_AAC;
  d[1].timescale = 44100;
  d[1].sample_rate = 44100;
  d[1].channels = 2;
  d[1].config = asc;
  d[1].config_len = sizeof asc;
  pyrec_rec_opts o;
  memset(&o, 0, sizeof o);
  o.keep_leading = 1;
  o.continuity = 1;
  o.interval_ms = 1000;
  o.wrap_bits = 32;
  o.in_timescale[0] = o.in_timescale[1] = 1000;
  sink s;
  sink_init(&s, "direct");
  pyrec_rec_callbacks cb = {on_open, on_close, &s};
  pyrec_rec *r;
  pyrec_errinfo e;
  CHECK_EQ(pyrec_rec_new(&r, d, 2, &o, &cb, &e), 0);
  /* video 25 fps from 20 ms, pts 40 ms after dts, keyframe every second; AAC from 100 ms,
   * millisecond times truncated as FLV gives them */
  int nv = 75, na = 0;
  for (int i = 0, k = 0; i < nv;) {
    int64_t vd = 20 + 40 * i, ad = 100 + (int64_t)k * 1024 * 1000 / 44100;
    if (ad < vd && ad < 3000) {
      CHECK_EQ(pyrec_rec_write_in(r, 1, ad, PYREC_NOPTS, PYREC_SAMPLE_KEY, au, sizeof au), 0);
      k++;
      na = k;
    } else {
      CHECK_EQ(pyrec_rec_write_in(r, 0, vd, vd + 40, i % 25 ? 0 : PYREC_SAMPLE_KEY,
                                  i % 25 ? nonkey : key, 6),
               0);
      i++;
    }
  }
  CHECK_EQ(pyrec_rec_close(r), 0);
  pyrec_rec_stats st;
  pyrec_rec_get_stats(r, &st);
  CHECK_EQ(st.track[0].dropped_start + st.track[1].dropped_start, 0);
  CHECK_EQ(st.track[0].written, (uint64_t)nv);
  CHECK_EQ(st.track[1].written, (uint64_t)na);
  pyrec_rec_free(r);
  CHECK_EQ(s.nfiles, 3);
  CHECK_EQ(s.first_dts[0][0], 0);
  CHECK_EQ(s.first_dts[0][1], 80 * 441 / 10); /* 80 ms after the video, at 44.1 kHz */
  uint64_t a = 0;
  for (int i = 0; i < s.nfiles; i++) {
    a += s.samples[i][1];
    CHECK_EQ(s.end_dts[i][1] - s.first_dts[i][1], (int64_t)s.samples[i][1] * 1024);
  }
  CHECK_EQ(a, (uint64_t)na);
  int64_t edit[MAXF][2];
  for (int i = 0; i < s.nfiles; i++) {
    char p[128];
    path_of(&s, (uint32_t)i, p, sizeof p);
    size_t n;
    uint8_t *data = slurp(p, &n);
    CHECK(data != NULL);
    for (uint32_t t = 0; t < 2; t++)
      edit[i][t] = data ? edit_media_time(data, n, t + 1) : -1;
    free(data);
  }
  CHECK_EQ(edit[0][0], 40);       /* presentation starts at the first video pts */
  CHECK_EQ(edit[0][1], 40 * 441 / 10);
  for (int i = 1; i < s.nfiles; i++)
    for (int t = 0; t < 2; t++) {
      CHECK_EQ(edit[i][t], 0); /* based later instead */
      CHECK_EQ(s.first_dts[i][t] - edit[i][t], s.end_dts[i - 1][t] - edit[i - 1][t]);
    }
}

/* Packets whose DTS repeats wait (copied) for their track's next packet; two tracks keep
 * interleaving meanwhile, a packet still waiting at close is placed and written, and one
 * waiting when the recorder fails is freed. Every packet is written exactly once. */
static void test_held_packets(void) {
  pyrec_track_desc d[2] = {{0}, {0}};
  d[0].codec = d[1].codec = PYREC_CODEC_MP3;
  d[0].timescale = d[1].timescale = 1000;
  pyrec_rec_callbacks cb = {nop_open, nop_close, NULL};
  pyrec_rec *r;
  pyrec_errinfo e;
  CHECK_EQ(pyrec_rec_new(&r, d, 2, NULL, &cb, &e), 0);
  uint8_t frame[417] = {0xff, 0xfb, 0x90, 0x64};
  for (int i = 0; i < 40; i++) {
    int64_t t0 = 26 * (i - i % 4 / 3); /* every 4th packet of track 0 repeats a DTS */
    CHECK_EQ(pyrec_rec_write(r, 0, t0, PYREC_NOPTS, PYREC_SAMPLE_KEY, frame, sizeof frame), 0);
    CHECK_EQ(pyrec_rec_write(r, 1, 26 * i + 5, PYREC_NOPTS, PYREC_SAMPLE_KEY, frame,
                             sizeof frame),
             0);
  }
  /* the last packet of track 0 repeats: it waits until close */
  CHECK_EQ(pyrec_rec_write(r, 0, 26 * 38, PYREC_NOPTS, PYREC_SAMPLE_KEY, frame, sizeof frame),
           0);
  pyrec_rec_stats st;
  pyrec_rec_get_stats(r, &st);
  CHECK_EQ(st.track[0].ts.equal, 11);
  /* one waits in tsfix */
  CHECK_EQ(st.track[0].written + st.track[1].written + st.queued + 1, 81);
  CHECK_EQ(pyrec_rec_close(r), 0);
  pyrec_rec_get_stats(r, &st);
  CHECK_EQ(st.track[0].written, 41);
  CHECK_EQ(st.track[1].written, 40);
  CHECK_EQ(st.queued, 0);
  pyrec_rec_free(r);

  /* freed without close, a packet waiting in tsfix */
  CHECK_EQ(pyrec_rec_new(&r, d, 1, NULL, &cb, &e), 0);
  CHECK_EQ(pyrec_rec_write(r, 0, 0, PYREC_NOPTS, PYREC_SAMPLE_KEY, frame, sizeof frame), 0);
  CHECK_EQ(pyrec_rec_write(r, 0, 0, PYREC_NOPTS, PYREC_SAMPLE_KEY, frame, sizeof frame), 0);
  pyrec_rec_free(r);
}

/* Per-track counters of the source (the stream APIs' frame rate, bitrate, GOP): small.flv has
 * 100 video frames (keyframes at 0, 25, 50, 75; B-frames; 0..3960 ms) and 88 AAC frames
 * (34..4074 ms). */
static void test_track_stats(void) {
  pyrec_flvsrc *src;
  pyrec_errinfo e;
  CHECK_EQ(pyrec_flvsrc_new(&src, NULL, &e), 0);
  pyrec_flvsrc_track_stats t;
  pyrec_flvsrc_get_track_stats(src, 0, &t);
  CHECK_EQ(t.frames, 0);
  CHECK_EQ(pyrec_flvsrc_feed(src, flv, flv_len), 0);
  CHECK_EQ(pyrec_flvsrc_close(src), 0);
  CHECK_EQ(pyrec_flvsrc_ntracks(src), 2);
  pyrec_flvsrc_stats st;
  pyrec_flvsrc_get_stats(src, &st);
  uint64_t bytes = 0;
  for (unsigned i = 0; i < 2; i++) {
    pyrec_flvsrc_get_track_stats(src, i, &t);
    bytes += t.bytes;
    if (pyrec_flvsrc_track_info(src, i)->media == PYREC_MEDIA_VIDEO) {
      CHECK_EQ(t.frames, 100);
      CHECK_EQ(t.keyframes, 4);
      CHECK_EQ(t.last_key_frame, 75);
      CHECK_EQ(t.gop_frames, 25);
      CHECK_EQ(t.first_ts, 0);
      CHECK_EQ(t.last_ts, 3960);
      CHECK_EQ(t.reordered, 1);
      CHECK_EQ(t.bytes, 31589);
    } else {
      CHECK_EQ(t.frames, 88);
      CHECK_EQ(t.keyframes, 88);
      CHECK_EQ(t.gop_frames, 1);
      CHECK_EQ(t.first_ts, 34);
      CHECK_EQ(t.last_ts, 4074);
      CHECK_EQ(t.reordered, 0);
      CHECK_EQ(t.bytes, 16422);
    }
  }
  CHECK_EQ(bytes, st.media_bytes);
  pyrec_flvsrc_get_track_stats(src, 2, &t); /* no such track: zeros */
  CHECK_EQ(t.frames + t.bytes + t.last_ts, 0);
  pyrec_flvsrc_free(src);
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "data/small.flv";
  if (load(path)) {
    fprintf(stderr, "cannot read %s\n", path);
    return 1;
  }
  RUN(test_whole_file);
  RUN(test_split_feeding_same_bytes);
  RUN(test_interval_split);
  RUN(test_truncated_keeps_output);
  RUN(test_mutations_never_crash);
  RUN(test_open_failure);
  RUN(test_direct_api_errors);
  RUN(test_file_source_offsets_and_joins);
  RUN(test_held_packets);
  RUN(test_track_stats);
  free(flv);
  return T_DONE();
}
