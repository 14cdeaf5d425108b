/* Growable big-endian byte buffer and box helpers (ISO/IEC 14496-12 4.2 box header). */
#include "pyrec/buf.h"
#include "pyrec/error.h"

#include <stdlib.h>
#include <string.h>

void pyrec_buf_init(pyrec_buf *b) { memset(b, 0, sizeof *b); }

void pyrec_buf_free(pyrec_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

void pyrec_buf_reset(pyrec_buf *b) { b->len = 0; }

int pyrec_buf_reserve(pyrec_buf *b, size_t extra) {
  if (b->oom)
    return PYREC_E_NOMEM;
  if (extra <= b->cap - b->len)
    return PYREC_OK;
  if (extra > SIZE_MAX / 2 - b->len) {
    b->oom = 1;
    return PYREC_E_NOMEM;
  }
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 256;
  if (need > (64u << 10)) {
    /* Large buffers (a fragment of media) are reused, not grown often: fit them closely
     * (+1/8) instead of doubling, which would cost up to 2x the memory per stream. */
    cap = (need + need / 8 + 4095) & ~(size_t)4095;
  } else {
    while (cap < need)
      cap *= 2;
  }
  uint8_t *p = realloc(b->data, cap);
  if (!p) {
    b->oom = 1;
    return PYREC_E_NOMEM;
  }
  b->data = p;
  b->cap = cap;
  return PYREC_OK;
}

void pyrec_buf_put(pyrec_buf *b, const void *p, size_t n) {
  if (n == 0 || pyrec_buf_reserve(b, n))
    return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void pyrec_buf_u8(pyrec_buf *b, uint8_t v) { pyrec_buf_put(b, &v, 1); }

void pyrec_buf_u16(pyrec_buf *b, uint16_t v) {
  uint8_t t[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  pyrec_buf_put(b, t, 2);
}

void pyrec_buf_u24(pyrec_buf *b, uint32_t v) {
  uint8_t t[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  pyrec_buf_put(b, t, 3);
}

void pyrec_buf_u32(pyrec_buf *b, uint32_t v) {
  uint8_t t[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  pyrec_buf_put(b, t, 4);
}

void pyrec_buf_u64(pyrec_buf *b, uint64_t v) {
  pyrec_buf_u32(b, (uint32_t)(v >> 32));
  pyrec_buf_u32(b, (uint32_t)v);
}

void pyrec_buf_zero(pyrec_buf *b, size_t n) {
  if (n == 0 || pyrec_buf_reserve(b, n))
    return;
  memset(b->data + b->len, 0, n);
  b->len += n;
}

void pyrec_buf_fourcc(pyrec_buf *b, const char *cc) { pyrec_buf_put(b, cc, 4); }

size_t pyrec_box_begin(pyrec_buf *b, const char *type) {
  size_t start = b->len;
  pyrec_buf_u32(b, 0);
  pyrec_buf_fourcc(b, type);
  return start;
}

size_t pyrec_fullbox_begin(pyrec_buf *b, const char *type, uint8_t version, uint32_t flags) {
  size_t start = pyrec_box_begin(b, type);
  pyrec_buf_u8(b, version);
  pyrec_buf_u24(b, flags);
  return start;
}

void pyrec_box_end(pyrec_buf *b, size_t start) {
  if (!b->oom && start + 4 <= b->len)
    pyrec_buf_set_u32(b, start, (uint32_t)(b->len - start));
}

void pyrec_buf_set_u32(pyrec_buf *b, size_t off, uint32_t v) {
  if (b->oom || off + 4 > b->len)
    return;
  uint8_t *p = b->data + off;
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

void pyrec_buf_set_u64(pyrec_buf *b, size_t off, uint64_t v) {
  pyrec_buf_set_u32(b, off, (uint32_t)(v >> 32));
  pyrec_buf_set_u32(b, off + 4, (uint32_t)v);
}
