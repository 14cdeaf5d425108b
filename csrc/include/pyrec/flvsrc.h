/* FLV source (one stream): FLV tags (from a file, or RTMP messages) -> tracks -> sinks.
 * Finds the tracks (ids in order of appearance), their codecs and configuration records,
 * holds the first tags until every announced track is known ("ready"), then fans every
 * packet out to the attached sinks. A sink is one recorder (its own files, splits and track
 * selection); its errors stay its own: the stream and the other sinks carry on. */
#ifndef PYREC_FLVSRC_H
#define PYREC_FLVSRC_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/flv.h"
#include "pyrec/rec.h"

#define PYREC_FLVSRC_MAX_SINKS 32

typedef struct pyrec_flvsrc pyrec_flvsrc;

typedef struct pyrec_flvsrc_opts {
  uint32_t probe_ms;        /* wait at most this much media time for announced tracks; 0 = 3000 */
  uint32_t max_tag_size;    /* 0 = 16 MiB */
  uint32_t max_probe_bytes; /* held before ready; 0 = 32 MiB */
  int has_video, has_audio; /* tracks announced out of band (RTMP metadata); files use the
                               FLV header flags */
  /* Called once when the tracks are known, before the held tags are released: attach sinks
   * here to record from the very first keyframe. May be NULL. */
  void (*on_ready)(void *opaque, pyrec_flvsrc *s);
  void *opaque;
} pyrec_flvsrc_opts;

typedef struct pyrec_flvsrc_track {
  int media;   /* PYREC_MEDIA_VIDEO / _AUDIO */
  int codec;   /* pyrec_codec_id; PYREC_CODEC_NONE for a codec pyrec cannot record */
  const char *unsupported; /* that codec's name ("Nellymoser", "ac-3"), NULL when supported */
  uint32_t sample_rate, channels;
  const uint8_t *config;
  size_t config_len;
} pyrec_flvsrc_track;

typedef struct pyrec_flvsrc_stats {
  uint64_t tags;           /* tags seen */
  uint64_t script_tags;
  uint64_t ignored_tags;   /* EOS, metadata/command frames, tracks appearing after ready */
  uint64_t config_changes; /* a new, different sequence header after ready: recordings of
                              that track start a new file with it at the next keyframe */
  uint64_t bad_configs;    /* such headers that were not valid (the recordings keep the old) */
  uint64_t media_bytes;    /* audio/video payload bytes */
  unsigned ntracks;
  int ready;
  unsigned sinks;          /* attached now */
} pyrec_flvsrc_stats;

int pyrec_flvsrc_new(pyrec_flvsrc **out, const pyrec_flvsrc_opts *o, pyrec_errinfo *err);
/* Bytes of an FLV file/stream (with its 9-byte header). */
int pyrec_flvsrc_feed(pyrec_flvsrc *s, const uint8_t *data, size_t len);
/* One parsed tag (from an RTMP message). */
int pyrec_flvsrc_tag(pyrec_flvsrc *s, const pyrec_flv_tag *tag);
/* Tracks announced out of band after creation (RTMP onMetaData: videocodecid/audiocodecid):
 * the source waits for them before it becomes ready. No effect once ready. */
void pyrec_flvsrc_announce(pyrec_flvsrc *s, int has_video, int has_audio);
/* End of input: becomes ready if still probing, closes every sink (files finished).
 * Returns the source's own error (parsing), not the sinks'. */
int pyrec_flvsrc_close(pyrec_flvsrc *s);
void pyrec_flvsrc_free(pyrec_flvsrc *s);

/* Tracks, once ready (ntracks 0 before). */
unsigned pyrec_flvsrc_ntracks(const pyrec_flvsrc *s);
const pyrec_flvsrc_track *pyrec_flvsrc_track_info(const pyrec_flvsrc *s, unsigned i);

/* Attach a recorder fed with the tracks whose bit is set in `track_mask` (bit i = track i),
 * in track order. Only once ready. Returns the sink id in *id. Selecting a track whose codec
 * is not supported is PYREC_E_CODEC naming it. */
int pyrec_flvsrc_attach(pyrec_flvsrc *s, uint32_t track_mask, const pyrec_rec_opts *o,
                        const pyrec_rec_callbacks *cb, int *id, pyrec_errinfo *err);
/* Close (finish its files) and remove a sink. Returns the recorder's close result. */
int pyrec_flvsrc_detach(pyrec_flvsrc *s, int id);
/* Remove a sink without closing it: its recorder (files open) is handed to the caller. */
pyrec_rec *pyrec_flvsrc_take(pyrec_flvsrc *s, int id);
/* Attach an existing recorder (taken from another source of the same stream) to the tracks
 * of `track_mask`: they must have the recorder's codecs, in order (PYREC_E_CODEC otherwise).
 * Its timeline is re-anchored; its files go on. On success the source owns it. */
int pyrec_flvsrc_adopt(pyrec_flvsrc *s, pyrec_rec *rec, uint32_t track_mask, int *id,
                       pyrec_errinfo *err);
/* The sink's recorder (NULL for an unknown id) and its sticky error (0 if none). */
pyrec_rec *pyrec_flvsrc_sink(pyrec_flvsrc *s, int id);
int pyrec_flvsrc_sink_error(const pyrec_flvsrc *s, int id, pyrec_errinfo *out);

void pyrec_flvsrc_get_stats(const pyrec_flvsrc *s, pyrec_flvsrc_stats *out);

/* One track's frames as they were fanned out (after ready; held tags count when released). */
typedef struct pyrec_flvsrc_track_stats {
  uint64_t frames, bytes, keyframes; /* audio frames all count as keyframes */
  uint64_t last_key_frame;           /* frame number of the last keyframe */
  uint64_t gop_frames;               /* frames between the last two keyframes; 0: < 2 seen */
  uint32_t first_ts, last_ts;        /* FLV timestamps (ms) of the first and last frame */
  int reordered;                     /* some frame had a composition offset (B-frames) */
} pyrec_flvsrc_track_stats;
/* Zeros for an unknown track id. */
void pyrec_flvsrc_get_track_stats(const pyrec_flvsrc *s, unsigned i,
                                  pyrec_flvsrc_track_stats *out);
const pyrec_errinfo *pyrec_flvsrc_error(const pyrec_flvsrc *s);

#endif
