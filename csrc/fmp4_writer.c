/* Fragmented MP4 writer: sample intake, fragment policy, file I/O and finish.
 *
 * The file is, at every moment, an init segment followed by complete moof+mdat fragments:
 * every structure is built in memory and written with one write() (looped on short writes
 * and EINTR). A sample's duration is the distance to the next sample of its track, so each
 * track holds back its last sample until the next one (or finish) arrives.
 *
 * Fragment policy: a fragment is written when, on any track, the held-back sample starts at
 * least part_duration_ms after the first pending sample (the known media span), when the
 * pending bytes exceed max_fragment_bytes, and on flush() / finish(). When the first video
 * track's keyframes come at most 2 x part_duration_ms apart, a fragment waits (up to twice
 * the part duration of video; 2.5 parts on any track when the video stalls) for the next
 * keyframe, so that each fragment starts on one; a crash then loses at most that much.
 * Rarer keyframes: cut at the part duration.
 *
 * finish() patches in place (pwrite) the 64-bit durations the init segment left at 0:
 * mdhd = end - first dts (track timescale), tkhd = that in the movie timescale or, with an
 * edit, the elst segment_duration = end - media_time; mvhd and mehd = the longest tkhd.
 *
 * The mfra index keeps, per track, the first sync sample of each fragment, at most
 * max_index_entries of them: when the table is full every other entry is dropped and from
 * then on only every 2nd candidate (4th after the next thinning, ...) is kept, so the index
 * stays evenly spread over the whole file.
 *
 * Hybrid finish (the default, PYREC_FINISH_HYBRID): every written sample's size, duration,
 * composition offset and sync flag, and each track's run of samples per mdat with its file
 * offset, are kept (13 bytes per sample plus 12 per run: an hour of 30 fps video with AAC,
 * ~280k samples, is under 4 MB). finish() then writes, in this order, so that a process that
 * dies at any point leaves a file that plays (and that repair finishes the same way):
 *   1. the last fragment and the patched durations (a complete fMP4, without mfra);
 *   2. a progressive moov appended after it (fmp4_moov.c), built from the initial moov and
 *      the sample table; a reader of the fMP4 ignores a moov after the fragments;
 *   3. one pwrite of the reserved free box after ftyp into the header of an mdat that covers
 *      the initial moov and every moof+mdat (8 bytes; 16 with a 64-bit largesize past 4 GiB,
 *      overwriting the initial moov's own header, which is inside the mdat from then on).
 * When the table cannot grow (out of memory) finish() falls back to the mfra finish. */
#include "fmp4_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <limits.h>
#include <unistd.h>

/* Payload size limit per sample; together with the 1 GiB fragment limit it keeps
 * trun data_offset (signed 32-bit) in range. */
#define MAX_SAMPLE_BYTES (256u << 20)
#define MAX_FRAGMENT_BYTES (1u << 30)
/* Caps that keep the fragment-policy arithmetic and dts + duration far from overflow. */
#define MAX_PART_MS (3600u * 1000u)
#define MAX_DTS (INT64_MAX / 4)

static uint64_t rescale(uint64_t v, uint32_t to, uint32_t from) {
  if (from == to || from == 0)
    return v;
  return v / from * to + v % from * to / from;
}

/* ---- I/O ---------------------------------------------------------------------------- */

static int io_error(pyrec_mp4w *w, const char *call, uint64_t off, int e) {
  pyrec_seterr(&w->err, PYREC_E_IO, (int64_t)off, "%s(fd %d) at offset %llu: %s", call, w->fd,
               (unsigned long long)off, strerror(e));
  w->err.sys_errno = e;
  w->sticky = PYREC_E_IO;
  return PYREC_E_IO;
}

/* Append the pieces of `iov` at the end of the file with as few system calls as the kernel
 * allows (one writev normally); same failure handling as write_all. */
static int writev_all(pyrec_mp4w *w, struct iovec *iov, int n) {
  uint64_t start = w->stats.file_bytes;
  size_t total = 0, done = 0;
  for (int i = 0; i < n; i++)
    total += iov[i].iov_len;
  while (done < total) {
    while (n > 0 && iov->iov_len == 0) {
      iov++;
      n--;
    }
    ssize_t r = writev(w->fd, iov, n > IOV_MAX ? IOV_MAX : n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      int e = r < 0 ? errno : EIO;
      if (done > 0 && ftruncate(w->fd, (off_t)start) == 0)
        (void)lseek(w->fd, (off_t)start, SEEK_SET);
      return io_error(w, "write", start + done, e);
    }
    done += (size_t)r;
    size_t left = (size_t)r;
    while (left > 0) { /* skip what was written */
      size_t k = left < iov->iov_len ? left : iov->iov_len;
      iov->iov_base = (uint8_t *)iov->iov_base + k;
      iov->iov_len -= k;
      left -= k;
      if (iov->iov_len == 0 && n > 1) {
        iov++;
        n--;
      }
    }
  }
  w->stats.file_bytes += total;
  return 0;
}

/* Append `n` bytes at the end of the file (see writev_all). */
static int write_all(pyrec_mp4w *w, const uint8_t *p, size_t n) {
  struct iovec iov = {(void *)p, n};
  return writev_all(w, &iov, 1);
}

static int pwrite_u64(pyrec_mp4w *w, uint64_t off, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t)(v >> (56 - 8 * i));
  size_t done = 0;
  while (done < sizeof b) {
    ssize_t r = pwrite(w->fd, b + done, sizeof b - done, (off_t)(off + done));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return io_error(w, "pwrite", off, r < 0 ? errno : EIO);
    done += (size_t)r;
  }
  return 0;
}

static int nomem(pyrec_mp4w *w) {
  w->sticky = PYREC_E_NOMEM;
  return pyrec_seterr(&w->err, PYREC_E_NOMEM, -1, "fmp4 writer: out of memory");
}

/* ---- open / free -------------------------------------------------------------------- */

int pyrec_mp4w_open(pyrec_mp4w **out, int fd, const pyrec_track_desc *tracks, unsigned ntracks,
                    const pyrec_mp4w_opts *opts, pyrec_errinfo *err) {
  pyrec_clearerr(err);
  if (!out)
    return pyrec_seterr(err, PYREC_E_INVAL, -1, "fmp4: out is NULL");
  *out = NULL;
  if (!tracks || ntracks == 0 || ntracks > PYREC_MAX_TRACKS)
    return pyrec_seterr(err, PYREC_E_INVAL, -1, "fmp4: need 1..%d tracks, got %u",
                        PYREC_MAX_TRACKS, ntracks);
  if (fd < 0)
    return pyrec_seterr(err, PYREC_E_INVAL, -1, "fmp4: bad file descriptor %d", fd);
  pyrec_mp4w *w = calloc(1, sizeof *w);
  if (!w)
    return pyrec_seterr(err, PYREC_E_NOMEM, -1, "fmp4: out of memory");
  w->fd = fd;
  if (opts)
    w->opts = *opts;
  if (!w->opts.part_duration_ms)
    w->opts.part_duration_ms = 1000;
  if (w->opts.part_duration_ms > MAX_PART_MS)
    w->opts.part_duration_ms = MAX_PART_MS;
  if (!w->opts.movie_timescale)
    w->opts.movie_timescale = 1000;
  if (!w->opts.max_fragment_bytes)
    w->opts.max_fragment_bytes = 16u << 20;
  if (w->opts.max_fragment_bytes > MAX_FRAGMENT_BYTES)
    w->opts.max_fragment_bytes = MAX_FRAGMENT_BYTES;
  if (!w->opts.max_index_entries)
    w->opts.max_index_entries = 65536;
  w->ntracks = ntracks;
  w->stats.ntracks = ntracks;
  pyrec_buf_init(&w->out);
  pyrec_buf_init(&w->init_moov);
  if (w->opts.finish != PYREC_FINISH_FRAGMENTED)
    w->opts.finish = PYREC_FINISH_HYBRID;
  w->table_lost = w->opts.finish != PYREC_FINISH_HYBRID; /* no table needed */
  pyrec_clearerr(&w->err);
  for (unsigned i = 0; i < ntracks; i++) {
    pyrec_mp4w_track *t = &w->tracks[i];
    pyrec_buf_init(&t->data);
    t->idx_stride = 1;
    w->stats.track[i].first_dts = -1;
    if (tracks[i].timescale == 0) {
      pyrec_mp4w_free(w);
      return pyrec_seterr(err, PYREC_E_INVAL, -1, "fmp4: track %u: timescale is 0", i);
    }
    int rc = pyrec_codec_init(&t->cs, &tracks[i], err);
    if (rc) {
      pyrec_mp4w_free(w);
      return rc;
    }
    t->cs_inited = 1;
    t->timescale = tracks[i].timescale;
    t->media = pyrec_codec_media(tracks[i].codec);
    if (!t->media)
      t->media = t->cs.media;
  }
  *out = w;
  return 0;
}

void pyrec_mp4w_free(pyrec_mp4w *w) {
  if (!w)
    return;
  for (unsigned i = 0; i < w->ntracks; i++) {
    pyrec_mp4w_track *t = &w->tracks[i];
    if (t->cs_inited)
      pyrec_codec_free(&t->cs);
    free(t->s);
    free(t->idx);
    free(t->tab_size);
    free(t->tab_dur);
    free(t->tab_cto);
    free(t->tab_key);
    free(t->chunk_off);
    free(t->chunk_n);
    pyrec_buf_free(&t->data);
  }
  pyrec_buf_free(&w->out);
  pyrec_buf_free(&w->init_moov);
  free(w);
}

const pyrec_mp4w_stats *pyrec_mp4w_get_stats(const pyrec_mp4w *w) { return &w->stats; }

const pyrec_errinfo *pyrec_mp4w_error(const pyrec_mp4w *w) { return &w->err; }

const pyrec_codec_state *pyrec_mp4w_codec(const pyrec_mp4w *w, unsigned track) {
  return track < w->ntracks ? &w->tracks[track].cs : NULL;
}

/* ---- fragments ---------------------------------------------------------------------- */

static int usable(pyrec_mp4w *w) {
  if (w->sticky)
    return w->sticky; /* w->err still describes it */
  if (w->finished)
    return pyrec_seterr(&w->err, PYREC_E_STATE, -1, "fmp4: writer already finished");
  return 0;
}

/* Decide which tracks go into the moov (those whose configuration is known), drop the
 * pending samples of the others and write ftyp+moov. */
static int write_init(pyrec_mp4w *w) {
  for (unsigned i = 0; i < w->ntracks; i++) {
    pyrec_mp4w_track *t = &w->tracks[i];
    t->in_moov = t->cs.ready ? 1 : 0;
    if (!t->in_moov) {
      w->stats.track[i].skipped = 1;
      t->ns = 0;
      pyrec_buf_reset(&t->data);
    }
  }
  pyrec_buf_reset(&w->out);
  int rc = pyrec_fmp4_init_segment(w, &w->out);
  if (rc == PYREC_E_NOMEM)
    return nomem(w);
  if (rc) { /* a ready track that cannot write its sample entry: nothing sane to do */
    w->sticky = rc;
    return rc;
  }
  rc = write_all(w, w->out.data, w->out.len);
  if (rc)
    return rc;
  w->init_written = 1;
  if (!w->table_lost) { /* keep the initial moov for the progressive one */
    pyrec_buf_put(&w->init_moov, w->out.data + w->off_moov, w->out.len - w->off_moov);
    if (w->init_moov.oom)
      w->table_lost = 1;
  }
  return 0;
}

/* Drop the sample tables (out of memory): the file will be finished with an mfra. */
static void table_drop(pyrec_mp4w *w) {
  w->table_lost = 1;
  for (unsigned i = 0; i < w->ntracks; i++) {
    pyrec_mp4w_track *t = &w->tracks[i];
    free(t->tab_size);
    free(t->tab_dur);
    free(t->tab_cto);
    free(t->tab_key);
    free(t->chunk_off);
    free(t->chunk_n);
    t->tab_size = t->tab_dur = NULL;
    t->tab_cto = NULL;
    t->tab_key = NULL;
    t->chunk_off = NULL;
    t->chunk_n = NULL;
    t->tab_n = t->tab_cap = t->nchunks = t->chunk_cap = 0;
  }
}

static int grow(void **p, size_t need, size_t elem) {
  void *q = realloc(*p, need * elem);
  if (!q)
    return -1;
  *p = q;
  return 0;
}

/* Add the samples about to be consumed (the fragment just written) to the sample table:
 * one run at file offset `data_off`. */
static void table_add(pyrec_mp4w *w, pyrec_mp4w_track *t, uint64_t data_off) {
  if (w->table_lost)
    return;
  size_t n = t->n_emit;
  if (t->tab_n + n > t->tab_cap) {
    size_t ncap = t->tab_cap ? t->tab_cap : 256;
    while (ncap < t->tab_n + n)
      ncap *= 2;
    if (grow((void **)&t->tab_size, ncap, 4) || grow((void **)&t->tab_dur, ncap, 4) ||
        grow((void **)&t->tab_cto, ncap, 4) || grow((void **)&t->tab_key, ncap, 1)) {
      table_drop(w);
      return;
    }
    t->tab_cap = ncap;
  }
  if (t->nchunks == t->chunk_cap) {
    size_t ncap = t->chunk_cap ? t->chunk_cap * 2 : 64;
    if (grow((void **)&t->chunk_off, ncap, 8) || grow((void **)&t->chunk_n, ncap, 4)) {
      table_drop(w);
      return;
    }
    t->chunk_cap = ncap;
  }
  for (size_t k = 0; k < n; k++) {
    const pyrec_mp4w_sample *s = &t->s[k];
    t->tab_size[t->tab_n] = s->size;
    t->tab_dur[t->tab_n] = s->duration;
    t->tab_cto[t->tab_n] = s->cto;
    t->tab_key[t->tab_n] = s->key ? 1 : 0;
    t->tab_n++;
  }
  t->chunk_off[t->nchunks] = data_off;
  t->chunk_n[t->nchunks] = (uint32_t)n;
  t->nchunks++;
}

static void index_add(pyrec_mp4w *w, pyrec_mp4w_track *t, const pyrec_mp4w_tfra_entry *e) {
  size_t cap = w->opts.max_index_entries;
  uint64_t cand = t->idx_cand++;
  if (cand % t->idx_stride)
    return;
  if (t->nidx >= cap) {
    size_t k = 0;
    for (size_t i = 0; i < t->nidx; i += 2)
      t->idx[k++] = t->idx[i];
    t->nidx = k;
    t->idx_stride *= 2;
    if (cand % t->idx_stride || t->nidx >= cap)
      return;
  }
  if (t->nidx == t->cap_idx) {
    size_t ncap = t->cap_idx ? t->cap_idx * 2 : 64;
    if (ncap > cap)
      ncap = cap;
    pyrec_mp4w_tfra_entry *p = realloc(t->idx, ncap * sizeof *p);
    if (!p)
      return; /* the index is best effort: a missing entry only slows seeking */
    t->idx = p;
    t->cap_idx = ncap;
  }
  t->idx[t->nidx++] = *e;
}

/* Account for the samples just written and drop them from the pending queue. */
static void consume(pyrec_mp4w *w, unsigned i, uint64_t moof_off, uint32_t traf_no) {
  pyrec_mp4w_track *t = &w->tracks[i];
  pyrec_mp4w_track_stats *st = &w->stats.track[i];
  const pyrec_mp4w_sample *s = t->s;
  int indexed = 0;
  for (size_t k = 0; k < t->n_emit; k++) {
    if (s[k].key) {
      st->keyframes++;
      if (!indexed) {
        pyrec_mp4w_tfra_entry e = {(uint64_t)s[k].dts, moof_off, traf_no, (uint32_t)k + 1};
        index_add(w, t, &e);
        indexed = 1;
      }
    }
  }
  if (st->first_dts < 0)
    st->first_dts = s[0].dts;
  st->end_dts = s[t->n_emit - 1].dts + s[t->n_emit - 1].duration;
  st->samples += t->n_emit;
  st->bytes += t->emit_bytes;
  size_t rem = t->ns - t->n_emit;
  if (rem)
    memmove(t->s, t->s + t->n_emit, rem * sizeof *t->s);
  t->ns = rem;
  size_t remb = t->data.len - t->emit_bytes;
  if (remb)
    memmove(t->data.data, t->data.data + t->emit_bytes, remb);
  t->data.len = remb;
  t->n_emit = 0;
  t->emit_bytes = 0;
}

/* Write one moof+mdat with every sample whose duration is known (all of them when `last`;
 * the final durations are then already in place). */
static int write_fragment(pyrec_mp4w *w, int last) {
  if (!w->init_written) {
    int rc = write_init(w);
    if (rc)
      return rc;
  }
  size_t total = 0, ntraf = 0;
  for (unsigned i = 0; i < w->ntracks; i++) {
    pyrec_mp4w_track *t = &w->tracks[i];
    t->n_emit = 0;
    t->emit_bytes = 0;
    if (!t->in_moov || t->ns == 0)
      continue;
    t->n_emit = last ? t->ns : t->ns - 1;
    for (size_t k = 0; k < t->n_emit; k++) {
      if (k + 1 < t->ns)
        t->s[k].duration = (uint32_t)(t->s[k + 1].dts - t->s[k].dts);
      t->emit_bytes += t->s[k].size;
    }
    total += t->emit_bytes;
    ntraf += t->n_emit ? 1 : 0;
  }
  if (ntraf == 0)
    return 0;

  pyrec_buf *b = &w->out;
  pyrec_buf_reset(b);
  size_t moof_size = pyrec_fmp4_moof(w, b, w->seq + 1);
  if (moof_size > (size_t)INT32_MAX - 8 || total > (size_t)INT32_MAX - 8 - moof_size) {
    w->sticky = PYREC_E_TOOBIG;
    return pyrec_seterr(&w->err, PYREC_E_TOOBIG, -1,
                        "fmp4: fragment of %zu bytes does not fit a 32-bit data offset", total);
  }
  pyrec_fmp4_mdat_header(b, (uint32_t)total);
  if (b->oom)
    return nomem(w);
  /* moof + mdat header, then each track's media straight from its buffer: one writev. */
  struct iovec iov[PYREC_MAX_TRACKS + 1];
  int niov = 0;
  iov[niov++] = (struct iovec){b->data, b->len};
  for (unsigned i = 0; i < w->ntracks; i++)
    if (w->tracks[i].emit_bytes)
      iov[niov++] = (struct iovec){w->tracks[i].data.data, w->tracks[i].emit_bytes};

  uint64_t moof_off = w->stats.file_bytes;
  int rc = writev_all(w, iov, niov);
  if (rc)
    return rc;
  w->seq++;
  w->stats.fragments++;
  uint32_t traf_no = 0;
  uint64_t data_off = moof_off + moof_size + 8;
  for (unsigned i = 0; i < w->ntracks; i++) {
    if (w->tracks[i].n_emit) {
      table_add(w, &w->tracks[i], data_off);
      data_off += w->tracks[i].emit_bytes;
      consume(w, i, moof_off, ++traf_no);
    }
  }
  return 0;
}

/* The first video track with pending samples learns its keyframe interval (NULL: none). */
static pyrec_mp4w_track *key_track(pyrec_mp4w *w) {
  for (unsigned i = 0; i < w->ntracks; i++) {
    pyrec_mp4w_track *t = &w->tracks[i];
    if (t->media != PYREC_MEDIA_VIDEO || t->ns == 0)
      continue;
    const pyrec_mp4w_sample *last = &t->s[t->ns - 1];
    if (last->key && (!t->have_key || last->dts != t->last_key_dts)) {
      t->key_gap = t->have_key ? last->dts - t->last_key_dts : 0;
      t->last_key_dts = last->dts;
      t->have_key = 1;
    }
    return t;
  }
  return NULL;
}

/* Fragment policy (see the top of this file): write when the known span of any track reaches
 * the part duration; when the video's keyframes come at most two parts apart, wait for the
 * next keyframe (up to two parts) so that every fragment starts on one (readers that reset
 * their decoder per fragment need it). */
static int due(pyrec_mp4w *w) {
  size_t bytes = 0;
  int reached = 0, late = 0;
  uint64_t part = w->opts.part_duration_ms;
  for (unsigned i = 0; i < w->ntracks; i++) {
    const pyrec_mp4w_track *t = &w->tracks[i];
    bytes += t->data.len;
    if (t->ns >= 2) {
      uint64_t span = (uint64_t)(t->s[t->ns - 1].dts - t->s[0].dts) * 1000;
      reached |= span >= part * t->timescale;
      late |= span * 2 >= 5 * part * t->timescale; /* video stalled: 2.5 parts on any track */
    }
  }
  const pyrec_mp4w_track *v = key_track(w);
  /* Waiting ends at two parts of video (audio runs a frame ahead in decode order, so its
   * span is not the measure: a keyframe exactly two parts in must still start a fragment). */
  int twice = late || (v && v->ns >= 2 &&
                       (uint64_t)(v->s[v->ns - 1].dts - v->s[0].dts) * 1000 >=
                           2 * part * v->timescale);
  if (bytes > w->opts.max_fragment_bytes)
    return 1;
  int aligned = v && v->key_gap > 0 && (uint64_t)v->key_gap * 1000 <= 2 * part * v->timescale;
  if (aligned && v->ns >= 2 && v->s[v->ns - 1].key && (reached || !v->s[0].key))
    return 1; /* the held-back keyframe starts the next fragment (at once when the pending
                 one did not start on a keyframe: realign) */
  if (!reached)
    return 0;
  return aligned ? twice : 1; /* keyframes too rare or not known yet: cut at one part */
}

/* ---- public calls ------------------------------------------------------------------- */

int pyrec_mp4w_write(pyrec_mp4w *w, unsigned track, int64_t dts, int32_t cto, unsigned flags,
                     const uint8_t *data, size_t len) {
  int rc = usable(w);
  if (rc)
    return rc;
  if (track >= w->ntracks)
    return pyrec_seterr(&w->err, PYREC_E_NOTRACK, -1, "fmp4: no track %u (have %u)", track,
                        w->ntracks);
  pyrec_mp4w_track *t = &w->tracks[track];
  if (w->init_written && !t->in_moov)
    return 0; /* skipped track: its samples are dropped */
  if (dts < 0 || dts > MAX_DTS)
    return pyrec_seterr(&w->err, PYREC_E_INVAL, -1, "fmp4: track %u: dts %lld out of range",
                        track, (long long)dts);
  if (t->have_last && dts <= t->last_dts)
    return pyrec_seterr(&w->err, PYREC_E_INVAL, -1,
                        "fmp4: track %u: dts %lld not after previous dts %lld", track,
                        (long long)dts, (long long)t->last_dts);
  if (t->have_last && (uint64_t)(dts - t->last_dts) > UINT32_MAX)
    return pyrec_seterr(&w->err, PYREC_E_INVAL, -1,
                        "fmp4: track %u: dts jump %lld -> %lld exceeds 32-bit duration", track,
                        (long long)t->last_dts, (long long)dts);
  if (t->ns == t->cap) {
    size_t ncap = t->cap ? t->cap * 2 : 64;
    pyrec_mp4w_sample *p = realloc(t->s, ncap * sizeof *p);
    if (!p)
      return nomem(w);
    t->s = p;
    t->cap = ncap;
  }
  size_t before = t->data.len;
  rc = pyrec_codec_sample(&t->cs, data, len, &t->data, &w->err);
  if (t->data.oom)
    return nomem(w);
  if (rc)
    return rc;
  size_t size = t->data.len - before;
  if (size > MAX_SAMPLE_BYTES) {
    t->data.len = before;
    return pyrec_seterr(&w->err, PYREC_E_TOOBIG, -1, "fmp4: track %u: sample of %zu bytes",
                        track, size);
  }
  pyrec_mp4w_sample *s = &t->s[t->ns++];
  s->dts = dts;
  s->cto = cto;
  s->size = (uint32_t)size;
  s->duration = 0;
  s->key = (flags & PYREC_SAMPLE_KEY) || t->media != PYREC_MEDIA_VIDEO;
  if (t->have_last)
    t->last_duration = (uint32_t)(dts - t->last_dts);
  t->last_dts = dts;
  t->have_last = 1;
  return due(w) ? write_fragment(w, 0) : 0;
}

int pyrec_mp4w_set_edit(pyrec_mp4w *w, unsigned track, int64_t media_time) {
  int rc = usable(w);
  if (rc)
    return rc;
  if (track >= w->ntracks)
    return pyrec_seterr(&w->err, PYREC_E_NOTRACK, -1, "fmp4: no track %u (have %u)", track,
                        w->ntracks);
  if (w->init_written)
    return pyrec_seterr(&w->err, PYREC_E_STATE, -1,
                        "fmp4: track %u: edit list after the init segment was written", track);
  w->tracks[track].has_edit = media_time >= 0;
  w->tracks[track].media_time = media_time >= 0 ? media_time : 0;
  return 0;
}

int pyrec_mp4w_flush(pyrec_mp4w *w) {
  int rc = usable(w);
  return rc ? rc : write_fragment(w, 0);
}

/* Duration of a track's last sample when the caller gives no end: the previous sample's
 * duration; for a single sample, 1/25 s of video or one typical audio frame (AAC 1024,
 * MP3 1152 samples at the config's sample rate; else 20 ms). Never 0. */
static uint32_t fallback_duration(const pyrec_mp4w_track *t) {
  if (t->last_duration)
    return t->last_duration;
  uint64_t d = t->timescale / 50;
  if (t->media == PYREC_MEDIA_VIDEO) {
    d = t->timescale / 25;
  } else if (t->cs.sample_rate && (t->cs.codec == PYREC_CODEC_AAC || t->cs.codec == PYREC_CODEC_MP3)) {
    d = rescale(t->cs.codec == PYREC_CODEC_AAC ? 1024 : 1152, t->timescale, t->cs.sample_rate);
  }
  if (d > UINT32_MAX)
    d = UINT32_MAX;
  return d ? (uint32_t)d : 1;
}

/* Patch the durations the init segment left at 0 (see the top of this file). */
static int patch_durations(pyrec_mp4w *w) {
  uint64_t movie = 0;
  uint32_t mts = w->opts.movie_timescale;
  for (unsigned i = 0; i < w->ntracks; i++) {
    const pyrec_mp4w_track *t = &w->tracks[i];
    const pyrec_mp4w_track_stats *st = &w->stats.track[i];
    if (!t->in_moov)
      continue;
    uint64_t media = st->first_dts >= 0 ? (uint64_t)(st->end_dts - st->first_dts) : 0;
    uint64_t tk = rescale(media, mts, t->timescale);
    int rc = pwrite_u64(w, t->off_mdhd_dur, media);
    if (!rc && t->has_edit) {
      int64_t end = st->first_dts >= 0 ? st->end_dts : 0;
      tk = end > t->media_time ? rescale((uint64_t)(end - t->media_time), mts, t->timescale) : 0;
      rc = pwrite_u64(w, t->off_elst_dur, tk);
    }
    if (!rc)
      rc = pwrite_u64(w, t->off_tkhd_dur, tk);
    if (rc)
      return rc;
    if (tk > movie)
      movie = tk;
  }
  int rc = pwrite_u64(w, w->off_mvhd_dur, movie);
  return rc ? rc : pwrite_u64(w, w->off_mehd_dur, movie);
}

static int pwrite_all(pyrec_mp4w *w, uint64_t off, const uint8_t *b, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pwrite(w->fd, b + done, n - done, (off_t)(off + done));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return io_error(w, "pwrite", off + done, r < 0 ? errno : EIO);
    done += (size_t)r;
  }
  return 0;
}

/* Steps 1 (durations) to 3 of the hybrid finish (see the top of this file); the last
 * fragment is written. PYREC_E_NOMEM (nothing written yet) lets the caller use the mfra. */
static int finish_hybrid(pyrec_mp4w *w) {
  int rc = patch_durations(w);
  if (rc)
    return rc;
  pyrec_mp4_table tabs[PYREC_MAX_TRACKS];
  unsigned n = 0;
  for (unsigned i = 0; i < w->ntracks; i++) {
    const pyrec_mp4w_track *t = &w->tracks[i];
    if (!t->in_moov)
      continue;
    pyrec_mp4_table *tb = &tabs[n++];
    memset(tb, 0, sizeof *tb);
    tb->track_id = i + 1;
    tb->first_dts = w->stats.track[i].first_dts > 0 ? w->stats.track[i].first_dts : 0;
    tb->nsamples = t->tab_n;
    tb->size = t->tab_size;
    tb->duration = t->tab_dur;
    tb->cto = t->tab_cto;
    tb->key = t->tab_key;
    tb->nchunks = t->nchunks;
    tb->chunk_offset = t->chunk_off;
    tb->chunk_samples = t->chunk_n;
  }
  pyrec_buf_reset(&w->out);
  rc = pyrec_mp4_progressive_moov(&w->out, w->init_moov.data, w->init_moov.len, tabs, n,
                                  &w->err);
  if (rc)
    return rc == PYREC_E_NOMEM ? PYREC_E_NOMEM : (w->sticky = rc);
  uint64_t moov_at = w->stats.file_bytes;
  rc = write_all(w, w->out.data, w->out.len);
  if (rc)
    return rc;
  uint8_t hdr[16];
  size_t hl = pyrec_mp4_region_header(hdr, moov_at - w->off_free);
  rc = pwrite_all(w, w->off_free, hdr, hl);
  if (rc)
    return rc;
  w->stats.hybrid = 1;
  return 0;
}

int pyrec_mp4w_finish(pyrec_mp4w *w, const int64_t *end_dts) {
  int rc = usable(w);
  if (rc)
    return rc;
  w->finished = 1;
  for (unsigned i = 0; i < w->ntracks; i++) {
    pyrec_mp4w_track *t = &w->tracks[i];
    if (t->ns == 0)
      continue;
    pyrec_mp4w_sample *s = &t->s[t->ns - 1];
    int64_t e = end_dts ? end_dts[i] : -1;
    if (e > s->dts && (uint64_t)(e - s->dts) <= UINT32_MAX)
      s->duration = (uint32_t)(e - s->dts);
    else
      s->duration = fallback_duration(t);
  }
  rc = write_fragment(w, 1);
  if (rc)
    return rc;
  if (!w->table_lost) {
    rc = finish_hybrid(w);
    if (rc != PYREC_E_NOMEM)
      return rc;
    w->sticky = 0; /* out of memory for the moov: finish with the index instead */
    pyrec_clearerr(&w->err);
  }
  pyrec_buf_reset(&w->out);
  pyrec_fmp4_mfra(w, &w->out);
  if (w->out.oom)
    return nomem(w);
  rc = write_all(w, w->out.data, w->out.len);
  return rc ? rc : patch_durations(w);
}
