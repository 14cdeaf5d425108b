/* Fragmented MP4 writer (ISO/IEC 14496-12): init segment (ftyp + an 8-byte free box +
 * moov with mvex) then one moof+mdat per part, written with one write() each. A clean finish
 * patches the durations in place and then either appends an mfra index (PYREC_FINISH_FRAGMENTED)
 * or makes the file a progressive MP4 as well (PYREC_FINISH_HYBRID, the default): it appends a
 * complete moov (every sample in stbl, no mvex) and finally rewrites the reserved free box
 * into the header of one mdat covering the initial moov and every moof/mdat. */
#ifndef PYREC_FMP4_H
#define PYREC_FMP4_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/codec.h"
#include "pyrec/error.h"

#define PYREC_SAMPLE_KEY 0x1u /* sync sample (keyframe) */

#define PYREC_MAX_TRACKS 16

typedef struct pyrec_mp4w_opts {
  uint32_t part_duration_ms;   /* write a fragment at least this often (media time), or at the
                                  next video keyframe when keyframes come at most two parts
                                  apart (fragments then start on keyframes); 0 = 1000 */
  uint32_t movie_timescale;    /* mvhd timescale; 0 = 1000 */
  uint32_t max_fragment_bytes; /* write early when a fragment's media exceeds this; 0 = 16 MiB */
  uint32_t max_index_entries;  /* cap on mfra entries per track (thinned beyond); 0 = 65536 */
  int finish;                  /* PYREC_FINISH_HYBRID (0, default) or PYREC_FINISH_FRAGMENTED */
} pyrec_mp4w_opts;

#define PYREC_FINISH_HYBRID 0     /* fMP4 while recording, progressive MP4 once finished */
#define PYREC_FINISH_FRAGMENTED 1 /* fMP4 with an mfra index */

typedef struct pyrec_mp4w_track_stats {
  uint64_t samples;       /* samples written to the file (complete fragments) */
  uint64_t bytes;         /* payload bytes of those samples */
  int64_t first_dts;      /* -1 before the first sample */
  int64_t end_dts;        /* decode end (last dts + its duration) of what is written */
  uint64_t keyframes;
  int skipped;            /* 1 if the track had no configuration and was left out */
} pyrec_mp4w_track_stats;

typedef struct pyrec_mp4w_stats {
  uint64_t file_bytes;    /* bytes written to the fd so far */
  uint64_t fragments;
  int hybrid;             /* 1 once finish() made the file a progressive MP4 as well */
  unsigned ntracks;
  pyrec_mp4w_track_stats track[PYREC_MAX_TRACKS];
} pyrec_mp4w_stats;

typedef struct pyrec_mp4w pyrec_mp4w;

/* Open a writer on `fd` (write position must be 0; the writer uses write() and, for the
 * finish, pwrite()). The fd is not closed by the writer. Track i gets track_ID i+1. Copies
 * everything it needs from `tracks`. Errors (unknown codec, bad config) name the codec. */
int pyrec_mp4w_open(pyrec_mp4w **out, int fd, const pyrec_track_desc *tracks, unsigned ntracks,
                    const pyrec_mp4w_opts *opts, pyrec_errinfo *err);

/* Add one sample. `dts` is in the track's timescale, >= 0 and strictly increasing per track
 * (the caller repairs timestamps first; violations return PYREC_E_INVAL). `cto` = pts - dts
 * (signed; written with trun version 1). `flags`: PYREC_SAMPLE_KEY. The payload is converted
 * (see pyrec_codec_sample) and copied. The init segment is written before the first fragment,
 * once every track's configuration is known (a track whose configuration is still unknown by
 * then is left out and reported in stats.skipped; its later samples are dropped and return 0).
 * A rejected sample (bad dts, malformed payload) leaves the writer usable; I/O and memory
 * errors are sticky. */
int pyrec_mp4w_write(pyrec_mp4w *w, unsigned track, int64_t dts, int32_t cto, unsigned flags,
                     const uint8_t *data, size_t len);

/* Edit list for a track: presentation starts at `media_time` (track timescale) of the media
 * timeline. Must be called before the init segment is written; < 0 removes it. */
int pyrec_mp4w_set_edit(pyrec_mp4w *w, unsigned track, int64_t media_time);

/* Write what is pending now (all samples whose duration is known). */
int pyrec_mp4w_flush(pyrec_mp4w *w);

/* Finish the file: the last sample of each track ends at end_dts[track] (NULL, an entry < 0
 * or one not after the last dts repeats that track's previous sample duration; a track with
 * a single sample gets 1/25 s (video), one AAC/MP3 frame, or 20 ms); writes the last fragment, appends
 * mfra, patches mvhd/tkhd/mdhd/mehd/elst durations in place. The fd stays open. After an
 * error the writer only accepts free. */
int pyrec_mp4w_finish(pyrec_mp4w *w, const int64_t *end_dts);

void pyrec_mp4w_free(pyrec_mp4w *w);

/* ---- progressive moov (fmp4_moov.c), shared by the writer's hybrid finish and repair ---- */

/* Every sample of one track as the fragments hold it: per-sample arrays and the runs
 * ("chunks") of consecutive samples stored together, with their absolute file offsets. */
typedef struct pyrec_mp4_table {
  uint32_t track_id;
  int64_t first_dts;             /* decode time of sample 0 (the first tfdt) */
  size_t nsamples;
  const uint32_t *size;
  const uint32_t *duration;
  const int32_t *cto;            /* composition offsets (pts - dts); NULL = all 0 */
  const uint8_t *key;            /* non-zero = sync sample; NULL = every sample is sync */
  size_t nchunks;
  const uint64_t *chunk_offset;  /* file offset of each run's first byte */
  const uint32_t *chunk_samples; /* samples in each run (sum = nsamples) */
} pyrec_mp4_table;

/* Build into `out` the progressive moov of a file whose initial (fragmented) moov is
 * `moov[0..len)` (a whole moov box, as pyrec writes it) and whose samples are `tables` (one
 * per track_ID, any order; a trak without a table gets an empty sample table). Copies every
 * box but mvex, fills each stbl (stts, ctts, stss, stsz, stsc, stco or co64), sets the
 * durations and rewrites each edit list so every sample keeps the presentation time it has
 * in the fragments. Errors: PYREC_E_MALFORMED for a moov it cannot parse, PYREC_E_INVAL for
 * inconsistent tables, PYREC_E_NOMEM. */
int pyrec_mp4_progressive_moov(pyrec_buf *out, const uint8_t *moov, size_t len,
                               const pyrec_mp4_table *tables, unsigned ntables,
                               pyrec_errinfo *err);

/* The header that turns [region start, region start + size) into one mdat: 8 bytes
 * (32-bit size) when it fits, else 16 (size 1 + 64-bit largesize). Returns its length. */
size_t pyrec_mp4_region_header(uint8_t hdr[16], uint64_t size);

const pyrec_mp4w_stats *pyrec_mp4w_get_stats(const pyrec_mp4w *w);
const pyrec_errinfo *pyrec_mp4w_error(const pyrec_mp4w *w);
/* The codec state of a track (for width/height and the codecs string). */
const pyrec_codec_state *pyrec_mp4w_codec(const pyrec_mp4w *w, unsigned track);

#endif
