/* Structure-aware fuzz target for the AMF0 reader: the input drives a grammar that writes
 * well-formed AMF0 (numbers, booleans, strings, long strings, XML, dates, references, objects,
 * typed objects, ECMA and strict arrays, nested up to 12 deep) with pyrec_amf0_put_* and raw
 * markers, so mutations change values and shapes instead of making every input garbage.
 * Checks: a well-formed encoding reads back whole (every value, every byte, every member walked
 * with the generated count); every prefix of it (exact-size copies: ASAN sees an overread)
 * is read without a crash and, when cut inside a value, gives an error with a message.
 *
 * Input: bytes consumed by the generator (a "kind" byte per value, then its lengths and
 * contents); byte 0x11 kinds insert a raw byte (any marker) and make the encoding "not
 * well-formed". Corpus: csrc/fuzz/corpus/amf0 (csrc/fuzz/mkseeds.py). */
#include "pyrec/amf0.h"
#include "pyrec/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gen {
  const uint8_t *p;
  size_t len, pos;
  int raw; /* a raw byte was inserted: the encoding may be invalid */
  pyrec_buf *b;
} gen;

static uint8_t g8(gen *g) { return g->pos < g->len ? g->p[g->pos++] : 0; }
static uint16_t g16(gen *g) { return (uint16_t)((g8(g) << 8) | g8(g)); }

static void gbytes(gen *g, size_t n, uint8_t *out) {
  for (size_t i = 0; i < n; i++)
    out[i] = g8(g);
}

static void gen_value(gen *g, int depth);

static void gen_props(gen *g, int depth, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    uint8_t key[40];
    size_t kl = 1 + g8(g) % (sizeof key - 1); /* non-empty keys: "" + 09 would end the object */
    gbytes(g, kl, key);
    pyrec_buf_u16(g->b, (uint16_t)kl);
    pyrec_buf_put(g->b, key, kl);
    gen_value(g, depth + 1);
  }
  pyrec_amf0_put_object_end(g->b);
}

static void gen_value(gen *g, int depth) {
  uint8_t k = g8(g);
  uint8_t tmp[300];
  if (depth >= 12 || g->b->len > 8192)
    k = 0;
  switch (k % 15) {
  case 0: {
    uint8_t d[8];
    gbytes(g, 8, d);
    pyrec_buf_u8(g->b, PYREC_AMF0_NUMBER);
    pyrec_buf_put(g->b, d, 8);
    break;
  }
  case 1:
    pyrec_amf0_put_bool(g->b, g8(g) & 1);
    break;
  case 2:
  case 3: { /* string / long string / XML document */
    size_t n = g8(g) % sizeof tmp;
    gbytes(g, n, tmp);
    uint8_t m = (k % 15) == 2 ? PYREC_AMF0_STRING : (k & 0x10) ? PYREC_AMF0_XML_DOC
                                                                : PYREC_AMF0_LONG_STRING;
    pyrec_buf_u8(g->b, m);
    if (m == PYREC_AMF0_STRING)
      pyrec_buf_u16(g->b, (uint16_t)n);
    else
      pyrec_buf_u32(g->b, (uint32_t)n);
    pyrec_buf_put(g->b, tmp, n);
    break;
  }
  case 4:
    pyrec_buf_u8(g->b, PYREC_AMF0_OBJECT);
    gen_props(g, depth, g8(g) % 6);
    break;
  case 5:
    pyrec_amf0_put_null(g->b);
    break;
  case 6:
    pyrec_amf0_put_undefined(g->b);
    break;
  case 7:
    pyrec_buf_u8(g->b, PYREC_AMF0_REFERENCE);
    pyrec_buf_u16(g->b, g16(g));
    break;
  case 8: { /* ECMA array: the count is advisory; sometimes the end marker is left out at the
               very end (allowed) -- not generated here, prefixes cover it */
    unsigned n = g8(g) % 6;
    pyrec_amf0_put_ecma_begin(g->b, (k & 0x80) ? g16(g) : n);
    gen_props(g, depth, n);
    break;
  }
  case 9: {
    unsigned n = g8(g) % 6;
    pyrec_amf0_put_strict_array_begin(g->b, n);
    for (unsigned i = 0; i < n; i++)
      gen_value(g, depth + 1);
    break;
  }
  case 10: {
    uint8_t d[8];
    gbytes(g, 8, d);
    pyrec_buf_u8(g->b, PYREC_AMF0_DATE);
    pyrec_buf_put(g->b, d, 8);
    pyrec_buf_u16(g->b, g16(g));
    break;
  }
  case 11: { /* typed object */
    size_t n = g8(g) % 32;
    gbytes(g, n, tmp);
    pyrec_buf_u8(g->b, PYREC_AMF0_TYPED_OBJECT);
    pyrec_buf_u16(g->b, (uint16_t)n);
    pyrec_buf_put(g->b, tmp, n);
    gen_props(g, depth, g8(g) % 6);
    break;
  }
  case 12:
    pyrec_buf_u8(g->b, PYREC_AMF0_UNSUPPORTED);
    break;
  case 13: /* a command as clients send it (three values: only at the top level) */
    pyrec_amf0_put_string(g->b, "publish");
    if (depth == 0) {
      pyrec_amf0_put_number(g->b, g8(g));
      pyrec_amf0_put_null(g->b);
    }
    break;
  default: /* a raw byte: any marker, possibly invalid */
    pyrec_buf_u8(g->b, g8(g));
    g->raw = 1;
    break;
  }
}

static size_t walk(const pyrec_amf0_value *v, int depth) {
  size_t it = 0, kl, n = 0;
  const uint8_t *k;
  pyrec_amf0_value w;
  if (depth > 40)
    abort(); /* the reader's depth limit failed */
  if (v->raw_len == 0 || (v->body && (v->body < v->raw || v->body + v->body_len > v->raw + v->raw_len)))
    abort(); /* a value's parts lie inside its encoding */
  while (pyrec_amf0_next_prop(v, &it, &k, &kl, &w)) {
    if (k < v->body || k + kl > v->body + v->body_len)
      abort();
    walk(&w, depth + 1);
    n++;
  }
  it = 0;
  while (pyrec_amf0_next_item(v, &it, &w)) {
    walk(&w, depth + 1);
    n++;
  }
  return n;
}

/* Read every value of `p` (exact-size copy); returns 0 when all of it was read. */
static int read_all(const uint8_t *p, size_t len) {
  uint8_t *copy = malloc(len ? len : 1);
  if (len)
    memcpy(copy, p, len);
  pyrec_errinfo e;
  pyrec_clearerr(&e);
  pyrec_amf0_reader r;
  pyrec_amf0_value v;
  pyrec_amf0_reader_init(&r, copy, len, &e);
  int rc = 0;
  while (!pyrec_amf0_at_end(&r)) {
    size_t before = r.pos;
    if ((rc = pyrec_amf0_read(&r, &v))) {
      if (!e.msg[0] || e.code != rc || r.pos != before)
        abort(); /* an error says what, and the reader stays at the failed value */
      if (getenv("PYREC_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz: %s\n", e.msg);
      break;
    }
    if (v.raw != copy + before || v.raw_len != r.pos - before)
      abort();
    walk(&v, 0);
  }
  free(copy);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pyrec_buf b;
  pyrec_buf_init(&b);
  gen g = {data, size, 0, 0, &b};
  int values = 0;
  while (g.pos < g.len && values < 16) {
    gen_value(&g, 0);
    values++;
  }
  if (b.oom) {
    pyrec_buf_free(&b);
    return 0;
  }
  int rc = read_all(b.data, b.len);
  if (rc && !g.raw) {
    fprintf(stderr, "fuzz: a well-formed AMF0 encoding (%zu bytes) did not read back:", b.len);
    for (size_t i = 0; i < b.len; i++)
      fprintf(stderr, "%s%02x", i % 32 ? "" : "\n  ", b.data[i]);
    fprintf(stderr, "\n");
    abort();
  }
  /* Every prefix (bounded: the first 600 cut points) */
  size_t cuts = b.len < 600 ? b.len : 600;
  for (size_t n = 0; n < cuts; n++)
    read_all(b.data, n);
  pyrec_buf_free(&b);
  return 0;
}
