/* Structure-aware fuzz target for Enhanced RTMP (v1/v2) tag bodies: each record (records.h)
 * is built into an ExVideoTagHeader / ExAudioTagHeader from fields (packet type, frame type,
 * ModEx prefixes with 8- and 16-bit sizes, Multitrack headers, a FourCC from the known set or
 * raw, the composition time where the FourCC has one) around the record's bytes, optionally
 * cut short by 0..7 bytes so every header length boundary is reached. The body then goes
 * through bodycheck.h (tag body parser, payload bounds, a recording source: the codec layer
 * sees the configs and frames).
 *
 * Record: kind bits 0-3 packet type, bit 4 audio, bits 5-6 ModEx prefixes (0..3), bit 7
 * Multitrack; aux bits 0-2 FourCC index (7: raw, 4 bytes from the body), bits 3-5 bytes cut
 * from the end, bit 6 16-bit ModEx sizes, bit 7 key frame. The body's first byte, when ModEx
 * is used, gives each modifier's size. Corpus: csrc/fuzz/corpus/ertmp (mkseeds.py). */
#include "bodycheck.h"
#include "records.h"

#include "pyrec/buf.h"

static const char vfourcc[7][5] = {"avc1", "hvc1", "av01", "vp09", "vvc1", "avc1", "hvc1"};
static const char afourcc[7][5] = {"Opus", "mp4a", ".mp3", "ac-3", "fLaC", "Opus", "mp4a"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  fz_sink z;
  pyrec_flvsrc *src = fz_source(&z, data[0]);
  if (!src)
    return 0;
  fz_reader r;
  fz_init(&r, data + 1, size - 1);
  uint32_t ts = 0;
  pyrec_buf b;
  pyrec_buf_init(&b);
  while (fz_next(&r)) {
    uint8_t k = r.cur.kind, aux = r.cur.aux;
    const uint8_t *in = r.cur.body;
    size_t inlen = r.cur.len, ip = 0;
    int audio = (k >> 4) & 1, ptype = k & 0x0f, nmodex = (k >> 5) & 3;
    int multitrack = k >> 7;
    pyrec_buf_reset(&b);
    uint8_t first = audio ? (uint8_t)(0x90 | (nmodex ? 7 : multitrack ? 5 : ptype))
                          : (uint8_t)(0x80 | ((aux & 0x80) ? 0x10 : 0x20) |
                                      (nmodex ? 7 : multitrack ? 6 : ptype));
    pyrec_buf_u8(&b, first);
    for (int m = 0; m < nmodex; m++) {
      size_t n = 1 + (inlen ? in[0] % 40 : 0);
      if (aux & 0x40) {
        pyrec_buf_u8(&b, 0xff);
        pyrec_buf_u16(&b, (uint16_t)(n - 1));
      } else {
        pyrec_buf_u8(&b, (uint8_t)(n - 1));
      }
      for (size_t i = 0; i < n; i++)
        pyrec_buf_u8(&b, (uint8_t)(i * 7));
      int next = m + 1 < nmodex ? 7 : multitrack ? (audio ? 5 : 6) : ptype;
      pyrec_buf_u8(&b, (uint8_t)next); /* ModExType 0 (TimestampOffsetNano) */
    }
    if (multitrack) /* AvMultitrackType (one track) | the packet type */
      pyrec_buf_u8(&b, (uint8_t)ptype);
    const char *fcc = audio ? afourcc[(aux & 7) % 7] : vfourcc[(aux & 7) % 7];
    if ((aux & 7) == 7) {
      for (int i = 0; i < 4; i++)
        pyrec_buf_u8(&b, ip < inlen ? in[ip++] : 0);
    } else {
      pyrec_buf_put(&b, fcc, 4);
    }
    if (multitrack) /* track id */
      pyrec_buf_u8(&b, ip < inlen ? in[ip++] : 0);
    if (!audio && ptype == 1 && (!memcmp(fcc, "avc1", 4) || !memcmp(fcc, "hvc1", 4)))
      pyrec_buf_u24(&b, (uint32_t)(ip < inlen ? in[ip++] : 0));
    pyrec_buf_put(&b, in + ip, inlen - ip);
    if (b.oom)
      break;
    size_t cut = (aux >> 3) & 7, n = b.len > cut ? b.len - cut : 0;
    uint8_t *body = malloc(n ? n : 1); /* exact size */
    memcpy(body, b.data, n);
    ts += 20;
    fz_check_body(audio ? 8 : 9, ts, body, n, src);
    free(body);
  }
  fz_done(&r);
  pyrec_buf_free(&b);
  pyrec_flvsrc_close(src);
  pyrec_flvsrc_free(src);
  return 0;
}
