/* FLV source: discovers tracks from FLV tags and feeds the recorder. */
#include "pyrec/flvsrc.h"

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
  int present;   /* seen in the stream */
  int codec;
  int index;     /* recorder track index, -1 before start */
  uint32_t sample_rate, channels;
  pyrec_buf config;
} srctrack;

struct pyrec_flvsrc {
  pyrec_flvsrc_opts o;
  pyrec_rec_callbacks cb;
  pyrec_flv_parser parser;
  srctrack v, a;
  int order[2]; /* 'v'/'a' in order of appearance */
  int norder;
  heldtag *held, *held_tail;
  size_t held_bytes;
  uint32_t first_ts;
  int have_first_ts;
  pyrec_rec *rec;
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
  pyrec_flvsrc *s = opaque;
  return pyrec_flvsrc_tag(s, tag) ? 1 : 0;
}

int pyrec_flvsrc_new(pyrec_flvsrc **out, const pyrec_flvsrc_opts *o,
                     const pyrec_rec_callbacks *cb, pyrec_errinfo *err) {
  *out = NULL;
  pyrec_flvsrc *s = calloc(1, sizeof *s);
  if (!s)
    return pyrec_seterr(err, PYREC_E_NOMEM, -1, "out of memory");
  s->o = *o;
  s->o.rec.wrap_bits = 32;
  if (!s->o.probe_ms)
    s->o.probe_ms = 3000;
  if (!s->o.max_probe_bytes)
    s->o.max_probe_bytes = 32u << 20;
  if (!s->o.want_video && !s->o.want_audio) {
    free(s);
    return pyrec_seterr(err, PYREC_E_INVAL, -1, "no track selected (want_video/want_audio)");
  }
  s->cb = *cb;
  s->v.index = s->a.index = -1;
  s->st.video_track = s->st.audio_track = -1;
  pyrec_buf_init(&s->v.config);
  pyrec_buf_init(&s->a.config);
  pyrec_clearerr(&s->err);
  pyrec_flv_init(&s->parser, 1, s->o.max_tag_size, tag_cb, s);
  *out = s;
  return PYREC_OK;
}

/* Build the recorder from the tracks found, in order of appearance. */
static int start(pyrec_flvsrc *s) {
  pyrec_track_desc d[2];
  unsigned n = 0;
  memset(d, 0, sizeof d);
  for (int i = 0; i < s->norder; i++) {
    srctrack *t = s->order[i] == 'v' ? &s->v : &s->a;
    d[n].codec = t->codec;
    d[n].timescale = 1000;
    d[n].sample_rate = t->sample_rate;
    d[n].channels = t->channels;
    d[n].config = t->config.data;
    d[n].config_len = t->config.len;
    t->index = (int)n;
    n++;
  }
  if (n == 0) {
    pyrec_errinfo e;
    pyrec_seterr(&e, PYREC_E_STATE, -1, "the FLV input has no %s to record",
                 s->o.want_video && s->o.want_audio ? "audio or video"
                 : s->o.want_video                  ? "video"
                                                    : "audio");
    return src_fail(s, &e);
  }
  pyrec_errinfo e;
  pyrec_clearerr(&e);
  int rc = pyrec_rec_new(&s->rec, d, n, &s->o.rec, &s->cb, &e);
  if (rc)
    return src_fail(s, &e);
  s->st.video_track = s->v.index;
  s->st.audio_track = s->a.index;
  s->st.video_codec = s->v.present ? s->v.codec : 0;
  s->st.audio_codec = s->a.present ? s->a.codec : 0;
  return PYREC_OK;
}

static int write_frame(pyrec_flvsrc *s, int video, uint32_t ts, int32_t cts, int key,
                       const uint8_t *data, size_t len) {
  srctrack *t = video ? &s->v : &s->a;
  int64_t dts = ts;
  int64_t pts = video ? (int64_t)ts + cts : PYREC_NOPTS;
  int rc = pyrec_rec_write(s->rec, (unsigned)t->index, dts, pts, key ? PYREC_SAMPLE_KEY : 0,
                           data, len);
  if (rc == PYREC_E_MALFORMED)
    return PYREC_OK; /* counted by the recorder (rejected); one bad packet is not fatal */
  if (rc)
    return src_fail(s, pyrec_rec_error(s->rec));
  return PYREC_OK;
}

static int release_held(pyrec_flvsrc *s) {
  int rc = PYREC_OK;
  while (s->held) {
    heldtag *h = s->held;
    s->held = h->next;
    if (!rc)
      rc = write_frame(s, h->video, h->timestamp, h->cts, h->keyframe, h->data, h->len);
    free(h);
  }
  s->held_tail = NULL;
  s->held_bytes = 0;
  return rc;
}

/* Every track the header (or the wanted set) announces has been seen with what it needs. */
static int probe_done(pyrec_flvsrc *s, uint32_t ts) {
  int want_v = s->o.want_video && (s->parser.has_video || s->v.present);
  int want_a = s->o.want_audio && (s->parser.has_audio || s->a.present);
  int ready = (!want_v || s->v.present) && (!want_a || s->a.present);
  if (ready)
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

int pyrec_flvsrc_tag(pyrec_flvsrc *s, const pyrec_flv_tag *tag) {
  if (s->failed)
    return s->err.code;
  s->st.tags++;
  if (tag->type == PYREC_FLV_SCRIPT) {
    s->st.script_tags++;
    return PYREC_OK;
  }
  int video = tag->type == PYREC_FLV_VIDEO;
  if ((video && !s->o.want_video) || (!video && !s->o.want_audio) ||
      tag->pkt == PYREC_FLV_PKT_EOS || tag->pkt == PYREC_FLV_PKT_OTHER) {
    s->st.ignored_tags++;
    return PYREC_OK;
  }
  srctrack *t = video ? &s->v : &s->a;
  if (!tag->supported) {
    pyrec_errinfo e;
    pyrec_seterr(&e, PYREC_E_CODEC, tag->offset,
                 "%s codec %s is not supported (record the other tracks with a track selection)",
                 video ? "video" : "audio", tag->codec_label ? tag->codec_label : "(unknown)");
    return src_fail(s, &e);
  }
  if (!t->present) {
    if (s->rec) {
      s->st.ignored_tags++; /* a track that appears after recording started */
      return PYREC_OK;
    }
    t->present = 1;
    t->codec = tag->codec;
    t->sample_rate = tag->sample_rate;
    t->channels = tag->channels;
    s->order[s->norder++] = video ? 'v' : 'a';
  } else if (t->codec != tag->codec) {
    pyrec_errinfo e;
    pyrec_seterr(&e, PYREC_E_CODEC, tag->offset, "%s codec changed from %s to %s mid-stream",
                 video ? "video" : "audio", pyrec_codec_name(t->codec),
                 pyrec_codec_name(tag->codec));
    return src_fail(s, &e);
  }
  if (tag->pkt == PYREC_FLV_PKT_CONFIG) {
    if (s->rec) {
      if (tag->payload_len != t->config.len ||
          (tag->payload_len && memcmp(tag->payload, t->config.data, tag->payload_len)))
        s->st.config_changes++;
      return PYREC_OK;
    }
    pyrec_buf_reset(&t->config);
    pyrec_buf_put(&t->config, tag->payload, tag->payload_len);
    return PYREC_OK;
  }
  /* A coded frame. */
  if (!s->rec) {
    if (!s->have_first_ts) {
      s->have_first_ts = 1;
      s->first_ts = tag->timestamp;
    }
    int rc = hold(s, tag, video);
    if (rc)
      return rc;
    if (!probe_done(s, tag->timestamp))
      return PYREC_OK;
    if ((rc = start(s)))
      return rc;
    return release_held(s);
  }
  return write_frame(s, video, tag->timestamp, tag->cts, tag->keyframe, tag->payload,
                     tag->payload_len);
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
  int rc = PYREC_OK;
  if (!s->failed) {
    rc = pyrec_flv_finish(&s->parser);
    if (rc)
      src_fail(s, &s->parser.err);
  }
  if (!s->rec && s->held && (s->v.present || s->a.present)) {
    /* End of input while probing: record what was found. Truncated input still keeps
     * its complete tags. */
    int failed = s->failed;
    pyrec_errinfo saved = s->err;
    s->failed = 0;
    if (!start(s))
      release_held(s);
    if (failed) {
      s->failed = 1;
      s->err = saved;
    }
  }
  if (s->rec) {
    int rc2 = pyrec_rec_close(s->rec);
    if (rc2 && !s->failed)
      src_fail(s, pyrec_rec_error(s->rec));
  }
  return s->failed ? s->err.code : rc;
}

void pyrec_flvsrc_free(pyrec_flvsrc *s) {
  if (!s)
    return;
  while (s->held) {
    heldtag *h = s->held;
    s->held = h->next;
    free(h);
  }
  pyrec_rec_free(s->rec);
  pyrec_flv_free(&s->parser);
  pyrec_buf_free(&s->v.config);
  pyrec_buf_free(&s->a.config);
  free(s);
}

void pyrec_flvsrc_get_stats(const pyrec_flvsrc *s, pyrec_flvsrc_stats *out) { *out = s->st; }

const pyrec_errinfo *pyrec_flvsrc_error(const pyrec_flvsrc *s) { return &s->err; }

pyrec_rec *pyrec_flvsrc_recorder(pyrec_flvsrc *s) { return s->rec; }
