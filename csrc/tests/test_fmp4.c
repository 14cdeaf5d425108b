/* Tests for the fragmented MP4 writer: golden bytes per box, file structure, fragment policy,
 * finish (durations, mfra), error paths (I/O, bad timestamps). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../fmp4_internal.h"
#include "pyrec/fmp4.h"
#include "t.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* Compare a byte range with a hex string (spaces ignored). */
static int hex_eq(const uint8_t *p, size_t n, const char *hex) {
  size_t k = 0;
  for (const char *h = hex; *h;) {
    if (*h == ' ') {
      h++;
      continue;
    }
    unsigned v;
    if (sscanf(h, "%2x", &v) != 1 || k >= n || p[k] != v) {
      fprintf(stderr, "  hex mismatch at byte %zu (have %02x)\n", k, k < n ? p[k] : 0);
      return 0;
    }
    k++;
    h += 2;
  }
  if (k != n)
    fprintf(stderr, "  hex length %zu != %zu\n", k, n);
  return k == n;
}

#define Z4 "00000000 "
#define Z8 Z4 Z4
#define Z16 Z8 Z8
#define MATRIX "00010000 00000000 00000000 00000000 00010000 00000000 00000000 00000000 40000000 "

static uint64_t rd64(const uint8_t *p) { return ((uint64_t)pyrec_rd32(p) << 32) | pyrec_rd32(p + 4); }

typedef struct box {
  char type[5];
  size_t off, size;
  int depth;
} box;

typedef struct file {
  uint8_t *data;
  size_t len;
  box b[4096];
  int n;
} file;

static int is_container(const char *t) {
  static const char *c[] = {"moov", "trak", "mdia", "minf", "stbl", "mvex", "edts",
                            "dinf", "moof", "traf", "mfra"};
  for (size_t i = 0; i < sizeof c / sizeof *c; i++)
    if (!memcmp(t, c[i], 4))
      return 1;
  return 0;
}

/* Walk boxes in [off, end); children must tile their parent exactly. */
static int walk(file *f, size_t off, size_t end, int depth) {
  while (off < end) {
    if (end - off < 8 || f->n >= 4096)
      return -1;
    size_t size = pyrec_rd32(f->data + off);
    if (size < 8 || size > end - off)
      return -1;
    box *b = &f->b[f->n++];
    memcpy(b->type, f->data + off + 4, 4);
    b->type[4] = 0;
    b->off = off;
    b->size = size;
    b->depth = depth;
    if (is_container(b->type) && walk(f, off + 8, off + size, depth + 1))
      return -1;
    off += size;
  }
  return 0;
}

static file *load(int fd) {
  file *f = calloc(1, sizeof *f);
  off_t len = lseek(fd, 0, SEEK_END);
  f->data = malloc(len > 0 ? (size_t)len : 1);
  f->len = (size_t)len;
  if (pread(fd, f->data, f->len, 0) != (ssize_t)f->len || walk(f, 0, f->len, 0)) {
    fprintf(stderr, "  file structure invalid\n");
    f->n = -1;
  }
  return f;
}

static void unload(file *f) {
  free(f->data);
  free(f);
}

/* k-th (0-based) box of `type` in file order, or NULL. */
static const box *find(const file *f, const char *type, int k) {
  for (int i = 0; i < f->n; i++)
    if (!memcmp(f->b[i].type, type, 4) && k-- == 0)
      return &f->b[i];
  return NULL;
}

static int count(const file *f, const char *type) {
  int n = 0;
  while (find(f, type, n))
    n++;
  return n;
}

static int tmpfd(void) {
  char path[] = "/tmp/pyrec_fmp4_XXXXXX";
  int fd = mkstemp(path);
  unlink(path);
  return fd;
}

/* x264 avcC for 64x48 High profile (from a PyAV encode). */
static const uint8_t AVCC[] = {
    0x01, 0x64, 0x00, 0x0a, 0xff, 0xe1, 0x00, 0x17, 0x67, 0x64, 0x00, 0x0a, 0xac, 0xd9,
    0x44, 0x7a, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1,
    0x22, 0x59, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8,
    0xf8, 0x00};
static const uint8_t ASC[] = {0x12, 0x10}; /* AAC-LC 44100 Hz stereo */
static const uint8_t KEY[] = {0, 0, 0, 2, 0x65, 0x88};
static const uint8_t NONKEY[] = {0, 0, 0, 2, 0x41, 0x9a};
static const uint8_t AUD[] = {0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c};

static pyrec_track_desc vdesc(uint32_t timescale) {
  pyrec_track_desc d = {0};
  d.codec = PYREC_CODEC_H264;
  d.timescale = timescale;
  d.width = 64;
  d.height = 48;
  d.config = AVCC;
  d.config_len = sizeof AVCC;
  return d;
}

static pyrec_track_desc adesc(void) {
  pyrec_track_desc d = {0};
  d.codec = PYREC_CODEC_AAC;
  d.timescale = 44100;
  d.sample_rate = 44100;
  d.channels = 2;
  d.config = ASC;
  d.config_len = sizeof ASC;
  return d;
}

/* The tests of the fragmented finish (mfra) open the writer with this. */
static const pyrec_mp4w_opts FRAG = {.finish = PYREC_FINISH_FRAGMENTED};

static int vwrite(pyrec_mp4w *w, unsigned t, int64_t dts, int32_t cto, int key) {
  return pyrec_mp4w_write(w, t, dts, cto, key ? PYREC_SAMPLE_KEY : 0, key ? KEY : NONKEY, 6);
}

/* ---- golden boxes ------------------------------------------------------------------- */

static void test_golden_boxes(void) {
  pyrec_buf b;
  size_t off;
  pyrec_buf_init(&b);

  pyrec_fmp4_ftyp(&b, 1);
  CHECK(hex_eq(b.data, b.len, "00000028 66747970 69736f36 00000000 69736f36 69736f35 69736f6d "
                              "69736f32 61766331 6d703431"));
  pyrec_buf_reset(&b);
  pyrec_fmp4_mvhd(&b, 1000, 3, &off);
  CHECK(hex_eq(b.data, b.len, "00000078 6d766864 01000000" Z16 "000003e8" Z8 "00010000 0100 "
                              "0000" Z8 MATRIX Z16 Z8 "00000003"));
  CHECK_EQ(off, 32);
  pyrec_buf_reset(&b);
  pyrec_fmp4_tkhd(&b, 1, PYREC_MEDIA_VIDEO, 64, 48, &off);
  CHECK(hex_eq(b.data, b.len, "00000068 746b6864 01000003" Z16 "00000001 00000000" Z8 Z8
                              "0000 0000 0000 0000" MATRIX "00400000 00300000"));
  CHECK_EQ(off, 36);
  pyrec_buf_reset(&b);
  pyrec_fmp4_tkhd(&b, 2, PYREC_MEDIA_AUDIO, 0, 0, &off);
  CHECK(hex_eq(b.data, b.len, "00000068 746b6864 01000003" Z16 "00000002 00000000" Z8 Z8
                              "0000 0000 0100 0000" MATRIX Z8));
  pyrec_buf_reset(&b);
  pyrec_fmp4_mdhd(&b, 90000, &off);
  CHECK(hex_eq(b.data, b.len, "0000002c 6d646864 01000000" Z16 "00015f90" Z8 "55c4 0000"));
  CHECK_EQ(off, 32);
  pyrec_buf_reset(&b);
  pyrec_fmp4_hdlr(&b, PYREC_MEDIA_VIDEO);
  CHECK(hex_eq(b.data, b.len, "0000002d 68646c72 00000000 00000000 76696465" Z8 Z4
                              "566964656f48616e646c657200"));
  pyrec_buf_reset(&b);
  pyrec_fmp4_hdlr(&b, PYREC_MEDIA_AUDIO);
  CHECK(hex_eq(b.data, b.len, "0000002d 68646c72 00000000 00000000 736f756e" Z8 Z4
                              "536f756e6448616e646c657200"));
  pyrec_buf_reset(&b);
  pyrec_fmp4_edts(&b, 3000, &off);
  CHECK(hex_eq(b.data, b.len, "0000002c 65647473 00000024 656c7374 01000000 00000001" Z8
                              "00000000 00000bb8 0001 0000"));
  CHECK_EQ(off, 24);
  pyrec_buf_reset(&b);
  pyrec_fmp4_trex(&b, 1);
  CHECK(hex_eq(b.data, b.len, "00000020 74726578 00000000 00000001 00000001" Z8 Z4));
  pyrec_buf_reset(&b);
  pyrec_fmp4_mfhd(&b, 7);
  CHECK(hex_eq(b.data, b.len, "00000010 6d666864 00000000 00000007"));
  pyrec_buf_reset(&b);
  pyrec_fmp4_tfhd(&b, 2);
  CHECK(hex_eq(b.data, b.len, "00000010 74666864 00020000 00000002"));
  pyrec_buf_reset(&b);
  pyrec_fmp4_tfdt(&b, 0x123456789ull);
  CHECK(hex_eq(b.data, b.len, "00000014 74666474 01000000 00000001 23456789"));

  pyrec_mp4w_sample s[2] = {{0, 40, 5, 40, 1}, {40, -20, 3, 40, 0}};
  pyrec_buf_reset(&b);
  CHECK_EQ(pyrec_fmp4_trun(&b, s, 2, 1), 16);
  CHECK(hex_eq(b.data, b.len, "00000034 7472756e 01000f01 00000002 00000000 "
                              "00000028 00000005 02000000 00000028 "
                              "00000028 00000003 01010000 ffffffec"));
  pyrec_buf_reset(&b);
  pyrec_fmp4_trun(&b, s, 2, 0); /* audio: no composition offsets, always sync */
  CHECK(hex_eq(b.data, b.len, "0000002c 7472756e 01000701 00000002 00000000 "
                              "00000028 00000005 02000000 00000028 00000003 02000000"));
  pyrec_mp4w_tfra_entry e = {0x10, 1234, 1, 3};
  pyrec_buf_reset(&b);
  pyrec_fmp4_tfra(&b, 1, &e, 1);
  CHECK(hex_eq(b.data, b.len, "00000034 74667261 01000000 00000001 0000003f 00000001 "
                              "00000000 00000010 00000000 000004d2 00000001 00000001 00000003"));
  pyrec_buf_reset(&b);
  pyrec_fmp4_mfro(&b, 100);
  CHECK(hex_eq(b.data, b.len, "00000010 6d66726f 00000000 00000064"));
  pyrec_buf_free(&b);
}

/* ---- init segment and one fragment, byte for byte ------------------------------------ */

static void test_init_and_fragment(void) {
  int fd = tmpfd();
  pyrec_track_desc d = vdesc(1000);
  pyrec_mp4w *w;
  pyrec_errinfo err;
  CHECK_EQ(pyrec_mp4w_open(&w, fd, &d, 1, &FRAG, &err), 0);
  CHECK_EQ(vwrite(w, 0, 0, 40, 1), 0);
  CHECK_EQ(vwrite(w, 0, 40, -20, 0), 0);
  CHECK_EQ(vwrite(w, 0, 80, 0, 0), 0);
  CHECK_EQ(pyrec_mp4w_get_stats(w)->fragments, 0);
  CHECK_EQ(pyrec_mp4w_get_stats(w)->file_bytes, 0); /* nothing before the first fragment */
  CHECK_EQ(pyrec_mp4w_flush(w), 0);
  const pyrec_mp4w_stats *st = pyrec_mp4w_get_stats(w);
  CHECK_EQ(st->fragments, 1);
  CHECK_EQ(st->track[0].samples, 2); /* the third is held back */
  CHECK_EQ(st->track[0].bytes, 12);
  CHECK_EQ(st->track[0].first_dts, 0);
  CHECK_EQ(st->track[0].end_dts, 80);
  CHECK_EQ(st->track[0].keyframes, 1);

  file *f = load(fd);
  CHECK(f->n > 0);
  CHECK_EQ(st->file_bytes, f->len);
  const box *ftyp = find(f, "ftyp", 0), *moov = find(f, "moov", 0), *moof = find(f, "moof", 0);
  const box *mdat = find(f, "mdat", 0);
  CHECK(ftyp && moov && moof && mdat);
  if (ftyp && moov && moof && mdat) {
    CHECK_EQ(ftyp->off, 0);
    CHECK_EQ(moov->off, ftyp->size + 8); /* the reserved free box */
    CHECK(hex_eq(f->data + ftyp->size, 8, "00000008 66726565"));
    CHECK_EQ(moof->off, moov->off + moov->size);
    CHECK_EQ(mdat->off, moof->off + moof->size);
    CHECK_EQ(count(f, "trak"), 1);
    CHECK(find(f, "mvex", 0) && find(f, "mehd", 0) && find(f, "trex", 0));
    CHECK(find(f, "stsd", 0) && find(f, "stts", 0) && find(f, "stsc", 0) &&
          find(f, "stsz", 0) && find(f, "stco", 0) && find(f, "vmhd", 0) && find(f, "dref", 0));
    const box *tkhd = find(f, "tkhd", 0);
    CHECK(tkhd && hex_eq(f->data + tkhd->off, tkhd->size,
                         "00000068 746b6864 01000003" Z16 "00000001 00000000" Z8 Z8
                         "0000 0000 0000 0000" MATRIX "00400000 00300000"));
    const box *mvhd = find(f, "mvhd", 0);
    CHECK(mvhd && hex_eq(f->data + mvhd->off, mvhd->size,
                         "00000078 6d766864 01000000" Z16 "000003e8" Z8 "00010000 0100 "
                         "0000" Z8 MATRIX Z16 Z8 "00000002"));
    /* the whole moof: mfhd 1, traf(tfhd, tfdt 0, trun 2 samples, data offset = moof + 8) */
    CHECK(hex_eq(f->data + moof->off, moof->size,
                 "00000078 6d6f6f66 00000010 6d666864 00000000 00000001 "
                 "00000060 74726166 00000010 74666864 00020000 00000001 "
                 "00000014 74666474 01000000" Z8 "00000034 7472756e 01000f01 00000002 00000080 "
                 "00000028 00000006 02000000 00000028 "
                 "00000028 00000006 01010000 ffffffec"));
    CHECK(hex_eq(f->data + mdat->off, mdat->size,
                 "00000014 6d646174 00000002 6588 00000002 419a"));
  }
  unload(f);

  int64_t end = 120;
  CHECK_EQ(pyrec_mp4w_finish(w, &end), 0);
  CHECK_EQ(st->fragments, 2);
  CHECK_EQ(st->track[0].samples, 3);
  CHECK_EQ(st->track[0].end_dts, 120);
  f = load(fd);
  CHECK(f->n > 0);
  const box *tfdt = find(f, "tfdt", 1), *trun = find(f, "trun", 1), *mfhd = find(f, "mfhd", 1);
  CHECK(tfdt && trun && mfhd);
  if (tfdt && trun && mfhd) {
    CHECK(hex_eq(f->data + mfhd->off, mfhd->size, "00000010 6d666864 00000000 00000002"));
    CHECK(hex_eq(f->data + tfdt->off, tfdt->size, "00000014 74666474 01000000" Z4 "00000050"));
    CHECK(hex_eq(f->data + trun->off + 16, 20, "00000070 00000028 00000006 01010000 00000000"));
  }
  const box *mdhd = find(f, "mdhd", 0), *mvhd = find(f, "mvhd", 0), *mehd = find(f, "mehd", 0);
  const box *tkhd = find(f, "tkhd", 0);
  CHECK(mdhd && mvhd && mehd && tkhd);
  if (mdhd && mvhd && mehd && tkhd) {
    CHECK_EQ(rd64(f->data + mdhd->off + 32), 120);
    CHECK_EQ(rd64(f->data + mvhd->off + 32), 120);
    CHECK_EQ(rd64(f->data + tkhd->off + 36), 120);
    CHECK_EQ(rd64(f->data + mehd->off + 12), 120);
  }
  CHECK(find(f, "edts", 0) == NULL);
  CHECK_EQ(pyrec_mp4w_write(w, 0, 200, 0, 1, KEY, 6), PYREC_E_STATE);
  CHECK_EQ(pyrec_mp4w_finish(w, NULL), PYREC_E_STATE);
  unload(f);
  pyrec_mp4w_free(w);
  close(fd);
}

/* ---- fragment policy ------------------------------------------------------------------ */

/* Waiting for a keyframe is bounded when the video stops: audio alone cuts at 2.5 parts. */
static void test_keyframe_wait_bounded_when_video_stalls(void) {
  int fd = tmpfd();
  pyrec_track_desc d[2] = {vdesc(1000), adesc()};
  pyrec_mp4w_opts o = {0};
  o.part_duration_ms = 1000;
  pyrec_mp4w *w;
  CHECK_EQ(pyrec_mp4w_open(&w, fd, d, 2, &o, NULL), 0);
  const pyrec_mp4w_stats *st = pyrec_mp4w_get_stats(w);
  static const uint8_t au[4] = {0x21, 0x10, 0x04, 0x60};
  int64_t a = 0;
  for (int i = 0; i <= 50; i++) { /* 2 s of video, keyframes every second */
    CHECK_EQ(vwrite(w, 0, i * 40, 0, i % 25 == 0), 0);
    for (; a * 1000 < (int64_t)i * 40 * 44100; a += 1024)
      CHECK_EQ(pyrec_mp4w_write(w, 1, a, 0, 0, au, sizeof au), 0);
  }
  uint64_t before = st->fragments;
  CHECK_EQ(before, 2); /* cut at 1 s (interval unknown yet) and at the keyframe at 2 s */
  /* the video stops; audio goes on: a fragment at 2.5 s of audio span, not before */
  int64_t start = a;
  while (st->fragments == before && a < 44100 * 10) {
    CHECK_EQ(pyrec_mp4w_write(w, 1, a, 0, 0, au, sizeof au), 0);
    a += 1024;
  }
  CHECK_EQ(st->fragments, before + 1);
  int64_t span = a - 1024 - start; /* the pending audio began a few frames before `start` */
  CHECK(span * 10 >= 24 * 44100 && span * 10 <= 25 * 44100);
  CHECK_EQ(pyrec_mp4w_finish(w, NULL), 0);
  pyrec_mp4w_free(w);
  close(fd);
}

/* Keyframes at most two parts apart: once their interval is known, every fragment starts on
 * one (cut at the keyframe after the part duration is reached, or at two parts). Table:
 * GOP length in frames (25 fps, part 1 s) -> first frame of each fragment. */
static void test_fragments_start_on_keyframes(void) {
  static const struct {
    int gop, frames;
    int starts[12]; /* first sample index of each fragment, -1 terminated */
  } rows[] = {
      {25, 100, {0, 25, 50, 75, -1}},       /* GOP = part: as before */
      {50, 200, {0, 25, 50, 100, 150, -1}}, /* 2 s GOP: the first cut precedes the known gap,
                                               the next keyframe realigns at once */
      {40, 160, {0, 25, 40, 80, 120, -1}},  /* 1.6 s GOP */
      {10, 60, {0, 30, -1}},                /* short GOPs: the first keyframe after 1 s */
      {75, 160, {0, 25, 50, 75, 100, 125, 150, -1}}, /* 3 s: too rare, cut at 1 s */
  };
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    int fd = tmpfd();
    pyrec_track_desc d = vdesc(1000);
    pyrec_mp4w_opts o = {0};
    o.part_duration_ms = 1000;
    o.finish = PYREC_FINISH_FRAGMENTED; /* the fragments stay visible as top-level boxes */
    pyrec_mp4w *w;
    CHECK_EQ(pyrec_mp4w_open(&w, fd, &d, 1, &o, NULL), 0);
    for (int i = 0; i < rows[r].frames; i++)
      CHECK_EQ(vwrite(w, 0, i * 40, 0, i % rows[r].gop == 0), 0);
    CHECK_EQ(pyrec_mp4w_finish(w, NULL), 0);
    file *f = load(fd);
    int k = 0;
    for (; rows[r].starts[k] >= 0; k++) {
      const box *tfdt = find(f, "tfdt", k);
      CHECK(tfdt != NULL);
      if (!tfdt)
        break;
      int first = (int)(rd64(f->data + tfdt->off + 12) / 40);
      if (first != rows[r].starts[k])
        fprintf(stderr, "gop %d: fragment %d starts at frame %d, expected %d\n", rows[r].gop, k,
                first, rows[r].starts[k]);
      CHECK_EQ(first, rows[r].starts[k]);
    }
    CHECK_EQ(count(f, "moof"), k);
    unload(f);
    pyrec_mp4w_free(w);
    close(fd);
  }
}

static void test_part_duration(void) {
  int fd = tmpfd();
  pyrec_track_desc d = vdesc(1000);
  pyrec_mp4w_opts o = {0};
  o.finish = PYREC_FINISH_FRAGMENTED;
  o.part_duration_ms = 1000;
  pyrec_mp4w *w;
  CHECK_EQ(pyrec_mp4w_open(&w, fd, &d, 1, &o, NULL), 0);
  const pyrec_mp4w_stats *st = pyrec_mp4w_get_stats(w);
  for (int i = 0; i < 130; i++) { /* 25 fps, keyframes 3 s apart: more than two parts */
    CHECK_EQ(vwrite(w, 0, i * 40, 0, i % 75 == 0), 0);
    /* a fragment appears when the held-back sample starts 1 s after the first pending one */
    CHECK_EQ(st->fragments, (uint64_t)(i / 25));
    CHECK_EQ(st->track[0].samples, (uint64_t)(i / 25 * 25));
  }
  CHECK_EQ(st->track[0].end_dts, 5000);
  CHECK_EQ(pyrec_mp4w_finish(w, NULL), 0);
  CHECK_EQ(st->track[0].samples, 130);
  CHECK_EQ(st->track[0].end_dts, 130 * 40); /* last duration repeats the previous one */
  CHECK_EQ(st->fragments, 6);
  CHECK_EQ(st->track[0].keyframes, 2);
  file *f = load(fd);
  CHECK(f->n > 0);
  CHECK_EQ(count(f, "moof"), 6);
  for (int k = 0; k < 6; k++) {
    const box *tfdt = find(f, "tfdt", k), *trun = find(f, "trun", k);
    CHECK(tfdt && trun);
    if (tfdt && trun) {
      CHECK_EQ(rd64(f->data + tfdt->off + 12), k * 1000);
      CHECK_EQ(pyrec_rd32(f->data + trun->off + 12), k < 5 ? 25 : 5);
    }
  }
  unload(f);
  pyrec_mp4w_free(w);

  /* byte limit: 100 bytes per fragment -> every ~16 samples */
  CHECK(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0);
  o.max_fragment_bytes = 100;
  CHECK_EQ(pyrec_mp4w_open(&w, fd, &d, 1, &o, NULL), 0);
  st = pyrec_mp4w_get_stats(w);
  for (int i = 0; i < 20; i++)
    CHECK_EQ(vwrite(w, 0, i, 0, 1), 0);
  CHECK_EQ(st->fragments, 1);
  CHECK_EQ(st->track[0].samples, 16);
  pyrec_mp4w_free(w);
  close(fd);
}

/* ---- two tracks: interleaving, durations patched, mfra -------------------------------- */

static void test_av_finish_mfra(void) {
  int fd = tmpfd();
  pyrec_track_desc d[2] = {vdesc(90000), adesc()};
  pyrec_mp4w *w;
  CHECK_EQ(pyrec_mp4w_open(&w, fd, d, 2, &FRAG, NULL), 0);
  CHECK_EQ(pyrec_mp4w_set_edit(w, 0, 6000), 0); /* presentation starts at video pts 6000 */
  int v = 0, a = 0;
  while (v < 90 || a < 130) { /* 3 s of 30 fps video and 1024-sample AAC, in time order */
    double tv = v * 3000 / 90000.0, ta = a * 1024 / 44100.0;
    if (v < 90 && (a >= 130 || tv <= ta)) {
      CHECK_EQ(vwrite(w, 0, v * 3000, 6000, v % 30 == 0), 0);
      v++;
    } else {
      CHECK_EQ(pyrec_mp4w_write(w, 1, a * 1024, 0, 0, AUD, sizeof AUD), 0);
      a++;
    }
  }
  CHECK_EQ(pyrec_mp4w_set_edit(w, 0, 0), PYREC_E_STATE);
  int64_t end[2] = {90 * 3000, -1};
  CHECK_EQ(pyrec_mp4w_finish(w, end), 0);
  const pyrec_mp4w_stats *st = pyrec_mp4w_get_stats(w);
  CHECK_EQ(st->track[0].samples, 90);
  CHECK_EQ(st->track[1].samples, 130);
  CHECK_EQ(st->track[0].end_dts, 270000);
  CHECK_EQ(st->track[1].end_dts, 130 * 1024);
  CHECK_EQ(st->track[1].keyframes, 130);
  CHECK_EQ(st->track[0].keyframes, 3);

  file *f = load(fd);
  CHECK(f->n > 0);
  CHECK_EQ(st->file_bytes, f->len);
  CHECK_EQ(count(f, "trak"), 2);
  CHECK_EQ(count(f, "trex"), 2);
  CHECK_EQ((uint64_t)count(f, "moof"), st->fragments);
  CHECK(find(f, "smhd", 0) != NULL);
  /* every fragment continues where the previous one ended, per track */
  uint64_t next[2] = {0, 0}, nsamp[2] = {0, 0};
  for (int k = 0; k < count(f, "traf"); k++) {
    const box *tfhd = find(f, "tfhd", k), *tfdt = find(f, "tfdt", k), *trun = find(f, "trun", k);
    unsigned id = pyrec_rd32(f->data + tfhd->off + 12);
    CHECK(id == 1 || id == 2);
    if (id != 1 && id != 2)
      break;
    CHECK_EQ(rd64(f->data + tfdt->off + 12), next[id - 1]);
    const uint8_t *p = f->data + trun->off;
    uint32_t n = pyrec_rd32(p + 12), step = id == 1 ? 16 : 12;
    for (uint32_t i = 0; i < n; i++)
      next[id - 1] += pyrec_rd32(p + 20 + i * step);
    nsamp[id - 1] += n;
  }
  CHECK_EQ(next[0], 270000);
  CHECK_EQ(next[1], 130 * 1024);
  CHECK_EQ(nsamp[0], 90);
  CHECK_EQ(nsamp[1], 130);

  /* durations: video 3 s, edit from 6000 -> 2933 ms; audio 133120/44100 s = 3018 ms */
  const box *mvhd = find(f, "mvhd", 0), *mehd = find(f, "mehd", 0), *elst = find(f, "elst", 0);
  const box *tk0 = find(f, "tkhd", 0), *tk1 = find(f, "tkhd", 1);
  const box *md0 = find(f, "mdhd", 0), *md1 = find(f, "mdhd", 1);
  CHECK(mvhd && mehd && elst && tk0 && tk1 && md0 && md1);
  if (mvhd && mehd && elst && tk0 && tk1 && md0 && md1) {
    CHECK_EQ(rd64(f->data + md0->off + 32), 270000);
    CHECK_EQ(rd64(f->data + md1->off + 32), 133120);
    CHECK_EQ(rd64(f->data + elst->off + 16), 2933);
    CHECK_EQ(rd64(f->data + elst->off + 24), 6000);
    CHECK_EQ(rd64(f->data + tk0->off + 36), 2933);
    CHECK_EQ(rd64(f->data + tk1->off + 36), 3018);
    CHECK_EQ(rd64(f->data + mvhd->off + 32), 3018);
    CHECK_EQ(rd64(f->data + mehd->off + 12), 3018);
  }

  /* mfra is last; mfro (last 16 bytes) gives its size; tfra entries point at moofs */
  const box *mfra = find(f, "mfra", 0), *mfro = find(f, "mfro", 0);
  CHECK(mfra && mfro);
  if (mfra && mfro) {
    CHECK_EQ(mfra->off + mfra->size, f->len);
    CHECK_EQ(mfro->off, f->len - 16);
    CHECK_EQ(pyrec_rd32(f->data + f->len - 4), mfra->size);
    CHECK_EQ(count(f, "tfra"), 2);
    for (int t = 0; t < 2; t++) {
      const uint8_t *p = f->data + find(f, "tfra", t)->off;
      CHECK_EQ(pyrec_rd32(p + 12), (uint32_t)t + 1);
      uint32_t n = pyrec_rd32(p + 20);
      CHECK_EQ(n, t == 0 ? 3 : st->fragments); /* video: fragments with a keyframe */
      for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = p + 24 + i * 28;
        uint64_t moof_off = rd64(e + 8);
        CHECK(moof_off < f->len && !memcmp(f->data + moof_off + 4, "moof", 4));
        if (t == 0)
          CHECK_EQ(rd64(e), i * 90000); /* keyframe every 30 frames, 1 s */
        CHECK(pyrec_rd32(e + 16) >= 1 && pyrec_rd32(e + 20) == 1 && pyrec_rd32(e + 24) >= 1);
      }
    }
  }
  unload(f);
  pyrec_mp4w_free(w);
  close(fd);
}

/* ---- index cap ------------------------------------------------------------------------ */

static void test_index_cap(void) {
  int fd = tmpfd();
  pyrec_track_desc d = vdesc(1000);
  pyrec_mp4w_opts o = {0};
  o.finish = PYREC_FINISH_FRAGMENTED;
  o.max_index_entries = 4;
  pyrec_mp4w *w;
  CHECK_EQ(pyrec_mp4w_open(&w, fd, &d, 1, &o, NULL), 0);
  for (int i = 0; i < 11; i++) { /* 11 fragments of one keyframe + 1 s each */
    CHECK_EQ(vwrite(w, 0, i * 1000, 0, 1), 0);
    CHECK_EQ(vwrite(w, 0, i * 1000 + 500, 0, 0), 0);
    CHECK_EQ(pyrec_mp4w_flush(w), 0);
  }
  CHECK_EQ(pyrec_mp4w_finish(w, NULL), 0);
  file *f = load(fd);
  const box *tfra = find(f, "tfra", 0);
  CHECK(tfra != NULL);
  if (tfra) {
    const uint8_t *p = f->data + tfra->off;
    uint32_t n = pyrec_rd32(p + 20);
    /* candidates 0..10; after thinning twice the stride is 4: 0, 4, 8 s */
    CHECK_EQ(n, 3);
    for (uint32_t i = 0; i < n && i < 3; i++)
      CHECK_EQ(rd64(p + 24 + i * 28), i * 4000);
  }
  unload(f);
  pyrec_mp4w_free(w);
  close(fd);
}

/* ---- bad input does not corrupt the writer ------------------------------------------- */

static void test_invalid_input(void) {
  int fd = tmpfd();
  pyrec_track_desc d[2] = {vdesc(1000), adesc()};
  pyrec_mp4w *w;
  CHECK_EQ(pyrec_mp4w_open(&w, fd, d, 2, &FRAG, NULL), 0);
  CHECK_EQ(vwrite(w, 0, 100, 0, 1), 0);
  CHECK_EQ(vwrite(w, 0, 50, 0, 0), PYREC_E_INVAL);
  CHECK(strstr(pyrec_mp4w_error(w)->msg, "track 0") && strstr(pyrec_mp4w_error(w)->msg, "50"));
  CHECK_EQ(vwrite(w, 0, 100, 0, 0), PYREC_E_INVAL);
  CHECK_EQ(vwrite(w, 1, -1, 0, 0), PYREC_E_INVAL);
  CHECK_EQ(vwrite(w, 2, 0, 0, 0), PYREC_E_NOTRACK);
  CHECK_EQ(pyrec_mp4w_set_edit(w, 5, 0), PYREC_E_NOTRACK);
  CHECK_EQ(pyrec_mp4w_write(w, 0, 300, 0, 0, KEY, 0), PYREC_E_MALFORMED);
  CHECK_EQ(vwrite(w, 0, 140, 0, 0), 0);
  CHECK_EQ(vwrite(w, 0, 180, 0, 0), 0);
  CHECK_EQ(pyrec_mp4w_finish(w, NULL), 0);
  const pyrec_mp4w_stats *st = pyrec_mp4w_get_stats(w);
  CHECK_EQ(st->track[0].samples, 3);
  CHECK_EQ(st->track[0].bytes, 18);
  CHECK_EQ(st->track[0].first_dts, 100);
  CHECK_EQ(st->track[0].end_dts, 220);
  CHECK_EQ(st->track[1].samples, 0);
  file *f = load(fd);
  CHECK(f->n > 0);
  const box *mdat = find(f, "mdat", 0), *md = find(f, "mdhd", 0);
  CHECK(mdat && mdat->size == 8 + 18);
  CHECK(md && rd64(f->data + md->off + 32) == 120);
  unload(f);
  pyrec_mp4w_free(w);

  pyrec_errinfo err;
  pyrec_track_desc bad = vdesc(0);
  CHECK_EQ(pyrec_mp4w_open(&w, fd, &bad, 1, NULL, &err), PYREC_E_INVAL);
  CHECK(w == NULL);
  bad = vdesc(1000);
  bad.codec = 99;
  CHECK(pyrec_mp4w_open(&w, fd, &bad, 1, NULL, &err) != 0);
  CHECK(err.msg[0] != 0);
  close(fd);
}

/* ---- a track without configuration is left out ----------------------------------------- */

static void test_skipped_track(void) {
  int fd = tmpfd();
  pyrec_track_desc d[2] = {vdesc(90000), adesc()};
  d[0].config = NULL;
  d[0].config_len = 0;
  pyrec_mp4w *w;
  CHECK_EQ(pyrec_mp4w_open(&w, fd, d, 2, &FRAG, NULL), 0);
  for (int i = 0; i < 50; i++)
    CHECK_EQ(pyrec_mp4w_write(w, 1, i * 1024, 0, 0, AUD, sizeof AUD), 0);
  const pyrec_mp4w_stats *st = pyrec_mp4w_get_stats(w);
  CHECK_EQ(st->fragments, 1);
  CHECK_EQ(st->track[0].skipped, 1);
  CHECK_EQ(st->track[1].skipped, 0);
  CHECK_EQ(vwrite(w, 0, 0, 0, 1), 0); /* dropped */
  CHECK_EQ(pyrec_mp4w_finish(w, NULL), 0);
  CHECK_EQ(st->track[0].samples, 0);
  CHECK_EQ(st->track[1].samples, 50);
  file *f = load(fd);
  CHECK(f->n > 0);
  CHECK_EQ(count(f, "trak"), 1);
  CHECK_EQ(count(f, "tfra"), 1);
  const box *tkhd = find(f, "tkhd", 0), *mvhd = find(f, "mvhd", 0);
  CHECK(tkhd && pyrec_rd32(f->data + tkhd->off + 28) == 2);
  CHECK(mvhd && pyrec_rd32(f->data + mvhd->off + 116) == 3); /* next_track_ID */
  unload(f);
  pyrec_mp4w_free(w);
  close(fd);
}

/* ---- I/O errors are sticky and leave a valid file ------------------------------------ */

static void test_io_errors(void) {
  pyrec_track_desc d = vdesc(1000);
  pyrec_mp4w *w;
  /* a full disk from the start */
  int full = open("/dev/full", O_WRONLY);
  CHECK(full >= 0);
  CHECK_EQ(pyrec_mp4w_open(&w, full, &d, 1, NULL, NULL), 0);
  CHECK_EQ(vwrite(w, 0, 0, 0, 1), 0);
  CHECK_EQ(vwrite(w, 0, 40, 0, 0), 0);
  CHECK_EQ(pyrec_mp4w_flush(w), PYREC_E_IO);
  CHECK_EQ(pyrec_mp4w_error(w)->sys_errno, ENOSPC);
  CHECK(strstr(pyrec_mp4w_error(w)->msg, "No space") != NULL);
  CHECK_EQ(vwrite(w, 0, 80, 0, 0), PYREC_E_IO);
  CHECK_EQ(pyrec_mp4w_finish(w, NULL), PYREC_E_IO);
  pyrec_mp4w_free(w);

  /* the disk fills up after two fragments: what was written stays a valid file */
  int fd = tmpfd();
  int keep = dup(fd);
  CHECK_EQ(pyrec_mp4w_open(&w, fd, &d, 1, NULL, NULL), 0);
  for (int i = 0; i < 60; i++)
    CHECK_EQ(vwrite(w, 0, i * 40, 0, i % 25 == 0), 0);
  const pyrec_mp4w_stats *st = pyrec_mp4w_get_stats(w);
  CHECK_EQ(st->fragments, 2);
  uint64_t good = st->file_bytes;
  CHECK(dup2(full, fd) == fd); /* the writer's fd now points at /dev/full */
  int rc = 0;
  for (int i = 60; i < 100 && rc == 0; i++)
    rc = vwrite(w, 0, i * 40, 0, i % 25 == 0);
  CHECK_EQ(rc, PYREC_E_IO);
  CHECK_EQ(pyrec_mp4w_error(w)->sys_errno, ENOSPC);
  CHECK_EQ(st->file_bytes, good);
  CHECK_EQ(st->fragments, 2);
  CHECK_EQ(st->track[0].samples, 50);
  CHECK_EQ(pyrec_mp4w_flush(w), PYREC_E_IO);
  pyrec_mp4w_free(w);
  file *f = load(keep);
  CHECK(f->n > 0);
  CHECK_EQ(f->len, good);
  CHECK_EQ(count(f, "moof"), 2);
  CHECK_EQ(count(f, "mdat"), 2);
  unload(f);
  close(keep);
  close(fd);
  close(full);

  /* a short write (file size limit hit inside a fragment): the partial fragment is cut off */
  fd = tmpfd();
  CHECK_EQ(pyrec_mp4w_open(&w, fd, &d, 1, NULL, NULL), 0);
  for (int i = 0; i < 30; i++)
    CHECK_EQ(vwrite(w, 0, i * 40, 0, i % 25 == 0), 0);
  st = pyrec_mp4w_get_stats(w);
  good = st->file_bytes;
  CHECK_EQ(st->fragments, 1);
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = good + 50; /* the next fragment is ~500 bytes */
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  CHECK_EQ(pyrec_mp4w_flush(w), PYREC_E_IO);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, prev);
  CHECK_EQ(pyrec_mp4w_error(w)->sys_errno, EFBIG);
  CHECK_EQ(st->file_bytes, good);
  f = load(fd);
  CHECK(f->n > 0);
  CHECK_EQ(f->len, good);
  CHECK_EQ(count(f, "moof"), 1);
  unload(f);
  pyrec_mp4w_free(w);
  close(fd);

  /* a closed descriptor */
  fd = tmpfd();
  CHECK_EQ(pyrec_mp4w_open(&w, fd, &d, 1, NULL, NULL), 0);
  close(fd);
  CHECK_EQ(vwrite(w, 0, 0, 0, 1), 0);
  CHECK_EQ(pyrec_mp4w_finish(w, NULL), PYREC_E_IO);
  CHECK_EQ(pyrec_mp4w_error(w)->sys_errno, EBADF);
  CHECK_EQ(pyrec_mp4w_error(w)->code, PYREC_E_IO);
  pyrec_mp4w_free(w);
}

/* ---- hybrid finish: progressive sample tables ---------------------------------------- */

static int tables_eq(void (*put)(pyrec_buf *), const char *hex) {
  pyrec_buf b;
  pyrec_buf_init(&b);
  put(&b);
  int ok = !b.oom && hex_eq(b.data, b.len, hex);
  pyrec_buf_free(&b);
  return ok;
}

static const uint32_t T_DUR[] = {40, 40, 40, 20};
static const int32_t T_CTO[] = {40, -20, 0, 0};
static const uint8_t T_KEY[] = {1, 0, 0, 1};
static const uint32_t T_SIZE_SAME[] = {6, 6, 6, 6};
static const uint32_t T_SIZE_DIFF[] = {6, 7};
static const uint32_t T_CHUNKS[] = {2, 2, 1};
static const uint64_t T_OFF32[] = {100, 200};
static const uint64_t T_OFF64[] = {100, (uint64_t)5 << 30};
static const uint64_t T_OFF_EDGE[] = {UINT32_MAX};

static void put_stts(pyrec_buf *b) { pyrec_fmp4_stts(b, T_DUR, 4); }
static void put_ctts(pyrec_buf *b) { pyrec_fmp4_ctts(b, T_CTO, 4, 20); }
static void put_stss(pyrec_buf *b) { pyrec_fmp4_stss(b, T_KEY, 4); }
static void put_stsz_same(pyrec_buf *b) { pyrec_fmp4_stsz(b, T_SIZE_SAME, 4); }
static void put_stsz_diff(pyrec_buf *b) { pyrec_fmp4_stsz(b, T_SIZE_DIFF, 2); }
static void put_stsz_empty(pyrec_buf *b) { pyrec_fmp4_stsz(b, T_SIZE_DIFF, 0); }
static void put_stsc(pyrec_buf *b) { pyrec_fmp4_stsc(b, T_CHUNKS, 3); }
static void put_stco(pyrec_buf *b) { pyrec_fmp4_stco(b, T_OFF32, 2); }
static void put_co64(pyrec_buf *b) { pyrec_fmp4_stco(b, T_OFF64, 2); }
static void put_stco_edge(pyrec_buf *b) { pyrec_fmp4_stco(b, T_OFF_EDGE, 1); }

/* Golden bytes of every sample-table box for a tiny case, and the stco -> co64 switch at
 * offsets past 4 GiB (no 4 GiB file needed: the builder takes the offsets). */
static void test_stbl_golden(void) {
  static const struct {
    const char *name;
    void (*put)(pyrec_buf *);
    const char *hex;
  } rows[] = {
      {"stts: 3 x 40 then 20", put_stts,
       "00000020 73747473 00000000 00000002 00000003 00000028 00000001 00000014"},
      {"ctts: shifted by 20, runs", put_ctts,
       "00000028 63747473 00000000 00000003 00000001 0000003c 00000001 00000000 "
       "00000002 00000014"},
      {"stss: samples 1 and 4", put_stss, "00000018 73747373 00000000 00000002 00000001 00000004"},
      {"stsz: one size for all", put_stsz_same, "00000014 7374737a 00000000 00000006 00000004"},
      {"stsz: a table", put_stsz_diff,
       "0000001c 7374737a 00000000 00000000 00000002 00000006 00000007"},
      {"stsz: no samples", put_stsz_empty, "00000014 7374737a 00000000 00000000 00000000"},
      {"stsc: 2, 2, 1 per chunk", put_stsc,
       "00000028 73747363 00000000 00000002 00000001 00000002 00000001 00000003 00000001 "
       "00000001"},
      {"stco: 32-bit offsets", put_stco, "00000018 7374636f 00000000 00000002 00000064 000000c8"},
      {"co64: an offset past 4 GiB", put_co64,
       "00000020 636f3634 00000000 00000002 00000000 00000064 00000001 40000000"},
      {"stco: 4 GiB - 1 still fits", put_stco_edge, "00000014 7374636f 00000000 00000001 ffffffff"},
  };
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    int ok = tables_eq(rows[i].put, rows[i].hex);
    if (!ok)
      fprintf(stderr, "  row: %s\n", rows[i].name);
    CHECK(ok);
  }
  uint8_t h[16];
  CHECK_EQ(pyrec_mp4_region_header(h, 0x1000), 8);
  CHECK(hex_eq(h, 8, "00001000 6d646174"));
  CHECK_EQ(pyrec_mp4_region_header(h, UINT32_MAX), 8);
  CHECK(hex_eq(h, 8, "ffffffff 6d646174"));
  CHECK_EQ(pyrec_mp4_region_header(h, (uint64_t)UINT32_MAX + 1), 16);
  CHECK(hex_eq(h, 16, "00000001 6d646174 00000001 00000000"));
}

/* The initial moov of a one-video-track writer (edit at `media_time`, < 0 = none). */
static size_t init_moov(uint8_t *out, size_t cap, int64_t media_time) {
  int fd = tmpfd();
  pyrec_track_desc d = vdesc(1000);
  pyrec_mp4w *w;
  size_t n = 0;
  if (pyrec_mp4w_open(&w, fd, &d, 1, &FRAG, NULL) == 0) {
    pyrec_mp4w_set_edit(w, 0, media_time);
    vwrite(w, 0, 0, 0, 1);
    vwrite(w, 0, 40, 0, 0);
    pyrec_mp4w_flush(w);
    file *f = load(fd);
    const box *moov = find(f, "moov", 0);
    if (moov && moov->size <= cap) {
      memcpy(out, f->data + moov->off, moov->size);
      n = moov->size;
    }
    unload(f);
    pyrec_mp4w_free(w);
  }
  close(fd);
  return n;
}

/* Find a box by type anywhere in a buffer holding one moov (walks the containers). */
static const uint8_t *moov_find(const uint8_t *m, size_t len, const char *type, size_t *size) {
  file f = {0};
  f.data = (uint8_t *)m;
  f.len = len;
  static file fs; /* too big for the stack */
  fs = f;
  if (walk(&fs, 0, len, 0))
    return NULL;
  const box *b = find(&fs, type, 0);
  if (!b)
    return NULL;
  *size = b->size;
  return m + b->off;
}

/* Table: how the initial edit, the first decode time and negative composition offsets map to
 * the progressive moov's edit list (movie timescale = track timescale = 1000 here). */
static void test_progressive_edits(void) {
  static uint8_t moov[4096];
  static const struct {
    const char *name;
    int64_t media_time; /* initial edit, -1 = none */
    int64_t first_dts;
    int32_t cto0, cto1;
    /* expected: number of elst entries (0 = no edts), empty duration, media time, duration */
    int entries;
    uint64_t empty, mt, dur;
    uint32_t ctts0; /* first ctts offset written, 0 = no ctts */
  } rows[] = {
      {"no edit, starts at 0", -1, 0, 0, 0, 0, 0, 0, 0, 0},
      /* the media edit runs to the end of the last presented sample (107 here) */
      {"edit 67 (B-frames), starts at 0", 67, 0, 67, 0, 1, 0, 67, 107 - 67, 67},
      {"no edit, starts at 46 (audio after video)", -1, 46, 0, 0, 2, 46, 0, 80, 0},
      {"edit 67, starts at 46", 67, 46, 0, 0, 1, 0, 21, 80 + 46 - 67, 0},
      {"edit 20, starts at 46: empty edit first", 20, 46, 0, 0, 2, 26, 0, 80, 0},
      {"negative offsets shift ctts and the edit", -1, 0, 0, -30, 1, 0, 30, 50, 30},
      {"edit 0 kept", 0, 0, 0, 0, 1, 0, 0, 80, 0},
      /* a later file of a continuous split: no edit, starts at 2000 with B-frames; the
       * media edit starts at the earliest composition time (40: sample 2), not before */
      {"no edit, starts at 2000, first cto 67", -1, 2000, 67, 0, 2, 2040, 40, 67, 67},
  };
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    size_t mlen = init_moov(moov, sizeof moov, rows[i].media_time);
    CHECK(mlen > 0);
    uint32_t size[2] = {6, 6}, dur[2] = {40, 40}, cn[1] = {2};
    int32_t cto[2] = {rows[i].cto0, rows[i].cto1};
    uint8_t key[2] = {1, 0};
    uint64_t off[1] = {1000};
    pyrec_mp4_table t = {1, rows[i].first_dts, 2, size, dur, cto, key, 1, off, cn};
    pyrec_buf b;
    pyrec_buf_init(&b);
    pyrec_errinfo err;
    int rc = pyrec_mp4_progressive_moov(&b, moov, mlen, &t, 1, &err);
    CHECK_EQ(rc, 0);
    int before = t_fail;
    size_t n;
    const uint8_t *elst = moov_find(b.data, b.len, "elst", &n);
    CHECK(moov_find(b.data, b.len, "mvex", &n) == NULL);
    CHECK(moov_find(b.data, b.len, "stss", &n) != NULL); /* sample 2 is not sync */
    if (rows[i].entries == 0) {
      CHECK(elst == NULL);
    } else if (elst) {
      CHECK_EQ(pyrec_rd32(elst + 12), (uint32_t)rows[i].entries);
      const uint8_t *e = elst + 16;
      if (rows[i].entries == 2) {
        CHECK_EQ(rd64(e), rows[i].empty);
        CHECK_EQ((int64_t)rd64(e + 8), -1);
        e += 20;
      }
      CHECK_EQ(rd64(e), rows[i].dur);
      CHECK_EQ(rd64(e + 8), rows[i].mt);
    } else {
      CHECK(elst != NULL);
    }
    const uint8_t *ctts = moov_find(b.data, b.len, "ctts", &n);
    if (rows[i].ctts0 == 0 && rows[i].cto0 == 0 && rows[i].cto1 == 0)
      CHECK(ctts == NULL);
    if (ctts)
      CHECK_EQ(pyrec_rd32(ctts + 20), rows[i].ctts0);
    const uint8_t *mdhd = moov_find(b.data, b.len, "mdhd", &n);
    CHECK(mdhd && rd64(mdhd + 32) == 80);
    if (t_fail != before)
      fprintf(stderr, "  row: %s\n", rows[i].name);
    pyrec_buf_free(&b);
  }
}

/* Offsets past 4 GiB make co64; bad inputs are refused without reading past them. */
static void test_progressive_co64_and_errors(void) {
  static uint8_t moov[4096];
  size_t mlen = init_moov(moov, sizeof moov, -1);
  CHECK(mlen > 0);
  uint32_t size[3] = {6, 6, 6}, dur[3] = {40, 40, 40}, cn[2] = {2, 1};
  int32_t cto[3] = {0, 0, 0};
  uint8_t key[3] = {1, 1, 1};
  uint64_t off[2] = {(uint64_t)3 << 30, (uint64_t)6 << 30};
  pyrec_mp4_table t = {1, 0, 3, size, dur, cto, key, 2, off, cn};
  pyrec_buf b;
  pyrec_buf_init(&b);
  pyrec_errinfo err;
  CHECK_EQ(pyrec_mp4_progressive_moov(&b, moov, mlen, &t, 1, &err), 0);
  size_t n;
  const uint8_t *co = moov_find(b.data, b.len, "co64", &n);
  CHECK(co && n == 32 && rd64(co + 16) == (uint64_t)3 << 30 && rd64(co + 24) == (uint64_t)6 << 30);
  CHECK(moov_find(b.data, b.len, "stco", &n) == NULL);
  CHECK(moov_find(b.data, b.len, "stss", &n) == NULL); /* all sync */
  const uint8_t *stsc = moov_find(b.data, b.len, "stsc", &n);
  CHECK(stsc && hex_eq(stsc, n, "00000028 73747363 00000000 00000002 00000001 00000002 00000001 "
                                "00000002 00000001 00000001"));
  pyrec_buf_reset(&b);

  /* chunks that do not add up, a table for a track the moov lacks, twice the same track */
  cn[1] = 2;
  CHECK_EQ(pyrec_mp4_progressive_moov(&b, moov, mlen, &t, 1, &err), PYREC_E_INVAL);
  cn[1] = 1;
  pyrec_mp4_table two[2] = {t, t};
  CHECK_EQ(pyrec_mp4_progressive_moov(&b, moov, mlen, two, 2, &err), PYREC_E_INVAL);
  t.track_id = 7;
  CHECK_EQ(pyrec_mp4_progressive_moov(&b, moov, mlen, &t, 1, &err), PYREC_E_INVAL);
  t.track_id = 1;
  /* every truncation of the moov is refused or (cut at a box boundary) a smaller moov;
   * never a read past the input (the sanitizer build checks) */
  uint8_t *cut = malloc(mlen);
  for (size_t k = 0; k < mlen; k += (k < 64 ? 1 : 7)) {
    memcpy(cut, moov, k);
    if (k >= 4) { /* keep the outer size consistent so the inner boxes are what fails */
      cut[0] = (uint8_t)(k >> 24);
      cut[1] = (uint8_t)(k >> 16);
      cut[2] = (uint8_t)(k >> 8);
      cut[3] = (uint8_t)k;
    }
    pyrec_buf_reset(&b);
    int rc = pyrec_mp4_progressive_moov(&b, cut, k, &t, 1, &err);
    CHECK(rc == PYREC_E_MALFORMED || rc == PYREC_E_INVAL || (rc == 0 && b.len > 8));
    if (k < 16 || k == mlen - 1)
      CHECK(rc != 0);
  }
  free(cut);
  /* random byte changes (a fixed sequence): refused or rebuilt, never out of bounds */
  uint8_t *mut = malloc(mlen);
  uint32_t seed = 12345;
  for (int round = 0; round < 3000; round++) {
    memcpy(mut, moov, mlen);
    for (int k = 0; k < 1 + round % 4; k++) {
      seed = seed * 1103515245u + 12345u;
      size_t at = (seed >> 8) % mlen;
      seed = seed * 1103515245u + 12345u;
      mut[at] = (uint8_t)(round % 3 == 0 ? 0xff : round % 3 == 1 ? 0 : seed >> 16);
    }
    pyrec_buf_reset(&b);
    int rc = pyrec_mp4_progressive_moov(&b, mut, mlen, &t, 1, &err);
    CHECK(rc == 0 || rc == PYREC_E_MALFORMED || rc == PYREC_E_INVAL);
  }
  free(mut);
  memcpy(moov + 8, "\0\0\0\x7fmvhd", 8); /* mvhd size 127: runs into the trak */
  pyrec_buf_reset(&b);
  CHECK_EQ(pyrec_mp4_progressive_moov(&b, moov, mlen, &t, 1, &err), PYREC_E_MALFORMED);
  pyrec_buf_free(&b);
}

/* A hybrid finish of an A/V file: ftyp, one mdat from the reserved box to the moov, the moov
 * (no mvex) with every sample; the mdat holds exactly the fragmented finish's file without
 * its mfra (the reserved box written as free), so a reader of either sees the same samples. */
static void test_hybrid_finish(void) {
  int fds[2] = {tmpfd(), tmpfd()};
  pyrec_track_desc d[2] = {vdesc(90000), adesc()};
  pyrec_mp4w *ws[2];
  pyrec_mp4w_opts o[2] = {{0}, {.finish = PYREC_FINISH_FRAGMENTED}};
  for (int k = 0; k < 2; k++) {
    CHECK_EQ(pyrec_mp4w_open(&ws[k], fds[k], d, 2, &o[k], NULL), 0);
    CHECK_EQ(pyrec_mp4w_set_edit(ws[k], 0, 6000), 0);
    int v = 0, a = 0;
    while (v < 90 || a < 130) {
      double tv = v * 3000 / 90000.0, ta = a * 1024 / 44100.0;
      if (v < 90 && (a >= 130 || tv <= ta)) {
        CHECK_EQ(vwrite(ws[k], 0, v * 3000, v % 3 == 1 ? 12000 : 6000, v % 30 == 0), 0);
        v++;
      } else {
        CHECK_EQ(pyrec_mp4w_write(ws[k], 1, 2048 + a * 1024, 0, 0, AUD, sizeof AUD), 0);
        a++;
      }
    }
    int64_t end[2] = {90 * 3000, -1};
    CHECK_EQ(pyrec_mp4w_finish(ws[k], end), 0);
  }
  CHECK_EQ(pyrec_mp4w_get_stats(ws[0])->hybrid, 1);
  CHECK_EQ(pyrec_mp4w_get_stats(ws[1])->hybrid, 0);
  file *h = load(fds[0]), *fr = load(fds[1]);
  CHECK(h->n > 0 && fr->n > 0);
  CHECK_EQ(pyrec_mp4w_get_stats(ws[0])->file_bytes, h->len);
  const box *ftyp = find(h, "ftyp", 0), *mdat = find(h, "mdat", 0), *moov = find(h, "moov", 0);
  CHECK(ftyp && mdat && moov);
  if (ftyp && mdat && moov) {
    int top = 0;
    for (int i = 0; i < h->n; i++)
      top += h->b[i].depth == 0;
    CHECK_EQ(top, 3);
    CHECK_EQ(mdat->off, ftyp->size);
    CHECK_EQ(moov->off, mdat->off + mdat->size);
    CHECK_EQ(moov->off + moov->size, h->len);
    CHECK(find(h, "mvex", 0) == NULL && find(h, "mfra", 0) == NULL);
    /* the mdat is the fragmented file (before its mfra) with the free box turned header */
    const box *mfra = find(fr, "mfra", 0);
    CHECK(mfra && mfra->off == moov->off);
    if (mfra && mfra->off == moov->off) {
      CHECK(hex_eq(fr->data + ftyp->size, 8, "00000008 66726565"));
      CHECK_MEM(h->data, fr->data, ftyp->size);
      CHECK_MEM(h->data + ftyp->size + 8, fr->data + ftyp->size + 8, moov->off - ftyp->size - 8);
    }
    /* every sample: stco + stsc + stsz point at the fragments' sample bytes */
    for (int t = 0; t < 2; t++) {
      const box *stco = find(h, "stco", t), *stsz = find(h, "stsz", t), *stsc = find(h, "stsc", t);
      const box *stts = find(h, "stts", t);
      CHECK(stco && stsz && stsc && stts);
      if (!(stco && stsz && stsc && stts))
        break;
      const uint8_t *c = h->data + stco->off, *z = h->data + stsz->off, *sc = h->data + stsc->off;
      uint32_t nchunks = pyrec_rd32(c + 12), nsamp = pyrec_rd32(z + 16);
      CHECK_EQ(nsamp, t == 0 ? 90 : 130);
      CHECK_EQ(nchunks, pyrec_mp4w_get_stats(ws[0])->fragments);
      uint32_t nsc = pyrec_rd32(sc + 12), k = 0;
      for (uint32_t ch = 1; ch <= nchunks; ch++) {
        uint32_t per = 0;
        for (uint32_t e = 0; e < nsc; e++)
          if (pyrec_rd32(sc + 16 + e * 12) <= ch)
            per = pyrec_rd32(sc + 20 + e * 12);
        uint64_t pos = pyrec_rd32(c + 12 + ch * 4);
        for (uint32_t s = 0; s < per; s++, k++) {
          uint32_t sz = pyrec_rd32(z + 12) ? pyrec_rd32(z + 12) : pyrec_rd32(z + 20 + k * 4);
          if (t == 0)
            CHECK(pos + 6 <= h->len &&
                  !memcmp(h->data + pos + 4, k % 30 == 0 ? "\x65\x88" : "\x41\x9a", 2));
          else
            CHECK(pos + sz <= h->len && sz == sizeof AUD && !memcmp(h->data + pos, AUD, sz));
          pos += sz;
        }
      }
      CHECK_EQ(k, nsamp);
    }
    CHECK(hex_eq(h->data + find(h, "stss", 0)->off, 28,
                 "0000001c 73747373 00000000 00000003 00000001 0000001f 0000003d"));
    /* durations: video 90 x 3000, edit from 6000 to the last frame's end; audio starts at 2048 of
     * 44100 Hz (an empty edit) and lasts 130 frames; movie = the longest, in the least
     * common multiple of 90000 and 44100 (4410000), so every edit is exact */
    const box *mvhd = find(h, "mvhd", 0), *md0 = find(h, "mdhd", 0), *md1 = find(h, "mdhd", 1);
    const box *el0 = find(h, "elst", 0), *el1 = find(h, "elst", 1);
    CHECK(mvhd && md0 && md1 && el0 && el1);
    if (mvhd && md0 && md1 && el0 && el1) {
      CHECK_EQ(rd64(h->data + md0->off + 32), 270000);
      CHECK_EQ(rd64(h->data + md1->off + 32), 133120);
      CHECK_EQ(pyrec_rd32(h->data + el0->off + 12), 1);
      CHECK_EQ(pyrec_rd32(h->data + mvhd->off + 28), 4410000);
      /* to the end of the last presented frame: pts 88 * 3000 + 12000, + 3000 */
      CHECK_EQ(rd64(h->data + el0->off + 16), (279000 - 6000) * 49);
      CHECK_EQ(rd64(h->data + el0->off + 24), 6000);
      /* audio (no edit) presents from its first dts, 2048/44100 s: an empty edit of that,
       * then its 130 frames from media time 0 */
      CHECK_EQ(pyrec_rd32(h->data + el1->off + 12), 2);
      CHECK_EQ(rd64(h->data + el1->off + 16), 2048 * 100);
      CHECK_EQ((int64_t)rd64(h->data + el1->off + 24), -1);
      CHECK_EQ(rd64(h->data + el1->off + 36), 133120 * 100);
      CHECK_EQ(rd64(h->data + el1->off + 44), 0);
      CHECK_EQ(rd64(h->data + mvhd->off + 32), (2048 + 133120) * 100);
    }
  }
  unload(h);
  unload(fr);
  for (int k = 0; k < 2; k++) {
    pyrec_mp4w_free(ws[k]);
    close(fds[k]);
  }
}

int main(void) {
  RUN(test_golden_boxes);
  RUN(test_init_and_fragment);
  RUN(test_part_duration);
  RUN(test_fragments_start_on_keyframes);
  RUN(test_keyframe_wait_bounded_when_video_stalls);
  RUN(test_av_finish_mfra);
  RUN(test_index_cap);
  RUN(test_invalid_input);
  RUN(test_skipped_track);
  RUN(test_io_errors);
  RUN(test_stbl_golden);
  RUN(test_progressive_edits);
  RUN(test_progressive_co64_and_errors);
  RUN(test_hybrid_finish);
  return T_DONE();
}
