/* FLV tags (legacy and Enhanced RTMP/FLV), parsed incrementally from a byte stream (files)
 * or one tag body at a time (RTMP messages). Every field is bounds-checked; errors carry the
 * byte offset. No allocation per tag for complete tags in the input.
 *
 * References: Adobe FLV v10.1 (annex E: FLV header, tags, Audio/VideoTagHeader) and Veovera
 * Enhanced RTMP v1/v2 (ExVideoTagHeader, ExAudioTagHeader, FourCC, ModEx).
 *
 * Stream layout: header (9 bytes, DataOffset >= 9, extra header bytes skipped), then
 * PreviousTagSize0 (not checked), then per tag: 11-byte tag header, DataSize bytes of body,
 * PreviousTagSize (must be 11 + DataSize unless `lax_prev_size`). A tag is reported as soon
 * as its body is complete, before its PreviousTagSize is read, so the last tag of a file cut
 * right after its body is still delivered (finish() then reports the 4 missing bytes).
 *
 * Error offsets (errinfo.offset, absolute in the stream): header errors → the bad field
 * (0 signature, 3 version, 5 DataOffset); tag errors (reserved bits, encryption, TOOBIG, malformed body, callback) → the
 * offset of the tag header; PreviousTagSize mismatch → the offset of the tag it follows (the
 * message also names the offset of the field itself); truncation → where the missing unit
 * started.
 *
 * Body rules (pyrec_flv_parse_body):
 *  - an empty body, or one shorter than the headers its first byte announces → MALFORMED;
 *  - a media tag whose payload after the headers is empty (e.g. an empty NALU packet) is a
 *    FRAME (or CONFIG/EOS) with payload_len 0: the caller decides what to do with it;
 *  - codecs pyrec cannot record are not errors: supported = 0 and codec_label names them
 *    (legacy ids such as "Sorenson H.263", "Nellymoser", or the FourCC, e.g. "ac-3");
 *    Enhanced RTMP multitrack → supported = 0, label "multitrack"; reserved packet types →
 *    supported = 0, label "unknown VideoPacketType"/"unknown AudioPacketType";
 *  - ModEx prefixes (E-RTMP v2) are skipped (TimestampOffsetNano is ignored);
 *  - video command frames (frame type 5, legacy or enhanced) and E-RTMP Metadata → OTHER;
 *  - legacy codec id 12 is taken as HEVC with the AVC layout (used by some servers). */
#ifndef PYREC_FLV_H
#define PYREC_FLV_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/buf.h"
#include "pyrec/error.h"

enum { PYREC_FLV_AUDIO = 8, PYREC_FLV_VIDEO = 9, PYREC_FLV_SCRIPT = 18 };

/* What a media tag carries. */
enum {
  PYREC_FLV_PKT_FRAME = 0,  /* coded frame(s) */
  PYREC_FLV_PKT_CONFIG = 1, /* sequence header / configuration record */
  PYREC_FLV_PKT_EOS = 2,    /* end of sequence */
  PYREC_FLV_PKT_OTHER = 3,  /* metadata / info frame / command frame: nothing to record */
};

typedef struct pyrec_flv_tag {
  uint8_t type;        /* PYREC_FLV_AUDIO / VIDEO / SCRIPT (others are skipped, not reported) */
  uint32_t timestamp;  /* ms, 32 bits (24 + extension byte) */
  int64_t offset;      /* byte offset of the tag header in the stream (-1 for single bodies) */
  int codec;           /* pyrec_codec_id, PYREC_CODEC_NONE for script data */
  const char *codec_label; /* for unsupported codecs: e.g. "Sorenson H.263", "Nellymoser", "ac-3";
                            * NULL for supported ones. May point at `fourcc` below: copy the
                            * string, not the pointer, if the tag struct is copied. */
  char fourcc[5];      /* Enhanced RTMP FourCC, NUL-terminated; "" for legacy headers */
  int supported;       /* 0 when the codec is one pyrec cannot record (codec_label names it) */
  int pkt;             /* PYREC_FLV_PKT_* */
  int keyframe;        /* video: frame type 1 (keyframe); audio: always 1 */
  int enhanced;        /* 1 when the body used an Enhanced RTMP (FourCC) header */
  int32_t cts;         /* video composition time offset, ms (signed 24 bit) */
  uint32_t sample_rate; /* audio: from the sound flags (AAC: 44100 placeholder, config wins);
                         * 0 with Enhanced RTMP audio (the config says) */
  uint32_t channels;    /* audio: 1 or 2 from the sound flags; 0 with Enhanced RTMP audio */
  const uint8_t *payload; /* frame data, config record, or script data (AMF0); borrowed */
  size_t payload_len;
} pyrec_flv_tag;

/* Return 0 to go on; non-zero stops parsing with PYREC_E_CALLBACK (err.msg keeps the
 * callback's return value). */
typedef int (*pyrec_flv_tag_cb)(void *opaque, const pyrec_flv_tag *tag);

typedef struct pyrec_flv_parser {
  pyrec_flv_tag_cb cb;
  void *opaque;
  uint32_t max_tag_size; /* tags with a larger data size are an error (PYREC_E_TOOBIG) */
  int state;             /* internal */
  int has_audio, has_video; /* from the FLV header flags */
  int64_t pos;           /* bytes consumed so far */
  pyrec_buf pending;     /* a tag split across feeds */
  size_t need;           /* bytes needed to complete what is pending */
  uint64_t tags;         /* tags reported */
  uint64_t skipped;      /* tags of unknown type skipped */
  int lax_prev_size;     /* 1: accept a wrong PreviousTagSize (counted in bad_prev_size) */
  int verify_trailer;    /* files: report a tag only after its PreviousTagSize matched */
  uint64_t bad_prev_size;
  /* internal */
  int64_t unit_off;      /* stream offset of the unit being parsed (header, tag, size) */
  size_t unit_total;     /* its total size once known, else 0 */
  uint64_t skip_left;    /* extra header bytes + PreviousTagSize0 still to skip */
  uint32_t last_tag_size; /* 11 + DataSize of the last tag, for the PreviousTagSize check */
  int64_t last_tag_off;  /* offset of the last tag header */
  pyrec_errinfo err;
} pyrec_flv_parser;

/* `expect_header`: 1 for a file/stream starting with the 9-byte FLV header and PreviousTagSize0;
 * 0 for input that starts at a tag header (each tag still followed by its PreviousTagSize).
 * max_tag_size 0 = 16 MiB. */
void pyrec_flv_init(pyrec_flv_parser *p, int expect_header, uint32_t max_tag_size,
                    pyrec_flv_tag_cb cb, void *opaque);
void pyrec_flv_free(pyrec_flv_parser *p);
/* Feed bytes, split anywhere; calls cb for each complete tag (tag->payload points into
 * `data` when the tag was complete inside it, else into `pending`; valid during the callback
 * only). After an error every later call returns it; details in p->err. */
int pyrec_flv_feed(pyrec_flv_parser *p, const uint8_t *data, size_t len);
/* End of input: PYREC_E_TRUNCATED if a partial tag or header is pending. */
int pyrec_flv_finish(pyrec_flv_parser *p);

/* Parse one tag body (an RTMP audio/video/data message, or the body of a file tag). `out`
 * gets offset -1 and borrows `body`. Errors: MALFORMED (too short, bad packet type), INVAL
 * (type not 8/9/18), with a message in `err` (offset -1). */
int pyrec_flv_parse_body(uint8_t type, uint32_t timestamp, const uint8_t *body, size_t len,
                         pyrec_flv_tag *out, pyrec_errinfo *err);

#endif
