/* AMF0 reader/writer: exact encodings, round trips, container walks, malformed input
 * (truncation at every byte, depth bombs, bad markers). */
#include "pyrec/amf0.h"
#include "t.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define B(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static void check_bytes(const pyrec_buf *b, const uint8_t *want, size_t n) {
  CHECK_EQ(b->len, n);
  if (b->len == n)
    CHECK_MEM(b->data, want, n);
}

static void test_writer_exact(void) {
  pyrec_buf b;
  pyrec_buf_init(&b);
  pyrec_amf0_put_number(&b, 1.0);
  check_bytes(&b, B(0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0));
  pyrec_buf_reset(&b);
  pyrec_amf0_put_string(&b, "ab");
  pyrec_amf0_put_bool(&b, 1);
  pyrec_amf0_put_null(&b);
  pyrec_amf0_put_undefined(&b);
  check_bytes(&b, B(0x02, 0, 2, 'a', 'b', 0x01, 0x01, 0x05, 0x06));
  pyrec_buf_reset(&b);
  pyrec_amf0_put_object_begin(&b);
  pyrec_amf0_put_key(&b, "x");
  pyrec_amf0_put_number(&b, 0);
  pyrec_amf0_put_object_end(&b);
  check_bytes(&b, B(0x03, 0, 1, 'x', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x09));
  pyrec_buf_reset(&b);
  pyrec_amf0_put_ecma_begin(&b, 1);
  pyrec_amf0_put_object_end(&b);
  pyrec_amf0_put_strict_array_begin(&b, 0);
  pyrec_amf0_put_date(&b, 0.0, -60);
  check_bytes(&b, B(0x08, 0, 0, 0, 1, 0, 0, 9, 0x0a, 0, 0, 0, 0, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0,
                    0xff, 0xc4));
  /* a long string switches marker */
  pyrec_buf_reset(&b);
  char *big = malloc(70000);
  memset(big, 'z', 70000);
  pyrec_amf0_put_string_n(&b, big, 70000);
  CHECK_EQ(b.len, 5 + 70000);
  CHECK_EQ(b.data[0], PYREC_AMF0_LONG_STRING);
  pyrec_amf0_reader r;
  pyrec_amf0_value v;
  pyrec_amf0_reader_init(&r, b.data, b.len, NULL);
  CHECK_EQ(pyrec_amf0_read(&r, &v), 0);
  CHECK_EQ(v.str_len, 70000);
  CHECK(pyrec_amf0_at_end(&r));
  free(big);
  pyrec_buf_free(&b);
}

/* A value of every kind, nested, written then read back. */
static void build_all(pyrec_buf *b) {
  pyrec_amf0_put_string(b, "onMetaData");
  pyrec_amf0_put_ecma_begin(b, 4);
  pyrec_amf0_put_key(b, "duration");
  pyrec_amf0_put_number(b, 12.5);
  pyrec_amf0_put_key(b, "stereo");
  pyrec_amf0_put_bool(b, 1);
  pyrec_amf0_put_key(b, "encoder");
  pyrec_amf0_put_string(b, "Lavf59");
  pyrec_amf0_put_key(b, "nested");
  pyrec_amf0_put_object_begin(b);
  pyrec_amf0_put_key(b, "list");
  pyrec_amf0_put_strict_array_begin(b, 3);
  pyrec_amf0_put_number(b, -1);
  pyrec_amf0_put_null(b);
  pyrec_amf0_put_date(b, 1.5e12, 0);
  pyrec_amf0_put_key(b, "u");
  pyrec_amf0_put_undefined(b);
  pyrec_amf0_put_object_end(b);
  pyrec_amf0_put_object_end(b);
}

static void test_roundtrip(void) {
  pyrec_buf b;
  pyrec_buf_init(&b);
  build_all(&b);
  CHECK(!b.oom);
  pyrec_errinfo err;
  pyrec_clearerr(&err);
  pyrec_amf0_reader r;
  pyrec_amf0_reader_init(&r, b.data, b.len, &err);
  pyrec_amf0_value name, arr, v, w;
  CHECK_EQ(pyrec_amf0_read(&r, &name), 0);
  CHECK(pyrec_amf0_streq(&name, "onMetaData"));
  CHECK(!pyrec_amf0_streq(&name, "onMetaDat"));
  CHECK_EQ(pyrec_amf0_read(&r, &arr), 0);
  CHECK_EQ(arr.type, PYREC_AMF0_ECMA_ARRAY);
  CHECK_EQ(arr.count, 4);
  CHECK(pyrec_amf0_at_end(&r));
  CHECK_EQ(arr.raw_len, b.len - name.raw_len);
  CHECK(pyrec_amf0_get(&arr, "duration", &v) && v.type == PYREC_AMF0_NUMBER && v.num == 12.5);
  CHECK(pyrec_amf0_get(&arr, "stereo", &v) && v.type == PYREC_AMF0_BOOLEAN && v.boolean);
  CHECK(pyrec_amf0_get(&arr, "encoder", &v) && pyrec_amf0_streq(&v, "Lavf59"));
  CHECK(!pyrec_amf0_get(&arr, "missing", &v));
  CHECK(pyrec_amf0_get(&arr, "nested", &v) && v.type == PYREC_AMF0_OBJECT);
  CHECK(pyrec_amf0_get(&v, "u", &w) && w.type == PYREC_AMF0_UNDEFINED);
  CHECK(pyrec_amf0_get(&v, "list", &w) && w.type == PYREC_AMF0_STRICT_ARRAY && w.count == 3);
  size_t it = 0;
  pyrec_amf0_value e;
  int n = 0;
  double nums[3] = {0};
  int types[3] = {0};
  while (pyrec_amf0_next_item(&w, &it, &e) && n < 3) {
    types[n] = e.type;
    nums[n++] = e.num;
  }
  CHECK_EQ(n, 3);
  CHECK(types[0] == PYREC_AMF0_NUMBER && nums[0] == -1);
  CHECK(types[1] == PYREC_AMF0_NULL);
  CHECK(types[2] == PYREC_AMF0_DATE && nums[2] == 1.5e12);
  /* property walk order */
  it = 0;
  const uint8_t *k;
  size_t kl;
  n = 0;
  while (pyrec_amf0_next_prop(&arr, &it, &k, &kl, &v))
    n++;
  CHECK_EQ(n, 4);
  pyrec_buf_free(&b);
}

/* Every strict prefix of a valid value fails cleanly; the error names an offset inside. */
static void test_truncated(void) {
  pyrec_buf b;
  pyrec_buf_init(&b);
  build_all(&b);
  pyrec_amf0_reader r;
  pyrec_amf0_value v;
  pyrec_amf0_reader_init(&r, b.data, b.len, NULL);
  CHECK_EQ(pyrec_amf0_read(&r, &v), 0);
  size_t start = r.pos, bad = 0;
  for (size_t n = start; n < b.len; n++) {
    uint8_t *copy = malloc(n - start + 1); /* exact-size copy so ASAN sees overreads */
    memcpy(copy, b.data + start, n - start);
    pyrec_errinfo err;
    pyrec_clearerr(&err);
    pyrec_amf0_reader_init(&r, copy, n - start, &err);
    int rc = pyrec_amf0_read(&r, &v);
    /* an ECMA array may legally stop without its end marker at a property boundary, and
     * then it took the whole input */
    if (rc == 0 && (v.type != PYREC_AMF0_ECMA_ARRAY || r.pos != n - start))
      bad++;
    if (rc) {
      CHECK(err.code == rc && err.offset >= 0 && err.offset <= (int64_t)(n - start) && err.msg[0]);
      CHECK_EQ(r.pos, 0); /* a failed read does not move */
    }
    free(copy);
  }
  CHECK_EQ(bad, 0);
  pyrec_buf_free(&b);
}

static void test_malformed(void) {
  pyrec_errinfo err;
  pyrec_amf0_reader r;
  pyrec_amf0_value v;
  struct {
    const uint8_t *p;
    size_t n;
    int rc;
  } cases[] = {
      {B(0x11, 0x02), PYREC_E_MALFORMED},                      /* AMF3 switch */
      {B(0x04), PYREC_E_MALFORMED},                            /* movieclip */
      {B(0x09), PYREC_E_MALFORMED},                            /* object end at top */
      {B(0x03, 0, 1, 'a', 0x09), PYREC_E_MALFORMED},           /* end marker with a name */
      {B(0x0a, 0xff, 0xff, 0xff, 0xff, 0x05), PYREC_E_TRUNCATED}, /* huge strict array */
      {B(0x0a, 0, 0, 0, 1, 0x09), PYREC_E_MALFORMED},          /* end marker in strict array */
      {B(0x02, 0xff, 0xff, 'a'), PYREC_E_TRUNCATED},
      {B(0x0c, 0xff, 0xff, 0xff, 0xff, 'a'), PYREC_E_TRUNCATED},
      {B(0x00, 1, 2, 3), PYREC_E_TRUNCATED},
      {B(0x03, 0, 1, 'a', 0x05), PYREC_E_TRUNCATED},           /* object without its end */
      {B(0x10, 0, 1, 'C', 0, 0, 9), 0},                        /* typed object, empty */
      {B(0x07, 0, 3), 0},                                      /* reference */
      {B(0x08, 0, 0, 0, 9, 0, 1, 'a', 0x05), 0},               /* ECMA array, end omitted */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pyrec_clearerr(&err);
    pyrec_amf0_reader_init(&r, cases[i].p, cases[i].n, &err);
    int rc = pyrec_amf0_read(&r, &v);
    if (rc != cases[i].rc)
      fprintf(stderr, "case %zu: rc %d (%s)\n", i, rc, err.msg);
    CHECK_EQ(rc, cases[i].rc);
    if (rc)
      CHECK(err.msg[0] != 0);
  }
  /* depth bombs: 100000 nested objects / strict arrays / ECMA arrays */
  static const uint8_t unit[3][8] = {
      {0x03, 0, 1, 'a'}, {0x0a, 0, 0, 0, 1}, {0x08, 0, 0, 0, 1, 0, 1, 'a'}};
  static const size_t ulen[3] = {4, 5, 8};
  for (int k = 0; k < 3; k++) {
    size_t n = 100000;
    uint8_t *bomb = malloc(n * ulen[k]);
    for (size_t i = 0; i < n; i++)
      memcpy(bomb + i * ulen[k], unit[k], ulen[k]);
    pyrec_clearerr(&err);
    pyrec_amf0_reader_init(&r, bomb, n * ulen[k], &err);
    CHECK_EQ(pyrec_amf0_read(&r, &v), PYREC_E_MALFORMED);
    CHECK(strstr(err.msg, "deeper") != NULL);
    free(bomb);
  }
  /* a custom depth limit */
  pyrec_amf0_reader_init(&r, (const uint8_t[]){0x03, 0, 1, 'a', 0x03, 0, 0, 9, 0, 0, 9}, 11, NULL);
  r.max_depth = 1;
  CHECK_EQ(pyrec_amf0_read(&r, &v), PYREC_E_MALFORMED);
  r.max_depth = 2;
  CHECK_EQ(pyrec_amf0_read(&r, &v), 0);
}

/* Random bytes never crash the reader (ASAN/UBSAN watch). */
static void test_random(void) {
  uint32_t x = 12345;
  for (int it = 0; it < 20000; it++) {
    uint8_t buf[64];
    size_t n = 1 + it % 64;
    for (size_t i = 0; i < n; i++) {
      x = x * 1103515245u + 12345u;
      uint8_t c = (uint8_t)(x >> 16);
      buf[i] = (x >> 8) % 3 == 0 ? (uint8_t)(c % 13) : (x >> 8) % 3 == 1 ? 0 : c;
    }
    uint8_t *p = malloc(n);
    memcpy(p, buf, n);
    pyrec_amf0_reader r;
    pyrec_amf0_value v;
    pyrec_amf0_reader_init(&r, p, n, NULL);
    while (!pyrec_amf0_at_end(&r) && pyrec_amf0_read(&r, &v) == 0) {
      size_t i2 = 0, kl;
      const uint8_t *k;
      pyrec_amf0_value w;
      while (pyrec_amf0_next_prop(&v, &i2, &k, &kl, &w) || pyrec_amf0_next_item(&v, &i2, &w))
        ;
    }
    free(p);
  }
  CHECK(1);
}

int main(void) {
  RUN(test_writer_exact);
  RUN(test_roundtrip);
  RUN(test_truncated);
  RUN(test_malformed);
  RUN(test_random);
  return T_DONE();
}
