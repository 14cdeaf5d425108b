/* Growable byte buffer with big-endian writers: the one way the core builds boxes. */
#ifndef PYREC_BUF_H
#define PYREC_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct pyrec_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
  int oom; /* sticky: set when a grow failed; every later put is a no-op */
} pyrec_buf;

void pyrec_buf_init(pyrec_buf *b);
void pyrec_buf_free(pyrec_buf *b);
void pyrec_buf_reset(pyrec_buf *b); /* len = 0, keeps capacity */
int pyrec_buf_reserve(pyrec_buf *b, size_t extra); /* 0 or PYREC_E_NOMEM */

void pyrec_buf_put(pyrec_buf *b, const void *p, size_t n);
void pyrec_buf_u8(pyrec_buf *b, uint8_t v);
void pyrec_buf_u16(pyrec_buf *b, uint16_t v);
void pyrec_buf_u24(pyrec_buf *b, uint32_t v);
void pyrec_buf_u32(pyrec_buf *b, uint32_t v);
void pyrec_buf_u64(pyrec_buf *b, uint64_t v);
void pyrec_buf_zero(pyrec_buf *b, size_t n);
void pyrec_buf_fourcc(pyrec_buf *b, const char *cc); /* exactly 4 chars */

/* Boxes: begin writes a size placeholder and the type and returns the box start offset;
 * end patches the 32-bit size. full_begin also writes version and 24-bit flags. */
size_t pyrec_box_begin(pyrec_buf *b, const char *type);
size_t pyrec_fullbox_begin(pyrec_buf *b, const char *type, uint8_t version, uint32_t flags);
void pyrec_box_end(pyrec_buf *b, size_t start);

/* Overwrite at an absolute offset inside the buffer (offset + size must be <= len). */
void pyrec_buf_set_u32(pyrec_buf *b, size_t off, uint32_t v);
void pyrec_buf_set_u64(pyrec_buf *b, size_t off, uint64_t v);

/* Big-endian readers for bounds-checked parsing (caller checks lengths first). */
static inline uint16_t pyrec_rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t pyrec_rd24(const uint8_t *p) {
  return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
}
static inline uint32_t pyrec_rd32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

#endif
