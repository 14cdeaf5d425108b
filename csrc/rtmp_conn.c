/* RTMP server connection: handshake, then chunk stream messages dispatched to protocol control
 * (Adobe RTMP spec 1.0, 5.4), user control (6.2), commands/data (rtmp_cmd.c) and media. */
#include "rtmp_internal.h"

#include <stdlib.h>
#include <string.h>

#define MIN_ACK_WINDOW 4096u

void rtmp_send_msg(pyrec_rtmp_conn *c, uint32_t csid, uint8_t type, uint32_t msid,
                   const uint8_t *p, size_t len) {
  rtmp_chunk_write(&c->out, c->out_chunk, csid, type, msid, 0, p, len);
}

static void send_u32_msg(pyrec_rtmp_conn *c, uint8_t type, uint32_t v) {
  uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  rtmp_send_msg(c, RTMP_CSID_CTRL, type, 0, b, 4);
}

void rtmp_refuse(pyrec_rtmp_conn *c) {
  c->wants_close = 1;
  c->state = PYREC_RTMP_CLOSED;
}

void rtmp_update_state(pyrec_rtmp_conn *c) {
  if (c->state == PYREC_RTMP_CLOSED || c->state == PYREC_RTMP_HANDSHAKE)
    return;
  c->state = PYREC_RTMP_CONNECTED;
  for (int i = 0; i < PYREC_RTMP_MAX_STREAMS; i++)
    if (c->streams[i].id && c->streams[i].publishing)
      c->state = PYREC_RTMP_PUBLISHING;
}

rtmp_stream *rtmp_find_stream(pyrec_rtmp_conn *c, uint32_t id) {
  if (!id)
    return NULL;
  for (int i = 0; i < PYREC_RTMP_MAX_STREAMS; i++)
    if (c->streams[i].id == id)
      return &c->streams[i];
  return NULL;
}

void rtmp_unpublish(pyrec_rtmp_conn *c, rtmp_stream *s) {
  if (!s || !s->publishing)
    return;
  s->publishing = 0;
  if (c->cb.on_unpublish)
    c->cb.on_unpublish(c->cb.opaque, s->id);
  rtmp_update_state(c);
}

/* Acknowledgement (5.4.3): sequence number = bytes received so far. */
static void send_ack(pyrec_rtmp_conn *c) {
  c->last_ack = (uint64_t)c->rd.pos;
  c->ack_due = 0;
  send_u32_msg(c, 3, (uint32_t)c->last_ack);
  c->st.acks_sent++;
}

static void set_limit(pyrec_rtmp_conn *c) { c->rd.limit = (int64_t)(c->last_ack + c->window); }

/* A window was crossed: acknowledge now, or mark it due (the next window counts from here). */
static void window_crossed(pyrec_rtmp_conn *c) {
  if (c->defer_acks) {
    c->last_ack = (uint64_t)c->rd.pos;
    c->ack_due = 1;
  } else {
    send_ack(c);
  }
}

static int control(pyrec_rtmp_conn *c, const rtmp_msg *m) {
  const uint8_t *d = m->data;
  static const uint8_t need[7] = {0, 4, 4, 4, 2, 4, 5};
  if (m->len < need[m->type])
    return pyrec_seterr(&c->err, PYREC_E_MALFORMED, m->offset,
                        "protocol control message type %u: %u bytes, needs %u", m->type,
                        m->len, need[m->type]);
  uint32_t v = m->len >= 4 ? pyrec_rd32(d) : 0;
  switch (m->type) {
  case 1: /* Set Chunk Size (5.4.1): 31 bits, not 0 */
    if (v == 0 || v > 0x7fffffffu)
      return pyrec_seterr(&c->err, PYREC_E_MALFORMED, m->offset, "Set Chunk Size %u (must be 1..2^31-1)", v);
    c->rd.chunk_size = v;
    break;
  case 2: /* Abort (5.4.2) */
    rtmp_chunk_abort(&c->rd, v);
    break;
  case 3: /* Acknowledgement (5.4.3): nothing to do */
  case 6: /* Set Peer Bandwidth (5.4.5): we do not limit our (tiny) output */
    break;
  case 5: /* Window Acknowledgement Size (5.4.4) */
    c->window = v < MIN_ACK_WINDOW ? MIN_ACK_WINDOW : v;
    if ((uint64_t)c->rd.pos - c->last_ack >= c->window)
      window_crossed(c);
    set_limit(c);
    break;
  case 4: { /* User Control (6.2) */
    uint16_t ev = pyrec_rd16(d);
    if (ev == 6) { /* PingRequest -> PingResponse with the same timestamp */
      if (m->len < 6)
        return pyrec_seterr(&c->err, PYREC_E_MALFORMED, m->offset,
                            "User Control PingRequest: %u bytes, needs 6", m->len);
      uint8_t b[6] = {0, 7, d[2], d[3], d[4], d[5]};
      rtmp_send_msg(c, RTMP_CSID_CTRL, 4, 0, b, 6);
    }
    break;
  }
  }
  return 0;
}

/* Aggregate message (type 22): FLV tags (11-byte header, body, 4-byte back pointer); their
 * timestamps are made relative to the first one and added to the message's. */
static int aggregate(pyrec_rtmp_conn *c, const rtmp_msg *m, rtmp_stream *s) {
  size_t pos = 0;
  uint32_t first = 0;
  for (int n = 0; pos < m->len; n++) {
    if (m->len - pos < 11)
      return pyrec_seterr(&c->err, PYREC_E_MALFORMED, m->offset,
                          "aggregate message: truncated tag header at body byte %zu", pos);
    const uint8_t *h = m->data + pos;
    uint32_t size = pyrec_rd24(h + 1);
    uint32_t ts = pyrec_rd24(h + 4) | ((uint32_t)h[7] << 24);
    if (size > m->len - pos - 11 || m->len - pos - 11 - size < 4)
      return pyrec_seterr(&c->err, PYREC_E_MALFORMED, m->offset,
                          "aggregate message: tag of %u bytes at body byte %zu overruns", size, pos);
    if (n == 0)
      first = ts;
    uint8_t type = h[0] & 0x1f;
    if ((type == 8 || type == 9) && size > 0) {
      int rc = c->cb.on_media ? c->cb.on_media(c->cb.opaque, s->id, type, m->ts + (ts - first),
                                               h + 11, size)
                              : 0;
      if (rc)
        return pyrec_seterr(&c->err, PYREC_E_CALLBACK, m->offset, "on_media returned %d", rc);
      c->st.media_messages++;
    } else {
      c->st.ignored_messages++;
    }
    pos += 11 + (size_t)size + 4;
  }
  return 0;
}

static int on_message(void *opaque, const rtmp_msg *m) {
  pyrec_rtmp_conn *c = opaque;
  c->st.messages++;
  switch (m->type) {
  case 1: case 2: case 3: case 4: case 5: case 6:
    return control(c, m);
  case 8: case 9: case 22: {
    rtmp_stream *s = rtmp_find_stream(c, m->msid);
    if (!s || !s->publishing || m->len == 0) {
      c->st.ignored_messages++;
      return 0;
    }
    if (m->type == 22)
      return aggregate(c, m, s);
    int rc = c->cb.on_media ? c->cb.on_media(c->cb.opaque, s->id, m->type, m->ts, m->data, m->len) : 0;
    if (rc)
      return pyrec_seterr(&c->err, PYREC_E_CALLBACK, m->offset, "on_media returned %d", rc);
    c->st.media_messages++;
    return 0;
  }
  case 17: case 20: /* AMF3 command: a leading format byte 0, then AMF0 */
    if (m->type == 17 && (m->len == 0 || m->data[0] != 0))
      return pyrec_seterr(&c->err, PYREC_E_MALFORMED, m->offset,
                          "AMF3 command message (type 17) without its leading 0 byte");
    return m->type == 17 ? rtmp_on_command(c, m, m->data + 1, m->len - 1)
                         : rtmp_on_command(c, m, m->data, m->len);
  case 15: case 18:
    if (m->type == 15) {
      if (m->len == 0 || m->data[0] != 0) {
        c->st.ignored_messages++;
        return 0;
      }
      return rtmp_on_data(c, m, m->data + 1, m->len - 1);
    }
    return rtmp_on_data(c, m, m->data, m->len);
  default: /* shared objects (16, 19) and unknown types */
    c->st.ignored_messages++;
    return 0;
  }
}

int pyrec_rtmp_conn_new(pyrec_rtmp_conn **out, const pyrec_rtmp_limits *lim,
                        const pyrec_rtmp_callbacks *cb, uint32_t epoch_ms) {
  *out = NULL;
  if (!cb || !cb->send)
    return PYREC_E_INVAL;
  pyrec_rtmp_limits l = {0};
  if (lim)
    l = *lim;
  if (!l.max_message_size || l.max_message_size > 0xffffff)
    l.max_message_size = 0xffffff; /* 16 MiB - 1: the message length field is 24 bits */
  if (!l.max_chunk_streams)
    l.max_chunk_streams = 64;
  if (!l.window_ack_size)
    l.window_ack_size = 2500000;
  if (!l.out_chunk_size)
    l.out_chunk_size = 4096;
  if (l.out_chunk_size < 128 || l.out_chunk_size > 65536)
    return PYREC_E_INVAL;
  pyrec_rtmp_conn *c = calloc(1, sizeof *c);
  if (!c)
    return PYREC_E_NOMEM;
  c->lim = l;
  c->cb = *cb;
  pyrec_clearerr(&c->err);
  rtmp_hs_init(&c->hs, epoch_ms);
  rtmp_chunk_init(&c->rd, l.max_message_size, l.max_chunk_streams, on_message, c, &c->err);
  pyrec_buf_init(&c->out);
  pyrec_buf_init(&c->tmp);
  c->out_chunk = 128;
  c->window = l.window_ack_size < MIN_ACK_WINDOW ? MIN_ACK_WINDOW : l.window_ack_size;
  c->next_stream_id = 1;
  c->state = PYREC_RTMP_HANDSHAKE;
  *out = c;
  return 0;
}

static int fail(pyrec_rtmp_conn *c, int rc) {
  if (!c->err.code) /* a code returned without details */
    pyrec_seterr(&c->err, rc, c->rd.pos, "%s", pyrec_strerror(rc));
  c->wants_close = 1;
  c->state = PYREC_RTMP_CLOSED;
  return c->err.code;
}

static int flush(pyrec_rtmp_conn *c) {
  if (c->out.oom) {
    pyrec_buf_reset(&c->out);
    return pyrec_seterr(&c->err, PYREC_E_NOMEM, c->rd.pos, "output buffer");
  }
  if (!c->out.len)
    return 0;
  int rc = c->cb.send(c->cb.opaque, c->out.data, c->out.len);
  c->st.bytes_out += c->out.len;
  pyrec_buf_reset(&c->out);
  if (c->out.cap > (256u << 10))
    pyrec_buf_free(&c->out);
  if (rc) {
    pyrec_seterr(&c->err, PYREC_E_IO, c->rd.pos, "send callback returned %d", rc);
    return PYREC_E_IO;
  }
  return 0;
}

int pyrec_rtmp_conn_feed(pyrec_rtmp_conn *c, const uint8_t *data, size_t len) {
  if (c->err.code)
    return c->err.code;
  c->st.bytes_in += len;
  if (c->state == PYREC_RTMP_CLOSED)
    return 0;
  int rc = 0;
  size_t i = 0;
  if (!rtmp_hs_done(&c->hs)) {
    size_t used = 0;
    rc = rtmp_hs_feed(&c->hs, data, len, &used, &c->out, &c->err, c->rd.pos);
    c->rd.pos += (int64_t)used;
    i = used;
    if (!rc && rtmp_hs_done(&c->hs)) {
      c->state = PYREC_RTMP_CONNECTED;
      c->last_ack = (uint64_t)c->rd.pos; /* the window counts chunk stream bytes */
      set_limit(c);
    }
  }
  while (!rc && i < len) {
    size_t used = 0;
    rc = rtmp_chunk_feed(&c->rd, data + i, len - i, &used);
    i += used;
    if (rc < 0) { /* refused: ignore the rest */
      rc = 0;
      break;
    }
    if (!rc && c->rd.pos >= c->rd.limit) {
      window_crossed(c);
      set_limit(c);
    }
  }
  int frc = flush(c);
  if (!rc)
    rc = frc;
  if (rc)
    return fail(c, rc);
  return 0;
}

void pyrec_rtmp_conn_set_defer_acks(pyrec_rtmp_conn *c, int on) { c->defer_acks = on != 0; }

int pyrec_rtmp_conn_ack_due(const pyrec_rtmp_conn *c) {
  return c->ack_due && c->state != PYREC_RTMP_CLOSED && !c->err.code;
}

int pyrec_rtmp_conn_send_due_ack(pyrec_rtmp_conn *c) {
  if (!pyrec_rtmp_conn_ack_due(c))
    return 0;
  send_ack(c);
  set_limit(c);
  int rc = flush(c);
  return rc ? fail(c, rc) : 0;
}

void pyrec_rtmp_conn_eof(pyrec_rtmp_conn *c) {
  for (int i = 0; i < PYREC_RTMP_MAX_STREAMS; i++)
    if (c->streams[i].id)
      rtmp_unpublish(c, &c->streams[i]);
  c->state = PYREC_RTMP_CLOSED;
  c->wants_close = 1;
}

int pyrec_rtmp_conn_state(const pyrec_rtmp_conn *c) { return c->state; }
int pyrec_rtmp_conn_wants_close(const pyrec_rtmp_conn *c) { return c->wants_close; }
const pyrec_errinfo *pyrec_rtmp_conn_error(const pyrec_rtmp_conn *c) { return &c->err; }
const char *pyrec_rtmp_conn_app(const pyrec_rtmp_conn *c) { return c->app; }
const char *pyrec_rtmp_conn_tcurl(const pyrec_rtmp_conn *c) { return c->tcurl; }

const char *pyrec_rtmp_conn_stream_name(const pyrec_rtmp_conn *c, uint32_t stream_id) {
  for (int i = 0; i < PYREC_RTMP_MAX_STREAMS; i++)
    if (stream_id && c->streams[i].id == stream_id && c->streams[i].publishing)
      return c->streams[i].name;
  return NULL;
}

void pyrec_rtmp_conn_stats(const pyrec_rtmp_conn *c, pyrec_rtmp_stats *out) {
  *out = c->st;
  out->dropped_partials = c->rd.dropped;
  out->chunk_streams = c->rd.ncs;
  out->in_chunk_size = c->rd.chunk_size;
  out->out_chunk_size = c->out_chunk;
  out->window_ack_size = c->window;
  out->buffered = 0;
  for (uint32_t i = 0; i < c->rd.ncs; i++)
    out->buffered += c->rd.cs[i].payload.cap;
}

void pyrec_rtmp_conn_free(pyrec_rtmp_conn *c) {
  if (!c)
    return;
  rtmp_chunk_free(&c->rd);
  pyrec_buf_free(&c->out);
  pyrec_buf_free(&c->tmp);
  free(c);
}
