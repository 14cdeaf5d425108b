/* Recorder: one recording of one source into a sequence of fMP4 files. Per packet:
 * timestamp repair -> cross-track interleaving (DTS order) -> keyframe-aligned splitting ->
 * fMP4 writer. Files are opened and closed through callbacks (the policy: paths, names,
 * info files) so the caller runs once per file, never per packet. */
#ifndef PYREC_REC_H
#define PYREC_REC_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/codec.h"
#include "pyrec/error.h"
#include "pyrec/fmp4.h"
#include "pyrec/tsfix.h"

typedef struct pyrec_rec_opts {
  uint32_t part_duration_ms; /* fragment cadence; 0 = 1000 */
  int continuity;            /* 1: timestamps continue across files; 0: each file starts at 0 */
  int64_t interval_ms;       /* split at the first anchor keyframe >= this after the file start */
  int wrap_bits;             /* input timestamp width: 32 (RTMP/FLV ms), 33 (MPEG-TS), 0 */
  int64_t jump_threshold_ms; /* DTS steps beyond this re-anchor; 0 = 10000, < 0 = off */
  uint32_t interleave_ms;    /* max wait for a silent track before releasing others; 0 = 1000 */
  uint32_t max_fragment_bytes; /* passed to the writer */
  /* 1: record from the very first packet of any track (file sources: every packet kept, as
   * `ffmpeg -c copy` does); 0: start at the first keyframe of the first video track (live
   * ingest: earlier packets are counted in dropped_start). */
  int keep_leading;
  /* Per track: timescale of the times given to pyrec_rec_write_in when it differs from the
   * track's timescale (FLV/RTMP milliseconds into an audio track timed at its sample rate);
   * 0 = the track's own. Audio converted this way lands on the sample grid (see
   * pyrec/tsgrid.h) before timestamp repair; wrap_bits then applies to these input times. */
  uint32_t in_timescale[PYREC_MAX_TRACKS];
  int finish;                /* passed to the writer: PYREC_FINISH_HYBRID (0) or _FRAGMENTED */
} pyrec_rec_opts;

/* What a finished (or failed) file looked like. Times in ms of the recording's media clock:
 * 0 = the first packet recorded (the first keyframe without keep_leading). */
typedef struct pyrec_rec_file {
  uint32_t sequence;
  int fd;
  int64_t start_ms, end_ms; /* media time span [start, end) */
  uint64_t bytes;           /* file size */
  uint64_t payload_bytes;   /* media bytes */
  uint64_t packets;         /* samples in the file (all tracks) */
  int error;                /* 0, or the error that ended this file (e.g. PYREC_E_IO) */
  const char *error_msg;    /* that error in words (e.g. the OS reason), "" when none */
  const pyrec_mp4w_stats *stats; /* per-track details, valid during the callback */
} pyrec_rec_file;

typedef struct pyrec_rec_callbacks {
  /* A new file is needed: return 0 and set *fd (opened for writing at offset 0), or non-zero
   * (the recorder goes to the error state, PYREC_E_CALLBACK). start_ms as in pyrec_rec_file. */
  int (*open_file)(void *opaque, uint32_t sequence, int64_t start_ms, int *fd);
  /* A file is complete (finished, or abandoned after an error). The callee owns the fd now
   * and closes it. Return non-zero to report a failure (PYREC_E_CALLBACK). */
  int (*close_file)(void *opaque, const pyrec_rec_file *file);
  void *opaque;
} pyrec_rec_callbacks;

typedef struct pyrec_rec_track_stats {
  pyrec_tsfix_counts ts;   /* repairs */
  uint64_t received;       /* packets given to pyrec_rec_write for this track */
  uint64_t written;        /* packets handed to a file */
  uint64_t dropped_start;  /* before the first keyframe (or aligned away at the start) */
  uint64_t rejected;       /* malformed or refused by the writer (e.g. empty payload) */
} pyrec_rec_track_stats;

typedef struct pyrec_rec_stats {
  unsigned ntracks;
  uint32_t files;          /* files opened so far */
  int64_t media_ms;        /* media time recorded so far (end of the last released packet) */
  uint64_t queued;         /* packets waiting in the interleaver */
  int file_open;           /* a file is open now: */
  uint32_t file_sequence;  /*   its sequence */
  int64_t file_start_ms;   /*   its start (media ms) */
  uint64_t file_bytes;     /*   bytes written to it so far */
  uint64_t file_payload_bytes;
  pyrec_rec_track_stats track[PYREC_MAX_TRACKS];
} pyrec_rec_stats;

typedef struct pyrec_rec pyrec_rec;

int pyrec_rec_new(pyrec_rec **out, const pyrec_track_desc *tracks, unsigned ntracks,
                  const pyrec_rec_opts *opts, const pyrec_rec_callbacks *cb, pyrec_errinfo *err);
/* One packet: raw input dts/pts in the track's timescale (pts may be PYREC_NOPTS), flags
 * PYREC_SAMPLE_KEY. The payload is copied if it has to wait. Returns PYREC_E_MALFORMED for an
 * empty payload, PYREC_E_NOTRACK, or the sticky error of a failed recorder (e.g. PYREC_E_IO). */
int pyrec_rec_write(pyrec_rec *r, unsigned track, int64_t dts, int64_t pts, unsigned flags,
                    const uint8_t *data, size_t len);
/* pyrec_rec_write with times in the track's input timescale (opts.in_timescale): converted
 * to the track's timescale first (audio: snapped to the sample grid when within 1 ms). */
int pyrec_rec_write_in(pyrec_rec *r, unsigned track, int64_t dts, int64_t pts, unsigned flags,
                       const uint8_t *data, size_t len);
/* Split at the next anchor keyframe (PYREC_SPLIT_NOW) or at the first one at or after media
 * time `at_ms`. A later request replaces an earlier one. */
#define PYREC_SPLIT_NOW INT64_MIN
int pyrec_rec_split(pyrec_rec *r, int64_t at_ms);
/* The source restarts its timeline (a publisher reconnected into the same recording): the
 * next packets continue one duration after the last ones, tracks kept aligned. */
void pyrec_rec_reanchor(pyrec_rec *r);
/* A new configuration record for a track (e.g. the encoder changed resolution): the open file
 * is finished at the next anchor keyframe and the next file carries the new configuration.
 * PYREC_E_CONFIG (and nothing changes) when the record is not valid for the track's codec. */
int pyrec_rec_set_config(pyrec_rec *r, unsigned track, const uint8_t *config, size_t len,
                         pyrec_errinfo *err);
unsigned pyrec_rec_ntracks(const pyrec_rec *r);
int pyrec_rec_track_codec(const pyrec_rec *r, unsigned track);
/* Write out what can be written (a wall-clock tick for live sources). */
int pyrec_rec_flush(pyrec_rec *r);
/* Release every queued packet, finish the open file(s). The recorder can't be written after. */
int pyrec_rec_close(pyrec_rec *r);
void pyrec_rec_free(pyrec_rec *r); /* closes first if needed (errors ignored) */

void pyrec_rec_get_stats(const pyrec_rec *r, pyrec_rec_stats *out);
const pyrec_errinfo *pyrec_rec_error(const pyrec_rec *r);
/* Open file's writer (NULL when none): for the current file's stats. */
const pyrec_mp4w *pyrec_rec_writer(const pyrec_rec *r);

#endif
