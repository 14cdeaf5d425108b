/* Private helpers shared by codec.c, codec_h26x.c, codec_av1vp9.c, codec_audio.c and
 * codec_entry.c: a bounds-checked bit reader and the per-codec entry points. */
#ifndef PYREC_CODEC_INTERNAL_H
#define PYREC_CODEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/buf.h"
#include "pyrec/codec.h"
#include "pyrec/error.h"

/* ---- bit reader ------------------------------------------------------------------------
 * MSB-first reader over [p, p+len). With `ep` set it drops H.264/H.265 emulation-prevention
 * bytes (00 00 03 -> 00 00) on the fly, so SPS fields can be read straight from a NAL unit.
 * Reading past the end sets `err` and yields zeros; callers check `err` once at the end. */
typedef struct pyrec_bits {
  const uint8_t *p;
  size_t len, pos; /* next byte to fetch */
  uint32_t cur;    /* current byte */
  int left;        /* bits left in cur */
  int zeros;       /* consecutive zero bytes fetched (emulation prevention) */
  int ep;
  int err;
} pyrec_bits;

void pyrec_bits_init(pyrec_bits *br, const uint8_t *p, size_t len, int ep);
uint32_t pyrec_bits_u(pyrec_bits *br, int n); /* n in 0..32 */
uint64_t pyrec_bits_u64(pyrec_bits *br, int n);
void pyrec_bits_skip(pyrec_bits *br, size_t n);
uint32_t pyrec_bits_ue(pyrec_bits *br); /* exp-Golomb ue(v), H.264 9.1 */
int32_t pyrec_bits_se(pyrec_bits *br);  /* se(v) */
uint32_t pyrec_bits_uvlc(pyrec_bits *br); /* AV1 4.10.3 uvlc() */

/* leb128 (AV1 4.10.5): value and byte count, 0 on truncation / overlong. */
size_t pyrec_leb128(const uint8_t *p, size_t len, uint64_t *val);

/* ---- H.264 / H.265 (codec_h26x.c) ------------------------------------------------------ */
int pyrec_h26x_init(pyrec_codec_state *cs, const uint8_t *cfg, size_t len, pyrec_errinfo *err);
int pyrec_h26x_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                      pyrec_errinfo *err);
/* Is this payload Annex B (start-code delimited)? `nal_len_size` disambiguates a 4-byte
 * length prefix that happens to begin 00 00 01. */
int pyrec_h26x_is_annexb(const uint8_t *p, size_t len, int nal_len_size);

/* ---- AV1 / VP9 (codec_av1vp9.c) -------------------------------------------------------- */
int pyrec_av1_init(pyrec_codec_state *cs, const uint8_t *cfg, size_t len, pyrec_errinfo *err);
int pyrec_av1_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                     pyrec_errinfo *err);
int pyrec_vp9_init(pyrec_codec_state *cs, const uint8_t *cfg, size_t len, pyrec_errinfo *err);
int pyrec_vp9_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                     pyrec_errinfo *err);

/* ---- AAC / MP3 / Opus (codec_audio.c) -------------------------------------------------- */
int pyrec_aac_init(pyrec_codec_state *cs, const uint8_t *cfg, size_t len, pyrec_errinfo *err);
int pyrec_aac_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                     pyrec_errinfo *err);
/* AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) summary. */
typedef struct pyrec_asc_info {
  unsigned aot;         /* audioObjectType (escape resolved) */
  unsigned sample_rate; /* output rate (extension rate for explicit SBR) */
  unsigned channels;    /* from channelConfiguration; 0 = in a PCE */
} pyrec_asc_info;
int pyrec_asc_parse(const uint8_t *p, size_t len, pyrec_asc_info *ai);
int pyrec_mp3_init(pyrec_codec_state *cs, pyrec_errinfo *err);
int pyrec_mp3_sample(pyrec_codec_state *cs, const uint8_t *in, size_t len, pyrec_buf *out,
                     pyrec_errinfo *err);
int pyrec_opus_init(pyrec_codec_state *cs, const uint8_t *cfg, size_t len, pyrec_errinfo *err);

/* ---- sample entries (codec_entry.c) ---------------------------------------------------- */
int pyrec_entry_write(const pyrec_codec_state *cs, pyrec_buf *out, pyrec_errinfo *err);

#endif
