/* FLV source: FLV tags (from a file or, later, RTMP messages) -> tracks -> recorder.
 * Finds the tracks (order of appearance), their codecs and configuration records, buffers
 * the first tags until every announced track is known, then feeds the recorder. */
#ifndef PYREC_FLVSRC_H
#define PYREC_FLVSRC_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/flv.h"
#include "pyrec/rec.h"

typedef struct pyrec_flvsrc_opts {
  pyrec_rec_opts rec;      /* wrap_bits is forced to 32 (FLV times are 32-bit ms) */
  int want_video;          /* record the video track if the source has one */
  int want_audio;          /* record the audio track if the source has one */
  uint32_t probe_ms;       /* wait at most this much media time for announced tracks; 0 = 3000 */
  uint32_t max_tag_size;   /* 0 = 16 MiB */
  uint32_t max_probe_bytes; /* buffered before the recorder starts; 0 = 32 MiB */
} pyrec_flvsrc_opts;

typedef struct pyrec_flvsrc_stats {
  uint64_t tags;           /* tags seen */
  uint64_t script_tags;
  uint64_t ignored_tags;   /* tracks not wanted, EOS, metadata/command frames */
  uint64_t config_changes; /* a new, different sequence header after recording started */
  int video_track;         /* recorder track index, -1 when none */
  int audio_track;
  int video_codec, audio_codec;
} pyrec_flvsrc_stats;

typedef struct pyrec_flvsrc pyrec_flvsrc;

int pyrec_flvsrc_new(pyrec_flvsrc **out, const pyrec_flvsrc_opts *o,
                     const pyrec_rec_callbacks *cb, pyrec_errinfo *err);
/* Bytes of an FLV file/stream (with its 9-byte header). */
int pyrec_flvsrc_feed(pyrec_flvsrc *s, const uint8_t *data, size_t len);
/* One parsed tag (from an RTMP message). */
int pyrec_flvsrc_tag(pyrec_flvsrc *s, const pyrec_flv_tag *tag);
/* End of input: starts the recorder if still probing, closes it (files finished). */
int pyrec_flvsrc_close(pyrec_flvsrc *s);
void pyrec_flvsrc_free(pyrec_flvsrc *s);

void pyrec_flvsrc_get_stats(const pyrec_flvsrc *s, pyrec_flvsrc_stats *out);
const pyrec_errinfo *pyrec_flvsrc_error(const pyrec_flvsrc *s);
/* The recorder, once started (NULL while probing). */
pyrec_rec *pyrec_flvsrc_recorder(pyrec_flvsrc *s);

#endif
