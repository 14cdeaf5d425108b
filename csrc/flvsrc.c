/* FLV source: discovers tracks from FLV tags and fans packets out to recorders (sinks). */
#include "pyrec/flvsrc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A media tag held while the tracks are still being discovered. */
typedef struct heldtag {
  struct heldtag *next;
  int video;
  uint32_t timestamp;
  int32_t cts;
  int keyframe;
  size_t len;
  uint8_t data[];
} heldtag;

typedef struct srctrack {
  int present; /* seen in the stream */
  int index;   /* track id (order of appearance) */
  int codec;
  char unsupported[32]; /* codec label when pyrec cannot record it */
  uint32_t sample_rate, channels;
  pyrec_buf config;
  pyrec_flvsrc_track_stats st;
} srctrack;

typedef struct sink {
  pyrec_rec *rec; /* NULL = free slot */
  int map[2];     /* source track id -> recorder track, -1 not selected */
  int failed;
  pyrec_errinfo err;
} sink;

struct pyrec_flvsrc {
  pyrec_flvsrc_opts o;
  pyrec_flv_parser parser;
  srctrack v, a;
  srctrack *byid[2];
  unsigned ntracks;
  pyrec_flvsrc_track info[2];
  heldtag *held, *held_tail;
  size_t held_bytes;
  uint32_t first_ts;
  int have_first_ts;
  int ready, closed;
  sink sinks[PYREC_FLVSRC_MAX_SINKS];
  unsigned nsinks;
  int failed;
  pyrec_flvsrc_stats st;
  pyrec_errinfo err;
};

static int src_fail(pyrec_flvsrc *s, const pyrec_errinfo *e) {
  if (!s->failed) {
    s->failed = 1;
    s->err = *e;
  }
  return s->err.code;
}

static int tag_cb(void *opaque, const pyrec_flv_tag *tag) {
  return pyrec_flvsrc_tag(opaque, tag) ? 1 : 0;
}

int pyrec_flvsrc_new(pyrec_flvsrc **out, const pyrec_flvsrc_opts *o, pyrec_errinfo *err) {
  *out = NULL;
  pyrec_flvsrc *s = calloc(1, sizeof *s);
  if (!s)
    return pyrec_seterr(err, PYREC_E_NOMEM, -1, "out of memory");
  if (o)
    s->o = *o;
  if (!s->o.probe_ms)
    s->o.probe_ms = 3000;
  if (!s->o.max_probe_bytes)
    s->o.max_probe_bytes = 32u << 20;
  pyrec_buf_init(&s->v.config);
  pyrec_buf_init(&s->a.config);
  pyrec_clearerr(&s->err);
  pyrec_flv_init(&s->parser, 1, s->o.max_tag_size, tag_cb, s);
  *out = s;
  return PYREC_OK;
}

/* An unused sink slot, or -1 (with the error set) when the stream has the most it takes. */
static int free_slot(const pyrec_flvsrc *s, pyrec_errinfo *err) {
  for (int i = 0; i < PYREC_FLVSRC_MAX_SINKS; i++)
    if (!s->sinks[i].rec)
      return i;
  pyrec_seterr(err, PYREC_E_TOOBIG, -1, "a stream takes at most %d recordings",
               PYREC_FLVSRC_MAX_SINKS);
  return -1;
}

unsigned pyrec_flvsrc_ntracks(const pyrec_flvsrc *s) { return s->ready ? s->ntracks : 0; }

const pyrec_flvsrc_track *pyrec_flvsrc_track_info(const pyrec_flvsrc *s, unsigned i) {
  return s->ready && i < s->ntracks ? &s->info[i] : NULL;
}

int pyrec_flvsrc_attach(pyrec_flvsrc *s, uint32_t track_mask, const pyrec_rec_opts *o,
                        const pyrec_rec_callbacks *cb, int *id, pyrec_errinfo *err) {
  if (!s->ready || s->closed)
    return pyrec_seterr(err, PYREC_E_STATE, -1,
                        s->closed ? "the stream has ended" : "the stream's tracks are not known yet");
  int slot = free_slot(s, err);
  if (slot < 0)
    return PYREC_E_TOOBIG;
  pyrec_track_desc d[2];
  memset(d, 0, sizeof d);
  sink *k = &s->sinks[slot];
  unsigned n = 0;
  for (unsigned i = 0; i < s->ntracks; i++) {
    k->map[i] = -1;
    if (!(track_mask & (1u << i)))
      continue;
    const pyrec_flvsrc_track *t = &s->info[i];
    if (t->unsupported)
      return pyrec_seterr(err, PYREC_E_CODEC, -1,
                          "track %u (%s) has codec %s, which pyrec cannot record; select the "
                          "other tracks",
                          i, t->media == PYREC_MEDIA_VIDEO ? "video" : "audio", t->unsupported);
    d[n].codec = t->codec;
    /* Video keeps FLV's milliseconds; audio is timed at its sample rate so that frames get
     * their exact lengths (1024 AAC samples are not a whole number of milliseconds). */
    d[n].timescale = t->media == PYREC_MEDIA_AUDIO && t->sample_rate ? t->sample_rate : 1000;
    d[n].sample_rate = t->sample_rate;
    d[n].channels = t->channels;
    d[n].config = t->config;
    d[n].config_len = t->config_len;
    k->map[i] = (int)n++;
  }
  if (n == 0)
    return pyrec_seterr(err, PYREC_E_NOTRACK, -1, "no track selected (the stream has %u)",
                        s->ntracks);
  pyrec_rec_opts ro = o ? *o : (pyrec_rec_opts){0};
  ro.wrap_bits = 32; /* FLV/RTMP times are 32-bit milliseconds */
  for (unsigned i = 0; i < n; i++)
    ro.in_timescale[i] = 1000;
  int rc = pyrec_rec_new(&k->rec, d, n, &ro, cb, err);
  if (rc) {
    k->rec = NULL;
    return rc;
  }
  k->failed = 0;
  pyrec_clearerr(&k->err);
  s->nsinks++;
  *id = slot;
  return PYREC_OK;
}

pyrec_rec *pyrec_flvsrc_take(pyrec_flvsrc *s, int id) {
  pyrec_rec *r = pyrec_flvsrc_sink(s, id);
  if (r) {
    s->sinks[id].rec = NULL;
    s->nsinks--;
  }
  return r;
}

int pyrec_flvsrc_adopt(pyrec_flvsrc *s, pyrec_rec *rec, uint32_t track_mask, int *id,
                       pyrec_errinfo *err) {
  if (!s->ready || s->closed)
    return pyrec_seterr(err, PYREC_E_STATE, -1, "the stream's tracks are not known yet");
  int slot = free_slot(s, err);
  if (slot < 0)
    return PYREC_E_TOOBIG;
  sink *k = &s->sinks[slot];
  unsigned n = 0;
  for (unsigned i = 0; i < s->ntracks; i++) {
    k->map[i] = -1;
    if (!(track_mask & (1u << i)))
      continue;
    if (n >= pyrec_rec_ntracks(rec) || pyrec_rec_track_codec(rec, n) != s->info[i].codec)
      return pyrec_seterr(err, PYREC_E_CODEC, -1,
                          "the returning stream's tracks differ from the recording's");
    k->map[i] = (int)n++;
  }
  if (n != pyrec_rec_ntracks(rec))
    return pyrec_seterr(err, PYREC_E_CODEC, -1,
                        "the returning stream has fewer tracks than the recording");
  pyrec_rec_reanchor(rec);
  k->rec = rec;
  k->failed = 0;
  pyrec_clearerr(&k->err);
  s->nsinks++;
  *id = slot;
  return PYREC_OK;
}

pyrec_rec *pyrec_flvsrc_sink(pyrec_flvsrc *s, int id) {
  return id >= 0 && id < PYREC_FLVSRC_MAX_SINKS ? s->sinks[id].rec : NULL;
}

int pyrec_flvsrc_sink_error(const pyrec_flvsrc *s, int id, pyrec_errinfo *out) {
  if (id < 0 || id >= PYREC_FLVSRC_MAX_SINKS || !s->sinks[id].rec)
    return PYREC_E_NOTRACK;
  if (out)
    *out = s->sinks[id].err;
  return s->sinks[id].failed ? s->sinks[id].err.code : PYREC_OK;
}

int pyrec_flvsrc_detach(pyrec_flvsrc *s, int id) {
  pyrec_rec *r = pyrec_flvsrc_sink(s, id);
  if (!r)
    return PYREC_E_NOTRACK;
  sink *k = &s->sinks[id];
  int rc = pyrec_rec_close(r);
  if (rc && !k->failed) {
    k->failed = 1;
    k->err = *pyrec_rec_error(r);
  }
  rc = k->failed ? k->err.code : PYREC_OK;
  pyrec_rec_free(r);
  k->rec = NULL;
  s->nsinks--;
  return rc;
}

/* Audio format from the configuration record when the tag header cannot say it (AAC's
 * flags are fixed placeholders; Enhanced RTMP audio has none): AudioSpecificConfig
 * (ISO/IEC 14496-3 1.6.2.1) or OpusHead (RFC 7845 5.1). */
static void audio_format(srctrack *t) {
  static const uint32_t rates[13] = {96000, 88200, 64000, 48000, 44100, 32000, 24000,
                                     22050, 16000, 12000, 11025, 8000,  7350};
  const uint8_t *c = t->config.data;
  size_t n = t->config.len;
  if (t->codec == PYREC_CODEC_AAC && n >= 2) {
    unsigned idx = ((c[0] & 7u) << 1) | (c[1] >> 7);
    unsigned ch = (c[1] >> 3) & 15u;
    if (idx < 13)
      t->sample_rate = rates[idx];
    if (ch)
      t->channels = ch;
  } else if (t->codec == PYREC_CODEC_OPUS && n >= 10 && memcmp(c, "OpusHead", 8) == 0) {
    t->sample_rate = 48000;
    t->channels = c[9];
  } else if (t->codec == PYREC_CODEC_OPUS) {
    t->sample_rate = 48000; /* Opus is always timed at 48 kHz (RFC 7845 4) */
  }
}

/* MP3: the tag's rate flags stop at 44 kHz; the first frame header says the real rate. */
static void mp3_format(pyrec_flvsrc *s) {
  if (s->a.codec != PYREC_CODEC_MP3)
    return;
  for (const heldtag *h = s->held; h; h = h->next)
    if (!h->video) {
      uint32_t rate = pyrec_mp3_sample_rate(h->data, h->len);
      if (rate)
        s->a.sample_rate = rate;
      return;
    }
}

/* Tracks known: fix the track table and let the owner attach sinks. */
static void become_ready(pyrec_flvsrc *s) {
  audio_format(&s->a);
  mp3_format(s);
  s->ready = 1;
  for (unsigned i = 0; i < s->ntracks; i++) {
    srctrack *t = s->byid[i];
    pyrec_flvsrc_track *info = &s->info[i];
    info->media = t == &s->v ? PYREC_MEDIA_VIDEO : PYREC_MEDIA_AUDIO;
    info->codec = t->codec;
    info->unsupported = t->unsupported[0] ? t->unsupported : NULL;
    info->sample_rate = t->sample_rate;
    info->channels = t->channels;
    info->config = t->config.data;
    info->config_len = t->config.len;
  }
  if (s->o.on_ready)
    s->o.on_ready(s->o.opaque, s);
}

/* Per-track counters for the stream APIs (frame rate, bitrate, GOP length): a few additions
 * per frame, read on demand. */
static void count_frame(pyrec_flvsrc_track_stats *t, uint32_t ts, int32_t cts, int key,
                        size_t len) {
  if (!t->frames)
    t->first_ts = ts;
  t->last_ts = ts;
  t->frames++;
  t->bytes += len;
  if (cts != 0)
    t->reordered = 1;
  if (key) {
    if (t->keyframes)
      t->gop_frames = t->frames - 1 - t->last_key_frame;
    t->last_key_frame = t->frames - 1;
    t->keyframes++;
  }
}

static void write_frame(pyrec_flvsrc *s, int video, uint32_t ts, int32_t cts, int key,
                        const uint8_t *data, size_t len) {
  srctrack *t = video ? &s->v : &s->a;
  int64_t dts = ts;
  int64_t pts = video ? (int64_t)ts + cts : PYREC_NOPTS;
  s->st.media_bytes += len;
  count_frame(&t->st, ts, cts, key || !video, len);
  for (int i = 0; i < PYREC_FLVSRC_MAX_SINKS; i++) {
    sink *k = &s->sinks[i];
    if (!k->rec || k->failed || k->map[t->index] < 0)
      continue;
    int rc = pyrec_rec_write_in(k->rec, (unsigned)k->map[t->index], dts, pts,
                                key ? PYREC_SAMPLE_KEY : 0, data, len);
    if (rc && rc != PYREC_E_MALFORMED) {
      /* This sink is done (its open file was handed back with the error); others go on.
       * A malformed packet is counted by the recorder and skipped. */
      k->failed = 1;
      k->err = *pyrec_rec_error(k->rec);
    }
  }
}

static void release_held(pyrec_flvsrc *s) {
  while (s->held) {
    heldtag *h = s->held;
    s->held = h->next;
    write_frame(s, h->video, h->timestamp, h->cts, h->keyframe, h->data, h->len);
    free(h);
  }
  s->held_tail = NULL;
  s->held_bytes = 0;
}

/* Every track announced (header flags or out of band) has been seen, or waiting is over. */
static int probe_done(pyrec_flvsrc *s, uint32_t ts) {
  int want_v = s->parser.has_video || s->o.has_video || s->v.present;
  int want_a = s->parser.has_audio || s->o.has_audio || s->a.present;
  if ((!want_v || s->v.present) && (!want_a || s->a.present))
    return 1;
  if (s->held_bytes > s->o.max_probe_bytes)
    return 1;
  return s->have_first_ts && ts - s->first_ts >= s->o.probe_ms;
}

static int hold(pyrec_flvsrc *s, const pyrec_flv_tag *tag, int video) {
  heldtag *h = malloc(sizeof *h + tag->payload_len);
  if (!h) {
    pyrec_errinfo e;
    pyrec_seterr(&e, PYREC_E_NOMEM, -1, "out of memory");
    return src_fail(s, &e);
  }
  h->next = NULL;
  h->video = video;
  h->timestamp = tag->timestamp;
  h->cts = tag->cts;
  h->keyframe = tag->keyframe;
  h->len = tag->payload_len;
  if (tag->payload_len)
    memcpy(h->data, tag->payload, tag->payload_len);
  if (s->held_tail)
    s->held_tail->next = h;
  else
    s->held = h;
  s->held_tail = h;
  s->held_bytes += tag->payload_len;
  return PYREC_OK;
}

/* A new sequence header after the tracks were fixed (e.g. the encoder changed resolution):
 * every recording of that track starts a new file with it at the next keyframe. */
static void reconfigure(pyrec_flvsrc *s, srctrack *t, const pyrec_flv_tag *tag) {
  s->st.config_changes++;
  pyrec_buf_reset(&t->config);
  pyrec_buf_put(&t->config, tag->payload, tag->payload_len);
  pyrec_flvsrc_track *info = &s->info[t->index];
  info->config = t->config.data;
  info->config_len = t->config.len;
  for (int i = 0; i < PYREC_FLVSRC_MAX_SINKS; i++) {
    sink *k = &s->sinks[i];
    if (k->rec && !k->failed && k->map[t->index] >= 0) {
      pyrec_errinfo e;
      if (pyrec_rec_set_config(k->rec, (unsigned)k->map[t->index], tag->payload,
                               tag->payload_len, &e))
        s->st.bad_configs++;
    }
  }
}

int pyrec_flvsrc_tag(pyrec_flvsrc *s, const pyrec_flv_tag *tag) {
  if (s->failed)
    return s->err.code;
  if (s->closed)
    return PYREC_E_STATE;
  s->st.tags++;
  if (tag->type == PYREC_FLV_SCRIPT) {
    s->st.script_tags++;
    return PYREC_OK;
  }
  int video = tag->type == PYREC_FLV_VIDEO;
  if (tag->pkt == PYREC_FLV_PKT_EOS || tag->pkt == PYREC_FLV_PKT_OTHER) {
    s->st.ignored_tags++;
    return PYREC_OK;
  }
  srctrack *t = video ? &s->v : &s->a;
  if (!tag->supported) {
    /* Known as a track (so a selection of it gets a clear error), never recorded. */
    if (!t->present && !s->ready) {
      t->present = 1;
      t->codec = PYREC_CODEC_NONE;
      snprintf(t->unsupported, sizeof t->unsupported, "%s",
               tag->codec_label ? tag->codec_label : "(unknown)");
      t->index = (int)s->ntracks;
      s->byid[s->ntracks++] = t;
    }
    s->st.ignored_tags++;
    return PYREC_OK;
  }
  if (t->present && t->unsupported[0]) {
    pyrec_errinfo e;
    pyrec_seterr(&e, PYREC_E_CODEC, tag->offset, "%s codec changed from %s to %s mid-stream",
                 video ? "video" : "audio", t->unsupported, pyrec_codec_name(tag->codec));
    return src_fail(s, &e);
  }
  if (!t->present) {
    if (s->ready) {
      s->st.ignored_tags++; /* a track that appears after the tracks were fixed */
      return PYREC_OK;
    }
    t->present = 1;
    t->codec = tag->codec;
    t->sample_rate = tag->sample_rate;
    t->channels = tag->channels;
    t->index = (int)s->ntracks;
    s->byid[s->ntracks++] = t;
  } else if (t->codec != tag->codec) {
    pyrec_errinfo e;
    pyrec_seterr(&e, PYREC_E_CODEC, tag->offset, "%s codec changed from %s to %s mid-stream",
                 video ? "video" : "audio", pyrec_codec_name(t->codec),
                 pyrec_codec_name(tag->codec));
    return src_fail(s, &e);
  }
  if (tag->pkt == PYREC_FLV_PKT_CONFIG) {
    if (s->ready) {
      if (tag->payload_len != t->config.len ||
          (tag->payload_len && memcmp(tag->payload, t->config.data, tag->payload_len)))
        reconfigure(s, t, tag);
      return PYREC_OK;
    }
    pyrec_buf_reset(&t->config);
    pyrec_buf_put(&t->config, tag->payload, tag->payload_len);
    return PYREC_OK;
  }
  /* A coded frame. */
  if (!s->ready) {
    if (!s->have_first_ts) {
      s->have_first_ts = 1;
      s->first_ts = tag->timestamp;
    }
    int rc = hold(s, tag, video);
    if (rc)
      return rc;
    if (probe_done(s, tag->timestamp)) {
      become_ready(s);
      release_held(s);
    }
    return PYREC_OK;
  }
  write_frame(s, video, tag->timestamp, tag->cts, tag->keyframe, tag->payload, tag->payload_len);
  return PYREC_OK;
}

void pyrec_flvsrc_announce(pyrec_flvsrc *s, int has_video, int has_audio) {
  s->o.has_video |= has_video != 0;
  s->o.has_audio |= has_audio != 0;
}

int pyrec_flvsrc_feed(pyrec_flvsrc *s, const uint8_t *data, size_t len) {
  if (s->failed)
    return s->err.code;
  int rc = pyrec_flv_feed(&s->parser, data, len);
  if (rc && !s->failed)
    return src_fail(s, &s->parser.err);
  return s->failed ? s->err.code : rc;
}

int pyrec_flvsrc_close(pyrec_flvsrc *s) {
  if (s->closed)
    return s->failed ? s->err.code : PYREC_OK;
  if (!s->failed && pyrec_flv_finish(&s->parser))
    src_fail(s, &s->parser.err);
  if (!s->ready && s->ntracks) {
    /* End of input while probing: record what was found. Truncated or malformed input
     * still keeps its complete tags. */
    become_ready(s);
    release_held(s);
  }
  s->closed = 1;
  for (int i = 0; i < PYREC_FLVSRC_MAX_SINKS; i++) {
    sink *k = &s->sinks[i];
    if (!k->rec)
      continue;
    if (pyrec_rec_close(k->rec) && !k->failed) {
      k->failed = 1;
      k->err = *pyrec_rec_error(k->rec);
    }
  }
  return s->failed ? s->err.code : PYREC_OK;
}

void pyrec_flvsrc_free(pyrec_flvsrc *s) {
  if (!s)
    return;
  while (s->held) {
    heldtag *h = s->held;
    s->held = h->next;
    free(h);
  }
  for (int i = 0; i < PYREC_FLVSRC_MAX_SINKS; i++)
    pyrec_rec_free(s->sinks[i].rec);
  pyrec_flv_free(&s->parser);
  pyrec_buf_free(&s->v.config);
  pyrec_buf_free(&s->a.config);
  free(s);
}

void pyrec_flvsrc_get_track_stats(const pyrec_flvsrc *s, unsigned i,
                                  pyrec_flvsrc_track_stats *out) {
  memset(out, 0, sizeof *out);
  if (i < s->ntracks)
    *out = s->byid[i]->st;
}

void pyrec_flvsrc_get_stats(const pyrec_flvsrc *s, pyrec_flvsrc_stats *out) {
  *out = s->st;
  out->ntracks = s->ntracks;
  out->ready = s->ready;
  out->sinks = s->nsinks;
}

const pyrec_errinfo *pyrec_flvsrc_error(const pyrec_flvsrc *s) { return &s->err; }
