/* Structure-aware fuzz target for RTMP chunk streams: the input is a sequence of records
 * (records.h), each one RTMP message that this target chunks correctly (basic header of 1, 2
 * or 3 bytes, message header type 0/1/2/3, extended timestamps, the chunk size the peer set),
 * after a valid handshake, connect, createStream and publish, so every mutation reaches the
 * message handlers and the media bodies instead of desynchronising the chunk parser as with
 * fuzz_rtmp. Media bodies go through bodycheck.h (tag body parser, then a recording source).
 *
 * Input: UI8 mode (bits 0-6: recorder options as bodycheck.h; bit 7: skip the preamble, so
 * connect/publish come from the records), then records:
 *   kind bits 0-2: message type {8 audio, 9 video, 18 data, 20 command, 1 set chunk size,
 *   4 user control, 17 AMF3 command, kind >> 3 raw};
 *   aux bits 0-1: header compression wished (0 type 0 ... 3 type 3, used when it is valid);
 *   bits 2-3: chunk stream id {4, 5, 70, 400}; bit 4: an extended timestamp (+2^24);
 *   bits 5-7: timestamp delta * 10 ms. Message stream id 1 for media, data and commands
 *   with aux bit 4, else 0. Corpus: csrc/fuzz/corpus/chunks (csrc/fuzz/mkseeds.py). */
#include "bodycheck.h"
#include "records.h"

#include "pyrec/amf0.h"
#include "pyrec/buf.h"
#include "pyrec/rtmp.h"

typedef struct cstate {
  pyrec_flvsrc *src;
  int published;
} cstate;

static int c_send(void *o, const uint8_t *d, size_t n) { return 0; }
static int c_connect(void *o, const char *app, const char *tcurl) { return app[0] == 'x'; }
static int c_publish(void *o, uint32_t id, const char *name, const char *type) {
  ((cstate *)o)->published++;
  return name[0] == 'x' ? PYREC_RTMP_BADNAME : name[0] == 'y';
}
static void c_unpublish(void *o, uint32_t id) {}
static int c_media(void *o, uint32_t id, uint8_t type, uint32_t ts, const uint8_t *b, size_t n) {
  uint8_t *copy = malloc(n ? n : 1); /* exact size: ASAN sees a read past the body */
  if (n)
    memcpy(copy, b, n);
  fz_check_body(type, ts, copy, n, ((cstate *)o)->src);
  free(copy);
  return 0;
}
static void c_meta(void *o, uint32_t id, const uint8_t *a, size_t n) {
  uint8_t *copy = malloc(n ? n : 1);
  if (n)
    memcpy(copy, a, n);
  pyrec_amf0_reader r;
  pyrec_amf0_value v;
  pyrec_amf0_reader_init(&r, copy, n, NULL);
  while (!pyrec_amf0_at_end(&r) && pyrec_amf0_read(&r, &v) == 0) {
    pyrec_amf0_value w;
    if (v.type == PYREC_AMF0_ECMA_ARRAY || v.type == PYREC_AMF0_OBJECT)
      pyrec_flvsrc_announce(((cstate *)o)->src,
                            pyrec_amf0_get(&v, "videocodecid", &w) == 1,
                            pyrec_amf0_get(&v, "audiocodecid", &w) == 1);
  }
  free(copy);
}

/* Per chunk stream: the last message header sent, for header compression. */
typedef struct cs_hdr {
  int used;
  uint32_t ts, delta, len, msid;
  uint8_t type;
  int ext;
} cs_hdr;

static void put_basic(pyrec_buf *b, int fmt, uint32_t csid) {
  if (csid < 64) {
    pyrec_buf_u8(b, (uint8_t)((fmt << 6) | csid));
  } else if (csid < 320) {
    pyrec_buf_u8(b, (uint8_t)(fmt << 6));
    pyrec_buf_u8(b, (uint8_t)(csid - 64));
  } else {
    pyrec_buf_u8(b, (uint8_t)((fmt << 6) | 1));
    pyrec_buf_u8(b, (uint8_t)((csid - 64) & 0xff));
    pyrec_buf_u8(b, (uint8_t)((csid - 64) >> 8));
  }
}

static void put_msg(pyrec_buf *b, cs_hdr *h, uint32_t chunk, int want, uint32_t csid, uint8_t type,
                    uint32_t msid, uint32_t ts, const uint8_t *p, size_t len) {
  int fmt = 0;
  uint32_t delta = ts - h->ts;
  if (h->used && msid == h->msid && ts >= h->ts) {
    if (want >= 1)
      fmt = 1;
    if (want >= 2 && len == h->len && type == h->type)
      fmt = 2;
    if (want >= 3 && fmt == 2 && delta == h->delta && !h->ext && delta < 0xffffff)
      fmt = 3;
  }
  uint32_t field = fmt == 0 ? ts : delta;
  int ext = fmt != 3 && field >= 0xffffff;
  put_basic(b, fmt, csid);
  if (fmt <= 2)
    pyrec_buf_u24(b, ext ? 0xffffff : field);
  if (fmt <= 1) {
    pyrec_buf_u24(b, (uint32_t)len);
    pyrec_buf_u8(b, type);
  }
  if (fmt == 0) {
    uint8_t le[4] = {(uint8_t)msid, (uint8_t)(msid >> 8), (uint8_t)(msid >> 16),
                     (uint8_t)(msid >> 24)};
    pyrec_buf_put(b, le, 4);
  }
  if (ext)
    pyrec_buf_u32(b, field);
  size_t off = 0;
  for (;;) {
    size_t n = len - off < chunk ? len - off : chunk;
    pyrec_buf_put(b, p + off, n);
    off += n;
    if (off >= len)
      break;
    put_basic(b, 3, csid);
    if (ext)
      pyrec_buf_u32(b, field); /* repeated on continuations, as ffmpeg and the spec do */
  }
  h->used = 1;
  h->ts = ts;
  h->len = (uint32_t)len;
  h->type = type;
  h->msid = msid;
  if (fmt != 3) {
    h->delta = fmt == 0 ? ts : delta;
    h->ext = ext;
  }
}

static void put_command(pyrec_buf *b, cs_hdr *h, uint32_t msid, const char *name, double tid,
                        const char *arg) {
  pyrec_buf a;
  pyrec_buf_init(&a);
  pyrec_amf0_put_string(&a, name);
  pyrec_amf0_put_number(&a, tid);
  if (!strcmp(name, "connect")) {
    pyrec_amf0_put_object_begin(&a);
    pyrec_amf0_put_key(&a, "app");
    pyrec_amf0_put_string(&a, "live");
    pyrec_amf0_put_key(&a, "tcUrl");
    pyrec_amf0_put_string(&a, "rtmp://127.0.0.1/live");
    pyrec_amf0_put_object_end(&a);
  } else {
    pyrec_amf0_put_null(&a);
  }
  if (arg) {
    pyrec_amf0_put_string(&a, arg);
    pyrec_amf0_put_string(&a, "live");
  }
  put_msg(b, h, 128, 0, 3, 20, msid, 0, a.data, a.len);
  pyrec_buf_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t mode = data[0];
  fz_sink z;
  cstate st = {fz_source(&z, mode & 0x7f), 0};
  if (!st.src)
    return 0;
  pyrec_rtmp_limits lim = {1 << 20, 16, 4096, 128};
  pyrec_rtmp_callbacks cb = {c_send, c_connect, c_publish, c_unpublish, c_media, c_meta, &st};
  pyrec_rtmp_conn *c;
  if (pyrec_rtmp_conn_new(&c, &lim, &cb, 42))
    abort();
  pyrec_buf b;
  pyrec_buf_init(&b);
  static uint8_t hs[3073];
  hs[0] = 3;
  pyrec_buf_put(&b, hs, sizeof hs);
  cs_hdr hdrs[5];
  memset(hdrs, 0, sizeof hdrs);
  if (!(mode & 0x80)) {
    put_command(&b, &hdrs[4], 0, "connect", 1, NULL);
    put_command(&b, &hdrs[4], 0, "createStream", 2, NULL);
    put_command(&b, &hdrs[4], 1, "publish", 0, "s");
  }
  static const uint8_t types[7] = {8, 9, 18, 20, 1, 4, 17};
  static const uint32_t csids[4] = {4, 5, 70, 400};
  uint32_t chunk = 128, ts = 0;
  fz_reader r;
  fz_init(&r, data + 1, size - 1);
  while (fz_next(&r)) {
    uint8_t k = r.cur.kind, aux = r.cur.aux;
    uint8_t type = (k & 7) < 7 ? types[k & 7] : (uint8_t)(k >> 3);
    ts += 10u * (aux >> 5) + ((aux & 0x10) ? 0x1000000u : 0);
    int media = type == 8 || type == 9 || type == 18 || type == 15;
    uint32_t msid = media || (aux & 0x10) ? 1 : 0;
    put_msg(&b, &hdrs[(aux >> 2) & 3], chunk, aux & 3, csids[(aux >> 2) & 3], type, msid, ts,
            r.cur.body, r.cur.len);
    if (type == 1 && r.cur.len >= 4) { /* the peer reads our next chunks with this size */
      uint32_t v = pyrec_rd32(r.cur.body);
      if (v >= 1 && v <= 0x7fffffffu)
        chunk = v < (1u << 20) ? v : (1u << 20);
      if (v > (1u << 20))
        break; /* chunks larger than what we frame: stop here */
    }
  }
  fz_done(&r);
  int rc = 0;
  uint32_t x = (uint32_t)size * 2654435761u + 1;
  for (size_t i = 0; i < b.len && !rc && !b.oom;) {
    x = x * 1103515245u + 12345u;
    size_t n = (mode & 1) ? 1 + (x >> 8) % 211 : b.len - i;
    if (n > b.len - i)
      n = b.len - i;
    uint8_t *piece = malloc(n);
    memcpy(piece, b.data + i, n);
    rc = pyrec_rtmp_conn_feed(c, piece, n);
    free(piece);
    i += n;
  }
  const pyrec_errinfo *e = pyrec_rtmp_conn_error(c);
  if (rc && (e->code != rc || !e->msg[0] || e->offset < 0))
    abort(); /* every error says what and where */
  pyrec_rtmp_conn_eof(c);
  pyrec_rtmp_conn_free(c);
  pyrec_flvsrc_close(st.src);
  pyrec_flvsrc_free(st.src);
  pyrec_buf_free(&b);
  return 0;
}
