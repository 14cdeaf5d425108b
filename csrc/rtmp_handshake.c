/* RTMP simple handshake, server side (Adobe RTMP spec 1.0, 5.2): C0 C1 -> S0 S1 S2, then C2.
 *
 * S1 = time (epoch_ms) + four zero bytes + 1528 pseudo-random bytes; S2 = C1 echoed. The zero
 * "version" field in S1 tells digest (FP9) clients that this is a simple handshake. The random
 * bytes only need to differ between connections, not to be secret: an xorshift generator
 * seeded from epoch_ms and C1 keeps the state machine pure and deterministic. */
#include "rtmp_internal.h"

#include <string.h>

void rtmp_hs_init(rtmp_hs *h, uint32_t epoch_ms) {
  memset(h, 0, sizeof *h);
  h->epoch = epoch_ms;
}

static void put_s0s1s2(const rtmp_hs *h, pyrec_buf *out) {
  uint64_t x = 0x9e3779b97f4a7c15ull ^ h->epoch;
  for (size_t i = 0; i < RTMP_HS_SIZE; i++) /* FNV-1a style mix of C1 into the seed */
    x = (x ^ h->c1[i]) * 0x100000001b3ull;
  if (!x)
    x = 1;
  if (pyrec_buf_reserve(out, 1 + 2 * RTMP_HS_SIZE))
    return;
  pyrec_buf_u8(out, 3); /* S0: version */
  pyrec_buf_u32(out, h->epoch);
  pyrec_buf_u32(out, 0);
  for (size_t i = 8; i < RTMP_HS_SIZE; i += 8) {
    x ^= x << 13; /* xorshift64 */
    x ^= x >> 7;
    x ^= x << 17;
    pyrec_buf_u64(out, x);
  }
  pyrec_buf_put(out, h->c1, RTMP_HS_SIZE); /* S2 */
}

int rtmp_hs_feed(rtmp_hs *h, const uint8_t *p, size_t len, size_t *used, pyrec_buf *out,
                 pyrec_errinfo *err, int64_t pos) {
  size_t i = 0;
  while (i < len && h->st < 3) {
    if (h->st == 0) {
      if (p[i] != 3) {
        *used = i;
        return pyrec_seterr(err, PYREC_E_MALFORMED, pos + (int64_t)i,
                            "handshake: C0 version %u, expected 3%s", p[i],
                            p[i] == 6 || p[i] == 8 ? " (RTMPE is not supported)" : "");
      }
      i++;
      h->st = 1;
      h->have = 0;
      continue;
    }
    size_t n = RTMP_HS_SIZE - h->have;
    if (n > len - i)
      n = len - i;
    if (h->st == 1)
      memcpy(h->c1 + h->have, p + i, n);
    h->have += n;
    i += n;
    if (h->have == RTMP_HS_SIZE) {
      if (h->st == 1)
        put_s0s1s2(h, out);
      h->st++;
      h->have = 0;
    }
  }
  *used = i;
  return out->oom ? PYREC_E_NOMEM : 0;
}
