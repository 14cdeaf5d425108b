/* RTMP commands and data messages (Adobe RTMP spec 1.0, 7.1.1, 7.2.1 NetConnection commands,
 * 7.2.2 NetStream commands), as FMS/nginx-rtmp answer them to publishers (ffmpeg, OBS). */
#include "pyrec/amf0.h"
#include "rtmp_internal.h"

#include <stdio.h>
#include <string.h>

#define MAX_ARGS 6

/* ---- replies --------------------------------------------------------------------------- */

static void send_cmd(pyrec_rtmp_conn *c, uint32_t msid) {
  rtmp_send_msg(c, msid ? RTMP_CSID_STREAM : RTMP_CSID_CMD, 20, msid, c->tmp.data, c->tmp.len);
  pyrec_buf_reset(&c->tmp);
}

static void put_status(pyrec_buf *b, const char *level, const char *code, const char *desc) {
  pyrec_amf0_put_object_begin(b);
  pyrec_amf0_put_key(b, "level");
  pyrec_amf0_put_string(b, level);
  pyrec_amf0_put_key(b, "code");
  pyrec_amf0_put_string(b, code);
  pyrec_amf0_put_key(b, "description");
  pyrec_amf0_put_string(b, desc);
}

/* name(txn, null, {level, code, description}) on msid. */
static void send_status(pyrec_rtmp_conn *c, const char *name, double txn, uint32_t msid,
                        const char *level, const char *code, const char *desc) {
  pyrec_buf *b = &c->tmp;
  pyrec_amf0_put_string(b, name);
  pyrec_amf0_put_number(b, txn);
  pyrec_amf0_put_null(b);
  put_status(b, level, code, desc);
  pyrec_amf0_put_object_end(b);
  send_cmd(c, msid);
}

/* _result(txn, null, undefined) */
static void send_result_empty(pyrec_rtmp_conn *c, double txn, uint32_t msid) {
  pyrec_amf0_put_string(&c->tmp, "_result");
  pyrec_amf0_put_number(&c->tmp, txn);
  pyrec_amf0_put_null(&c->tmp);
  pyrec_amf0_put_undefined(&c->tmp);
  send_cmd(c, msid);
}

static void send_ctrl_u32(pyrec_rtmp_conn *c, uint8_t type, uint32_t v, int extra, uint8_t x) {
  uint8_t b[5] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v, x};
  rtmp_send_msg(c, RTMP_CSID_CTRL, type, 0, b, extra ? 5 : 4);
}

/* ---- helpers --------------------------------------------------------------------------- */

/* Copy an AMF string into dst (NUL-terminated). 0 when it is not a string, contains a NUL,
 * or does not fit. */
static int copy_str(const pyrec_amf0_value *v, char *dst, size_t cap) {
  if (v->type != PYREC_AMF0_STRING && v->type != PYREC_AMF0_LONG_STRING)
    return 0;
  if (v->str_len >= cap || memchr(v->str, 0, v->str_len))
    return 0;
  memcpy(dst, v->str, v->str_len);
  dst[v->str_len] = 0;
  return 1;
}

static int msg_err(pyrec_rtmp_conn *c, const rtmp_msg *m, const char *what, const char *cmd) {
  return pyrec_seterr(&c->err, PYREC_E_MALFORMED, m->offset,
                      "command '%s' (message type %u, %u bytes): %s", cmd, m->type, m->len, what);
}

/* ---- commands -------------------------------------------------------------------------- */

static int do_connect(pyrec_rtmp_conn *c, double txn, const pyrec_amf0_value *a, int na) {
  pyrec_amf0_value v;
  const char *why = NULL;
  c->app[0] = c->tcurl[0] = 0;
  if (na < 1 || (a[0].type != PYREC_AMF0_OBJECT && a[0].type != PYREC_AMF0_ECMA_ARRAY))
    why = "connect without a command object";
  else if (pyrec_amf0_get(&a[0], "app", &v) && !copy_str(&v, c->app, sizeof c->app))
    why = "invalid app name";
  else if (pyrec_amf0_get(&a[0], "tcUrl", &v) && !copy_str(&v, c->tcurl, sizeof c->tcurl))
    why = "invalid tcUrl";
  if (!why && c->cb.on_connect && c->cb.on_connect(c->cb.opaque, c->app, c->tcurl))
    why = "Connection rejected.";
  if (why) {
    send_status(c, "_error", txn, 0, "error", "NetConnection.Connect.Rejected", why);
    rtmp_refuse(c);
    return -1;
  }
  c->connected = 1;
  send_ctrl_u32(c, 5, c->lim.window_ack_size, 0, 0);
  send_ctrl_u32(c, 6, c->lim.window_ack_size, 1, 2); /* limit type 2: dynamic */
  send_ctrl_u32(c, 1, c->lim.out_chunk_size, 0, 0);
  c->out_chunk = c->lim.out_chunk_size;
  pyrec_buf *b = &c->tmp;
  pyrec_amf0_put_string(b, "_result");
  pyrec_amf0_put_number(b, txn);
  pyrec_amf0_put_object_begin(b);
  pyrec_amf0_put_key(b, "fmsVer");
  pyrec_amf0_put_string(b, "FMS/3,0,1,123");
  pyrec_amf0_put_key(b, "capabilities");
  pyrec_amf0_put_number(b, 31);
  pyrec_amf0_put_object_end(b);
  put_status(b, "status", "NetConnection.Connect.Success", "Connection succeeded.");
  pyrec_amf0_put_key(b, "objectEncoding");
  pyrec_amf0_put_number(b, 0);
  pyrec_amf0_put_object_end(b);
  send_cmd(c, 0);
  return 0;
}

static int do_create_stream(pyrec_rtmp_conn *c, double txn) {
  rtmp_stream *s = rtmp_find_stream(c, 0); /* never matches: look for a free slot below */
  for (int i = 0; i < PYREC_RTMP_MAX_STREAMS && !s; i++)
    if (!c->streams[i].id)
      s = &c->streams[i];
  if (!s) {
    send_status(c, "_error", txn, 0, "error", "NetConnection.Call.Failed",
                "Too many streams on one connection.");
    return 0;
  }
  memset(s, 0, sizeof *s);
  s->id = c->next_stream_id++;
  if (!c->next_stream_id)
    c->next_stream_id = 1;
  pyrec_amf0_put_string(&c->tmp, "_result");
  pyrec_amf0_put_number(&c->tmp, txn);
  pyrec_amf0_put_null(&c->tmp);
  pyrec_amf0_put_number(&c->tmp, s->id);
  send_cmd(c, 0);
  return 0;
}

static int do_publish(pyrec_rtmp_conn *c, const rtmp_msg *m, const pyrec_amf0_value *a, int na) {
  rtmp_stream *s = rtmp_find_stream(c, m->msid);
  char name[sizeof s->name], type[32] = "live";
  const char *code = "NetStream.Publish.BadName", *why = NULL;
  if (!s) {
    code = "NetStream.Publish.Denied";
    why = "publish on a stream that was not created.";
  } else if (s->publishing) {
    why = "This stream already publishes.";
  } else if (na < 2 || !copy_str(&a[1], name, sizeof name)) {
    why = "Invalid stream name.";
  } else if (na >= 3 && a[2].type != PYREC_AMF0_NULL && a[2].type != PYREC_AMF0_UNDEFINED &&
             !copy_str(&a[2], type, sizeof type)) {
    code = "NetStream.Publish.Denied";
    why = "Invalid publish type.";
  } else if (c->cb.on_publish) {
    int rc = c->cb.on_publish(c->cb.opaque, s->id, name, type);
    if (rc == PYREC_RTMP_BADNAME) {
      why = "Stream name refused.";
    } else if (rc) {
      code = "NetStream.Publish.Denied";
      why = "Publishing refused.";
    }
  }
  if (why) {
    send_status(c, "onStatus", 0, m->msid, "error", code, why);
    rtmp_refuse(c);
    return -1;
  }
  memcpy(s->name, name, strlen(name) + 1);
  s->publishing = 1;
  rtmp_update_state(c);
  uint8_t begin[6] = {0, 0, (uint8_t)(s->id >> 24), (uint8_t)(s->id >> 16),
                      (uint8_t)(s->id >> 8), (uint8_t)s->id}; /* User Control StreamBegin */
  rtmp_send_msg(c, RTMP_CSID_CTRL, 4, 0, begin, sizeof begin);
  char desc[sizeof name + 32];
  snprintf(desc, sizeof desc, "%s is now published.", name);
  pyrec_buf *b = &c->tmp;
  pyrec_amf0_put_string(b, "onStatus");
  pyrec_amf0_put_number(b, 0);
  pyrec_amf0_put_null(b);
  put_status(b, "status", "NetStream.Publish.Start", desc);
  pyrec_amf0_put_key(b, "details");
  pyrec_amf0_put_string(b, name);
  pyrec_amf0_put_object_end(b);
  send_cmd(c, m->msid);
  return 0;
}

/* FCUnpublish names the stream: the one publishing under that name, else the only one. */
static rtmp_stream *stream_by_name(pyrec_rtmp_conn *c, const pyrec_amf0_value *v) {
  rtmp_stream *only = NULL;
  int n = 0;
  for (int i = 0; i < PYREC_RTMP_MAX_STREAMS; i++) {
    rtmp_stream *s = &c->streams[i];
    if (!s->id || !s->publishing)
      continue;
    if (v && pyrec_amf0_streq(v, s->name))
      return s;
    only = s;
    n++;
  }
  return n == 1 ? only : NULL;
}

static int is(const pyrec_amf0_value *v, const char *s) { return pyrec_amf0_streq(v, s); }

int rtmp_on_command(pyrec_rtmp_conn *c, const rtmp_msg *m, const uint8_t *body, size_t len) {
  pyrec_amf0_reader r;
  pyrec_errinfo aerr;
  pyrec_clearerr(&aerr);
  pyrec_amf0_reader_init(&r, body, len, &aerr);
  pyrec_amf0_value name, txnv, a[MAX_ARGS]; /* a[0] = command object, then arguments */
  char cmd[64] = "?";
  if (pyrec_amf0_read(&r, &name) || (name.type != PYREC_AMF0_STRING))
    return msg_err(c, m, aerr.code ? aerr.msg : "the first value is not a string", cmd);
  snprintf(cmd, sizeof cmd, "%.*s", (int)(name.str_len < 60 ? name.str_len : 60),
           (const char *)name.str);
  if (pyrec_amf0_read(&r, &txnv) || txnv.type != PYREC_AMF0_NUMBER)
    return msg_err(c, m, aerr.code ? aerr.msg : "the transaction id is not a number", cmd);
  int na = 0;
  while (na < MAX_ARGS && !pyrec_amf0_at_end(&r)) {
    if (pyrec_amf0_read(&r, &a[na])) {
      char what[260];
      snprintf(what, sizeof what, "argument %d at body byte %lld: %s", na,
               (long long)aerr.offset, aerr.msg);
      return msg_err(c, m, what, cmd);
    }
    na++;
  }
  double txn = txnv.num;
  if (is(&name, "connect")) {
    if (c->connected)
      return msg_err(c, m, "a second connect on this connection", cmd);
    return do_connect(c, txn, a, na);
  }
  if (!c->connected)
    return msg_err(c, m, "command before connect", cmd);
  if (is(&name, "releaseStream")) {
    if (txn > 0)
      send_result_empty(c, txn, 0);
  } else if (is(&name, "FCPublish")) {
    if (txn > 0)
      send_result_empty(c, txn, 0);
    pyrec_buf *b = &c->tmp;
    pyrec_amf0_put_string(b, "onFCPublish");
    pyrec_amf0_put_number(b, 0);
    pyrec_amf0_put_null(b);
    pyrec_amf0_put_object_begin(b);
    pyrec_amf0_put_key(b, "code");
    pyrec_amf0_put_string(b, "NetStream.Publish.Start");
    pyrec_amf0_put_key(b, "description");
    if (na >= 2 && (a[1].type == PYREC_AMF0_STRING || a[1].type == PYREC_AMF0_LONG_STRING))
      pyrec_amf0_put_string_n(b, a[1].str, a[1].str_len);
    else
      pyrec_amf0_put_string(b, "");
    pyrec_amf0_put_object_end(b);
    send_cmd(c, 0);
  } else if (is(&name, "createStream")) {
    return do_create_stream(c, txn);
  } else if (is(&name, "publish")) {
    return do_publish(c, m, a, na);
  } else if (is(&name, "FCUnpublish")) {
    rtmp_unpublish(c, stream_by_name(c, na >= 2 ? &a[1] : NULL));
    if (txn > 0)
      send_result_empty(c, txn, 0);
  } else if (is(&name, "deleteStream")) {
    rtmp_stream *s = NULL;
    if (na >= 2 && a[1].type == PYREC_AMF0_NUMBER && a[1].num >= 1 && a[1].num <= 0xffffffffu)
      s = rtmp_find_stream(c, (uint32_t)a[1].num);
    if (s) {
      rtmp_unpublish(c, s);
      memset(s, 0, sizeof *s);
    }
  } else if (is(&name, "closeStream")) {
    rtmp_stream *s = rtmp_find_stream(c, m->msid);
    if (s && s->publishing) {
      rtmp_unpublish(c, s);
      send_status(c, "onStatus", 0, m->msid, "status", "NetStream.Unpublish.Success",
                  "Stream is now unpublished.");
    }
  } else if (is(&name, "play") || is(&name, "play2")) {
    send_status(c, "onStatus", 0, m->msid, "error", "NetStream.Play.Failed",
                "pyrec only ingests: play is not supported.");
    rtmp_refuse(c);
    return -1;
  } else if (is(&name, "getStreamLength") || is(&name, "_checkbw") || is(&name, "_result") ||
             is(&name, "_error") || is(&name, "onStatus") || is(&name, "onBWDone")) {
    c->st.ignored_messages++;
  } else {
    c->st.ignored_messages++;
    if (txn > 0) {
      char desc[100];
      snprintf(desc, sizeof desc, "Unknown command '%s'.", cmd);
      send_status(c, "_error", txn, 0, "error", "NetConnection.Call.Failed", desc);
    }
  }
  return 0;
}

/* ---- data ------------------------------------------------------------------------------ */

int rtmp_on_data(pyrec_rtmp_conn *c, const rtmp_msg *m, const uint8_t *body, size_t len) {
  rtmp_stream *s = rtmp_find_stream(c, m->msid);
  pyrec_amf0_reader r;
  pyrec_amf0_reader_init(&r, body, len, NULL);
  pyrec_amf0_value v;
  if (!s || !s->publishing || pyrec_amf0_read(&r, &v))
    goto ignore;
  if (is(&v, "@setDataFrame") && pyrec_amf0_read(&r, &v))
    goto ignore;
  if (!is(&v, "onMetaData") || pyrec_amf0_read(&r, &v))
    goto ignore;
  if (c->cb.on_metadata)
    c->cb.on_metadata(c->cb.opaque, s->id, v.raw, v.raw_len);
  return 0;
ignore:
  c->st.ignored_messages++;
  return 0;
}
