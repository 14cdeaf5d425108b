/* Sample entries for the stsd box (ISO/IEC 14496-12 8.5.2) and their codec configuration
 * boxes: avcC/hvcC (14496-15), av1C (AV1-ISOBMFF), vpcC (VP codec ISO binding), esds
 * (14496-14) and dOps (Opus-in-ISOBMFF). One function per box. */
#include "codec_internal.h"

/* SampleEntry (14496-12 8.5.2.2): reserved[6], data_reference_index = 1. */
static size_t sample_entry_begin(pyrec_buf *b, const char *fourcc) {
  size_t start = pyrec_box_begin(b, fourcc);
  pyrec_buf_zero(b, 6);
  pyrec_buf_u16(b, 1);
  return start;
}

static uint16_t clamp16(uint32_t v) { return v > 0xffff ? 0xffff : (uint16_t)v; }

/* VisualSampleEntry (14496-12 12.1.3.2); the caller adds the config box and ends it. */
static size_t visual_entry_begin(pyrec_buf *b, const char *fourcc, uint32_t w, uint32_t h) {
  size_t start = sample_entry_begin(b, fourcc);
  pyrec_buf_u16(b, 0);           /* pre_defined */
  pyrec_buf_u16(b, 0);           /* reserved */
  pyrec_buf_zero(b, 12);         /* pre_defined[3] */
  pyrec_buf_u16(b, clamp16(w));  /* width */
  pyrec_buf_u16(b, clamp16(h));  /* height */
  pyrec_buf_u32(b, 0x00480000);  /* horizresolution 72 dpi */
  pyrec_buf_u32(b, 0x00480000);  /* vertresolution 72 dpi */
  pyrec_buf_u32(b, 0);           /* reserved */
  pyrec_buf_u16(b, 1);           /* frame_count */
  pyrec_buf_zero(b, 32);         /* compressorname (empty Pascal string) */
  pyrec_buf_u16(b, 0x0018);      /* depth */
  pyrec_buf_u16(b, 0xffff);      /* pre_defined = -1 */
  return start;
}

/* AudioSampleEntry (14496-12 12.2.3.2); the caller adds the config box and ends it. */
static size_t audio_entry_begin(pyrec_buf *b, const char *fourcc, uint32_t chans, uint32_t rate) {
  size_t start = sample_entry_begin(b, fourcc);
  pyrec_buf_zero(b, 8);                  /* reserved[2] */
  pyrec_buf_u16(b, clamp16(chans));      /* channelcount */
  pyrec_buf_u16(b, 16);                  /* samplesize */
  pyrec_buf_u16(b, 0);                   /* pre_defined */
  pyrec_buf_u16(b, 0);                   /* reserved */
  pyrec_buf_u32(b, rate > 0xffff ? 0 : rate << 16); /* samplerate 16.16 */
  return start;
}

/* avcC — AVCConfigurationBox (14496-15 5.4.2.1): the AVCDecoderConfigurationRecord. */
static void put_avcc(pyrec_buf *b, const pyrec_buf *rec) {
  size_t start = pyrec_box_begin(b, "avcC");
  pyrec_buf_put(b, rec->data, rec->len);
  pyrec_box_end(b, start);
}

/* hvcC — HEVCConfigurationBox (14496-15 8.4.1.1): the HEVCDecoderConfigurationRecord. */
static void put_hvcc(pyrec_buf *b, const pyrec_buf *rec) {
  size_t start = pyrec_box_begin(b, "hvcC");
  pyrec_buf_put(b, rec->data, rec->len);
  pyrec_box_end(b, start);
}

/* av1C — AV1CodecConfigurationBox (AV1-ISOBMFF 2.3.1). */
static void put_av1c(pyrec_buf *b, const pyrec_buf *rec) {
  size_t start = pyrec_box_begin(b, "av1C");
  pyrec_buf_put(b, rec->data, rec->len);
  pyrec_box_end(b, start);
}

/* vpcC — VPCodecConfigurationBox (VP codec ISO binding 2.2): FullBox version 1, flags 0. */
static void put_vpcc(pyrec_buf *b, const pyrec_buf *rec) {
  size_t start = pyrec_fullbox_begin(b, "vpcC", 1, 0);
  pyrec_buf_put(b, rec->data, rec->len);
  pyrec_box_end(b, start);
}

/* dOps — OpusSpecificBox (Opus-in-ISOBMFF 4.3.2). */
static void put_dops(pyrec_buf *b, const pyrec_buf *rec) {
  size_t start = pyrec_box_begin(b, "dOps");
  pyrec_buf_put(b, rec->data, rec->len);
  pyrec_box_end(b, start);
}

/* Descriptor header (14496-1 8.3.3): tag and sizeOfInstance in 7-bit groups. */
static void put_desc_head(pyrec_buf *b, uint8_t tag, size_t n) {
  uint8_t t[5];
  int k = 0;
  do {
    t[k++] = (uint8_t)(n & 0x7f);
    n >>= 7;
  } while (n && k < 4);
  pyrec_buf_u8(b, tag);
  while (k-- > 0)
    pyrec_buf_u8(b, (uint8_t)(t[k] | (k ? 0x80 : 0)));
}

static size_t desc_size(size_t n) {
  return 1 + (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4) + n;
}

/* esds — ESDBox (14496-14 5.6.1) holding an ES_Descriptor (14496-1 7.2.6.5) with a
 * DecoderConfigDescriptor (7.2.6.6), the DecoderSpecificInfo (AAC AudioSpecificConfig; none
 * for MP3) and an SLConfigDescriptor (predefined = 2). */
static void put_esds(pyrec_buf *b, uint8_t oti, const uint8_t *dsi, size_t dsi_len) {
  size_t start = pyrec_fullbox_begin(b, "esds", 0, 0);
  size_t dcd = 13 + (dsi_len ? desc_size(dsi_len) : 0);
  size_t es = 3 + desc_size(dcd) + desc_size(1);
  put_desc_head(b, 0x03, es); /* ES_DescrTag */
  pyrec_buf_u16(b, 0);        /* ES_ID */
  pyrec_buf_u8(b, 0);         /* no dependsOn / URL / OCR */
  put_desc_head(b, 0x04, dcd); /* DecoderConfigDescrTag */
  pyrec_buf_u8(b, oti);        /* objectTypeIndication */
  pyrec_buf_u8(b, 0x15);       /* streamType 5 (audio) << 2 | upStream 0 | reserved 1 */
  pyrec_buf_u24(b, 0);         /* bufferSizeDB */
  pyrec_buf_u32(b, 0);         /* maxBitrate (unknown when the init segment is written) */
  pyrec_buf_u32(b, 0);         /* avgBitrate (0 = variable) */
  if (dsi_len) {
    put_desc_head(b, 0x05, dsi_len); /* DecSpecificInfoTag */
    pyrec_buf_put(b, dsi, dsi_len);
  }
  put_desc_head(b, 0x06, 1); /* SLConfigDescrTag */
  pyrec_buf_u8(b, 0x02);     /* predefined: reserved for use in MP4 files */
  pyrec_box_end(b, start);
}

int pyrec_entry_write(const pyrec_codec_state *cs, pyrec_buf *out, pyrec_errinfo *err) {
  size_t start;
  switch (cs->codec) {
  case PYREC_CODEC_H264: /* avc1 — AVCSampleEntry (14496-15 5.4.2.1) */
    start = visual_entry_begin(out, "avc1", cs->width, cs->height);
    put_avcc(out, &cs->config);
    break;
  case PYREC_CODEC_H265: /* hvc1 — HEVCSampleEntry (14496-15 8.4.1.1) */
    start = visual_entry_begin(out, "hvc1", cs->width, cs->height);
    put_hvcc(out, &cs->config);
    break;
  case PYREC_CODEC_AV1: /* av01 — AV1SampleEntry (AV1-ISOBMFF 2.2) */
    start = visual_entry_begin(out, "av01", cs->width, cs->height);
    put_av1c(out, &cs->config);
    break;
  case PYREC_CODEC_VP9: /* vp09 — VP9SampleEntry (VP codec ISO binding 2.1) */
    start = visual_entry_begin(out, "vp09", cs->width, cs->height);
    put_vpcc(out, &cs->config);
    break;
  case PYREC_CODEC_AAC: /* mp4a — MP4AudioSampleEntry (14496-14 5.6) */
    start = audio_entry_begin(out, "mp4a", cs->channels, cs->sample_rate);
    put_esds(out, 0x40, cs->config.data, cs->config.len);
    break;
  case PYREC_CODEC_MP3: /* mp4a with objectTypeIndication 0x6B (MPEG-1 audio) */
    start = audio_entry_begin(out, "mp4a", cs->channels, cs->sample_rate);
    put_esds(out, 0x6b, NULL, 0);
    break;
  case PYREC_CODEC_OPUS: /* Opus — OpusSampleEntry (Opus-in-ISOBMFF 4.3.1) */
    start = audio_entry_begin(out, "Opus", cs->channels, 48000);
    put_dops(out, &cs->config);
    break;
  default:
    return pyrec_seterr(err, PYREC_E_CODEC, -1, "unsupported codec id %d", cs->codec);
  }
  pyrec_box_end(out, start);
  return PYREC_OK;
}
