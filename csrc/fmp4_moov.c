/* Progressive moov for a finished fragmented file (ISO/IEC 14496-12:2015; clause numbers in
 * each function). The writer's hybrid finish and crash repair (through the Python binding)
 * both build it here from the same two inputs: the initial moov as it is in the file and the
 * sample tables the fragments hold.
 *
 * The initial moov is copied box by box, except:
 *   - mvex is dropped (the file is no longer fragmented for a reader of this moov);
 *   - mvhd, tkhd and mdhd get their true durations; the movie timescale becomes the least
 *     common multiple of the track timescales when it fits 32 bits (else it is kept), so
 *     that empty edits, which delay a track's start, are exact and tracks stay aligned to
 *     the sample, as the fragments' decode times have them;
 *   - each trak's edts is rewritten: in the fragments a sample's presentation time is
 *     dts + cto - media_time (media_time from the initial edit list, 0 without one), where
 *     dts starts at the first tfdt F. In the sample table the first dts is 0, and composition
 *     offsets are written non-negative (ctts version 0, the form every reader knows) by
 *     adding shift = -min(cto) when some are negative. So presentation time 0 is media time
 *     E = media_time + shift - F of the new media timeline. The media edit starts at
 *     max(E, C0), C0 being the earliest composition time of the track's samples, and an
 *     empty edit fills the presentation before it (a track starting after the movie
 *     start). Starting the edit on the first presented sample, not before it, keeps readers
 *     that align the first frame with the start of the edit (FFmpeg) on the same times as
 *     those that follow the letter of the edit list (GStreamer). The media edit ends with
 *     the last presented sample. Without an initial edit and with E = 0 no edts is written;
 *   - each stbl keeps its stsd (and any box it does not rebuild) and gets stts, ctts (when
 *     some offset is not 0), stss (when some sample is not sync), stsc, stsz and stco, or
 *     co64 when a chunk offset passes 4 GiB.
 * Every length read from the input moov is checked against its parent before use. */
#include "fmp4_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_TRAKS 64

static uint64_t rd64(const uint8_t *p) {
  return ((uint64_t)pyrec_rd32(p) << 32) | pyrec_rd32(p + 4);
}

static uint64_t rescale(uint64_t v, uint32_t to, uint32_t from) {
  if (from == to || from == 0)
    return v;
  return v / from * to + v % from * to / from;
}

/* One child box of [p, end): its type, header length and total size. 0, or -1 when the
 * header or the size does not fit. */
typedef struct child {
  const uint8_t *p;
  size_t hdr, size;
} child;

static int next_child(const uint8_t *p, const uint8_t *end, child *c) {
  size_t avail = (size_t)(end - p);
  if (avail < 8)
    return -1;
  uint64_t size = pyrec_rd32(p);
  size_t hdr = 8;
  if (size == 1) {
    if (avail < 16)
      return -1;
    size = rd64(p + 8);
    hdr = 16;
  } else if (size == 0) {
    size = avail;
  }
  if (size < hdr || size > avail)
    return -1;
  c->p = p;
  c->hdr = hdr;
  c->size = (size_t)size;
  return 0;
}

static int is_type(const child *c, const char *t) { return memcmp(c->p + 4, t, 4) == 0; }

/* What one trak needs: its ids and timescales, and the edit and durations computed for it. */
typedef struct trak_plan {
  uint32_t track_id;
  uint32_t timescale;
  int has_edit;
  int64_t media_time;
  const pyrec_mp4_table *t;
  int64_t shift;           /* added to every composition offset */
  uint64_t media_dur;      /* mdhd: sum of sample durations */
  uint64_t empty_movie;    /* empty edit, movie timescale (0 = none) */
  int64_t edit_media_time; /* -1 = no media edit box needed */
  uint64_t edit_movie;     /* segment_duration of the media edit, movie timescale */
  uint64_t tkhd_dur;       /* movie timescale */
} trak_plan;

static int bad(pyrec_errinfo *err, const char *what) {
  return pyrec_seterr(err, PYREC_E_MALFORMED, -1, "progressive moov: %s", what);
}

/* Read track_ID (tkhd), timescale (mdhd) and the single edit (elst) of a trak. */
static int parse_trak(const uint8_t *p, const uint8_t *end, trak_plan *tp, pyrec_errinfo *err) {
  child c;
  int have_tkhd = 0, have_mdhd = 0;
  for (; p < end; p += c.size) {
    if (next_child(p, end, &c))
      return bad(err, "trak children do not fit");
    const uint8_t *b = c.p + c.hdr, *e = c.p + c.size;
    if (is_type(&c, "tkhd")) {
      size_t need = (e > b && b[0] == 1) ? 36 : 24;
      if ((size_t)(e - b) < need)
        return bad(err, "tkhd too short");
      tp->track_id = pyrec_rd32(b + (b[0] == 1 ? 20 : 12));
      have_tkhd = 1;
    } else if (is_type(&c, "edts")) {
      child ec;
      for (const uint8_t *q = b; q < e; q += ec.size) {
        if (next_child(q, e, &ec))
          return bad(err, "edts children do not fit");
        if (!is_type(&ec, "elst"))
          continue;
        const uint8_t *eb = ec.p + ec.hdr, *ee = ec.p + ec.size;
        if (ee - eb < 8)
          return bad(err, "elst too short");
        int v1 = eb[0] == 1;
        if (pyrec_rd32(eb + 4) != 1 || (size_t)(ee - eb) < (size_t)(v1 ? 28 : 20))
          continue; /* not a single edit: presentation starts at the media start */
        int64_t mt = v1 ? (int64_t)rd64(eb + 16) : (int64_t)(int32_t)pyrec_rd32(eb + 12);
        if (mt > INT64_MAX / 4)
          return bad(err, "elst media_time out of range");
        if (mt >= 0) {
          tp->has_edit = 1;
          tp->media_time = mt;
        }
      }
    } else if (is_type(&c, "mdia")) {
      child mc;
      for (const uint8_t *q = b; q < e; q += mc.size) {
        if (next_child(q, e, &mc))
          return bad(err, "mdia children do not fit");
        if (!is_type(&mc, "mdhd"))
          continue;
        const uint8_t *mb = mc.p + mc.hdr;
        size_t ml = mc.size - mc.hdr;
        if (ml < 4 || ml < (size_t)(mb[0] == 1 ? 32 : 20))
          return bad(err, "mdhd too short");
        tp->timescale = pyrec_rd32(mb + (mb[0] == 1 ? 20 : 12));
        have_mdhd = 1;
      }
    }
  }
  if (!have_tkhd || !have_mdhd || tp->timescale == 0)
    return bad(err, "trak without tkhd, mdhd or timescale");
  return 0;
}

/* Durations and the edit list of one trak (see the top of this file). */
static int plan_trak(trak_plan *tp, uint32_t mts, pyrec_errinfo *err) {
  const pyrec_mp4_table *t = tp->t;
  int64_t first = 0;
  int64_t min_cto = 0;
  uint64_t dur = 0;
  int64_t min_cts = INT64_MAX; /* earliest dts + cto (before the shift) */
  int64_t max_cts_end = 0;     /* latest dts + cto + duration (before the shift) */
  if (t) {
    uint64_t chunked = 0;
    for (size_t i = 0; i < t->nchunks; i++)
      chunked += t->chunk_samples[i];
    if (chunked != t->nsamples || t->first_dts < 0 || t->first_dts > INT64_MAX / 4)
      return pyrec_seterr(err, PYREC_E_INVAL, -1,
                          "progressive moov: track %u: %llu samples in chunks, %zu in the table",
                          tp->track_id, (unsigned long long)chunked, t->nsamples);
    first = t->first_dts;
    for (size_t i = 0; i < t->nsamples; i++) {
      int64_t c = t->cto ? t->cto[i] : 0;
      if ((int64_t)dur + c < min_cts)
        min_cts = (int64_t)dur + c;
      if ((int64_t)dur + c + t->duration[i] > max_cts_end)
        max_cts_end = (int64_t)dur + c + t->duration[i];
      dur += t->duration[i];
      if (c < min_cto)
        min_cto = c;
    }
  }
  tp->shift = -min_cto;
  tp->media_dur = dur;
  int64_t m0 = tp->has_edit ? tp->media_time : 0;
  int64_t e = m0 + tp->shift - first;
  tp->empty_movie = 0;
  tp->edit_media_time = -1;
  tp->edit_movie = 0;
  if (!t || t->nsamples == 0) {
    tp->tkhd_dur = 0;
    return 0;
  }
  int64_t c0 = min_cts + tp->shift; /* >= 0 */
  int64_t m_start = e > c0 ? e : c0;
  int64_t p_start = m_start - e;
  /* the media edit runs to the end of the last presented sample (with B-frames that is
   * after the decode end: a shorter edit would hide the last frames) */
  int64_t m_end = max_cts_end + tp->shift;
  uint64_t seg = m_end > m_start ? (uint64_t)(m_end - m_start) : 0;
  if (e != 0 || tp->has_edit) {
    if (p_start > 0)
      tp->empty_movie = rescale((uint64_t)p_start, mts, tp->timescale);
    tp->edit_media_time = m_start;
    tp->edit_movie = rescale(seg, mts, tp->timescale);
  }
  tp->tkhd_dur = tp->edit_media_time >= 0 ? tp->empty_movie + tp->edit_movie
                                          : rescale(dur, mts, tp->timescale);
  return 0;
}

/* Copy a box verbatim. */
static void copy_box(pyrec_buf *b, const child *c) { pyrec_buf_put(b, c->p, c->size); }

/* Copy a (version 0 or 1) header box and overwrite the 64- or 32-bit duration at the given
 * body offsets (v1_off / v0_off from the start of the box body, after the 8-byte header). */
static void copy_with_duration(pyrec_buf *b, const child *c, size_t v1_off, size_t v0_off,
                               uint64_t dur) {
  size_t at = b->len;
  copy_box(b, c);
  const uint8_t *body = c->p + c->hdr;
  size_t bl = c->size - c->hdr;
  if (b->oom || bl < 4 || bl < (body[0] == 1 ? v1_off + 8 : v0_off + 4))
    return; /* too short to hold a duration: copied as it is */
  if (body[0] == 1)
    pyrec_buf_set_u64(b, at + c->hdr + v1_off, dur);
  else
    pyrec_buf_set_u32(b, at + c->hdr + v0_off, dur > UINT32_MAX ? UINT32_MAX : (uint32_t)dur);
}

/* stts — TimeToSampleBox (8.6.1.2): run-length coded sample durations. */
void pyrec_fmp4_stts(pyrec_buf *b, const uint32_t *dur, size_t n) {
  size_t box = pyrec_fullbox_begin(b, "stts", 0, 0);
  size_t cnt_at = b->len;
  pyrec_buf_u32(b, 0);
  uint32_t entries = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && dur[j] == dur[i] && j - i < UINT32_MAX)
      j++;
    pyrec_buf_u32(b, (uint32_t)(j - i));
    pyrec_buf_u32(b, dur[i]);
    entries++;
    i = j;
  }
  if (!b->oom)
    pyrec_buf_set_u32(b, cnt_at, entries);
  pyrec_box_end(b, box);
}

/* ctts — CompositionOffsetBox (8.6.1.3), version 0: run-length coded offsets, each
 * cto + shift (made non-negative by the caller's shift). */
void pyrec_fmp4_ctts(pyrec_buf *b, const int32_t *cto, size_t n, int64_t shift) {
  size_t box = pyrec_fullbox_begin(b, "ctts", 0, 0);
  size_t cnt_at = b->len;
  pyrec_buf_u32(b, 0);
  uint32_t entries = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && cto[j] == cto[i] && j - i < UINT32_MAX)
      j++;
    pyrec_buf_u32(b, (uint32_t)(j - i));
    pyrec_buf_u32(b, (uint32_t)(cto[i] + shift));
    entries++;
    i = j;
  }
  if (!b->oom)
    pyrec_buf_set_u32(b, cnt_at, entries);
  pyrec_box_end(b, box);
}

/* stss — SyncSampleBox (8.6.2): 1-based numbers of the sync samples. */
void pyrec_fmp4_stss(pyrec_buf *b, const uint8_t *key, size_t n) {
  size_t box = pyrec_fullbox_begin(b, "stss", 0, 0);
  size_t cnt_at = b->len;
  pyrec_buf_u32(b, 0);
  uint32_t entries = 0;
  for (size_t i = 0; i < n; i++) {
    if (key[i]) {
      pyrec_buf_u32(b, (uint32_t)(i + 1));
      entries++;
    }
  }
  if (!b->oom)
    pyrec_buf_set_u32(b, cnt_at, entries);
  pyrec_box_end(b, box);
}

/* stsz — SampleSizeBox (8.7.3.2): one size for all samples when they are equal, else a
 * table. */
void pyrec_fmp4_stsz(pyrec_buf *b, const uint32_t *size, size_t n) {
  size_t box = pyrec_fullbox_begin(b, "stsz", 0, 0);
  int same = n > 0;
  for (size_t i = 1; i < n && same; i++)
    same = size[i] == size[0];
  pyrec_buf_u32(b, same ? size[0] : 0); /* sample_size */
  pyrec_buf_u32(b, (uint32_t)n);        /* sample_count */
  if (!same && pyrec_buf_reserve(b, n * 4) == 0)
    for (size_t i = 0; i < n; i++)
      pyrec_buf_u32(b, size[i]);
  pyrec_box_end(b, box);
}

/* stsc — SampleToChunkBox (8.7.4): an entry where the samples per chunk change; every
 * chunk uses sample description 1. */
void pyrec_fmp4_stsc(pyrec_buf *b, const uint32_t *chunk_samples, size_t nchunks) {
  size_t box = pyrec_fullbox_begin(b, "stsc", 0, 0);
  size_t cnt_at = b->len;
  pyrec_buf_u32(b, 0);
  uint32_t entries = 0;
  for (size_t i = 0; i < nchunks; i++) {
    if (i > 0 && chunk_samples[i] == chunk_samples[i - 1])
      continue;
    pyrec_buf_u32(b, (uint32_t)(i + 1)); /* first_chunk */
    pyrec_buf_u32(b, chunk_samples[i]);  /* samples_per_chunk */
    pyrec_buf_u32(b, 1);                 /* sample_description_index */
    entries++;
  }
  if (!b->oom)
    pyrec_buf_set_u32(b, cnt_at, entries);
  pyrec_box_end(b, box);
}

/* stco — ChunkOffsetBox (8.7.5), or co64 when an offset does not fit 32 bits. */
void pyrec_fmp4_stco(pyrec_buf *b, const uint64_t *off, size_t n) {
  int wide = 0;
  for (size_t i = 0; i < n && !wide; i++)
    wide = off[i] > UINT32_MAX;
  size_t box = pyrec_fullbox_begin(b, wide ? "co64" : "stco", 0, 0);
  pyrec_buf_u32(b, (uint32_t)n);
  if (pyrec_buf_reserve(b, n * (wide ? 8 : 4)) == 0) {
    for (size_t i = 0; i < n; i++) {
      if (wide)
        pyrec_buf_u64(b, off[i]);
      else
        pyrec_buf_u32(b, (uint32_t)off[i]);
    }
  }
  pyrec_box_end(b, box);
}

/* The sample-table boxes of one track (empty ones for a track without samples). */
static void put_tables(pyrec_buf *b, const trak_plan *tp) {
  static const uint32_t none32[1] = {0};
  static const uint64_t none64[1] = {0};
  const pyrec_mp4_table *t = tp->t;
  size_t n = t ? t->nsamples : 0, nch = t ? t->nchunks : 0;
  pyrec_fmp4_stts(b, n ? t->duration : none32, n);
  if (n && t->cto) {
    int any = 0;
    for (size_t i = 0; i < n && !any; i++)
      any = (int64_t)t->cto[i] + tp->shift != 0;
    if (any)
      pyrec_fmp4_ctts(b, t->cto, n, tp->shift);
  }
  if (n && t->key) {
    int all = 1;
    for (size_t i = 0; i < n && all; i++)
      all = t->key[i] != 0;
    if (!all)
      pyrec_fmp4_stss(b, t->key, n);
  }
  pyrec_fmp4_stsc(b, nch ? t->chunk_samples : none32, nch);
  pyrec_fmp4_stsz(b, n ? t->size : none32, n);
  pyrec_fmp4_stco(b, nch ? t->chunk_offset : none64, nch);
}

/* edts — EditBox (8.6.5) with a version 1 elst (8.6.6): an optional empty edit, then the
 * media edit. */
static void put_edts(pyrec_buf *b, const trak_plan *tp) {
  if (tp->edit_media_time < 0)
    return;
  size_t edts = pyrec_box_begin(b, "edts");
  size_t elst = pyrec_fullbox_begin(b, "elst", 1, 0);
  pyrec_buf_u32(b, tp->empty_movie ? 2 : 1);
  if (tp->empty_movie) {
    pyrec_buf_u64(b, tp->empty_movie);
    pyrec_buf_u64(b, UINT64_MAX); /* media_time -1: empty */
    pyrec_buf_u16(b, 1);
    pyrec_buf_u16(b, 0);
  }
  pyrec_buf_u64(b, tp->edit_movie);
  pyrec_buf_u64(b, (uint64_t)tp->edit_media_time);
  pyrec_buf_u16(b, 1);
  pyrec_buf_u16(b, 0);
  pyrec_box_end(b, elst);
  pyrec_box_end(b, edts);
}

/* stbl (8.5.1): stsd first, the rebuilt tables, then any other box it had. */
static int put_stbl(pyrec_buf *b, const child *c, const trak_plan *tp, pyrec_errinfo *err) {
  static const char *rebuilt[] = {"stts", "ctts", "stss", "stsc", "stsz", "stz2", "stco",
                                  "co64", "sdtp", "cslg"};
  const uint8_t *p = c->p + c->hdr, *end = c->p + c->size;
  size_t box = pyrec_box_begin(b, "stbl");
  child k;
  for (const uint8_t *q = p; q < end; q += k.size) {
    if (next_child(q, end, &k))
      return bad(err, "stbl children do not fit");
    if (is_type(&k, "stsd"))
      copy_box(b, &k);
  }
  put_tables(b, tp);
  for (const uint8_t *q = p; q < end; q += k.size) {
    (void)next_child(q, end, &k); /* checked above */
    int skip = is_type(&k, "stsd");
    for (size_t i = 0; i < sizeof rebuilt / sizeof *rebuilt && !skip; i++)
      skip = is_type(&k, rebuilt[i]);
    if (!skip)
      copy_box(b, &k);
  }
  pyrec_box_end(b, box);
  return 0;
}

/* Copy a container, handing each child to the rule of its type (mdia, minf, stbl). */
static int put_container(pyrec_buf *b, const child *c, const trak_plan *tp, pyrec_errinfo *err) {
  const uint8_t *p = c->p + c->hdr, *end = c->p + c->size;
  char type[5];
  memcpy(type, c->p + 4, 4);
  type[4] = 0;
  size_t box = pyrec_box_begin(b, type);
  child k;
  for (; p < end; p += k.size) {
    if (next_child(p, end, &k))
      return bad(err, "box children do not fit");
    int rc = 0;
    if (is_type(&k, "mdhd"))
      copy_with_duration(b, &k, 24, 16, tp->media_dur);
    else if (is_type(&k, "minf"))
      rc = put_container(b, &k, tp, err);
    else if (is_type(&k, "stbl"))
      rc = put_stbl(b, &k, tp, err);
    else
      copy_box(b, &k);
    if (rc)
      return rc;
  }
  pyrec_box_end(b, box);
  return 0;
}

/* trak (8.3.1): tkhd with its duration, the new edts, then the rest (old edts dropped). */
static int put_trak(pyrec_buf *b, const child *c, const trak_plan *tp, pyrec_errinfo *err) {
  const uint8_t *p = c->p + c->hdr, *end = c->p + c->size;
  size_t box = pyrec_box_begin(b, "trak");
  child k;
  for (; p < end; p += k.size) {
    if (next_child(p, end, &k))
      return bad(err, "trak children do not fit");
    int rc = 0;
    if (is_type(&k, "tkhd")) {
      copy_with_duration(b, &k, 28, 20, tp->tkhd_dur);
      put_edts(b, tp);
    } else if (is_type(&k, "edts")) {
      continue;
    } else if (is_type(&k, "mdia")) {
      rc = put_container(b, &k, tp, err);
    } else {
      copy_box(b, &k);
    }
    if (rc)
      return rc;
  }
  pyrec_box_end(b, box);
  return 0;
}

int pyrec_mp4_progressive_moov(pyrec_buf *out, const uint8_t *moov, size_t len,
                               const pyrec_mp4_table *tables, unsigned ntables,
                               pyrec_errinfo *err) {
  child top;
  if (!moov || next_child(moov, moov + len, &top) || top.size != len || !is_type(&top, "moov"))
    return bad(err, "input is not one whole moov box");
  const uint8_t *p = moov + top.hdr, *end = moov + len;
  trak_plan plan[MAX_TRAKS];
  unsigned ntrak = 0;
  uint32_t mts = 0;
  child c;
  for (const uint8_t *q = p; q < end; q += c.size) {
    if (next_child(q, end, &c))
      return bad(err, "moov children do not fit");
    const uint8_t *b = c.p + c.hdr;
    size_t bl = c.size - c.hdr;
    if (is_type(&c, "mvhd")) {
      if (bl < 4 || bl < (size_t)(b[0] == 1 ? 32 : 20))
        return bad(err, "mvhd too short");
      mts = pyrec_rd32(b + (b[0] == 1 ? 20 : 12));
    } else if (is_type(&c, "trak")) {
      if (ntrak == MAX_TRAKS)
        return bad(err, "too many traks");
      trak_plan *tp = &plan[ntrak++];
      memset(tp, 0, sizeof *tp);
      int rc = parse_trak(b, c.p + c.size, tp, err);
      if (rc)
        return rc;
    }
  }
  if (mts == 0)
    return bad(err, "no mvhd (or a zero timescale)");
  uint64_t lcm = 1;
  for (unsigned k = 0; k < ntrak && lcm <= UINT32_MAX; k++) {
    uint64_t a = lcm, b = plan[k].timescale;
    while (b) {
      uint64_t r = a % b;
      a = b;
      b = r;
    }
    lcm = lcm / a * plan[k].timescale;
  }
  if (ntrak > 0 && lcm <= UINT32_MAX)
    mts = (uint32_t)lcm;
  for (unsigned i = 0; i < ntables; i++) {
    unsigned k = 0;
    while (k < ntrak && plan[k].track_id != tables[i].track_id)
      k++;
    if (k == ntrak || plan[k].t)
      return pyrec_seterr(err, PYREC_E_INVAL, -1,
                          "progressive moov: table for track %u, which the moov %s",
                          tables[i].track_id, k == ntrak ? "does not have" : "has twice");
    plan[k].t = &tables[i];
  }
  uint64_t movie = 0;
  for (unsigned k = 0; k < ntrak; k++) {
    int rc = plan_trak(&plan[k], mts, err);
    if (rc)
      return rc;
    if (plan[k].tkhd_dur > movie)
      movie = plan[k].tkhd_dur;
  }

  size_t start = out->len;
  size_t box = pyrec_box_begin(out, "moov");
  unsigned k = 0;
  for (const uint8_t *q = p; q < end; q += c.size) {
    (void)next_child(q, end, &c); /* checked above */
    int rc = 0;
    if (is_type(&c, "mvhd")) {
      size_t at = out->len;
      copy_with_duration(out, &c, 24, 16, movie);
      if (!out->oom) /* the timescale: checked long enough above */
        pyrec_buf_set_u32(out, at + c.hdr + (c.p[c.hdr] == 1 ? 20 : 12), mts);
    }
    else if (is_type(&c, "trak"))
      rc = put_trak(out, &c, &plan[k++], err);
    else if (!is_type(&c, "mvex"))
      copy_box(out, &c);
    if (rc) {
      out->len = start;
      return rc;
    }
  }
  pyrec_box_end(out, box);
  if (out->oom)
    return pyrec_seterr(err, PYREC_E_NOMEM, -1, "progressive moov: out of memory");
  if (out->len - start > UINT32_MAX) {
    out->len = start;
    return pyrec_seterr(err, PYREC_E_TOOBIG, -1, "progressive moov larger than 4 GiB");
  }
  return 0;
}

size_t pyrec_mp4_region_header(uint8_t hdr[16], uint64_t size) {
  if (size <= UINT32_MAX) {
    for (int i = 0; i < 4; i++)
      hdr[i] = (uint8_t)(size >> (24 - 8 * i));
    memcpy(hdr + 4, "mdat", 4);
    return 8;
  }
  hdr[0] = hdr[1] = hdr[2] = 0;
  hdr[3] = 1;
  memcpy(hdr + 4, "mdat", 4);
  for (int i = 0; i < 8; i++)
    hdr[8 + i] = (uint8_t)(size >> (56 - 8 * i));
  return 16;
}
