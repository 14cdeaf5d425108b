/* RTMP chunk stream (Adobe RTMP spec 1.0, 5.3): incremental reader and writer.
 *
 * The reader is a byte-level state machine (any split of the input gives the same messages):
 * stage 0 reads the first basic-header byte, stage 1 the rest of the basic header and the
 * message header (5.3.1.1, 5.3.1.2), stage 2 the extended timestamp (5.3.1.3), stage 3 the
 * chunk payload. Messages whose bytes arrive in one chunk inside one input buffer are passed
 * straight from the input; others are reassembled in their chunk stream's buffer, which grows
 * as chunks arrive (a declared length is only checked against the limit, never allocated). */
#include "rtmp_internal.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t mh_len[4] = {11, 7, 3, 0}; /* message header sizes of types 0..3 */

void rtmp_chunk_init(rtmp_chunk_reader *r, uint32_t max_msg, uint32_t max_cs, rtmp_msg_cb cb,
                     void *opaque, pyrec_errinfo *err) {
  memset(r, 0, sizeof *r);
  r->chunk_size = 128;
  r->max_msg = max_msg;
  r->max_cs = max_cs;
  r->cb = cb;
  r->opaque = opaque;
  r->err = err;
  r->hneed = 1;
  r->limit = -1;
}

void rtmp_chunk_free(rtmp_chunk_reader *r) {
  for (uint32_t i = 0; i < r->ncs; i++)
    pyrec_buf_free(&r->cs[i].payload);
  free(r->cs);
  r->cs = NULL;
  r->ncs = r->cap_cs = 0;
}

static rtmp_cstream *find_cs(rtmp_chunk_reader *r, uint32_t csid) {
  if (r->last < r->ncs && r->cs[r->last].csid == csid)
    return &r->cs[r->last];
  for (uint32_t i = 0; i < r->ncs; i++)
    if (r->cs[i].csid == csid) {
      r->last = i;
      return &r->cs[i];
    }
  return NULL;
}

static int new_cs(rtmp_chunk_reader *r, uint32_t csid, rtmp_cstream **out) {
  if (r->ncs >= r->max_cs)
    return pyrec_seterr(r->err, PYREC_E_TOOBIG, r->chunk_off,
                        "chunk stream %u would be chunk stream number %u (limit %u)", csid,
                        r->ncs + 1, r->max_cs);
  if (r->ncs == r->cap_cs) {
    uint32_t cap = r->cap_cs ? r->cap_cs * 2 : 8;
    if (cap > r->max_cs)
      cap = r->max_cs;
    rtmp_cstream *n = realloc(r->cs, cap * sizeof *n);
    if (!n)
      return pyrec_seterr(r->err, PYREC_E_NOMEM, r->chunk_off, "chunk stream table");
    r->cs = n;
    r->cap_cs = cap;
  }
  rtmp_cstream *s = &r->cs[r->ncs];
  memset(s, 0, sizeof *s);
  s->csid = csid;
  pyrec_buf_init(&s->payload);
  r->last = r->ncs++;
  *out = s;
  return 0;
}

void rtmp_chunk_abort(rtmp_chunk_reader *r, uint32_t csid) {
  rtmp_cstream *s = find_cs(r, csid);
  if (s && s->in_msg) {
    s->in_msg = 0;
    s->have = 0;
    pyrec_buf_reset(&s->payload);
    r->dropped++;
    /* A chunk of that stream being read right now keeps being read, then is ignored. */
  }
}

static void next_header(rtmp_chunk_reader *r) {
  r->stage = 0;
  r->hlen = 0;
  r->hneed = 1;
  r->peek = 0;
  r->cur = NULL;
}

static int deliver(rtmp_chunk_reader *r, rtmp_cstream *s, const uint8_t *data) {
  rtmp_msg m = {s->csid, s->msid, s->ts, s->len, s->type, data, s->msg_off};
  s->in_msg = 0;
  s->have = 0;
  int rc = r->cb(r->opaque, &m);
  pyrec_buf_reset(&s->payload);
  if (s->payload.cap > (64u << 10)) /* keep no large buffer between messages (memory/stream) */
    pyrec_buf_free(&s->payload);
  return rc;
}

/* Parse the basic header in r->hdr: csid and its length. */
static uint32_t basic_csid(const uint8_t *h, size_t *blen) {
  uint32_t c6 = h[0] & 0x3f;
  if (c6 == 0) {
    *blen = 2;
    return 64u + h[1];
  }
  if (c6 == 1) {
    *blen = 3;
    return 64u + h[1] + 256u * h[2];
  }
  *blen = 1;
  return c6;
}

/* The header is complete (extended timestamp included): set up the message and the chunk. */
static int start_chunk(rtmp_chunk_reader *r) {
  size_t blen;
  int fmt = r->hdr[0] >> 6;
  uint32_t csid = basic_csid(r->hdr, &blen);
  const uint8_t *h = r->hdr + blen;
  rtmp_cstream *s = r->cur;
  int has_ext = r->hneed == blen + mh_len[fmt] + 4 && !r->peek;
  uint32_t ext = has_ext ? pyrec_rd32(r->hdr + r->hneed - 4) : 0;
  if (fmt < 3) {
    uint32_t field = pyrec_rd24(h);
    s->ext = field == 0xffffff;
    if (s->ext)
      field = ext;
    if (fmt <= 1) {
      s->len = pyrec_rd24(h + 3);
      s->type = h[6];
    }
    if (fmt == 0) {
      s->msid = (uint32_t)h[7] | ((uint32_t)h[8] << 8) | ((uint32_t)h[9] << 16) |
                ((uint32_t)h[10] << 24); /* little-endian (5.3.1.2.1) */
      s->ts = field;
      s->seen = 1;
    } else {
      s->ts += field; /* unsigned: wraps at 32 bits */
    }
    s->ts_field = field;
    if (s->in_msg) { /* a new message header on a stream with a partial message */
      s->in_msg = 0;
      s->have = 0;
      pyrec_buf_reset(&s->payload);
      r->dropped++;
    }
  } else if (!s->in_msg) { /* type 3 starting a new message: same delta as before */
    if (s->ext)
      s->ts_field = ext;
    s->ts += s->ts_field;
  }
  if (!s->in_msg) {
    if (s->len > r->max_msg)
      return pyrec_seterr(r->err, PYREC_E_TOOBIG, r->chunk_off,
                          "chunk stream %u: message length %u exceeds the limit of %u bytes "
                          "(message type %u)",
                          csid, s->len, r->max_msg, s->type);
    s->in_msg = 1;
    s->have = 0;
    s->msg_off = r->chunk_off;
    if (s->len == 0) {
      next_header(r);
      return deliver(r, s, (const uint8_t *)"");
    }
  }
  uint32_t left = s->len - s->have;
  r->chunk_left = left < r->chunk_size ? left : r->chunk_size;
  r->stage = 3;
  return 0;
}

/* The r->hneed header bytes are in. *pushback = 1 when the last 4 bytes turned out not to be
 * an extended timestamp and must be read again as payload. */
static int header_step(rtmp_chunk_reader *r, int *pushback) {
  size_t blen;
  int fmt = r->hdr[0] >> 6;
  if (r->stage == 0) {
    basic_csid(r->hdr, &blen); /* only the length: the other bytes are not read yet */
    r->hneed = blen + mh_len[fmt];
    r->stage = 1;
    if (r->hlen < r->hneed)
      return 0;
  }
  uint32_t csid = basic_csid(r->hdr, &blen);
  if (r->stage == 1) {
    rtmp_cstream *s = find_cs(r, csid);
    if (!s) {
      if (fmt != 0)
        return pyrec_seterr(r->err, PYREC_E_MALFORMED, r->chunk_off,
                            "chunk stream %u: header type %d without a preceding type-0 header",
                            csid, fmt);
      int rc = new_cs(r, csid, &s);
      if (rc)
        return rc;
    }
    r->cur = s;
    int need_ext = 0;
    if (fmt < 3) {
      need_ext = pyrec_rd24(r->hdr + blen) == 0xffffff;
    } else if (s->ext) {
      if (!s->in_msg || r->ext_cont == 1)
        need_ext = 1;
      else if (r->ext_cont == 0)
        need_ext = r->peek = 1;
    }
    if (need_ext) {
      r->hneed += 4;
      r->stage = 2;
      return 0;
    }
    return start_chunk(r);
  }
  /* stage 2: extended timestamp */
  if (r->peek) {
    if (pyrec_rd32(r->hdr + r->hneed - 4) == r->cur->ts_field) {
      r->ext_cont = 1;
      r->peek = 0; /* now a plain extended timestamp */
    } else {
      r->ext_cont = 2;
      *pushback = 1;
      r->hneed -= 4;
      r->hlen -= 4;
      int rc = start_chunk(r);
      r->peek = 0;
      return rc;
    }
  }
  return start_chunk(r);
}

static int body(rtmp_chunk_reader *r, const uint8_t *p, size_t n) {
  rtmp_cstream *s = r->cur;
  r->chunk_left -= (uint32_t)n;
  int done = r->chunk_left == 0;
  if (done) {
    r->chunks++;
    next_header(r);
  }
  if (!s->in_msg) /* aborted while its chunk was being read */
    return 0;
  if (s->have == 0 && n == s->len) {
    s->have = s->len;
    return deliver(r, s, p);
  }
  /* Grow by doubling, never past the message's own length (a large video message is
   * reassembled with a few reallocations, not one per 1/8 growth step; memory still follows
   * the bytes received, not the length a peer announces). */
  size_t room = s->payload.cap - s->payload.len;
  if (n > room) {
    size_t want = s->payload.len > n ? s->payload.len : n;
    size_t left = (size_t)(s->len - s->have);
    pyrec_buf_reserve(&s->payload, want < left ? want : left);
  }
  pyrec_buf_put(&s->payload, p, n);
  if (s->payload.oom)
    return pyrec_seterr(r->err, PYREC_E_NOMEM, s->msg_off,
                        "chunk stream %u: no memory for a %u-byte message", s->csid, s->len);
  s->have += (uint32_t)n;
  if (s->have == s->len)
    return deliver(r, s, s->payload.data);
  return 0;
}

int rtmp_chunk_feed(rtmp_chunk_reader *r, const uint8_t *p, size_t len, size_t *used) {
  size_t i = 0;
  int rc = 0;
  while (i < len) {
    size_t avail = len - i;
    if (r->limit >= 0) {
      if (r->pos >= r->limit)
        break;
      if ((uint64_t)(r->limit - r->pos) < avail)
        avail = (size_t)(r->limit - r->pos);
    }
    if (r->stage == 3) {
      size_t n = avail < r->chunk_left ? avail : r->chunk_left;
      i += n;
      r->pos += (int64_t)n;
      if ((rc = body(r, p + i - n, n)))
        break;
      continue;
    }
    if (r->hlen == 0)
      r->chunk_off = r->pos;
    size_t n = r->hneed - r->hlen;
    if (n > avail)
      n = avail;
    memcpy(r->hdr + r->hlen, p + i, n);
    r->hlen += n;
    i += n;
    r->pos += (int64_t)n;
    if (r->hlen < r->hneed)
      continue;
    int pushback = 0;
    uint8_t back[4];
    if (r->peek)
      memcpy(back, r->hdr + r->hneed - 4, 4);
    if ((rc = header_step(r, &pushback)))
      break;
    if (pushback) { /* read the 4 bytes again as payload; ext_cont is now fixed: no recursion */
      size_t u = 0;
      r->pos -= 4;
      if ((rc = rtmp_chunk_feed(r, back, 4, &u)))
        break;
    }
  }
  *used = i;
  return rc;
}

/* ---- writer ---------------------------------------------------------------------------- */

static void put_basic(pyrec_buf *out, int fmt, uint32_t csid) {
  if (csid < 64) {
    pyrec_buf_u8(out, (uint8_t)(fmt << 6 | csid));
  } else if (csid < 320) {
    pyrec_buf_u8(out, (uint8_t)(fmt << 6));
    pyrec_buf_u8(out, (uint8_t)(csid - 64));
  } else {
    pyrec_buf_u8(out, (uint8_t)(fmt << 6 | 1));
    pyrec_buf_u8(out, (uint8_t)((csid - 64) & 0xff));
    pyrec_buf_u8(out, (uint8_t)((csid - 64) >> 8));
  }
}

void rtmp_chunk_write(pyrec_buf *out, uint32_t chunk_size, uint32_t csid, uint8_t type,
                      uint32_t msid, uint32_t ts, const uint8_t *p, size_t len) {
  int ext = ts >= 0xffffff;
  put_basic(out, 0, csid);
  pyrec_buf_u24(out, ext ? 0xffffff : ts);
  pyrec_buf_u24(out, (uint32_t)len);
  pyrec_buf_u8(out, type);
  uint8_t le[4] = {(uint8_t)msid, (uint8_t)(msid >> 8), (uint8_t)(msid >> 16),
                   (uint8_t)(msid >> 24)};
  pyrec_buf_put(out, le, 4);
  if (ext)
    pyrec_buf_u32(out, ts);
  size_t off = 0;
  for (;;) {
    size_t n = len - off < chunk_size ? len - off : chunk_size;
    pyrec_buf_put(out, p + off, n);
    off += n;
    if (off >= len)
      break;
    put_basic(out, 3, csid);
    if (ext)
      pyrec_buf_u32(out, ts);
  }
}
