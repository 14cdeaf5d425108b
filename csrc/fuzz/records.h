/* Structure-aware fuzzing: the fuzz input is read as a sequence of records, each one message
 * (an FLV tag, an RTMP message, an E-RTMP body, ...) that the target frames correctly, so that
 * mutations land in bodies instead of breaking PreviousTagSize or chunk framing.
 *
 * Record layout: UI8 kind | UI8 aux | length | body
 *   length: UI8 n (0..0xfd), or 0xfe then UI16 BE, or 0xff then UI24 BE; clipped to the bytes
 *   left, so every input is a valid sequence. The meaning of kind and aux is the target's.
 * Each body is handed out as an exact-size heap copy: ASAN reports a read one byte past it. */
#ifndef PYREC_FUZZ_RECORDS_H
#define PYREC_FUZZ_RECORDS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct fz_rec {
  uint8_t kind, aux;
  uint8_t *body; /* exact-size copy (malloc'd, at least 1 byte allocated), freed by fz_next */
  size_t len;
} fz_rec;

typedef struct fz_reader {
  const uint8_t *p;
  size_t len, pos;
  fz_rec cur;
} fz_reader;

static inline void fz_init(fz_reader *r, const uint8_t *p, size_t len) {
  memset(r, 0, sizeof *r);
  r->p = p;
  r->len = len;
}

/* The next record in r->cur; 0 at the end of the input. */
static inline int fz_next(fz_reader *r) {
  free(r->cur.body);
  r->cur.body = NULL;
  if (r->len - r->pos < 3)
    return 0;
  r->cur.kind = r->p[r->pos++];
  r->cur.aux = r->p[r->pos++];
  size_t n = r->p[r->pos++];
  if (n == 0xfe || n == 0xff) {
    size_t w = n == 0xfe ? 2 : 3;
    n = 0;
    for (size_t i = 0; i < w && r->pos < r->len; i++)
      n = (n << 8) | r->p[r->pos++];
  }
  if (n > r->len - r->pos)
    n = r->len - r->pos;
  r->cur.body = malloc(n ? n : 1);
  if (!r->cur.body)
    abort();
  memcpy(r->cur.body, r->p + r->pos, n);
  r->cur.len = n;
  r->pos += n;
  return 1;
}

static inline void fz_done(fz_reader *r) {
  free(r->cur.body);
  r->cur.body = NULL;
}

#endif
