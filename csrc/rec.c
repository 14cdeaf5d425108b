/* Recorder: timestamp repair -> interleaving -> keyframe-aligned splits -> fMP4 writer. */
#include "pyrec/rec.h"

#include <stdlib.h>
#include <string.h>

#include "pyrec/tsgrid.h"

/* A packet waiting for the other tracks (interleaving). Payload follows the header. */
typedef struct qpkt {
  struct qpkt *next;
  int64_t dts, pts; /* repaired, track ticks */
  unsigned flags;
  size_t len;
  uint8_t data[];
} qpkt;

/* A packet on its way out: queued (data inside a qpkt) or passing straight through. */
typedef struct pkt {
  int64_t dts, pts;
  unsigned flags;
  const uint8_t *data;
  size_t len;
} pkt;

typedef struct rtrack {
  pyrec_track_desc desc; /* desc.config points into `config` */
  uint8_t *config;
  int video;
  pyrec_tsfix fix;
  qpkt *head, *tail;
  qpkt *held;       /* waiting in tsfix for its successor to get its time (dts/pts unset) */
  int seen;         /* a packet of this track has been repaired */
  int64_t last_dts; /* last repaired dts (input side) */
  int64_t origin;   /* recording origin in this track's ticks */
  pyrec_rec_track_stats st;
  int gridded;          /* input times converted (pyrec_rec_write_in) through `grid` */
  pyrec_tsgrid grid;
  uint32_t rate;        /* audio sample rate (frame lengths are in its samples), 0 unknown */
  int sbr;              /* AAC with explicit SBR/PS: 2048 samples per frame at `rate` */
  int64_t preskip;      /* Opus pre-skip in track ticks: not presented */
  int64_t last_frame;   /* length of the last packet written, track ticks (0 unknown) */
} rtrack;

/* One output file: the open one, or the previous one waiting for its tracks' end times. */
typedef struct rfile {
  pyrec_mp4w *w;
  int fd;
  uint32_t seq;
  int64_t start_ms;
  int64_t base[PYREC_MAX_TRACKS];    /* subtracted from repaired dts in this file */
  int64_t end[PYREC_MAX_TRACKS];     /* closing: decode end per track (file ticks), -1 unknown */
  int pending[PYREC_MAX_TRACKS];     /* closing: still waiting for this track's next packet */
  int64_t last[PYREC_MAX_TRACKS];    /* last dts written per track (file ticks), -1 none */
  /* Presentation start (file ticks of track shift_track): the earliest presentation time
   * written, becoming every track's edit list media_time; fixed once the init segment is
   * out (edit_fixed). */
  int64_t shift;
  unsigned shift_track;
  int have_shift, edit_fixed;
} rfile;

struct pyrec_rec {
  pyrec_rec_opts o;
  pyrec_rec_callbacks cb;
  unsigned n;
  int anchor; /* first video track, -1 for audio-only */
  rtrack t[PYREC_MAX_TRACKS];
  pyrec_tsgroup group;
  int started; /* origin known */
  /* continuity: presentation start of the recording (ticks of track rshift_track, from the
   * origin): every file's timeline is this far behind the source's decode timeline */
  int64_t rshift;
  unsigned rshift_track;
  int have_rshift;
  rfile cur, old;
  int have_cur, have_old;
  uint32_t files;
  int64_t split_at; /* PYREC_SPLIT_NOW, ms, or INT64_MAX when none */
  int64_t media_ms;
  uint64_t queued;
  int failed, closed;
  pyrec_errinfo err;
};

/* a/ta < b/tb (exact, 128-bit cross products). */
static int time_lt(int64_t a, uint32_t ta, int64_t b, uint32_t tb) {
  return (__int128)a * tb < (__int128)b * ta;
}

static int64_t rescale_floor(int64_t v, uint32_t from, uint32_t to) {
  __int128 x = (__int128)v * to;
  __int128 q = x / from;
  if ((x % from) != 0 && x < 0)
    q -= 1;
  return (int64_t)q;
}

static int64_t track_ms(const pyrec_rec *r, unsigned ti, int64_t dts) {
  const rtrack *t = &r->t[ti];
  return rescale_floor(dts - t->origin, t->desc.timescale, 1000);
}

static int fail(pyrec_rec *r, int code, const pyrec_errinfo *src) {
  if (!r->failed) {
    r->failed = 1;
    if (src && src->code)
      r->err = *src;
    else
      pyrec_seterr(&r->err, code, -1, "%s", pyrec_strerror(code));
    if (!r->err.code)
      r->err.code = code;
  }
  return r->err.code;
}

/* Audio frame lengths, Opus pre-skip and the sample grid of track i (see pyrec/tsgrid.h). */
static void setup_grid(pyrec_rec *r, unsigned i, uint32_t rate, uint16_t preskip) {
  rtrack *t = &r->t[i];
  uint32_t ts = t->desc.timescale, in = r->o.in_timescale[i];
  t->rate = t->video ? 0 : rate;
  /* AudioSpecificConfig audioObjectType 5 (SBR) or 29 (PS): the rate is the extension's */
  if (t->desc.codec == PYREC_CODEC_AAC && t->desc.config_len >= 1) {
    unsigned aot = t->desc.config[0] >> 3;
    t->sbr = aot == 5 || aot == 29;
  }
  t->preskip = preskip ? rescale_floor(preskip, 48000, ts) : 0;
  if (!in || in == ts)
    return;
  t->gridded = 1;
  pyrec_tsgrid_init(&t->grid, in, ts, r->o.wrap_bits, t->preskip ? -t->preskip : INT64_MIN);
}

/* Length in track ticks of one audio payload (0 when not known). */
static int64_t frame_ticks(const rtrack *t, const uint8_t *data, size_t len) {
  if (!t->rate)
    return 0;
  uint32_t n = pyrec_audio_frame_samples(t->desc.codec, data, len);
  uint32_t rate = t->desc.codec == PYREC_CODEC_OPUS ? 48000 : t->rate;
  if (!n)
    return 0;
  if (t->sbr)
    n *= 2;
  if (rate == t->desc.timescale)
    return n;
  __int128 x = (__int128)n * t->desc.timescale;
  return x % rate ? 0 : (int64_t)(x / rate); /* only an exact length is of use */
}

int pyrec_rec_new(pyrec_rec **out, const pyrec_track_desc *tracks, unsigned ntracks,
                  const pyrec_rec_opts *opts, const pyrec_rec_callbacks *cb,
                  pyrec_errinfo *err) {
  *out = NULL;
  if (ntracks == 0 || ntracks > PYREC_MAX_TRACKS)
    return pyrec_seterr(err, PYREC_E_INVAL, -1, "a recorder needs 1 to %d tracks, got %u",
                        PYREC_MAX_TRACKS, ntracks);
  if (!cb || !cb->open_file || !cb->close_file)
    return pyrec_seterr(err, PYREC_E_INVAL, -1, "open_file and close_file callbacks are required");
  uint32_t rates[PYREC_MAX_TRACKS];
  uint16_t preskip[PYREC_MAX_TRACKS];
  for (unsigned i = 0; i < ntracks; i++) {
    /* Validate each codec now so an unsupported one is an error before any file exists. */
    pyrec_codec_state cs;
    int rc = pyrec_codec_init(&cs, &tracks[i], err);
    rates[i] = cs.sample_rate;
    preskip[i] = tracks[i].codec == PYREC_CODEC_OPUS ? cs.opus_preskip : 0;
    pyrec_codec_free(&cs);
    if (rc)
      return rc;
    if (tracks[i].timescale == 0)
      return pyrec_seterr(err, PYREC_E_INVAL, -1, "track %u: timescale must be > 0", i);
  }
  pyrec_rec *r = calloc(1, sizeof *r);
  if (!r)
    return pyrec_seterr(err, PYREC_E_NOMEM, -1, "out of memory");
  r->o = opts ? *opts : (pyrec_rec_opts){0};
  if (r->o.part_duration_ms == 0)
    r->o.part_duration_ms = 1000;
  if (r->o.jump_threshold_ms == 0)
    r->o.jump_threshold_ms = 10000;
  if (r->o.interleave_ms == 0)
    r->o.interleave_ms = 1000;
  r->cb = *cb;
  r->n = ntracks;
  r->anchor = -1;
  r->split_at = INT64_MAX;
  pyrec_tsgroup_init(&r->group);
  pyrec_clearerr(&r->err);
  for (unsigned i = 0; i < ntracks; i++) {
    rtrack *t = &r->t[i];
    t->desc = tracks[i];
    if (tracks[i].config_len) {
      t->config = malloc(tracks[i].config_len);
      if (!t->config) {
        pyrec_rec_free(r);
        return pyrec_seterr(err, PYREC_E_NOMEM, -1, "out of memory");
      }
      memcpy(t->config, tracks[i].config, tracks[i].config_len);
    }
    t->desc.config = t->config;
    t->video = pyrec_codec_media(tracks[i].codec) == PYREC_MEDIA_VIDEO;
    if (t->video && r->anchor < 0)
      r->anchor = (int)i;
    setup_grid(r, i, rates[i], preskip[i]);
    pyrec_tsfix_opts fo = {0};
    fo.wrap_bits = t->gridded ? 0 : r->o.wrap_bits; /* the grid unwraps */
    fo.jump_threshold =
        r->o.jump_threshold_ms > 0
            ? rescale_floor(r->o.jump_threshold_ms, 1000, tracks[i].timescale)
            : 0;
    fo.default_duration = t->video ? tracks[i].timescale / 30 : tracks[i].timescale / 50;
    if (fo.default_duration <= 0)
      fo.default_duration = 1;
    /* AAC Main/LC/SSR/LTP (ISO/IEC 14496-3 1.6.2.1 audioObjectType 1..4): 1024 samples a
     * frame, so tsfix need not measure the typical duration (relays that stamp several
     * frames with one time would make it measure a multiple). */
    unsigned aot = tracks[i].config_len ? tracks[i].config[0] >> 3 : 0;
    if (tracks[i].codec == PYREC_CODEC_AAC && aot >= 1 && aot <= 4 && tracks[i].sample_rate)
      fo.frame_duration = rescale_floor(1024, tracks[i].sample_rate, tracks[i].timescale);
    pyrec_tsfix_init(&t->fix, tracks[i].timescale, &fo, &r->group);
  }
  *out = r;
  return PYREC_OK;
}

/* ---- files ---------------------------------------------------------------------------- */

static void fill_file_info(pyrec_rec *r, const rfile *f, int error, pyrec_rec_file *info) {
  memset(info, 0, sizeof *info);
  info->sequence = f->seq;
  info->fd = f->fd;
  info->start_ms = f->start_ms;
  info->end_ms = f->start_ms;
  info->error = error;
  info->error_msg = "";
  if (error) {
    const pyrec_errinfo *e = f->w ? pyrec_mp4w_error(f->w) : NULL;
    info->error_msg = e && e->code ? e->msg : r->err.code ? r->err.msg : pyrec_strerror(error);
  }
  if (!f->w)
    return;
  const pyrec_mp4w_stats *s = pyrec_mp4w_get_stats(f->w);
  info->stats = s;
  info->bytes = s->file_bytes;
  for (unsigned i = 0; i < r->n && i < s->ntracks; i++) {
    info->payload_bytes += s->track[i].bytes;
    info->packets += s->track[i].samples;
    if (s->track[i].samples) {
      int64_t end = track_ms(r, i, s->track[i].end_dts + f->base[i]);
      if (end > info->end_ms)
        info->end_ms = end;
    }
  }
}

/* Finish a file (end times per track; -1 = repeat the last duration) and hand it back. */
static int finish_file(pyrec_rec *r, rfile *f) {
  /* Finish even after another failure (e.g. the next file could not be opened): what this
   * file holds is complete. A writer with an I/O error returns it again here. */
  int rc = pyrec_mp4w_finish(f->w, f->end);
  if (rc)
    fail(r, rc, pyrec_mp4w_error(f->w));
  pyrec_rec_file info;
  fill_file_info(r, f, rc ? rc : (r->failed ? r->err.code : 0), &info);
  int cbrc = r->cb.close_file(r->cb.opaque, &info);
  pyrec_mp4w_free(f->w);
  f->w = NULL;
  f->fd = -1;
  if (cbrc && !rc) {
    pyrec_errinfo e;
    pyrec_seterr(&e, PYREC_E_CALLBACK, -1, "close_file callback failed (%d)", cbrc);
    rc = fail(r, PYREC_E_CALLBACK, &e);
  }
  return rc;
}

static int open_file(pyrec_rec *r, unsigned ti, const pkt *p, int64_t start_ms) {
  rfile *f = &r->cur;
  memset(f, 0, sizeof *f);
  f->fd = -1;
  f->seq = r->files;
  f->start_ms = start_ms;
  /* continuity: every file continues the first one's presentation timeline; files after
   * the first are based `rshift` later so that they need no edit list (unless the split
   * came before that point). Otherwise each file starts at its first packet. */
  int follow = r->o.continuity && r->have_rshift;
  int64_t media_time[PYREC_MAX_TRACKS];
  for (unsigned i = 0; i < r->n; i++) {
    uint32_t ts = r->t[i].desc.timescale;
    int64_t first = rescale_floor(p->dts, r->t[ti].desc.timescale, ts);
    f->last[i] = -1;
    f->end[i] = -1;
    if (follow) {
      int64_t at = r->t[i].origin + rescale_floor(r->rshift, r->t[r->rshift_track].desc.timescale, ts);
      f->base[i] = at < first ? at : first;
      media_time[i] = at - f->base[i];
    } else {
      f->base[i] = r->o.continuity ? r->t[i].origin : first;
    }
  }
  f->edit_fixed = follow;
  int fd = -1;
  if (r->cb.open_file(r->cb.opaque, f->seq, start_ms, &fd) || fd < 0) {
    pyrec_errinfo e;
    pyrec_seterr(&e, PYREC_E_CALLBACK, -1, "open_file callback failed for file %u", f->seq);
    return fail(r, PYREC_E_CALLBACK, &e);
  }
  f->fd = fd;
  r->files++;
  pyrec_mp4w_opts wo = {0};
  wo.part_duration_ms = r->o.part_duration_ms;
  wo.max_fragment_bytes = r->o.max_fragment_bytes;
  wo.finish = r->o.finish;
  pyrec_track_desc descs[PYREC_MAX_TRACKS];
  for (unsigned i = 0; i < r->n; i++)
    descs[i] = r->t[i].desc;
  pyrec_errinfo e;
  pyrec_clearerr(&e);
  int rc = pyrec_mp4w_open(&f->w, fd, descs, r->n, &wo, &e);
  if (rc) {
    pyrec_rec_file info;
    fill_file_info(r, f, rc, &info);
    r->cb.close_file(r->cb.opaque, &info);
    f->fd = -1;
    return fail(r, rc, &e);
  }
  if (follow)
    for (unsigned i = 0; i < r->n; i++)
      if (media_time[i] > 0)
        pyrec_mp4w_set_edit(f->w, i, media_time[i]);
  r->have_cur = 1;
  return PYREC_OK;
}

/* B-frames (and Opus pre-skip): a file's presentation starts at the earliest presentation
 * time of what it holds, which may come after its first decode time. Every track's edit list
 * starts there by the same amount, so A/V offsets stay the source's. With keep_leading every
 * track counts (no packet is presented before the file's start); live files start at the
 * anchor's first presentation time (as they start at its keyframe). Settled while the init
 * segment is not written yet. */
static void note_start(pyrec_rec *r, rfile *f, unsigned ti, const pkt *p) {
  if (pyrec_mp4w_get_stats(f->w)->file_bytes > 0) {
    f->edit_fixed = 1;
    return;
  }
  if (!r->o.keep_leading && r->anchor >= 0 && (int)ti != r->anchor)
    return;
  const rtrack *t = &r->t[ti];
  uint32_t ts = t->desc.timescale;
  int64_t q = (p->pts > p->dts ? p->pts : p->dts) - f->base[ti] + t->preskip;
  if (f->have_shift &&
      !time_lt(q, ts, f->shift, r->t[f->shift_track].desc.timescale))
    return;
  f->shift = q;
  f->shift_track = ti;
  f->have_shift = 1;
  for (unsigned i = 0; i < r->n; i++)
    pyrec_mp4w_set_edit(f->w, i, q > 0 ? rescale_floor(q, ts, r->t[i].desc.timescale) : -1);
}

/* The open file becomes the old one, waiting for each track's next decode time. */
static int rotate(pyrec_rec *r, unsigned ti, const pkt *p, int64_t ms) {
  int rc;
  if (r->o.continuity && !r->have_rshift) {
    /* The first file's presentation start is final now (it takes no more packets). */
    r->have_rshift = 1;
    r->rshift = r->cur.have_shift && r->cur.shift > 0 ? r->cur.shift : 0;
    r->rshift_track = r->cur.shift_track;
  }
  if (r->have_old) {
    r->have_old = 0;
    if ((rc = finish_file(r, &r->old)))
      return rc;
  }
  r->old = r->cur;
  r->have_old = 1;
  r->have_cur = 0;
  for (unsigned i = 0; i < r->n; i++) {
    r->old.end[i] = -1;
    r->old.pending[i] = r->old.last[i] >= 0;
  }
  return open_file(r, ti, p, ms);
}

/* A packet of track ti reaches the file sequence; tell the old file where that track ends. */
static int settle_old(pyrec_rec *r, unsigned ti, int64_t dts) {
  if (!r->have_old || !r->old.pending[ti])
    return PYREC_OK;
  r->old.pending[ti] = 0;
  r->old.end[ti] = dts - r->old.base[ti];
  for (unsigned i = 0; i < r->n; i++)
    if (r->old.pending[i])
      return PYREC_OK;
  r->have_old = 0;
  return finish_file(r, &r->old);
}

static int split_due(const pyrec_rec *r, int64_t ms) {
  if (r->split_at == PYREC_SPLIT_NOW)
    return 1;
  if (r->split_at != INT64_MAX && ms >= r->split_at)
    return 1;
  if (r->o.interval_ms > 0 && ms - r->cur.start_ms >= r->o.interval_ms)
    return 1;
  return 0;
}

/* A packet leaves the interleaver, in global decode order. */
static int emit(pyrec_rec *r, unsigned ti, const pkt *p) {
  rtrack *t = &r->t[ti];
  int is_anchor = r->anchor < 0 || (int)ti == r->anchor;
  int key = is_anchor && (p->flags & PYREC_SAMPLE_KEY || !t->video);
  int rc;
  if (!r->started) {
    if (!key && !r->o.keep_leading) {
      t->st.dropped_start++;
      return PYREC_OK;
    }
    for (unsigned i = 0; i < r->n; i++)
      r->t[i].origin = rescale_floor(p->dts, t->desc.timescale, r->t[i].desc.timescale);
    r->started = 1;
    if ((rc = open_file(r, ti, p, 0)))
      return rc;
  }
  int64_t ms = track_ms(r, ti, p->dts);
  if (key && r->have_cur && r->cur.last[ti] >= 0 && split_due(r, ms)) {
    r->split_at = INT64_MAX;
    if ((rc = rotate(r, ti, p, ms)))
      return rc;
  }
  if (!r->have_cur)
    return r->failed ? r->err.code : PYREC_E_STATE;
  rfile *f = &r->cur;
  int64_t dts = p->dts - f->base[ti];
  if (dts < 0 || dts <= f->last[ti]) {
    /* Before this file's start (a track released late after an interleave timeout). */
    if (f->last[ti] < 0)
      t->st.dropped_start++;
    else
      t->st.rejected++;
    return PYREC_OK;
  }
  if ((rc = settle_old(r, ti, p->dts)))
    return rc;
  if (!f->edit_fixed)
    note_start(r, f, ti, p);
  int64_t cto = p->pts - p->dts;
  if (cto > INT32_MAX)
    cto = INT32_MAX;
  rc = pyrec_mp4w_write(f->w, ti, dts, (int32_t)cto, p->flags, p->data, p->len);
  if (rc == PYREC_E_IO || rc == PYREC_E_NOMEM) {
    fail(r, rc, pyrec_mp4w_error(f->w));
    r->have_cur = 0;
    pyrec_rec_file info;
    fill_file_info(r, f, rc, &info);
    r->cb.close_file(r->cb.opaque, &info);
    pyrec_mp4w_free(f->w);
    f->w = NULL;
    return rc;
  }
  if (rc) {
    t->st.rejected++;
    r->err = *pyrec_mp4w_error(f->w); /* last per-packet problem, not sticky */
    return PYREC_OK;
  }
  f->last[ti] = dts;
  t->last_frame = frame_ticks(t, p->data, p->len);
  t->st.written++;
  if (ms > r->media_ms)
    r->media_ms = ms;
  return PYREC_OK;
}

/* ---- interleaving ---------------------------------------------------------------------- */

/* The queued packet that goes next: smallest time; the anchor track first on ties. */
static int next_track(const pyrec_rec *r) {
  int best = -1;
  for (unsigned i = 0; i < r->n; i++) {
    const qpkt *p = r->t[i].head;
    if (!p)
      continue;
    if (best < 0) {
      best = (int)i;
      continue;
    }
    const qpkt *b = r->t[best].head;
    uint32_t ti = r->t[i].desc.timescale, tb = r->t[best].desc.timescale;
    if (time_lt(p->dts, ti, b->dts, tb) ||
        ((int)i == r->anchor && !time_lt(b->dts, tb, p->dts, ti)))
      best = (int)i;
  }
  return best;
}

/* May the head of track `bi` go now? Every other track must be known not to bring anything
 * earlier: it has a packet at or after this time (queued or already seen). After the
 * interleave window a silent track no longer holds the others back. */
static int releasable(const pyrec_rec *r, int bi, int force) {
  if (force)
    return 1;
  const qpkt *p = r->t[bi].head;
  uint32_t ts = r->t[bi].desc.timescale;
  for (unsigned i = 0; i < r->n; i++) {
    if ((int)i == bi)
      continue;
    const rtrack *o = &r->t[i];
    if (o->head)
      continue; /* its queued head is >= p (p is the smallest) */
    if (o->seen && !time_lt(o->last_dts, o->desc.timescale, p->dts, ts))
      continue;
    /* Track i could still bring an earlier packet: wait, up to the window. */
    const rtrack *newest = NULL;
    for (unsigned j = 0; j < r->n; j++)
      if (r->t[j].seen && (!newest || time_lt(newest->last_dts, newest->desc.timescale,
                                               r->t[j].last_dts, r->t[j].desc.timescale)))
        newest = &r->t[j];
    int64_t newest_ms = rescale_floor(newest->last_dts, newest->desc.timescale, 1000);
    int64_t p_ms = rescale_floor(p->dts, ts, 1000);
    return newest_ms - p_ms > (int64_t)r->o.interleave_ms;
  }
  return 1;
}

/* No other track can still bring a packet before `dts` of track ti. */
static int passes(const pyrec_rec *r, unsigned ti, int64_t dts) {
  uint32_t ts = r->t[ti].desc.timescale;
  for (unsigned i = 0; i < r->n; i++) {
    const rtrack *o = &r->t[i];
    if (i == ti)
      continue;
    if (!o->seen || time_lt(o->last_dts, o->desc.timescale, dts, ts))
      return 0;
    /* ties: the anchor track goes first, so another track's packet at the same time as a
     * pending anchor packet must not overtake it (there is none: the queue is empty). */
  }
  return 1;
}

static int drain(pyrec_rec *r, int force) {
  for (;;) {
    int bi = next_track(r);
    if (bi < 0 || !releasable(r, bi, force))
      return PYREC_OK;
    rtrack *t = &r->t[bi];
    qpkt *p = t->head;
    t->head = p->next;
    if (!t->head)
      t->tail = NULL;
    r->queued--;
    pkt v = {p->dts, p->pts, p->flags, p->data, p->len};
    int rc = r->failed ? r->err.code : emit(r, (unsigned)bi, &v);
    free(p);
    if (rc)
      return rc;
  }
}

/* A repaired packet of track ti goes to the interleaver: straight through when nothing waits
 * and no other track can bring anything earlier (no copy: the common case for a single track
 * and for ordered input), else queued. `q` is the packet's copy when it has one (it waited in
 * tsfix; owned from here on), else NULL and data/len are the caller's. */
static int route(pyrec_rec *r, unsigned ti, const pyrec_tsout *o, unsigned flags,
                 const uint8_t *data, size_t len, qpkt *q) {
  rtrack *t = &r->t[ti];
  t->seen = 1;
  t->last_dts = o->dts;
  if (r->queued == 0 && passes(r, ti, o->dts)) {
    pkt v = {o->dts, o->pts, q ? q->flags : flags, q ? q->data : data, q ? q->len : len};
    int rc = emit(r, ti, &v);
    free(q);
    return rc;
  }
  if (!q) {
    if (!(q = malloc(sizeof *q + len)))
      return fail(r, PYREC_E_NOMEM, NULL);
    q->flags = flags;
    q->len = len;
    memcpy(q->data, data, len);
  }
  q->next = NULL;
  q->dts = o->dts;
  q->pts = o->pts;
  if (t->tail)
    t->tail->next = q;
  else
    t->head = q;
  t->tail = q;
  r->queued++;
  return drain(r, 0);
}

int pyrec_rec_write(pyrec_rec *r, unsigned track, int64_t dts, int64_t pts, unsigned flags,
                    const uint8_t *data, size_t len) {
  if (r->failed)
    return r->err.code;
  if (r->closed)
    return pyrec_seterr(&r->err, PYREC_E_STATE, -1, "the recorder is closed");
  if (track >= r->n)
    return pyrec_seterr(&r->err, PYREC_E_NOTRACK, -1, "no track %u (the recorder has %u)",
                        track, r->n);
  rtrack *t = &r->t[track];
  t->st.received++;
  if (len == 0) {
    t->st.rejected++;
    return pyrec_seterr(&r->err, PYREC_E_MALFORMED, -1, "track %u: empty payload", track);
  }
  /* tsfix may hold a packet until the next one of its track shows where it fits (a repeated
   * or backward DTS): such a packet waits here, copied, in t->held. */
  pyrec_tsout o[2];
  int had = pyrec_tsfix_holding(&t->fix);
  int n = pyrec_tsfix_push(&t->fix, dts, pts, o);
  qpkt *prev = NULL;
  if (had && n > 0) {
    prev = t->held;
    t->held = NULL;
  }
  if (pyrec_tsfix_holding(&t->fix)) {
    qpkt *q = malloc(sizeof *q + len);
    if (!q) {
      free(prev);
      return fail(r, PYREC_E_NOMEM, NULL);
    }
    q->next = NULL;
    q->flags = flags;
    q->len = len;
    memcpy(q->data, data, len);
    t->held = q;
  }
  int rc = PYREC_OK;
  if (prev)
    rc = route(r, track, &o[0], 0, NULL, 0, prev);
  if (!rc && n > (prev ? 1 : 0))
    rc = route(r, track, &o[n - 1], flags, data, len, NULL);
  return rc;
}

int pyrec_rec_write_in(pyrec_rec *r, unsigned track, int64_t dts, int64_t pts, unsigned flags,
                       const uint8_t *data, size_t len) {
  if (track < r->n && r->t[track].gridded && !r->failed && !r->closed && len) {
    rtrack *t = &r->t[track];
    pyrec_tsgrid_apply(&t->grid, dts, pts, (uint32_t)frame_ticks(t, data, len), &dts, &pts);
  }
  return pyrec_rec_write(r, track, dts, pts, flags, data, len);
}

int pyrec_rec_split(pyrec_rec *r, int64_t at_ms) {
  if (r->closed)
    return PYREC_E_STATE;
  r->split_at = at_ms;
  return PYREC_OK;
}

void pyrec_rec_reanchor(pyrec_rec *r) {
  for (unsigned i = 0; i < r->n; i++)
    pyrec_tsfix_reanchor(&r->t[i].fix);
}

int pyrec_rec_set_config(pyrec_rec *r, unsigned track, const uint8_t *config, size_t len,
                         pyrec_errinfo *err) {
  if (track >= r->n)
    return pyrec_seterr(err, PYREC_E_NOTRACK, -1, "no track %u", track);
  rtrack *t = &r->t[track];
  pyrec_track_desc d = t->desc;
  d.config = config;
  d.config_len = len;
  d.width = d.height = 0; /* from the new parameter sets */
  pyrec_codec_state cs;
  int rc = pyrec_codec_init(&cs, &d, err);
  pyrec_codec_free(&cs);
  if (rc)
    return rc;
  uint8_t *c = NULL;
  if (len) {
    if (!(c = malloc(len)))
      return pyrec_seterr(err, PYREC_E_NOMEM, -1, "out of memory");
    memcpy(c, config, len);
  }
  free(t->config);
  t->config = c;
  t->desc = d;
  t->desc.config = c;
  r->split_at = PYREC_SPLIT_NOW; /* the next file starts with the new configuration */
  return PYREC_OK;
}

unsigned pyrec_rec_ntracks(const pyrec_rec *r) { return r->n; }

int pyrec_rec_track_codec(const pyrec_rec *r, unsigned track) {
  return track < r->n ? r->t[track].desc.codec : PYREC_CODEC_NONE;
}

int pyrec_rec_flush(pyrec_rec *r) {
  if (r->failed)
    return r->err.code;
  if (r->have_cur) {
    int rc = pyrec_mp4w_flush(r->cur.w);
    if (rc)
      return fail(r, rc, pyrec_mp4w_error(r->cur.w));
  }
  return PYREC_OK;
}

int pyrec_rec_close(pyrec_rec *r) {
  if (r->closed)
    return r->failed ? r->err.code : PYREC_OK;
  int rc = r->failed ? r->err.code : PYREC_OK;
  for (unsigned i = 0; i < r->n && !rc; i++) { /* packets still waiting for a successor */
    pyrec_tsout o;
    qpkt *q = r->t[i].held;
    r->t[i].held = NULL;
    if (q && pyrec_tsfix_flush(&r->t[i].fix, &o))
      rc = route(r, i, &o, 0, NULL, 0, q);
    else
      free(q);
  }
  if (!rc)
    rc = drain(r, 1);
  r->closed = 1;
  if (r->have_old) {
    r->have_old = 0;
    int rc2 = finish_file(r, &r->old);
    if (!rc)
      rc = rc2;
  }
  if (r->have_cur) {
    r->have_cur = 0;
    for (unsigned i = 0; i < r->n; i++) /* an audio track's last frame: its own length */
      if (r->cur.last[i] >= 0 && r->t[i].last_frame > 0)
        r->cur.end[i] = r->cur.last[i] + r->t[i].last_frame;
    int rc2 = finish_file(r, &r->cur);
    if (!rc)
      rc = rc2;
  }
  return rc;
}

void pyrec_rec_free(pyrec_rec *r) {
  if (!r)
    return;
  if (!r->closed && (r->have_cur || r->have_old)) {
    pyrec_rec_close(r);
  }
  for (unsigned i = 0; i < r->n; i++) {
    qpkt *p = r->t[i].head;
    while (p) {
      qpkt *nx = p->next;
      free(p);
      p = nx;
    }
    free(r->t[i].held);
    free(r->t[i].config);
  }
  if (r->have_cur)
    pyrec_mp4w_free(r->cur.w);
  if (r->have_old)
    pyrec_mp4w_free(r->old.w);
  free(r);
}

void pyrec_rec_get_stats(const pyrec_rec *r, pyrec_rec_stats *out) {
  memset(out, 0, sizeof *out);
  out->ntracks = r->n;
  out->files = r->files;
  out->media_ms = r->media_ms;
  out->queued = r->queued;
  for (unsigned i = 0; i < r->n; i++) {
    out->track[i] = r->t[i].st;
    out->track[i].ts = r->t[i].fix.c;
  }
  for (unsigned i = 0; i < r->n; i++) /* gridded tracks are unwrapped before repair */
    out->track[i].ts.wrap += r->t[i].grid.wraps;
  if (r->have_cur && r->cur.w) {
    const pyrec_mp4w_stats *ws = pyrec_mp4w_get_stats(r->cur.w);
    out->file_open = 1;
    out->file_sequence = r->cur.seq;
    out->file_start_ms = r->cur.start_ms;
    out->file_bytes = ws->file_bytes;
    for (unsigned i = 0; i < ws->ntracks; i++)
      out->file_payload_bytes += ws->track[i].bytes;
  }
}

const pyrec_errinfo *pyrec_rec_error(const pyrec_rec *r) { return &r->err; }

const pyrec_mp4w *pyrec_rec_writer(const pyrec_rec *r) { return r->have_cur ? r->cur.w : NULL; }
