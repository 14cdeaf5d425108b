/* Box writers for fragmented MP4 (ISO/IEC 14496-12): the init segment (ftyp + moov with mvex),
 * the fragment boxes (moof/mfhd/traf/tfhd/tfdt/trun) and the random access index
 * (mfra/tfra/mfro). One function per box; clause numbers refer to ISO/IEC 14496-12:2015.
 * Durations that are only known at the end are written as 64-bit zeros (version 1 boxes) and
 * their positions are returned so that the writer can patch them in place. */
#include "fmp4_internal.h"

#include <string.h>

/* The unity matrix used by mvhd and tkhd (8.2.2 / 8.3.2): {0x10000,0,0, 0,0x10000,0, 0,0,0x40000000} */
static void put_matrix(pyrec_buf *b) {
  static const uint32_t m[9] = {0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000};
  for (int i = 0; i < 9; i++)
    pyrec_buf_u32(b, m[i]);
}

/* ftyp — FileTypeBox (4.3). Brands: iso6 (tfdt v1, trun v1 signed offsets), iso5
 * (default-base-is-moof), isom, iso2, avc1 (H.264 only) and mp41, as FFmpeg's fragmented
 * output does. */
void pyrec_fmp4_ftyp(pyrec_buf *b, int has_avc) {
  size_t box = pyrec_box_begin(b, "ftyp");
  pyrec_buf_fourcc(b, "iso6"); /* major_brand */
  pyrec_buf_u32(b, 0);         /* minor_version */
  pyrec_buf_fourcc(b, "iso6");
  pyrec_buf_fourcc(b, "iso5");
  pyrec_buf_fourcc(b, "isom");
  pyrec_buf_fourcc(b, "iso2");
  if (has_avc)
    pyrec_buf_fourcc(b, "avc1");
  pyrec_buf_fourcc(b, "mp41");
  pyrec_box_end(b, box);
}

/* mvhd — MovieHeaderBox (8.2.2), version 1; duration patched at finish. */
void pyrec_fmp4_mvhd(pyrec_buf *b, uint32_t timescale, uint32_t next_track_id, size_t *dur_off) {
  size_t box = pyrec_fullbox_begin(b, "mvhd", 1, 0);
  pyrec_buf_u64(b, 0); /* creation_time */
  pyrec_buf_u64(b, 0); /* modification_time */
  pyrec_buf_u32(b, timescale);
  *dur_off = b->len;
  pyrec_buf_u64(b, 0);          /* duration */
  pyrec_buf_u32(b, 0x00010000); /* rate 1.0 */
  pyrec_buf_u16(b, 0x0100);     /* volume 1.0 */
  pyrec_buf_zero(b, 2 + 8);     /* reserved */
  put_matrix(b);
  pyrec_buf_zero(b, 6 * 4); /* pre_defined */
  pyrec_buf_u32(b, next_track_id);
  pyrec_box_end(b, box);
}

/* tkhd — TrackHeaderBox (8.3.2), version 1, flags track_enabled|track_in_movie. */
void pyrec_fmp4_tkhd(pyrec_buf *b, uint32_t track_id, int media, uint32_t width,
                     uint32_t height, size_t *dur_off) {
  int video = media == PYREC_MEDIA_VIDEO;
  size_t box = pyrec_fullbox_begin(b, "tkhd", 1, 3);
  pyrec_buf_u64(b, 0); /* creation_time */
  pyrec_buf_u64(b, 0); /* modification_time */
  pyrec_buf_u32(b, track_id);
  pyrec_buf_u32(b, 0); /* reserved */
  *dur_off = b->len;
  pyrec_buf_u64(b, 0);                  /* duration */
  pyrec_buf_zero(b, 8);                 /* reserved */
  pyrec_buf_u16(b, 0);                  /* layer */
  pyrec_buf_u16(b, 0);                  /* alternate_group */
  pyrec_buf_u16(b, video ? 0 : 0x0100); /* volume */
  pyrec_buf_u16(b, 0);                  /* reserved */
  put_matrix(b);
  /* 16.16 fixed point; values above 65535 cannot be represented and are clamped */
  pyrec_buf_u32(b, video ? (width > 0xFFFF ? 0xFFFF : width) << 16 : 0);
  pyrec_buf_u32(b, video ? (height > 0xFFFF ? 0xFFFF : height) << 16 : 0);
  pyrec_box_end(b, box);
}

/* elst — EditListBox (8.6.6), version 1, one entry: segment_duration (patched at finish),
 * media_time, media_rate 1.0. */
static void put_elst(pyrec_buf *b, int64_t media_time, size_t *dur_off) {
  size_t box = pyrec_fullbox_begin(b, "elst", 1, 0);
  pyrec_buf_u32(b, 1); /* entry_count */
  *dur_off = b->len;
  pyrec_buf_u64(b, 0);                    /* segment_duration */
  pyrec_buf_u64(b, (uint64_t)media_time); /* media_time (signed) */
  pyrec_buf_u16(b, 1);                    /* media_rate_integer */
  pyrec_buf_u16(b, 0);                    /* media_rate_fraction */
  pyrec_box_end(b, box);
}

/* edts — EditBox (8.6.5) holding the elst. */
void pyrec_fmp4_edts(pyrec_buf *b, int64_t media_time, size_t *dur_off) {
  size_t box = pyrec_box_begin(b, "edts");
  put_elst(b, media_time, dur_off);
  pyrec_box_end(b, box);
}

/* mdhd — MediaHeaderBox (8.4.2), version 1, language "und". */
void pyrec_fmp4_mdhd(pyrec_buf *b, uint32_t timescale, size_t *dur_off) {
  size_t box = pyrec_fullbox_begin(b, "mdhd", 1, 0);
  pyrec_buf_u64(b, 0); /* creation_time */
  pyrec_buf_u64(b, 0); /* modification_time */
  pyrec_buf_u32(b, timescale);
  *dur_off = b->len;
  pyrec_buf_u64(b, 0);      /* duration */
  pyrec_buf_u16(b, 0x55C4); /* pad(1) + ISO-639-2/T "und" packed as 3 x 5 bits */
  pyrec_buf_u16(b, 0);      /* pre_defined */
  pyrec_box_end(b, box);
}

/* hdlr — HandlerBox (8.4.3): "vide" or "soun". */
void pyrec_fmp4_hdlr(pyrec_buf *b, int media) {
  int video = media == PYREC_MEDIA_VIDEO;
  const char *name = video ? "VideoHandler" : "SoundHandler";
  size_t box = pyrec_fullbox_begin(b, "hdlr", 0, 0);
  pyrec_buf_u32(b, 0); /* pre_defined */
  pyrec_buf_fourcc(b, video ? "vide" : "soun");
  pyrec_buf_zero(b, 12);                 /* reserved */
  pyrec_buf_put(b, name, strlen(name) + 1); /* name, NUL-terminated UTF-8 */
  pyrec_box_end(b, box);
}

/* vmhd — VideoMediaHeaderBox (12.1.2), flags 1: graphicsmode copy, opcolor 0. */
static void put_vmhd(pyrec_buf *b) {
  size_t box = pyrec_fullbox_begin(b, "vmhd", 0, 1);
  pyrec_buf_zero(b, 2 + 3 * 2);
  pyrec_box_end(b, box);
}

/* smhd — SoundMediaHeaderBox (12.2.2): balance 0. */
static void put_smhd(pyrec_buf *b) {
  size_t box = pyrec_fullbox_begin(b, "smhd", 0, 0);
  pyrec_buf_zero(b, 2 + 2);
  pyrec_box_end(b, box);
}

/* dinf — DataInformationBox (8.7.1) with dref (8.7.2) holding one self-contained 'url '. */
static void put_dinf(pyrec_buf *b) {
  size_t dinf = pyrec_box_begin(b, "dinf");
  size_t dref = pyrec_fullbox_begin(b, "dref", 0, 0);
  pyrec_buf_u32(b, 1); /* entry_count */
  size_t url = pyrec_fullbox_begin(b, "url ", 0, 1); /* flags 1: media in this file */
  pyrec_box_end(b, url);
  pyrec_box_end(b, dref);
  pyrec_box_end(b, dinf);
}

/* An empty FullBox whose body is `nzero` zero bytes (entry_count 0 and such). */
static void put_empty_fullbox(pyrec_buf *b, const char *type, size_t nzero) {
  size_t box = pyrec_fullbox_begin(b, type, 0, 0);
  pyrec_buf_zero(b, nzero);
  pyrec_box_end(b, box);
}

/* stbl — SampleTableBox (8.5.1): stsd (8.5.2) with the codec's sample entry, and empty
 * stts (8.6.1.2), stsc (8.7.4), stsz (8.7.3.2) and stco (8.7.5): all samples live in the
 * fragments. */
static int put_stbl(pyrec_buf *b, const pyrec_codec_state *cs, pyrec_errinfo *err) {
  size_t stbl = pyrec_box_begin(b, "stbl");
  size_t stsd = pyrec_fullbox_begin(b, "stsd", 0, 0);
  pyrec_buf_u32(b, 1); /* entry_count */
  int rc = pyrec_codec_sample_entry(cs, b, err);
  if (rc)
    return rc;
  pyrec_box_end(b, stsd);
  put_empty_fullbox(b, "stts", 4);
  put_empty_fullbox(b, "stsc", 4);
  put_empty_fullbox(b, "stsz", 8); /* sample_size 0, sample_count 0 */
  put_empty_fullbox(b, "stco", 4);
  pyrec_box_end(b, stbl);
  return 0;
}

/* trak — TrackBox (8.3.1): tkhd, optional edts, mdia (8.4.1) with mdhd, hdlr and minf (8.4.4)
 * holding vmhd|smhd, dinf and stbl. */
static int put_trak(pyrec_mp4w *w, pyrec_buf *b, unsigned i) {
  pyrec_mp4w_track *t = &w->tracks[i];
  size_t off;
  size_t trak = pyrec_box_begin(b, "trak");
  pyrec_fmp4_tkhd(b, i + 1, t->media, t->cs.width, t->cs.height, &off);
  t->off_tkhd_dur = off;
  t->off_elst_dur = 0;
  if (t->has_edit) {
    pyrec_fmp4_edts(b, t->media_time, &off);
    t->off_elst_dur = off;
  }
  size_t mdia = pyrec_box_begin(b, "mdia");
  pyrec_fmp4_mdhd(b, t->timescale, &off);
  t->off_mdhd_dur = off;
  pyrec_fmp4_hdlr(b, t->media);
  size_t minf = pyrec_box_begin(b, "minf");
  if (t->media == PYREC_MEDIA_VIDEO)
    put_vmhd(b);
  else
    put_smhd(b);
  put_dinf(b);
  int rc = put_stbl(b, &t->cs, &w->err);
  if (rc)
    return rc;
  pyrec_box_end(b, minf);
  pyrec_box_end(b, mdia);
  pyrec_box_end(b, trak);
  return 0;
}

/* mehd — MovieExtendsHeaderBox (8.8.2), version 1; fragment_duration patched at finish. */
static void put_mehd(pyrec_buf *b, size_t *dur_off) {
  size_t box = pyrec_fullbox_begin(b, "mehd", 1, 0);
  *dur_off = b->len;
  pyrec_buf_u64(b, 0);
  pyrec_box_end(b, box);
}

/* trex — TrackExtendsBox (8.8.3): sample description 1; no defaults (every trun carries
 * durations, sizes and flags). */
void pyrec_fmp4_trex(pyrec_buf *b, uint32_t track_id) {
  size_t box = pyrec_fullbox_begin(b, "trex", 0, 0);
  pyrec_buf_u32(b, track_id);
  pyrec_buf_u32(b, 1); /* default_sample_description_index */
  pyrec_buf_u32(b, 0); /* default_sample_duration */
  pyrec_buf_u32(b, 0); /* default_sample_size */
  pyrec_buf_u32(b, 0); /* default_sample_flags */
  pyrec_box_end(b, box);
}

/* free — FreeSpaceBox (8.1.2), 8 bytes: reserved right after ftyp for the header that the
 * hybrid finish writes there (an mdat covering the initial moov and every fragment). */
void pyrec_fmp4_free8(pyrec_buf *b) {
  pyrec_buf_u32(b, 8);
  pyrec_buf_fourcc(b, "free");
}

/* The init segment: ftyp + free (8 bytes) + moov (8.2.1) with mvhd, one trak per track in the
 * movie and mvex (8.8.1) with mehd and one trex per track. Records the patch offsets, the
 * free box's and the moov's (the init segment is the start of the file, so buffer positions
 * are file offsets). */
int pyrec_fmp4_init_segment(pyrec_mp4w *w, pyrec_buf *b) {
  int has_avc = 0;
  for (unsigned i = 0; i < w->ntracks; i++)
    if (w->tracks[i].in_moov && w->tracks[i].cs.codec == PYREC_CODEC_H264)
      has_avc = 1;
  pyrec_fmp4_ftyp(b, has_avc);
  w->off_free = b->len;
  pyrec_fmp4_free8(b);
  size_t off;
  size_t moov = pyrec_box_begin(b, "moov");
  w->off_moov = moov;
  pyrec_fmp4_mvhd(b, w->opts.movie_timescale, w->ntracks + 1, &off);
  w->off_mvhd_dur = off;
  for (unsigned i = 0; i < w->ntracks; i++) {
    if (!w->tracks[i].in_moov)
      continue;
    int rc = put_trak(w, b, i);
    if (rc)
      return rc;
  }
  size_t mvex = pyrec_box_begin(b, "mvex");
  put_mehd(b, &off);
  w->off_mehd_dur = off;
  for (unsigned i = 0; i < w->ntracks; i++)
    if (w->tracks[i].in_moov)
      pyrec_fmp4_trex(b, i + 1);
  pyrec_box_end(b, mvex);
  pyrec_box_end(b, moov);
  return b->oom ? PYREC_E_NOMEM : 0;
}

/* mfhd — MovieFragmentHeaderBox (8.8.5). */
void pyrec_fmp4_mfhd(pyrec_buf *b, uint32_t seq) {
  size_t box = pyrec_fullbox_begin(b, "mfhd", 0, 0);
  pyrec_buf_u32(b, seq);
  pyrec_box_end(b, box);
}

/* tfhd — TrackFragmentHeaderBox (8.8.7), flags default-base-is-moof only. */
void pyrec_fmp4_tfhd(pyrec_buf *b, uint32_t track_id) {
  size_t box = pyrec_fullbox_begin(b, "tfhd", 0, PYREC_TFHD_BASE_IS_MOOF);
  pyrec_buf_u32(b, track_id);
  pyrec_box_end(b, box);
}

/* tfdt — TrackFragmentBaseMediaDecodeTimeBox (8.8.12), version 1. */
void pyrec_fmp4_tfdt(pyrec_buf *b, uint64_t base_media_decode_time) {
  size_t box = pyrec_fullbox_begin(b, "tfdt", 1, 0);
  pyrec_buf_u64(b, base_media_decode_time);
  pyrec_box_end(b, box);
}

/* trun — TrackRunBox (8.8.8), version 1 (signed composition offsets): data offset,
 * per-sample duration, size, flags and, for video, composition offset. The data offset is
 * written as 0 and patched by the caller once the moof size is known. */
size_t pyrec_fmp4_trun(pyrec_buf *b, const pyrec_mp4w_sample *s, size_t n, int video) {
  uint32_t flags = PYREC_TRUN_DATA_OFFSET | PYREC_TRUN_DURATION | PYREC_TRUN_SIZE |
                   PYREC_TRUN_FLAGS | (video ? PYREC_TRUN_CTO : 0);
  size_t box = pyrec_fullbox_begin(b, "trun", 1, flags);
  pyrec_buf_u32(b, (uint32_t)n);
  size_t data_off = b->len;
  pyrec_buf_u32(b, 0);
  if (pyrec_buf_reserve(b, n * 16) == 0) {
    for (size_t i = 0; i < n; i++) {
      pyrec_buf_u32(b, s[i].duration);
      pyrec_buf_u32(b, s[i].size);
      pyrec_buf_u32(b, (s[i].key || !video) ? PYREC_SFLAGS_SYNC : PYREC_SFLAGS_NONSYNC);
      if (video)
        pyrec_buf_u32(b, (uint32_t)s[i].cto); /* two's complement of the signed offset */
    }
  }
  pyrec_box_end(b, box);
  return data_off;
}

/* traf — TrackFragmentBox (8.8.6): tfhd, tfdt (first pending dts), trun with the samples
 * chosen for this fragment. Returns the position of the trun data_offset field. */
static size_t put_traf(pyrec_buf *b, uint32_t track_id, const pyrec_mp4w_track *t) {
  size_t traf = pyrec_box_begin(b, "traf");
  pyrec_fmp4_tfhd(b, track_id);
  pyrec_fmp4_tfdt(b, (uint64_t)t->s[0].dts);
  size_t data_off = pyrec_fmp4_trun(b, t->s, t->n_emit, t->media == PYREC_MEDIA_VIDEO);
  pyrec_box_end(b, traf);
  return data_off;
}

/* moof — MovieFragmentBox (8.8.4): mfhd, then one traf per track with samples in this
 * fragment (tracks with n_emit > 0, in track order). Each trun data_offset is relative to the
 * moof start (default-base-is-moof) and points into the mdat that directly follows (8-byte
 * header), where the tracks' bytes are laid out in traf order. Returns the moof size. */
size_t pyrec_fmp4_moof(pyrec_mp4w *w, pyrec_buf *b, uint32_t seq) {
  size_t data_off[PYREC_MAX_TRACKS];
  size_t moof = pyrec_box_begin(b, "moof");
  pyrec_fmp4_mfhd(b, seq);
  for (unsigned i = 0; i < w->ntracks; i++)
    if (w->tracks[i].n_emit)
      data_off[i] = put_traf(b, i + 1, &w->tracks[i]);
  pyrec_box_end(b, moof);
  size_t moof_size = b->len - moof;
  uint64_t pos = moof_size + 8;
  for (unsigned i = 0; i < w->ntracks; i++) {
    if (!w->tracks[i].n_emit)
      continue;
    pyrec_buf_set_u32(b, data_off[i], (uint32_t)pos); /* caller checks it fits int32 */
    pos += w->tracks[i].emit_bytes;
  }
  return moof_size;
}

/* mdat — MediaDataBox (8.1.1) header for `payload` bytes that the caller appends. */
void pyrec_fmp4_mdat_header(pyrec_buf *b, uint32_t payload) {
  pyrec_buf_u32(b, payload + 8);
  pyrec_buf_fourcc(b, "mdat");
}

/* tfra — TrackFragmentRandomAccessBox (8.8.10), version 1, 32-bit traf/trun/sample
 * numbers; every entry is in the first trun of its traf. */
void pyrec_fmp4_tfra(pyrec_buf *b, uint32_t track_id, const pyrec_mp4w_tfra_entry *e, size_t n) {
  size_t box = pyrec_fullbox_begin(b, "tfra", 1, 0);
  pyrec_buf_u32(b, track_id);
  pyrec_buf_u32(b, 0x3F); /* reserved(26)=0, length_size_of_traf/trun/sample_num = 3 (4 bytes) */
  pyrec_buf_u32(b, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    pyrec_buf_u64(b, e[i].time);
    pyrec_buf_u64(b, e[i].moof_offset);
    pyrec_buf_u32(b, e[i].traf_number);
    pyrec_buf_u32(b, 1); /* trun_number */
    pyrec_buf_u32(b, e[i].sample_number);
  }
  pyrec_box_end(b, box);
}

/* mfro — MovieFragmentRandomAccessOffsetBox (8.8.11): size of the enclosing mfra. */
void pyrec_fmp4_mfro(pyrec_buf *b, uint32_t mfra_size) {
  size_t box = pyrec_fullbox_begin(b, "mfro", 0, 0);
  pyrec_buf_u32(b, mfra_size);
  pyrec_box_end(b, box);
}

/* mfra — MovieFragmentRandomAccessBox (8.8.9): one tfra per track in the movie, then mfro
 * (always last, 16 bytes) so readers can find the mfra from the end of the file. */
void pyrec_fmp4_mfra(pyrec_mp4w *w, pyrec_buf *b) {
  size_t box = pyrec_box_begin(b, "mfra");
  for (unsigned i = 0; i < w->ntracks; i++) {
    const pyrec_mp4w_track *t = &w->tracks[i];
    if (t->in_moov)
      pyrec_fmp4_tfra(b, i + 1, t->idx, t->nidx);
  }
  pyrec_fmp4_mfro(b, (uint32_t)(b->len - box + 16));
  pyrec_box_end(b, box);
}
