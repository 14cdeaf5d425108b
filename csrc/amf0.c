/* AMF0 reader (bounds-checked, depth-limited, no allocation) and writer (Adobe AMF0 spec). */
#include "pyrec/amf0.h"

#include <string.h>

void pyrec_amf0_reader_init(pyrec_amf0_reader *r, const uint8_t *p, size_t len,
                            pyrec_errinfo *err) {
  memset(r, 0, sizeof *r);
  r->p = p;
  r->len = len;
  r->err = err;
}

static int need(pyrec_amf0_reader *r, size_t n, const char *what) {
  if (r->len - r->pos >= n)
    return 0;
  return pyrec_seterr(r->err, PYREC_E_TRUNCATED, r->base + (int64_t)r->pos,
                      "AMF0: %s needs %zu bytes, %zu left", what, n, r->len - r->pos);
}

static double rd_double(const uint8_t *p) {
  uint64_t u = ((uint64_t)pyrec_rd32(p) << 32) | pyrec_rd32(p + 4);
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

static int read_value(pyrec_amf0_reader *r, pyrec_amf0_value *v, int depth);

/* Members of an object / ECMA array / typed object: (u16 key, value)* then 00 00 09.
 * `lax_end`: an ECMA array may stop at the end of the input without its end marker. */
static int read_props(pyrec_amf0_reader *r, int depth, int lax_end) {
  for (;;) {
    if (lax_end && r->pos == r->len)
      return 0;
    int rc = need(r, 2, "property name length");
    if (rc)
      return rc;
    size_t klen = pyrec_rd16(r->p + r->pos);
    if (klen == 0 && r->pos + 2 < r->len && r->p[r->pos + 2] == PYREC_AMF0_OBJECT_END) {
      r->pos += 3;
      return 0;
    }
    r->pos += 2;
    if ((rc = need(r, klen, "property name")))
      return rc;
    r->pos += klen;
    pyrec_amf0_value sub;
    if ((rc = read_value(r, &sub, depth + 1)))
      return rc;
  }
}

static int read_value(pyrec_amf0_reader *r, pyrec_amf0_value *v, int depth) {
  memset(v, 0, sizeof *v);
  size_t start = r->pos;
  int rc = need(r, 1, "value marker");
  if (rc)
    return rc;
  int64_t at = r->base + (int64_t)start;
  int type = r->p[r->pos++];
  int max_depth = r->max_depth > 0 ? r->max_depth : PYREC_AMF0_MAX_DEPTH;
  v->type = type;
  switch (type) {
  case PYREC_AMF0_NUMBER:
    if ((rc = need(r, 8, "number")))
      return rc;
    v->num = rd_double(r->p + r->pos);
    r->pos += 8;
    break;
  case PYREC_AMF0_BOOLEAN:
    if ((rc = need(r, 1, "boolean")))
      return rc;
    v->boolean = r->p[r->pos++] != 0;
    break;
  case PYREC_AMF0_STRING:
  case PYREC_AMF0_LONG_STRING:
  case PYREC_AMF0_XML_DOC: {
    size_t lsize = type == PYREC_AMF0_STRING ? 2 : 4;
    if ((rc = need(r, lsize, "string length")))
      return rc;
    size_t n = lsize == 2 ? pyrec_rd16(r->p + r->pos) : pyrec_rd32(r->p + r->pos);
    r->pos += lsize;
    if ((rc = need(r, n, "string")))
      return rc;
    v->str = r->p + r->pos;
    v->str_len = n;
    r->pos += n;
    break;
  }
  case PYREC_AMF0_NULL:
  case PYREC_AMF0_UNDEFINED:
  case PYREC_AMF0_UNSUPPORTED:
    break;
  case PYREC_AMF0_REFERENCE:
    if ((rc = need(r, 2, "reference")))
      return rc;
    v->num = pyrec_rd16(r->p + r->pos);
    r->pos += 2;
    break;
  case PYREC_AMF0_DATE:
    if ((rc = need(r, 10, "date")))
      return rc;
    v->num = rd_double(r->p + r->pos);
    v->tz = (int16_t)pyrec_rd16(r->p + r->pos + 8);
    r->pos += 10;
    break;
  case PYREC_AMF0_OBJECT:
  case PYREC_AMF0_ECMA_ARRAY:
  case PYREC_AMF0_TYPED_OBJECT:
  case PYREC_AMF0_STRICT_ARRAY:
    if (depth >= max_depth)
      return pyrec_seterr(r->err, PYREC_E_MALFORMED, at,
                          "AMF0: containers nested deeper than %d", max_depth);
    if (type == PYREC_AMF0_TYPED_OBJECT) {
      if ((rc = need(r, 2, "class name length")))
        return rc;
      size_t n = pyrec_rd16(r->p + r->pos);
      r->pos += 2;
      if ((rc = need(r, n, "class name")))
        return rc;
      v->str = r->p + r->pos;
      v->str_len = n;
      r->pos += n;
    } else if (type != PYREC_AMF0_OBJECT) {
      if ((rc = need(r, 4, "array count")))
        return rc;
      v->count = pyrec_rd32(r->p + r->pos);
      r->pos += 4;
    }
    v->body = r->p + r->pos;
    if (type == PYREC_AMF0_STRICT_ARRAY) {
      if (v->count > r->len - r->pos) /* every element takes at least one byte */
        return pyrec_seterr(r->err, PYREC_E_TRUNCATED, at,
                            "AMF0: strict array of %u elements in %zu bytes", v->count,
                            r->len - r->pos);
      for (uint32_t i = 0; i < v->count; i++) {
        pyrec_amf0_value sub;
        if ((rc = read_value(r, &sub, depth + 1)))
          return rc;
        if (sub.type == PYREC_AMF0_OBJECT_END)
          return pyrec_seterr(r->err, PYREC_E_MALFORMED, r->base + (int64_t)r->pos - 1,
                              "AMF0: object end marker inside a strict array");
      }
    } else if ((rc = read_props(r, depth, type == PYREC_AMF0_ECMA_ARRAY))) {
      return rc;
    }
    v->body_len = (size_t)(r->p + r->pos - v->body);
    break;
  case PYREC_AMF0_OBJECT_END:
    if (depth == 0)
      return pyrec_seterr(r->err, PYREC_E_MALFORMED, at, "AMF0: object end marker outside an object");
    return pyrec_seterr(r->err, PYREC_E_MALFORMED, at,
                        "AMF0: object end marker after a non-empty property name");
  default:
    return pyrec_seterr(r->err, PYREC_E_MALFORMED, at, "AMF0: unsupported type marker 0x%02x%s",
                        type, type == 0x11 ? " (AMF3 value)" : "");
  }
  v->raw = r->p + start;
  v->raw_len = r->pos - start;
  return 0;
}

int pyrec_amf0_read(pyrec_amf0_reader *r, pyrec_amf0_value *v) {
  size_t start = r->pos;
  int rc = read_value(r, v, 0);
  if (rc)
    r->pos = start;
  return rc;
}

int pyrec_amf0_next_prop(const pyrec_amf0_value *obj, size_t *it, const uint8_t **key,
                         size_t *key_len, pyrec_amf0_value *val) {
  if (!obj->body || (obj->type != PYREC_AMF0_OBJECT && obj->type != PYREC_AMF0_ECMA_ARRAY &&
                     obj->type != PYREC_AMF0_TYPED_OBJECT))
    return 0;
  const uint8_t *p = obj->body;
  size_t len = obj->body_len, pos = *it;
  if (pos + 2 > len)
    return 0;
  size_t klen = pyrec_rd16(p + pos);
  if (klen == 0 && pos + 2 < len && p[pos + 2] == PYREC_AMF0_OBJECT_END)
    return 0;
  if (klen > len - pos - 2)
    return 0;
  pyrec_amf0_reader r;
  pyrec_amf0_reader_init(&r, p, len, NULL);
  r.pos = pos + 2 + klen;
  if (pyrec_amf0_read(&r, val))
    return 0;
  *key = p + pos + 2;
  *key_len = klen;
  *it = r.pos;
  return 1;
}

int pyrec_amf0_next_item(const pyrec_amf0_value *arr, size_t *it, pyrec_amf0_value *val) {
  if (arr->type != PYREC_AMF0_STRICT_ARRAY || !arr->body || *it >= arr->body_len)
    return 0;
  pyrec_amf0_reader r;
  pyrec_amf0_reader_init(&r, arr->body, arr->body_len, NULL);
  r.pos = *it;
  if (pyrec_amf0_read(&r, val))
    return 0;
  *it = r.pos;
  return 1;
}

int pyrec_amf0_get(const pyrec_amf0_value *obj, const char *key, pyrec_amf0_value *val) {
  size_t it = 0, klen, want = strlen(key);
  const uint8_t *k;
  while (pyrec_amf0_next_prop(obj, &it, &k, &klen, val))
    if (klen == want && memcmp(k, key, want) == 0)
      return 1;
  return 0;
}

int pyrec_amf0_streq(const pyrec_amf0_value *v, const char *s) {
  if (v->type != PYREC_AMF0_STRING && v->type != PYREC_AMF0_LONG_STRING)
    return 0;
  size_t n = strlen(s);
  return v->str_len == n && (n == 0 || memcmp(v->str, s, n) == 0);
}

/* ---- writer ---------------------------------------------------------------------------- */

static void put_double(pyrec_buf *b, double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  pyrec_buf_u64(b, u);
}

void pyrec_amf0_put_number(pyrec_buf *b, double v) {
  pyrec_buf_u8(b, PYREC_AMF0_NUMBER);
  put_double(b, v);
}

void pyrec_amf0_put_bool(pyrec_buf *b, int v) {
  pyrec_buf_u8(b, PYREC_AMF0_BOOLEAN);
  pyrec_buf_u8(b, v ? 1 : 0);
}

void pyrec_amf0_put_string_n(pyrec_buf *b, const void *s, size_t n) {
  if (n > 0xffff) {
    if (n > 0xffffffffu) { /* cannot be encoded: mark the buffer failed */
      b->oom = 1;
      return;
    }
    pyrec_buf_u8(b, PYREC_AMF0_LONG_STRING);
    pyrec_buf_u32(b, (uint32_t)n);
  } else {
    pyrec_buf_u8(b, PYREC_AMF0_STRING);
    pyrec_buf_u16(b, (uint16_t)n);
  }
  pyrec_buf_put(b, s, n);
}

void pyrec_amf0_put_string(pyrec_buf *b, const char *s) { pyrec_amf0_put_string_n(b, s, strlen(s)); }
void pyrec_amf0_put_null(pyrec_buf *b) { pyrec_buf_u8(b, PYREC_AMF0_NULL); }
void pyrec_amf0_put_undefined(pyrec_buf *b) { pyrec_buf_u8(b, PYREC_AMF0_UNDEFINED); }

void pyrec_amf0_put_date(pyrec_buf *b, double ms, int16_t tz) {
  pyrec_buf_u8(b, PYREC_AMF0_DATE);
  put_double(b, ms);
  pyrec_buf_u16(b, (uint16_t)tz);
}

void pyrec_amf0_put_object_begin(pyrec_buf *b) { pyrec_buf_u8(b, PYREC_AMF0_OBJECT); }

void pyrec_amf0_put_ecma_begin(pyrec_buf *b, uint32_t count) {
  pyrec_buf_u8(b, PYREC_AMF0_ECMA_ARRAY);
  pyrec_buf_u32(b, count);
}

void pyrec_amf0_put_strict_array_begin(pyrec_buf *b, uint32_t count) {
  pyrec_buf_u8(b, PYREC_AMF0_STRICT_ARRAY);
  pyrec_buf_u32(b, count);
}

void pyrec_amf0_put_key(pyrec_buf *b, const char *key) {
  size_t n = strlen(key);
  if (n > 0xffff) {
    b->oom = 1;
    return;
  }
  pyrec_buf_u16(b, (uint16_t)n);
  pyrec_buf_put(b, key, n);
}

void pyrec_amf0_put_object_end(pyrec_buf *b) {
  pyrec_buf_u16(b, 0);
  pyrec_buf_u8(b, PYREC_AMF0_OBJECT_END);
}
