/* Structure-aware fuzz target for FLV files: the input is a sequence of records (records.h),
 * each one tag that this target frames correctly (11-byte tag header with the right DataSize,
 * body, PreviousTagSize), so every mutation reaches the tag body parser and the recorder
 * instead of dying at the trailer check as with fuzz_flv.
 *
 * Input: UI8 mode (recorder options as in fuzz_flv; bit 7: feed in 1..97-byte pieces), then
 * records: kind bits 0-1 pick the tag type (0 audio 8, 1 video 9, 2 script 18, 3: kind >> 2 is
 * the raw 5-bit type); aux is the timestamp delta in ms (0xff: the timestamp restarts at 0).
 * Each body is also parsed on its own (bodycheck.h: payload within the body, ASAN on an
 * exact-size copy). Corpus: csrc/fuzz/corpus/flvtags (csrc/fuzz/mkseeds.py). */
#include "bodycheck.h"
#include "records.h"

#include "pyrec/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t mode = data[0];
  fz_sink z;
  pyrec_flvsrc *s = fz_source(&z, mode);
  if (!s)
    return 0;
  pyrec_buf flv;
  pyrec_buf_init(&flv);
  static const uint8_t hdr[13] = {'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0};
  pyrec_buf_put(&flv, hdr, sizeof hdr);
  fz_reader r;
  fz_init(&r, data + 1, size - 1);
  uint32_t ts = 0;
  while (fz_next(&r)) {
    uint8_t k = r.cur.kind;
    uint8_t type = (k & 3) == 0 ? 8 : (k & 3) == 1 ? 9 : (k & 3) == 2 ? 18 : (uint8_t)(k >> 2);
    ts = r.cur.aux == 0xff ? 0 : ts + r.cur.aux;
    if (type == 8 || type == 9 || type == 18)
      fz_check_body(type, ts, r.cur.body, r.cur.len, NULL);
    size_t n = r.cur.len;
    uint8_t th[11] = {(uint8_t)(type & 0x1f), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n,
                      (uint8_t)(ts >> 16), (uint8_t)(ts >> 8), (uint8_t)ts, (uint8_t)(ts >> 24),
                      0, 0, 0};
    uint32_t prev = (uint32_t)(11 + n);
    uint8_t pt[4] = {(uint8_t)(prev >> 24), (uint8_t)(prev >> 16), (uint8_t)(prev >> 8),
                     (uint8_t)prev};
    pyrec_buf_put(&flv, th, sizeof th);
    pyrec_buf_put(&flv, r.cur.body, n);
    pyrec_buf_put(&flv, pt, sizeof pt);
  }
  fz_done(&r);
  if (!flv.oom) {
    size_t step = (mode & 0x80) ? 1 + (size_t)(size % 97) : flv.len;
    for (size_t off = 0; off < flv.len; off += step) {
      size_t k = off + step <= flv.len ? step : flv.len - off;
      uint8_t *piece = malloc(k); /* exact-size pieces: ASAN sees any overread */
      memcpy(piece, flv.data + off, k);
      int rc = pyrec_flvsrc_feed(s, piece, k);
      free(piece);
      if (rc)
        break;
    }
  }
  pyrec_flvsrc_close(s);
  pyrec_flvsrc_free(s);
  pyrec_buf_free(&flv);
  return 0;
}
