/* libFuzzer target for the RTMP server state machine (and the AMF0 reader).
 *
 * Input: a byte stream from a publisher, as in csrc/fuzz/corpus/rtmp/ (real ffmpeg captures).
 * The first byte selects the mode:
 *   3        the input is fed as is (C0 C1 C2 then chunks);
 *   'A'      the rest is read as AMF0 values (and their members walked);
 *   other    a synthetic handshake is fed first, then the rest, so that short inputs reach
 *            the chunk parser.
 * Each input is fed twice, whole and in pseudo-random pieces; the events (hashed) and the
 * bytes sent must be identical, else the target aborts.
 *
 * Build: cmake -DPYREC_FUZZ=ON with clang (libFuzzer provides main), or with the plain
 * mutation driver (csrc/fuzz/driver.c; the sanitizer test build does this and CI runs it for
 * a bounded time over csrc/fuzz/corpus/rtmp). */
#include "pyrec/amf0.h"
#include "pyrec/rtmp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fstate {
  uint64_t h;   /* hash of the events */
  uint64_t out; /* hash of the output (sent once per feed: kept apart from the events) */
} fstate;

static void mix64(uint64_t *h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    *h = (*h ^ b[i]) * 0x100000001b3ull;
}
static void mix(fstate *s, const void *p, size_t n) { mix64(&s->h, p, n); }

static int f_send(void *o, const uint8_t *d, size_t n) {
  mix64(&((fstate *)o)->out, d, n);
  return 0;
}
static int f_connect(void *o, const char *app, const char *tcurl) {
  mix(o, app, strlen(app) + 1);
  mix(o, tcurl, strlen(tcurl) + 1);
  return app[0] == 'x'; /* refuse some, to reach those paths */
}
static int f_publish(void *o, uint32_t id, const char *name, const char *type) {
  mix(o, &id, sizeof id);
  mix(o, name, strlen(name) + 1);
  mix(o, type, strlen(type) + 1);
  return name[0] == 'x' ? PYREC_RTMP_BADNAME : name[0] == 'y';
}
static void f_unpublish(void *o, uint32_t id) { mix(o, &id, sizeof id); }
static int f_media(void *o, uint32_t id, uint8_t type, uint32_t ts, const uint8_t *b, size_t n) {
  uint32_t v[3] = {id, type, ts};
  mix(o, v, sizeof v);
  mix(o, b, n);
  return 0;
}
static void f_meta(void *o, uint32_t id, const uint8_t *a, size_t n) {
  mix(o, &id, sizeof id);
  mix(o, a, n);
}

static void amf_walk(const pyrec_amf0_value *v, int depth) {
  size_t it = 0, kl;
  const uint8_t *k;
  pyrec_amf0_value w;
  if (depth > 40)
    abort(); /* the reader's depth limit failed */
  while (pyrec_amf0_next_prop(v, &it, &k, &kl, &w))
    amf_walk(&w, depth + 1);
  it = 0;
  while (pyrec_amf0_next_item(v, &it, &w))
    amf_walk(&w, depth + 1);
}

static uint64_t run(const uint8_t *data, size_t size, int split, int *rc_out, int64_t *off) {
  fstate s = {0xcbf29ce484222325ull, 0xcbf29ce484222325ull};
  pyrec_rtmp_limits lim = {1 << 20, 16, 4096, 128};
  pyrec_rtmp_callbacks cb = {f_send, f_connect, f_publish, f_unpublish, f_media, f_meta, &s};
  pyrec_rtmp_conn *c;
  if (pyrec_rtmp_conn_new(&c, &lim, &cb, 42))
    abort();
  int rc = 0;
  if (size && data[0] != 3) {
    static uint8_t hs[3073];
    hs[0] = 3;
    rc = pyrec_rtmp_conn_feed(c, hs, sizeof hs);
    data++;
    size--;
  }
  uint32_t x = (uint32_t)size * 2654435761u + 1;
  for (size_t i = 0; i < size && !rc;) {
    size_t k = size - i;
    if (split) {
      x = x * 1103515245u + 12345u;
      k = 1 + (x >> 8) % 97;
      if (k > size - i)
        k = size - i;
    }
    uint8_t *copy = malloc(k ? k : 1); /* exact-size copies: ASAN sees any overread */
    memcpy(copy, data + i, k);
    rc = pyrec_rtmp_conn_feed(c, copy, k);
    free(copy);
    i += k;
  }
  const pyrec_errinfo *e = pyrec_rtmp_conn_error(c);
  if (rc && (e->code != rc || !e->msg[0] || e->offset < 0))
    abort(); /* every error says what and where */
  *rc_out = rc;
  *off = e->offset;
  pyrec_rtmp_conn_eof(c);
  pyrec_rtmp_stats st;
  pyrec_rtmp_conn_stats(c, &st);
  if (st.chunk_streams > 16 || st.buffered > 4u << 20)
    abort(); /* limits hold */
  pyrec_rtmp_conn_free(c);
  return s.h ^ (s.out * 31);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size && data[0] == 'A') {
    pyrec_amf0_reader r;
    pyrec_amf0_value v;
    pyrec_amf0_reader_init(&r, data + 1, size - 1, NULL);
    while (!pyrec_amf0_at_end(&r) && pyrec_amf0_read(&r, &v) == 0)
      amf_walk(&v, 0);
    return 0;
  }
  int rc1, rc2;
  int64_t o1, o2;
  uint64_t h1 = run(data, size, 0, &rc1, &o1);
  uint64_t h2 = run(data, size, 1, &rc2, &o2);
  if (h1 != h2 || rc1 != rc2 || (rc1 && o1 != o2)) {
    fprintf(stderr, "split changed the result: rc %d/%d offset %lld/%lld\n", rc1, rc2,
            (long long)o1, (long long)o2);
    abort();
  }
  return 0;
}
