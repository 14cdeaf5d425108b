/* RTMP server state machine: handshake, chunk stream (header types, extended timestamps,
 * chunk sizes, abort, acks, ping), a whole publish conversation with its replies decoded by an
 * independent reader below, refusals, hostile input, split invariance, and real ffmpeg
 * captures (data/rtmp_ffmpeg_*.bin; run from csrc/tests, or set PYREC_RTMP_DATA=dir). */
#include "pyrec/amf0.h"
#include "pyrec/rtmp.h"
#include "t.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- event recorder ----------------------------------------------------------------------- */

typedef struct rec {
  pyrec_buf log, out;
  int connect_rc, publish_rc, send_rc;
  uint64_t media, audio, video, meta, sum_ts, sum_len;
  uint32_t last_ts[32];
  int order_bad;
} rec;

static void logf_(rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(rec *r, const char *fmt, ...) {
  char line[600];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  pyrec_buf_put(&r->log, line, n > 0 ? (size_t)n : 0);
}

static uint32_t fnv(const uint8_t *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 16777619u;
  return h;
}

static int r_send(void *o, const uint8_t *d, size_t n) {
  rec *r = o;
  pyrec_buf_put(&r->out, d, n);
  return r->send_rc;
}
static int r_connect(void *o, const char *app, const char *tcurl) {
  rec *r = o;
  logf_(r, "connect %s %s\n", app, tcurl);
  return r->connect_rc;
}
static int r_publish(void *o, uint32_t id, const char *name, const char *type) {
  rec *r = o;
  logf_(r, "publish %u %s %s\n", id, name, type);
  return r->publish_rc;
}
static void r_unpublish(void *o, uint32_t id) { logf_(o, "unpublish %u\n", id); }
static int r_media(void *o, uint32_t id, uint8_t type, uint32_t ts, const uint8_t *b, size_t n) {
  rec *r = o;
  logf_(r, "media %u %u %u %zu %08x\n", id, type, ts, n, fnv(b, n));
  r->media++;
  if (type == 8)
    r->audio++;
  if (type == 9)
    r->video++;
  if (ts < r->last_ts[type & 31])
    r->order_bad++;
  r->last_ts[type & 31] = ts;
  r->sum_ts += ts;
  r->sum_len += n;
  return 0;
}
static void r_meta(void *o, uint32_t id, const uint8_t *a, size_t n) {
  rec *r = o;
  r->meta++;
  logf_(r, "meta %u %zu %08x\n", id, n, fnv(a, n));
}

static pyrec_rtmp_conn *mk(rec *r, const pyrec_rtmp_limits *lim) {
  memset(r, 0, sizeof *r);
  pyrec_rtmp_callbacks cb = {r_send, r_connect, r_publish, r_unpublish, r_media, r_meta, r};
  pyrec_rtmp_conn *c = NULL;
  CHECK_EQ(pyrec_rtmp_conn_new(&c, lim, &cb, 1000), 0);
  return c;
}

static void rec_free(rec *r) {
  pyrec_buf_free(&r->log);
  pyrec_buf_free(&r->out);
}

static int logged(const rec *r, const char *s) {
  return r->log.len && memmem(r->log.data, r->log.len, s, strlen(s)) != NULL;
}

/* ---- client-side builders (independent of the code under test) --------------------------- */

static void put_hs(pyrec_buf *b) {
  pyrec_buf_u8(b, 3);
  for (int i = 0; i < 2 * 1536; i++)
    pyrec_buf_u8(b, (uint8_t)(i * 7 + (i >> 8)));
}

/* Basic + message header of type fmt; extended timestamp when ts >= 0xffffff. */
static void put_hdr(pyrec_buf *b, int fmt, uint32_t csid, uint32_t ts, uint32_t len,
                    uint8_t type, uint32_t msid) {
  if (csid >= 320) {
    pyrec_buf_u8(b, (uint8_t)(fmt << 6 | 1));
    pyrec_buf_u8(b, (uint8_t)((csid - 64) & 255));
    pyrec_buf_u8(b, (uint8_t)((csid - 64) >> 8));
  } else if (csid >= 64) {
    pyrec_buf_u8(b, (uint8_t)(fmt << 6));
    pyrec_buf_u8(b, (uint8_t)(csid - 64));
  } else {
    pyrec_buf_u8(b, (uint8_t)(fmt << 6 | csid));
  }
  if (fmt == 3)
    return;
  pyrec_buf_u24(b, ts >= 0xffffff ? 0xffffff : ts);
  if (fmt <= 1) {
    pyrec_buf_u24(b, len);
    pyrec_buf_u8(b, type);
  }
  if (fmt == 0)
    for (int i = 0; i < 4; i++)
      pyrec_buf_u8(b, (uint8_t)(msid >> (8 * i)));
  if (ts >= 0xffffff)
    pyrec_buf_u32(b, ts);
}

/* A whole message: type-0 header, then type-3 continuations (with the extended timestamp
 * repeated when `ext_cont`). */
static void put_msg_ex(pyrec_buf *b, uint32_t cs, uint32_t csid, uint8_t type, uint32_t msid,
                       uint32_t ts, const void *p, size_t n, int ext_cont) {
  put_hdr(b, 0, csid, ts, (uint32_t)n, type, msid);
  for (size_t off = 0;;) {
    size_t k = n - off < cs ? n - off : cs;
    pyrec_buf_put(b, (const uint8_t *)p + off, k);
    off += k;
    if (off >= n)
      break;
    put_hdr(b, 3, csid, 0, 0, 0, 0);
    if (ts >= 0xffffff && ext_cont)
      pyrec_buf_u32(b, ts);
  }
}
static void put_msg(pyrec_buf *b, uint32_t cs, uint32_t csid, uint8_t type, uint32_t msid,
                    uint32_t ts, const void *p, size_t n) {
  put_msg_ex(b, cs, csid, type, msid, ts, p, n, 1);
}

static void put_ctrl(pyrec_buf *b, uint32_t cs, uint8_t type, uint32_t v) {
  uint8_t d[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  put_msg(b, cs, 2, type, 0, 0, d, 4);
}

/* An AMF0 command: name, txn, then up to 3 string args (NULL = AMF null). obj: the
 * connect command object (app, tcUrl) when app != NULL. */
static void put_cmd(pyrec_buf *b, uint32_t cs, uint32_t msid, const char *name, double txn,
                    const char *app, const char *a1, const char *a2) {
  pyrec_buf body;
  pyrec_buf_init(&body);
  pyrec_amf0_put_string(&body, name);
  pyrec_amf0_put_number(&body, txn);
  if (app) {
    pyrec_amf0_put_object_begin(&body);
    pyrec_amf0_put_key(&body, "app");
    pyrec_amf0_put_string(&body, app);
    pyrec_amf0_put_key(&body, "type");
    pyrec_amf0_put_string(&body, "nonprivate");
    pyrec_amf0_put_key(&body, "tcUrl");
    pyrec_amf0_put_string(&body, "rtmp://h/live");
    pyrec_amf0_put_object_end(&body);
  } else {
    pyrec_amf0_put_null(&body);
  }
  if (a1)
    pyrec_amf0_put_string(&body, a1);
  if (a2)
    pyrec_amf0_put_string(&body, a2);
  put_msg(b, cs, 3, 20, msid, 0, body.data, body.len);
  pyrec_buf_free(&body);
}

static void put_num_cmd(pyrec_buf *b, uint32_t cs, const char *name, double txn, double arg) {
  pyrec_buf body;
  pyrec_buf_init(&body);
  pyrec_amf0_put_string(&body, name);
  pyrec_amf0_put_number(&body, txn);
  pyrec_amf0_put_null(&body);
  pyrec_amf0_put_number(&body, arg);
  put_msg(b, cs, 3, 20, 0, 0, body.data, body.len);
  pyrec_buf_free(&body);
}

/* handshake + connect + createStream + publish "cam?k=v" on stream 1 */
static void put_session_start(pyrec_buf *b) {
  put_hs(b);
  put_ctrl(b, 128, 1, 4096); /* Set Chunk Size, as ffmpeg does */
  put_cmd(b, 4096, 0, "connect", 1, "live", NULL, NULL);
  put_cmd(b, 4096, 0, "releaseStream", 2, NULL, "cam?k=v", NULL);
  put_cmd(b, 4096, 0, "FCPublish", 3, NULL, "cam?k=v", NULL);
  put_cmd(b, 4096, 0, "createStream", 4, NULL, NULL, NULL);
  put_cmd(b, 4096, 1, "publish", 5, NULL, "cam?k=v", "live");
}

/* ---- server output decoder: types 0 and 3, csid < 64, Set Chunk Size honoured ------------ */

typedef struct smsg {
  uint8_t type;
  uint32_t csid, msid, ts;
  uint8_t data[8192];
  size_t len;
} smsg;

/* Decode server chunks sent with chunk size cs (until a Set Chunk Size); returns the number
 * of messages, -1 on a framing error. */
static int decode_out(const uint8_t *p, size_t n, uint32_t cs, smsg *m, int max) {
  size_t pos = 0;
  int k = 0;
  while (pos < n && k < max) {
    if (n - pos < 12 || (p[pos] >> 6) != 0 || (p[pos] & 63) < 2)
      return -1;
    smsg *s = &m[k++];
    s->csid = p[pos] & 63;
    s->ts = pyrec_rd24(p + pos + 1);
    s->len = pyrec_rd24(p + pos + 4);
    s->type = p[pos + 7];
    s->msid = p[pos + 8] | (uint32_t)p[pos + 9] << 8 | (uint32_t)p[pos + 10] << 16 |
              (uint32_t)p[pos + 11] << 24;
    pos += 12;
    if (s->len > sizeof s->data)
      return -1;
    for (size_t got = 0; got < s->len;) {
      if (got) {
        if (pos >= n || p[pos] != (0xc0 | s->csid))
          return -1;
        pos++;
      }
      size_t c = s->len - got < cs ? s->len - got : cs;
      if (n - pos < c)
        return -1;
      memcpy(s->data + got, p + pos, c);
      got += c;
      pos += c;
    }
    if (s->type == 1 && s->len == 4)
      cs = pyrec_rd32(s->data);
  }
  return k;
}

/* AMF helpers on a decoded command: the i-th value; the code/level/description of the
 * info object (the 4th value). */
static int cmd_val(const smsg *s, int i, pyrec_amf0_value *v) {
  pyrec_amf0_reader r;
  pyrec_amf0_reader_init(&r, s->data, s->len, NULL);
  for (int k = 0; k <= i; k++)
    if (pyrec_amf0_read(&r, v))
      return 0;
  return 1;
}
static int cmd_is(const smsg *s, const char *name, double txn) {
  pyrec_amf0_value v;
  return s->type == 20 && cmd_val(s, 0, &v) && pyrec_amf0_streq(&v, name) && cmd_val(s, 1, &v) &&
         v.type == PYREC_AMF0_NUMBER && v.num == txn;
}
static int info_is(const smsg *s, const char *level, const char *code) {
  pyrec_amf0_value o, v;
  if (!cmd_val(s, 3, &o))
    return 0;
  return pyrec_amf0_get(&o, "level", &v) && pyrec_amf0_streq(&v, level) &&
         pyrec_amf0_get(&o, "code", &v) && pyrec_amf0_streq(&v, code);
}

static smsg g_m[64];
static int decode(const rec *r) {
  if (r->out.len < 3073)
    return -1;
  return decode_out(r->out.data + 3073, r->out.len - 3073, 128, g_m, 64);
}


/* ---- helpers for the cases ---------------------------------------------------------------- */

static int feed_all(pyrec_rtmp_conn *c, const pyrec_buf *b) {
  return pyrec_rtmp_conn_feed(c, b->data, b->len);
}

/* A connection that publishes stream 1 ("cam?k=v"); log and output cleared. */
static pyrec_rtmp_conn *publishing(rec *r, const pyrec_rtmp_limits *lim) {
  pyrec_rtmp_conn *c = mk(r, lim);
  pyrec_buf b;
  pyrec_buf_init(&b);
  put_session_start(&b);
  CHECK_EQ(feed_all(c, &b), 0);
  CHECK_EQ(pyrec_rtmp_conn_state(c), PYREC_RTMP_PUBLISHING);
  pyrec_buf_free(&b);
  pyrec_buf_reset(&r->log);
  pyrec_buf_reset(&r->out);
  return c;
}

static void check_media(const rec *r, uint8_t type, uint32_t ts, const void *p, size_t n) {
  char line[120];
  snprintf(line, sizeof line, "media 1 %u %u %zu %08x\n", type, ts, n, fnv(p, n));
  if (!logged(r, line))
    fprintf(stderr, "missing: %s", line);
  CHECK(logged(r, line));
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = (uint8_t)(seed >> 16);
  }
}

/* ---- cases -------------------------------------------------------------------------------- */

static void test_handshake(void) {
  rec r;
  pyrec_rtmp_conn *c = mk(&r, NULL);
  pyrec_buf b;
  pyrec_buf_init(&b);
  put_hs(&b);
  CHECK_EQ(pyrec_rtmp_conn_feed(c, b.data, 1001), 0); /* C0 + part of C1 */
  CHECK_EQ(r.out.len, 0);
  CHECK_EQ(pyrec_rtmp_conn_state(c), PYREC_RTMP_HANDSHAKE);
  CHECK_EQ(pyrec_rtmp_conn_feed(c, b.data + 1001, 536), 0);
  CHECK_EQ(r.out.len, 3073);
  if (r.out.len == 3073) {
    CHECK_EQ(r.out.data[0], 3);
    CHECK_EQ(pyrec_rd32(r.out.data + 1), 1000); /* S1 time = epoch_ms */
    CHECK_EQ(pyrec_rd32(r.out.data + 5), 0);
    CHECK_MEM(r.out.data + 1537, b.data + 1, 1536); /* S2 echoes C1 */
  }
  CHECK_EQ(pyrec_rtmp_conn_feed(c, b.data + 1537, 1535), 0);
  CHECK_EQ(pyrec_rtmp_conn_state(c), PYREC_RTMP_HANDSHAKE); /* one C2 byte missing */
  CHECK_EQ(pyrec_rtmp_conn_feed(c, b.data + 3072, 1), 0);
  CHECK_EQ(pyrec_rtmp_conn_state(c), PYREC_RTMP_CONNECTED);
  CHECK_EQ(pyrec_rtmp_conn_wants_close(c), 0);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);

  /* a never-finishing handshake: OK, still HANDSHAKE (the caller's timeout closes it) */
  c = mk(&r, NULL);
  CHECK_EQ(pyrec_rtmp_conn_feed(c, b.data, 3000), 0);
  CHECK_EQ(pyrec_rtmp_conn_state(c), PYREC_RTMP_HANDSHAKE);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);

  /* versions other than 3 */
  const uint8_t bad[] = {6, 0, 31};
  for (int i = 0; i < 3; i++) {
    c = mk(&r, NULL);
    CHECK_EQ(pyrec_rtmp_conn_feed(c, &bad[i], 1), PYREC_E_MALFORMED);
    CHECK_EQ(pyrec_rtmp_conn_error(c)->offset, 0);
    CHECK(strstr(pyrec_rtmp_conn_error(c)->msg, "C0 version") != NULL);
    CHECK(i != 0 || strstr(pyrec_rtmp_conn_error(c)->msg, "RTMPE") != NULL);
    CHECK_EQ(pyrec_rtmp_conn_feed(c, b.data, 10), PYREC_E_MALFORMED); /* sticky */
    CHECK_EQ(pyrec_rtmp_conn_state(c), PYREC_RTMP_CLOSED);
    CHECK_EQ(pyrec_rtmp_conn_wants_close(c), 1);
    pyrec_rtmp_conn_free(c);
    rec_free(&r);
  }
  pyrec_buf_free(&b);
}

static void test_chunk_sizes(void) {
  static uint8_t big[70000];
  fill(big, sizeof big, 7);
  const uint32_t sizes[] = {1, 7, 127, 128, 129, 4096, 65536, 0x7fffffff};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    rec r;
    pyrec_rtmp_conn *c = publishing(&r, NULL);
    pyrec_buf b;
    pyrec_buf_init(&b);
    put_ctrl(&b, 4096, 1, sizes[i]);
    put_msg(&b, sizes[i], 6, 9, 1, 40, big, 5000);
    put_msg(&b, sizes[i], 4, 8, 1, 41, big + 1, 300);
    put_msg(&b, sizes[i], 6, 9, 1, 80, big + 2, sizeof big - 2);
    CHECK_EQ(feed_all(c, &b), 0);
    check_media(&r, 9, 40, big, 5000);
    check_media(&r, 8, 41, big + 1, 300);
    check_media(&r, 9, 80, big + 2, sizeof big - 2);
    CHECK_EQ(r.media, 3);
    pyrec_rtmp_stats st;
    pyrec_rtmp_conn_stats(c, &st);
    CHECK_EQ(st.in_chunk_size, sizes[i]);
    pyrec_buf_free(&b);
    pyrec_rtmp_conn_free(c);
    rec_free(&r);
  }
}

static void test_header_types(void) {
  rec r;
  pyrec_rtmp_conn *c = publishing(&r, NULL);
  pyrec_buf b;
  pyrec_buf_init(&b);
  put_hdr(&b, 0, 6, 1000, 3, 8, 1);
  pyrec_buf_put(&b, "AAA", 3);
  put_hdr(&b, 1, 6, 33, 4, 9, 0); /* delta 33, new length and type */
  pyrec_buf_put(&b, "BBBB", 4);
  put_hdr(&b, 2, 6, 40, 0, 0, 0); /* delta 40 */
  pyrec_buf_put(&b, "CCCC", 4);
  put_hdr(&b, 3, 6, 0, 0, 0, 0); /* new message, same delta */
  pyrec_buf_put(&b, "DDDD", 4);
  put_hdr(&b, 0, 7, 40, 2, 8, 1); /* type 3 after type 0: delta = its field (ffmpeg) */
  pyrec_buf_put(&b, "EE", 2);
  put_hdr(&b, 3, 7, 0, 0, 0, 0);
  pyrec_buf_put(&b, "FF", 2);
  put_hdr(&b, 0, 100, 5, 1, 8, 1); /* 2-byte basic header */
  pyrec_buf_put(&b, "G", 1);
  put_hdr(&b, 0, 1000, 6, 1, 8, 1); /* 3-byte basic header */
  pyrec_buf_put(&b, "H", 1);
  put_hdr(&b, 3, 1000, 0, 0, 0, 0);
  pyrec_buf_put(&b, "h", 1);
  put_hdr(&b, 0, 8, 0xfffffff0u, 1, 8, 1); /* extended, then wrap at 32 bits */
  pyrec_buf_put(&b, "I", 1);
  put_hdr(&b, 1, 8, 0x20, 1, 8, 0);
  pyrec_buf_put(&b, "J", 1);
  /* interleaved chunk streams with chunk size 100 */
  static uint8_t x[200], y[150];
  fill(x, sizeof x, 1);
  fill(y, sizeof y, 2);
  put_ctrl(&b, 4096, 1, 100);
  put_hdr(&b, 0, 9, 500, 200, 9, 1);
  pyrec_buf_put(&b, x, 100);
  put_hdr(&b, 0, 10, 600, 150, 8, 1);
  pyrec_buf_put(&b, y, 100);
  put_hdr(&b, 3, 9, 0, 0, 0, 0);
  pyrec_buf_put(&b, x + 100, 100);
  put_hdr(&b, 3, 10, 0, 0, 0, 0);
  pyrec_buf_put(&b, y + 100, 50);
  CHECK_EQ(feed_all(c, &b), 0);
  check_media(&r, 8, 1000, "AAA", 3);
  check_media(&r, 9, 1033, "BBBB", 4);
  check_media(&r, 9, 1073, "CCCC", 4);
  check_media(&r, 9, 1113, "DDDD", 4);
  check_media(&r, 8, 40, "EE", 2);
  check_media(&r, 8, 80, "FF", 2);
  check_media(&r, 8, 5, "G", 1);
  check_media(&r, 8, 6, "H", 1);
  check_media(&r, 8, 12, "h", 1);
  check_media(&r, 8, 0xfffffff0u, "I", 1);
  check_media(&r, 8, 0x10, "J", 1);
  check_media(&r, 9, 500, x, sizeof x);
  check_media(&r, 8, 600, y, sizeof y);
  CHECK_EQ(r.media, 13);
  /* a type-1 header on a chunk stream never opened by a type-0 header */
  pyrec_buf_reset(&b);
  put_hdr(&b, 1, 11, 0, 1, 8, 0);
  CHECK_EQ(feed_all(c, &b), PYREC_E_MALFORMED);
  CHECK(strstr(pyrec_rtmp_conn_error(c)->msg, "chunk stream 11") != NULL);
  pyrec_buf_free(&b);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
}

static void test_ext_timestamps(void) {
  static uint8_t p[300];
  fill(p, sizeof p, 3);
  for (int ext_cont = 0; ext_cont < 2; ext_cont++) {
    rec r;
    pyrec_rtmp_conn *c = publishing(&r, NULL);
    pyrec_buf b;
    pyrec_buf_init(&b);
    put_ctrl(&b, 4096, 1, 128);
    put_msg_ex(&b, 128, 6, 9, 1, 0x01000000, p, sizeof p, ext_cont);
    put_msg_ex(&b, 128, 6, 9, 1, 0x01000021, p + 1, sizeof p - 1, ext_cont);
    put_hdr(&b, 3, 6, 0, 0, 0, 0); /* new message on type 3: the extended field again */
    pyrec_buf_u32(&b, 0x01000021);
    pyrec_buf_put(&b, "Z", 1); /* length 299 inherited: 298 more bytes */
    pyrec_buf_put(&b, p, 127);
    put_hdr(&b, 3, 6, 0, 0, 0, 0);
    if (ext_cont)
      pyrec_buf_u32(&b, 0x01000021);
    pyrec_buf_put(&b, p + 127, 128);
    put_hdr(&b, 3, 6, 0, 0, 0, 0);
    if (ext_cont)
      pyrec_buf_u32(&b, 0x01000021);
    pyrec_buf_put(&b, p + 255, 43);
    put_hdr(&b, 1, 6, 0x01000000, 2, 8, 0); /* a type-1 delta that needs the extension */
    pyrec_buf_put(&b, "yy", 2);
    CHECK_EQ(feed_all(c, &b), 0);
    check_media(&r, 9, 0x01000000, p, sizeof p);
    check_media(&r, 9, 0x01000021, p + 1, sizeof p - 1);
    uint8_t z[299];
    z[0] = 'Z';
    memcpy(z + 1, p, 298);
    check_media(&r, 9, 0x02000042, z, sizeof z);
    check_media(&r, 8, 0x03000042, "yy", 2);
    CHECK_EQ(r.media, 4);
    pyrec_buf_free(&b);
    pyrec_rtmp_conn_free(c);
    rec_free(&r);
  }
}

static void test_control(void) {
  /* bad chunk sizes */
  const uint32_t bad[] = {0, 0x80000000u, 0xffffffffu};
  for (int i = 0; i < 3; i++) {
    rec r;
    pyrec_rtmp_conn *c = publishing(&r, NULL);
    pyrec_buf b;
    pyrec_buf_init(&b);
    put_ctrl(&b, 4096, 1, bad[i]);
    CHECK_EQ(feed_all(c, &b), PYREC_E_MALFORMED);
    CHECK(strstr(pyrec_rtmp_conn_error(c)->msg, "Set Chunk Size") != NULL);
    pyrec_buf_free(&b);
    pyrec_rtmp_conn_free(c);
    rec_free(&r);
  }
  /* abort: a partial message is dropped, the next one on that chunk stream arrives */
  rec r;
  pyrec_rtmp_conn *c = publishing(&r, NULL);
  pyrec_buf b;
  pyrec_buf_init(&b);
  static uint8_t p[250];
  fill(p, sizeof p, 4);
  put_ctrl(&b, 4096, 1, 100);
  put_hdr(&b, 0, 6, 10, 250, 9, 1);
  pyrec_buf_put(&b, p, 100);
  put_ctrl(&b, 100, 2, 6);
  put_hdr(&b, 0, 6, 20, 3, 9, 1);
  pyrec_buf_put(&b, "XYZ", 3);
  /* ping request -> response */
  put_msg(&b, 100, 2, 4, 0, 0, (const uint8_t[]){0, 6, 1, 2, 3, 4}, 6);
  /* Set Peer Bandwidth and Acknowledgement from the client are accepted */
  put_msg(&b, 100, 2, 6, 0, 0, (const uint8_t[]){0, 0, 1, 0, 2}, 5);
  put_ctrl(&b, 100, 3, 1234);
  CHECK_EQ(feed_all(c, &b), 0);
  check_media(&r, 9, 20, "XYZ", 3);
  CHECK_EQ(r.media, 1);
  pyrec_rtmp_stats st;
  pyrec_rtmp_conn_stats(c, &st);
  CHECK_EQ(st.dropped_partials, 1);
  int n = decode_out(r.out.data, r.out.len, 4096, g_m, 64);
  CHECK_EQ(n, 1);
  CHECK(n == 1 && g_m[0].type == 4 && g_m[0].len == 6 &&
        memcmp(g_m[0].data, (const uint8_t[]){0, 7, 1, 2, 3, 4}, 6) == 0);
  /* a truncated ping request */
  pyrec_buf_reset(&b);
  put_msg(&b, 100, 2, 4, 0, 0, (const uint8_t[]){0, 6, 1}, 3);
  CHECK_EQ(feed_all(c, &b), PYREC_E_MALFORMED);
  pyrec_buf_free(&b);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
}

/* Every protocol control message one byte shorter than its fields (5.4.1-5.4.5, 7.1.7):
 * a clean MALFORMED naming the length it needs. */
static void test_control_one_byte_short(void) {
  static const struct {
    uint8_t type;
    unsigned need;
  } rows[] = {{1, 4}, {2, 4}, {3, 4}, {4, 2}, {5, 4}, {6, 5}};
  static const uint8_t d[8] = {0, 0, 0x10, 0, 2, 0, 0, 0};
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    rec r;
    pyrec_rtmp_conn *c = publishing(&r, NULL);
    pyrec_buf b;
    pyrec_buf_init(&b);
    put_msg(&b, 4096, 2, rows[i].type, 0, 0, d, rows[i].need - 1);
    CHECK_EQ(feed_all(c, &b), PYREC_E_MALFORMED);
    char want[64];
    snprintf(want, sizeof want, "type %u: %u bytes, needs %u", rows[i].type, rows[i].need - 1,
             rows[i].need);
    if (!strstr(pyrec_rtmp_conn_error(c)->msg, want))
      fprintf(stderr, "  control type %u one byte short: '%s'\n", rows[i].type,
              pyrec_rtmp_conn_error(c)->msg);
    CHECK(strstr(pyrec_rtmp_conn_error(c)->msg, want) != NULL);
    pyrec_buf_free(&b);
    pyrec_rtmp_conn_free(c);
    rec_free(&r);
  }
}

/* Chunk stream ids at both ends of each basic header form (1, 2 and 3 bytes: 5.3.1.1),
 * messages interleaved chunk by chunk: each arrives whole on its own stream. */
static void test_csid_forms(void) {
  static const uint32_t ids[] = {3, 63, 64, 65, 318, 319, 320, 321, 575, 576, 65599};
  enum { N = sizeof ids / sizeof ids[0], LEN = 150 };
  static uint8_t p[N][LEN];
  rec r;
  pyrec_rtmp_conn *c = publishing(&r, NULL);
  pyrec_buf b;
  pyrec_buf_init(&b);
  put_ctrl(&b, 4096, 1, 100);
  for (size_t i = 0; i < N; i++) {
    fill(p[i], LEN, 100 + (uint32_t)i);
    put_hdr(&b, 0, ids[i], 10 * (uint32_t)i, LEN, 8, 1);
    pyrec_buf_put(&b, p[i], 100);
  }
  for (size_t i = 0; i < N; i++) {
    put_hdr(&b, 3, ids[i], 0, 0, 0, 0);
    pyrec_buf_put(&b, p[i] + 100, LEN - 100);
  }
  CHECK_EQ(feed_all(c, &b), 0);
  for (size_t i = 0; i < N; i++)
    check_media(&r, 8, 10 * (uint32_t)i, p[i], LEN);
  CHECK_EQ(r.media, N);
  pyrec_buf_free(&b);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
}

static int count_acks(const rec *r, uint32_t *last) {
  int n = decode_out(r->out.data, r->out.len, 4096, g_m, 64), acks = 0;
  for (int i = 0; i < n; i++)
    if (g_m[i].type == 3 && g_m[i].len == 4) {
      acks++;
      *last = pyrec_rd32(g_m[i].data);
    }
  return acks;
}

/* Deferred acknowledgements (the server sends them once the publisher is quiet): crossing
 * windows only marks one due; sending it reports every byte received so far, once, and the next
 * window counts from there. */
static void test_ack_deferred(void) {
  pyrec_rtmp_limits lim = {0, 0, 5000, 0};
  rec r;
  pyrec_rtmp_conn *c = publishing(&r, &lim);
  pyrec_rtmp_conn_set_defer_acks(c, 1);
  pyrec_buf b;
  pyrec_buf_init(&b);
  put_ctrl(&b, 4096, 5, 6000); /* the client's window */
  static uint8_t p[1000];
  for (int i = 0; i < 20; i++) /* > 3 windows */
    put_msg(&b, 4096, 6, 9, 1, (uint32_t)i, p, sizeof p);
  CHECK(!pyrec_rtmp_conn_ack_due(c));
  CHECK_EQ(feed_all(c, &b), 0);
  uint32_t last = 0;
  CHECK_EQ(count_acks(&r, &last), 0);
  CHECK(pyrec_rtmp_conn_ack_due(c));
  CHECK_EQ(pyrec_rtmp_conn_send_due_ack(c), 0);
  CHECK(!pyrec_rtmp_conn_ack_due(c));
  pyrec_rtmp_stats st;
  pyrec_rtmp_conn_stats(c, &st);
  CHECK_EQ(count_acks(&r, &last), 1);
  CHECK_EQ(last, (uint32_t)st.bytes_in); /* every byte so far, handshake included */
  CHECK_EQ(st.acks_sent, 1);
  CHECK_EQ(pyrec_rtmp_conn_send_due_ack(c), 0); /* nothing due: nothing sent */
  CHECK_EQ(count_acks(&r, &last), 1);
  /* less than a window since that acknowledgement: not due; past it: due again */
  pyrec_buf_reset(&b);
  for (int i = 0; i < 5; i++)
    put_msg(&b, 4096, 6, 9, 1, (uint32_t)(20 + i), p, sizeof p);
  CHECK_EQ(feed_all(c, &b), 0);
  CHECK(!pyrec_rtmp_conn_ack_due(c));
  pyrec_buf_reset(&b);
  put_msg(&b, 4096, 6, 9, 1, 25, p, sizeof p);
  CHECK_EQ(feed_all(c, &b), 0);
  CHECK(pyrec_rtmp_conn_ack_due(c));
  CHECK_EQ(count_acks(&r, &last), 1);
  /* the same media arrived, in order, whatever the acknowledgements did */
  check_media(&r, 9, 0, p, sizeof p);
  check_media(&r, 9, 25, p, sizeof p);
  pyrec_buf_free(&b);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
}

static void test_ack_window(void) {
  pyrec_rtmp_limits lim = {0, 0, 5000, 0};
  rec r;
  pyrec_rtmp_conn *c = publishing(&r, &lim);
  pyrec_buf b;
  pyrec_buf_init(&b);
  put_ctrl(&b, 4096, 5, 6000); /* the client's window */
  static uint8_t p[1000];
  for (int i = 0; i < 20; i++)
    put_msg(&b, 4096, 6, 9, 1, (uint32_t)i, p, sizeof p);
  CHECK_EQ(feed_all(c, &b), 0);
  int n = decode_out(r.out.data, r.out.len, 4096, g_m, 64);
  int acks = 0;
  for (int i = 0; i < n; i++)
    if (g_m[i].type == 3 && g_m[i].len == 4) {
      acks++; /* the count starts after the 3073 handshake bytes; 6000 per window */
      CHECK_EQ(pyrec_rd32(g_m[i].data), 3073 + 6000 * acks);
    }
  pyrec_rtmp_stats st;
  pyrec_rtmp_conn_stats(c, &st);
  CHECK_EQ(acks, st.acks_sent);
  CHECK_EQ(st.window_ack_size, 6000);
  CHECK(acks >= 3);
  pyrec_buf_free(&b);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
}

/* The whole publish conversation, every reply decoded and checked. */
static void test_conversation(void) {
  rec r;
  pyrec_rtmp_conn *c = mk(&r, NULL);
  pyrec_buf b;
  pyrec_buf_init(&b);
  put_session_start(&b);
  CHECK_EQ(feed_all(c, &b), 0);
  CHECK_EQ(pyrec_rtmp_conn_state(c), PYREC_RTMP_PUBLISHING);
  CHECK(strcmp(pyrec_rtmp_conn_app(c), "live") == 0);
  CHECK(strcmp(pyrec_rtmp_conn_tcurl(c), "rtmp://h/live") == 0);
  CHECK(pyrec_rtmp_conn_stream_name(c, 1) && !strcmp(pyrec_rtmp_conn_stream_name(c, 1), "cam?k=v"));
  CHECK(pyrec_rtmp_conn_stream_name(c, 2) == NULL);
  CHECK(r.log.len && !memcmp(r.log.data, "connect live rtmp://h/live\npublish 1 cam?k=v live\n", r.log.len));
  int n = decode(&r);
  CHECK_EQ(n, 10);
  if (n == 10) {
    CHECK(g_m[0].type == 5 && g_m[0].csid == 2 && g_m[0].msid == 0 && pyrec_rd32(g_m[0].data) == 2500000);
    CHECK(g_m[1].type == 6 && g_m[1].len == 5 && pyrec_rd32(g_m[1].data) == 2500000 && g_m[1].data[4] == 2);
    CHECK(g_m[2].type == 1 && g_m[2].len == 4 && pyrec_rd32(g_m[2].data) == 4096);
    CHECK(cmd_is(&g_m[3], "_result", 1) && info_is(&g_m[3], "status", "NetConnection.Connect.Success"));
    pyrec_amf0_value o, v;
    CHECK(cmd_val(&g_m[3], 2, &o) && pyrec_amf0_get(&o, "fmsVer", &v) && v.type == PYREC_AMF0_STRING);
    CHECK(pyrec_amf0_get(&o, "capabilities", &v) && v.num == 31);
    CHECK(cmd_val(&g_m[3], 3, &o) && pyrec_amf0_get(&o, "objectEncoding", &v) && v.num == 0);
    CHECK(pyrec_amf0_get(&o, "description", &v) && v.type == PYREC_AMF0_STRING);
    /* _result(2, null, undefined), byte for byte */
    static const uint8_t res2[] = {2, 0, 7, '_', 'r', 'e', 's', 'u', 'l', 't', 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 5, 6};
    CHECK(g_m[4].len == sizeof res2 && !memcmp(g_m[4].data, res2, sizeof res2) && g_m[4].msid == 0);
    CHECK(cmd_is(&g_m[5], "_result", 3));
    CHECK(cmd_is(&g_m[6], "onFCPublish", 0) && cmd_val(&g_m[6], 3, &o) &&
          pyrec_amf0_get(&o, "code", &v) && pyrec_amf0_streq(&v, "NetStream.Publish.Start"));
    /* _result(4, null, 1): the first stream id */
    static const uint8_t res4[] = {2, 0, 7, '_', 'r', 'e', 's', 'u', 'l', 't', 0, 0x40, 0x10, 0, 0, 0, 0, 0, 0, 5,
                                   0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0};
    CHECK(g_m[7].len == sizeof res4 && !memcmp(g_m[7].data, res4, sizeof res4));
    CHECK(g_m[8].type == 4 && g_m[8].len == 6 && !memcmp(g_m[8].data, (const uint8_t[]){0, 0, 0, 0, 0, 1}, 6));
    CHECK(cmd_is(&g_m[9], "onStatus", 0) && g_m[9].msid == 1 &&
          info_is(&g_m[9], "status", "NetStream.Publish.Start"));
    CHECK(cmd_val(&g_m[9], 3, &o) && pyrec_amf0_get(&o, "description", &v) &&
          pyrec_amf0_streq(&v, "cam?k=v is now published."));
  }
  /* metadata, media, media on another stream, unpublish, delete */
  pyrec_buf_reset(&b);
  pyrec_buf_reset(&r.log);
  pyrec_buf_reset(&r.out);
  pyrec_buf md;
  pyrec_buf_init(&md);
  pyrec_amf0_put_string(&md, "@setDataFrame");
  pyrec_amf0_put_string(&md, "onMetaData");
  size_t arr_at = md.len;
  pyrec_amf0_put_ecma_begin(&md, 1);
  pyrec_amf0_put_key(&md, "duration");
  pyrec_amf0_put_number(&md, 0);
  pyrec_amf0_put_object_end(&md);
  put_msg(&b, 4096, 4, 18, 1, 0, md.data, md.len);
  put_msg(&b, 4096, 6, 9, 1, 0, (const uint8_t[]){0x17, 0, 0, 0, 0, 1}, 6);
  put_msg(&b, 4096, 4, 8, 1, 0, (const uint8_t[]){0xaf, 0, 0x12, 0x10}, 4);
  put_msg(&b, 4096, 6, 9, 2, 0, (const uint8_t[]){0x17}, 1); /* stream 2: not publishing */
  put_msg(&b, 4096, 6, 9, 1, 5, "", 0);                        /* empty: ignored */
  put_cmd(&b, 4096, 0, "FCUnpublish", 6, NULL, "cam?k=v", NULL);
  put_num_cmd(&b, 4096, "deleteStream", 7, 1);
  CHECK_EQ(feed_all(c, &b), 0);
  char want[300];
  snprintf(want, sizeof want,
           "meta 1 %zu %08x\nmedia 1 9 0 6 %08x\nmedia 1 8 0 4 %08x\nunpublish 1\n", md.len - arr_at,
           fnv(md.data + arr_at, md.len - arr_at), fnv((const uint8_t[]){0x17, 0, 0, 0, 0, 1}, 6),
           fnv((const uint8_t[]){0xaf, 0, 0x12, 0x10}, 4));
  CHECK(r.log.len == strlen(want) && !memcmp(r.log.data, want, r.log.len));
  if (r.log.len != strlen(want))
    fprintf(stderr, "log: %.*s\n", (int)r.log.len, (const char *)r.log.data);
  n = decode_out(r.out.data, r.out.len, 4096, g_m, 64);
  CHECK(n == 1 && cmd_is(&g_m[0], "_result", 6));
  CHECK_EQ(pyrec_rtmp_conn_state(c), PYREC_RTMP_CONNECTED);
  pyrec_rtmp_stats st;
  pyrec_rtmp_conn_stats(c, &st);
  CHECK_EQ(st.media_messages, 2);
  CHECK_EQ(st.ignored_messages, 2);
  pyrec_rtmp_conn_eof(c); /* nothing publishes any more: no second unpublish */
  CHECK(!logged(&r, "unpublish 1\nunpublish"));
  CHECK_EQ(pyrec_rtmp_conn_state(c), PYREC_RTMP_CLOSED);
  pyrec_buf_free(&md);
  pyrec_buf_free(&b);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
}

/* Refusals and odd commands. */
static void test_refusals(void) {
  rec r;
  pyrec_buf b;
  pyrec_buf_init(&b);
  /* connect refused */
  pyrec_rtmp_conn *c = mk(&r, NULL);
  r.connect_rc = 1;
  put_hs(&b);
  put_cmd(&b, 128, 0, "connect", 1, "live", NULL, NULL);
  put_cmd(&b, 128, 0, "createStream", 2, NULL, NULL, NULL);
  CHECK_EQ(feed_all(c, &b), 0);
  int n = decode(&r);
  CHECK(n == 1 && cmd_is(&g_m[0], "_error", 1) && info_is(&g_m[0], "error", "NetConnection.Connect.Rejected"));
  CHECK(pyrec_rtmp_conn_wants_close(c) && pyrec_rtmp_conn_state(c) == PYREC_RTMP_CLOSED);
  CHECK_EQ(feed_all(c, &b), 0); /* ignored from now on */
  CHECK_EQ(decode(&r), 1);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);

  /* publish refused: BadName, Denied */
  const int rcs[2] = {PYREC_RTMP_BADNAME, 7};
  const char *codes[2] = {"NetStream.Publish.BadName", "NetStream.Publish.Denied"};
  for (int i = 0; i < 2; i++) {
    c = mk(&r, NULL);
    r.publish_rc = rcs[i];
    pyrec_buf_reset(&b);
    put_session_start(&b);
    CHECK_EQ(feed_all(c, &b), 0);
    n = decode(&r);
    CHECK(n == 9 && cmd_is(&g_m[8], "onStatus", 0) && info_is(&g_m[8], "error", codes[i]) && g_m[8].msid == 1);
    CHECK(pyrec_rtmp_conn_wants_close(c));
    pyrec_rtmp_conn_eof(c);
    CHECK(!logged(&r, "unpublish"));
    pyrec_rtmp_conn_free(c);
    rec_free(&r);
  }

  /* play, unknown commands, publish on a stream never created, closeStream, eof */
  struct {
    const char *cmd;
    uint32_t msid;
    double txn;
    int replies; /* messages in the reply */
    const char *name, *code;
    int closes;
  } rows[] = {
      {"play", 1, 0, 1, "onStatus", "NetStream.Play.Failed", 1},
      {"fooBar", 0, 9, 1, "_error", "NetConnection.Call.Failed", 0},
      {"fooBar", 0, 0, 0, NULL, NULL, 0},
      {"getStreamLength", 0, 5, 0, NULL, NULL, 0},
      {"publish", 5, 0, 1, "onStatus", "NetStream.Publish.Denied", 1},
      {"publish", 1, 0, 1, "onStatus", "NetStream.Publish.BadName", 1}, /* already publishing */
      {"closeStream", 1, 0, 1, "onStatus", "NetStream.Unpublish.Success", 0},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    c = publishing(&r, NULL);
    pyrec_buf_reset(&b);
    put_cmd(&b, 4096, rows[i].msid, rows[i].cmd, rows[i].txn, NULL, "x", NULL);
    CHECK_EQ(feed_all(c, &b), 0);
    n = decode_out(r.out.data, r.out.len, 4096, g_m, 64);
    if (n != rows[i].replies)
      fprintf(stderr, "row %zu (%s): %d replies\n", i, rows[i].cmd, n);
    CHECK_EQ(n, rows[i].replies);
    if (n == 1 && rows[i].replies == 1) {
      CHECK(cmd_is(&g_m[0], rows[i].name, rows[i].txn));
      CHECK(info_is(&g_m[0], rows[i].closes ? "error" : !strcmp(rows[i].name, "_error") ? "error" : "status",
                    rows[i].code));
    }
    CHECK_EQ(pyrec_rtmp_conn_wants_close(c), rows[i].closes);
    int closed = !strcmp(rows[i].cmd, "closeStream");
    CHECK_EQ(logged(&r, "unpublish 1"), closed);
    pyrec_rtmp_conn_eof(c); /* on_unpublish once in all */
    CHECK(logged(&r, "unpublish 1\n") && !logged(&r, "unpublish 1\nunpublish"));
    pyrec_rtmp_conn_free(c);
    rec_free(&r);
  }

  /* a command before connect, a second connect, a command that is not AMF */
  const char *errs[3] = {"before connect", "second connect", "transaction"};
  for (int i = 0; i < 3; i++) {
    c = mk(&r, NULL);
    pyrec_buf_reset(&b);
    put_hs(&b);
    if (i == 1)
      put_cmd(&b, 128, 0, "connect", 1, "live", NULL, NULL);
    if (i < 2)
      put_cmd(&b, 128, 0, i == 0 ? "createStream" : "connect", 2, i == 1 ? "x" : NULL, NULL, NULL);
    else
      put_msg(&b, 128, 3, 20, 0, 0, (const uint8_t[]){2, 0, 1, 'a', 2, 0, 0}, 7);
    size_t at = b.len - (i == 2 ? 19 : 0);
    CHECK_EQ(feed_all(c, &b), PYREC_E_MALFORMED);
    CHECK(strstr(pyrec_rtmp_conn_error(c)->msg, errs[i]) != NULL);
    if (i == 2)
      CHECK_EQ(pyrec_rtmp_conn_error(c)->offset, (int64_t)at);
    pyrec_rtmp_conn_free(c);
    rec_free(&r);
  }
  pyrec_buf_free(&b);
}

static void test_data_messages(void) {
  rec r;
  pyrec_rtmp_conn *c = publishing(&r, NULL);
  pyrec_buf b, md;
  pyrec_buf_init(&b);
  pyrec_buf_init(&md);
  /* bare onMetaData in an AMF3 data message (type 15, leading 0) */
  pyrec_amf0_put_string(&md, "onMetaData");
  pyrec_amf0_put_object_begin(&md);
  pyrec_amf0_put_object_end(&md);
  uint8_t d15[64] = {0};
  memcpy(d15 + 1, md.data, md.len);
  put_msg(&b, 4096, 4, 15, 1, 0, d15, md.len + 1);
  /* ignored: other data, malformed AMF, data on a stream that does not publish */
  put_msg(&b, 4096, 4, 18, 1, 0, (const uint8_t[]){2, 0, 1, 'x', 5}, 5);
  put_msg(&b, 4096, 4, 18, 1, 0, (const uint8_t[]){2, 0, 10, 'o', 'n'}, 5);
  put_msg(&b, 4096, 4, 18, 3, 0, md.data, md.len);
  /* AMF3 command (type 17): releaseStream with a transaction id -> _result */
  pyrec_buf_reset(&md);
  pyrec_buf_u8(&md, 0);
  pyrec_amf0_put_string(&md, "releaseStream");
  pyrec_amf0_put_number(&md, 8);
  pyrec_amf0_put_null(&md);
  pyrec_amf0_put_string(&md, "x");
  put_msg(&b, 4096, 3, 17, 0, 0, md.data, md.len);
  /* aggregate (22): two FLV tags, timestamps relative to the first one */
  pyrec_buf_reset(&md);
  const uint8_t tag1[] = {9, 0, 0, 2, 0, 0, 100, 0, 0, 0, 0, 0x17, 1, 0, 0, 0, 13};
  const uint8_t tag2[] = {8, 0, 0, 1, 0, 0, 120, 0, 0, 0, 0, 0xaf, 0, 0, 0, 12};
  pyrec_buf_put(&md, tag1, sizeof tag1);
  pyrec_buf_put(&md, tag2, sizeof tag2);
  put_msg(&b, 4096, 6, 22, 1, 1000, md.data, md.len);
  CHECK_EQ(feed_all(c, &b), 0);
  CHECK_EQ(r.meta, 1);
  CHECK(logged(&r, "meta 1 4 "));
  check_media(&r, 9, 1000, (const uint8_t[]){0x17, 1}, 2);
  check_media(&r, 8, 1020, (const uint8_t[]){0xaf}, 1);
  int n = decode_out(r.out.data, r.out.len, 4096, g_m, 64);
  CHECK(n == 1 && cmd_is(&g_m[0], "_result", 8));
  pyrec_rtmp_stats st;
  pyrec_rtmp_conn_stats(c, &st);
  CHECK_EQ(st.ignored_messages, 3);
  /* a truncated aggregate is malformed */
  pyrec_buf_reset(&b);
  put_msg(&b, 4096, 6, 22, 1, 1000, tag1, sizeof tag1 - 2);
  CHECK_EQ(feed_all(c, &b), PYREC_E_MALFORMED);
  CHECK(strstr(pyrec_rtmp_conn_error(c)->msg, "aggregate") != NULL);
  pyrec_buf_free(&md);
  pyrec_buf_free(&b);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
}

static void test_limits(void) {
  /* a declared length above the limit: TOOBIG at the chunk header, with ext timestamp */
  pyrec_rtmp_limits lim = {1 << 20, 0, 0, 0};
  rec r;
  pyrec_rtmp_conn *c = publishing(&r, &lim);
  pyrec_buf b;
  pyrec_buf_init(&b);
  put_hdr(&b, 0, 6, 0xffffff, 0xffffff, 9, 1);
  pyrec_rtmp_stats st;
  pyrec_rtmp_conn_stats(c, &st);
  int64_t at = (int64_t)st.bytes_in;
  CHECK_EQ(feed_all(c, &b), PYREC_E_TOOBIG);
  CHECK(strstr(pyrec_rtmp_conn_error(c)->msg, "16777215") != NULL);
  CHECK(strstr(pyrec_rtmp_conn_error(c)->msg, "1048576") != NULL);
  CHECK_EQ(pyrec_rtmp_conn_error(c)->offset, at);
  CHECK_EQ(pyrec_rtmp_conn_state(c), PYREC_RTMP_CLOSED);
  CHECK_EQ(feed_all(c, &b), PYREC_E_TOOBIG);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
  /* at the default limit a 16 MiB - 1 declaration is fine, and only sent bytes are held */
  c = publishing(&r, NULL);
  pyrec_buf_reset(&b);
  put_hdr(&b, 0, 6, 0, 0xffffff, 9, 1);
  static uint8_t p[100];
  pyrec_buf_put(&b, p, sizeof p);
  CHECK_EQ(feed_all(c, &b), 0);
  CHECK_EQ(r.media, 0);
  pyrec_rtmp_conn_stats(c, &st);
  CHECK(st.buffered > 0 && st.buffered <= 4096); /* what arrived, not what was declared */
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
  /* a chunk stream id storm */
  c = publishing(&r, NULL);
  pyrec_buf_reset(&b);
  for (uint32_t id = 64; id < 5064; id++) {
    put_hdr(&b, 0, id, 0, 1, 8, 1);
    pyrec_buf_u8(&b, 0xaf);
  }
  CHECK_EQ(feed_all(c, &b), PYREC_E_TOOBIG);
  pyrec_rtmp_conn_stats(c, &st);
  CHECK_EQ(st.chunk_streams, 64);
  CHECK_EQ(r.media, 62); /* csids 2, 3 and 62 of the storm */
  CHECK(strstr(pyrec_rtmp_conn_error(c)->msg, "limit 64") != NULL);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
  /* truncated input is not an error: it waits */
  c = publishing(&r, NULL);
  pyrec_buf_reset(&b);
  put_msg(&b, 4096, 6, 9, 1, 0, p, sizeof p);
  for (size_t cut = 1; cut < b.len; cut += 7) {
    rec r2;
    pyrec_rtmp_conn *c2 = publishing(&r2, NULL);
    CHECK_EQ(pyrec_rtmp_conn_feed(c2, b.data, cut), 0);
    CHECK_EQ(r2.media, 0);
    CHECK_EQ(pyrec_rtmp_conn_feed(c2, b.data + cut, b.len - cut), 0);
    CHECK_EQ(r2.media, 1);
    pyrec_rtmp_conn_free(c2);
    rec_free(&r2);
  }
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
  /* invalid limits / callbacks */
  pyrec_rtmp_callbacks nocb = {0};
  CHECK_EQ(pyrec_rtmp_conn_new(&c, NULL, &nocb, 0), PYREC_E_INVAL);
  pyrec_rtmp_callbacks cb = {r_send, 0, 0, 0, 0, 0, &r};
  pyrec_rtmp_limits badlim = {0, 0, 0, 100};
  CHECK_EQ(pyrec_rtmp_conn_new(&c, &badlim, &cb, 0), PYREC_E_INVAL);
  pyrec_buf_free(&b);
}

/* Random bytes, from the start and after a valid session start; mutated real captures. */
static uint32_t rnd_state = 99;
static uint32_t rnd(uint32_t n) {
  rnd_state = rnd_state * 1103515245u + 12345u;
  return (rnd_state >> 8) % n;
}

static void feed_hostile(const uint8_t *p, size_t n, int prefix) {
  rec r;
  pyrec_rtmp_conn *c = prefix ? publishing(&r, NULL) : mk(&r, NULL);
  pyrec_rtmp_stats st;
  pyrec_rtmp_conn_stats(c, &st);
  int rc = 0;
  for (size_t i = 0; i < n && !rc;) {
    size_t k = 1 + rnd(3000);
    if (k > n - i)
      k = n - i;
    uint8_t *copy = malloc(k); /* exact size: ASAN catches overreads past the feed */
    memcpy(copy, p + i, k);
    rc = pyrec_rtmp_conn_feed(c, copy, k);
    free(copy);
    i += k;
  }
  if (rc) {
    const pyrec_errinfo *e = pyrec_rtmp_conn_error(c);
    CHECK(e->code == rc && e->msg[0] && e->offset >= 0 && e->offset <= (int64_t)(st.bytes_in + n));
  }
  pyrec_rtmp_conn_eof(c);
  pyrec_rtmp_conn_free(c);
  rec_free(&r);
}

static int load(const char *name, pyrec_buf *f) {
  const char *dirs[] = {getenv("PYREC_RTMP_DATA"), "data", "csrc/tests/data", "tests/data"};
  for (int i = 0; i < 4; i++) {
    if (!dirs[i])
      continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dirs[i], name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
      continue;
    uint8_t chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
      pyrec_buf_put(f, chunk, n);
    fclose(fp);
    return 1;
  }
  fprintf(stderr, "cannot find %s (run from csrc/tests or set PYREC_RTMP_DATA)\n", name);
  return 0;
}

static void test_hostile(void) {
  uint8_t buf[8192];
  for (int it = 0; it < 3000; it++) {
    size_t n = 1 + rnd(sizeof buf);
    for (size_t i = 0; i < n; i++)
      buf[i] = (uint8_t)rnd(256);
    if (it % 3 == 0) {
      buf[0] = 3; /* a valid C0, random C1/C2, then random chunks */
      feed_hostile(buf, n, 0);
    } else {
      if (it % 3 == 2) /* mostly small csids and header types, like a real stream */
        for (size_t i = 0; i < n; i += 1 + rnd(40))
          buf[i] = (uint8_t)(rnd(4) << 6 | (2 + rnd(6)));
      feed_hostile(buf, n, 1);
    }
  }
  pyrec_buf f;
  pyrec_buf_init(&f);
  if (load("rtmp_ffmpeg_publish.bin", &f)) {
    uint8_t *m = malloc(f.len);
    for (int it = 0; it < 300; it++) {
      memcpy(m, f.data, f.len);
      int flips = 1 + (int)rnd(8);
      for (int k = 0; k < flips; k++)
        m[3073 + rnd((uint32_t)(f.len - 3073))] ^= (uint8_t)(1 + rnd(255));
      feed_hostile(m, f.len, 0);
    }
    free(m);
  }
  pyrec_buf_free(&f);
  CHECK(1);
}

/* Feed `in` whole, byte by byte and in random pieces: same events, same output. */
static void check_splits(const pyrec_buf *in, rec *whole) {
  for (int mode = 0; mode < 3; mode++) {
    rec r;
    pyrec_rtmp_conn *c = mk(&r, NULL);
    int rc = 0;
    for (size_t i = 0; i < in->len && !rc;) {
      size_t k = mode == 0 ? in->len : mode == 1 ? 1 : 1 + rnd(700);
      if (k > in->len - i)
        k = in->len - i;
      rc = pyrec_rtmp_conn_feed(c, in->data + i, k);
      i += k;
    }
    CHECK_EQ(rc, 0);
    pyrec_rtmp_conn_eof(c);
    if (mode == 0) {
      *whole = r;
    } else {
      CHECK(r.log.len == whole->log.len && !memcmp(r.log.data, whole->log.data, r.log.len));
      CHECK(r.out.len == whole->out.len && !memcmp(r.out.data, whole->out.data, r.out.len));
      rec_free(&r);
    }
    pyrec_rtmp_conn_free(c);
  }
}

static void test_split_invariance(void) {
  static uint8_t p[9000];
  fill(p, sizeof p, 5);
  for (int ext_cont = 0; ext_cont < 2; ext_cont++) {
    pyrec_buf b;
    pyrec_buf_init(&b);
    put_session_start(&b);
    put_ctrl(&b, 4096, 5, 4096); /* acks every 4096 bytes */
    for (int i = 0; i < 12; i++) {
      put_msg_ex(&b, i > 5 ? 300 : 4096, 6, 9, 1, 0xfffff0u + 33u * (uint32_t)i, p + i,
                 sizeof p - (size_t)i * 500, ext_cont);
      if (i == 5)
        put_ctrl(&b, 4096, 1, 300);
      if (i == 7)
        put_msg(&b, 300, 2, 4, 0, 0, (const uint8_t[]){0, 6, 0, 0, 0, 9}, 6);
    }
    put_cmd(&b, 300, 0, "FCUnpublish", 9, NULL, "cam?k=v", NULL);
    rec whole;
    check_splits(&b, &whole);
    CHECK_EQ(whole.media, 12);
    CHECK(logged(&whole, "unpublish 1"));
    CHECK(whole.out.len > 3073 + 100);
    rec_free(&whole);
    pyrec_buf_free(&b);
  }
}

/* Real ffmpeg 5.1 publishes, captured on loopback by a scratch server around this code. */
static void test_captures(void) {
  pyrec_buf f;
  pyrec_buf_init(&f);
  /* ffmpeg -re -f lavfi -i testsrc=size=160x120:rate=15 -f lavfi -i sine=sample_rate=22050
   *   -t 1.5 -c:v libx264 -preset ultrafast -b:v 60k -g 15 -c:a aac -b:a 24k -ac 1
   *   -f flv rtmp://127.0.0.1:19350/app/stream?token=abc */
  if (load("rtmp_ffmpeg_publish.bin", &f)) {
    rec whole;
    check_splits(&f, &whole);
    CHECK(logged(&whole, "connect app rtmp://127.0.0.1:19350/app\npublish 1 stream?token=abc live\nmeta 1 "));
    CHECK(logged(&whole, "unpublish 1\n"));
    CHECK_EQ(whole.meta, 1);
    CHECK_EQ(whole.video, 25);
    CHECK_EQ(whole.audio, 35);
    CHECK_EQ(whole.order_bad, 0);
    rec_free(&whole);
  }
  /* the same with -output_ts_offset 16776.6 (no -re): timestamps cross 0xffffff, so the
   * extended timestamp appears mid-stream. Expected sums from ffprobe of the same encode
   * written to an FLV file (plus the two sequence headers at 0 and the AVC end of sequence). */
  pyrec_buf_reset(&f);
  if (load("rtmp_ffmpeg_extts.bin", &f)) {
    rec whole;
    check_splits(&f, &whole);
    CHECK_EQ(whole.media, 60);
    CHECK_EQ(whole.video, 25);
    CHECK_EQ(whole.audio, 35);
    CHECK_EQ(whole.sum_ts, 973085608u);
    CHECK_EQ(whole.sum_len, 21493);
    CHECK_EQ(whole.last_ts[9], 16778067);
    CHECK_EQ(whole.last_ts[8], 16778086);
    CHECK_EQ(whole.order_bad, 0);
    rec_free(&whole);
  }
  pyrec_buf_free(&f);
}

int main(void) {
  RUN(test_handshake);
  RUN(test_chunk_sizes);
  RUN(test_header_types);
  RUN(test_ext_timestamps);
  RUN(test_control);
  RUN(test_control_one_byte_short);
  RUN(test_csid_forms);
  RUN(test_ack_window);
  RUN(test_ack_deferred);
  RUN(test_conversation);
  RUN(test_refusals);
  RUN(test_data_messages);
  RUN(test_limits);
  RUN(test_hostile);
  RUN(test_split_invariance);
  RUN(test_captures);
  return T_DONE();
}
