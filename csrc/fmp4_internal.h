/* Private state of the fragmented MP4 writer and the box writers shared by fmp4_writer.c and
 * fmp4_boxes.c (and the unit tests, which check the boxes byte for byte). */
#ifndef PYREC_FMP4_INTERNAL_H
#define PYREC_FMP4_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/buf.h"
#include "pyrec/codec.h"
#include "pyrec/error.h"
#include "pyrec/fmp4.h"

/* trun flags (ISO/IEC 14496-12 8.8.8.1) */
#define PYREC_TRUN_DATA_OFFSET 0x000001u
#define PYREC_TRUN_DURATION 0x000100u
#define PYREC_TRUN_SIZE 0x000200u
#define PYREC_TRUN_FLAGS 0x000400u
#define PYREC_TRUN_CTO 0x000800u
/* tfhd flags (8.8.7.1) */
#define PYREC_TFHD_BASE_IS_MOOF 0x020000u
/* sample flags (8.8.3.1): sample_depends_on = 2 (sync); depends_on = 1 + non-sync */
#define PYREC_SFLAGS_SYNC 0x02000000u
#define PYREC_SFLAGS_NONSYNC 0x01010000u

/* One pending sample: its bytes are in the track's data buffer, in order. */
typedef struct pyrec_mp4w_sample {
  int64_t dts;
  int32_t cto;
  uint32_t size;
  uint32_t duration; /* set when the fragment is built */
  uint32_t key;
} pyrec_mp4w_sample;

/* One mfra/tfra entry (8.8.10): a sync sample that can start playback. */
typedef struct pyrec_mp4w_tfra_entry {
  uint64_t time;
  uint64_t moof_offset;
  uint32_t traf_number;   /* 1-based */
  uint32_t sample_number; /* 1-based, in the (only) trun */
} pyrec_mp4w_tfra_entry;

typedef struct pyrec_mp4w_track {
  pyrec_codec_state cs;
  int cs_inited;
  uint32_t timescale;
  int media;       /* PYREC_MEDIA_VIDEO / _AUDIO */
  int in_moov;     /* written into the init segment */
  int has_edit;
  int64_t media_time;
  int have_last;
  int64_t last_dts;       /* of the last accepted sample (validation) */
  uint32_t last_duration; /* last known sample duration (finish fallback) */
  int have_key;           /* video, fragment policy: a keyframe was seen at last_key_dts; */
  int64_t last_key_dts;   /*   key_gap = distance between the last two keyframes (0 unknown) */
  int64_t key_gap;

  pyrec_mp4w_sample *s; /* pending samples; the last one is held back */
  size_t ns, cap;
  pyrec_buf data; /* their converted bytes */
  size_t n_emit;  /* samples in the fragment being built */
  size_t emit_bytes;

  pyrec_mp4w_tfra_entry *idx; /* mfra entries, capped (see fmp4_writer.c) */
  size_t nidx, cap_idx;
  uint64_t idx_stride, idx_cand;

  /* the sample table of what is written, for the hybrid finish's progressive moov: per
   * sample size, duration, composition offset and sync flag (13 bytes), per run of a
   * track's samples in one mdat its file offset and sample count */
  uint32_t *tab_size, *tab_dur;
  int32_t *tab_cto;
  uint8_t *tab_key;
  size_t tab_n, tab_cap;
  uint64_t *chunk_off;
  uint32_t *chunk_n;
  size_t nchunks, chunk_cap;

  /* absolute file offsets of the 64-bit durations patched by finish (0 = none) */
  uint64_t off_tkhd_dur, off_mdhd_dur, off_elst_dur;
} pyrec_mp4w_track;

struct pyrec_mp4w {
  int fd;
  pyrec_mp4w_opts opts;
  unsigned ntracks;
  pyrec_mp4w_track tracks[PYREC_MAX_TRACKS];
  int init_written;
  int finished;
  int sticky;         /* PYREC_E_IO / PYREC_E_NOMEM: every later call returns it */
  uint32_t seq;       /* last mfhd sequence_number */
  uint64_t off_mvhd_dur, off_mehd_dur;
  uint64_t off_free, off_moov; /* the reserved free box and the initial moov */
  pyrec_buf init_moov;         /* copy of the initial moov (hybrid finish) */
  int table_lost;              /* the sample table could not grow: finish falls back to mfra */
  pyrec_buf out;      /* moof+mdat (or init, mfra) being built */
  pyrec_mp4w_stats stats;
  pyrec_errinfo err;
};

/* fmp4_boxes.c: one function per box. Offsets returned through `*dur_off` are positions in
 * `b` of 64-bit duration fields patched at finish. */
void pyrec_fmp4_ftyp(pyrec_buf *b, int has_avc);
void pyrec_fmp4_free8(pyrec_buf *b);
void pyrec_fmp4_mvhd(pyrec_buf *b, uint32_t timescale, uint32_t next_track_id, size_t *dur_off);
void pyrec_fmp4_tkhd(pyrec_buf *b, uint32_t track_id, int media, uint32_t width,
                     uint32_t height, size_t *dur_off);
void pyrec_fmp4_edts(pyrec_buf *b, int64_t media_time, size_t *dur_off);
void pyrec_fmp4_mdhd(pyrec_buf *b, uint32_t timescale, size_t *dur_off);
void pyrec_fmp4_hdlr(pyrec_buf *b, int media);
void pyrec_fmp4_trex(pyrec_buf *b, uint32_t track_id);
void pyrec_fmp4_mfhd(pyrec_buf *b, uint32_t seq);
void pyrec_fmp4_tfhd(pyrec_buf *b, uint32_t track_id);
void pyrec_fmp4_tfdt(pyrec_buf *b, uint64_t base_media_decode_time);
/* Returns the position in `b` of the data_offset field. */
size_t pyrec_fmp4_trun(pyrec_buf *b, const pyrec_mp4w_sample *s, size_t n, int video);
void pyrec_fmp4_tfra(pyrec_buf *b, uint32_t track_id, const pyrec_mp4w_tfra_entry *e, size_t n);
void pyrec_fmp4_mfro(pyrec_buf *b, uint32_t mfra_size);

/* fmp4_moov.c: the sample-table boxes of a progressive moov (8.6.1.2, 8.6.1.3, 8.6.2,
 * 8.7.3.2, 8.7.4, 8.7.5). ctts writes cto + shift (version 0, non-negative); stco becomes
 * co64 when an offset passes 4 GiB. */
void pyrec_fmp4_stts(pyrec_buf *b, const uint32_t *dur, size_t n);
void pyrec_fmp4_ctts(pyrec_buf *b, const int32_t *cto, size_t n, int64_t shift);
void pyrec_fmp4_stss(pyrec_buf *b, const uint8_t *key, size_t n);
void pyrec_fmp4_stsz(pyrec_buf *b, const uint32_t *size, size_t n);
void pyrec_fmp4_stsc(pyrec_buf *b, const uint32_t *chunk_samples, size_t nchunks);
void pyrec_fmp4_stco(pyrec_buf *b, const uint64_t *off, size_t n);

/* Whole structures built from the writer state. */
int pyrec_fmp4_init_segment(pyrec_mp4w *w, pyrec_buf *b);
size_t pyrec_fmp4_moof(pyrec_mp4w *w, pyrec_buf *b, uint32_t seq);
void pyrec_fmp4_mdat_header(pyrec_buf *b, uint32_t payload);
void pyrec_fmp4_mfra(pyrec_mp4w *w, pyrec_buf *b);

#endif
