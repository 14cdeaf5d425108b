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

static void test_part_duration(void) {
  int fd = tmpfd();
  pyrec_track_desc d = vdesc(1000);
  pyrec_mp4w_opts o = {0};
  o.finish = PYREC_FINISH_FRAGMENTED;
  o.part_duration_ms = 1000;
  pyrec_mp4w *w;
  CHECK_EQ(pyrec_mp4w_open(&w, fd, &d, 1, &o, NULL), 0);
  const pyrec_mp4w_stats *st = pyrec_mp4w_get_stats(w);
  for (int i = 0; i < 130; i++) { /* 25 fps */
    CHECK_EQ(vwrite(w, 0, i * 40, 0, i % 50 == 0), 0);
    /* a fragment appears when the held-back sample starts 1 s after the first pending one */
    CHECK_EQ(st->fragments, (uint64_t)(i / 25));
    CHECK_EQ(st->track[0].samples, (uint64_t)(i / 25 * 25));
  }
  CHECK_EQ(st->track[0].end_dts, 5000);
  CHECK_EQ(pyrec_mp4w_finish(w, NULL), 0);
  CHECK_EQ(st->track[0].samples, 130);
  CHECK_EQ(st->track[0].end_dts, 130 * 40); /* last duration repeats the previous one */
  CHECK_EQ(st->fragments, 6);
  CHECK_EQ(st->track[0].keyframes, 3);
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

int main(void) {
  RUN(test_golden_boxes);
  RUN(test_init_and_fragment);
  RUN(test_part_duration);
  RUN(test_av_finish_mfra);
  RUN(test_index_cap);
  RUN(test_invalid_input);
  RUN(test_skipped_track);
  RUN(test_io_errors);
  return T_DONE();
}
