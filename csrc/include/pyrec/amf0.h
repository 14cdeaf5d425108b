/* AMF0 (Action Message Format 0): a bounds-checked reader and a writer for RTMP commands.
 *
 * Reference: Adobe AMF0 specification (2007), section 2 (type markers). Supported markers:
 * number 0x00, boolean 0x01, string 0x02, object 0x03, null 0x05, undefined 0x06,
 * reference 0x07, ECMA array 0x08, object end 0x09, strict array 0x0A, date 0x0B,
 * long string 0x0C, unsupported 0x0D, XML document 0x0F, typed object 0x10. MovieClip (0x04),
 * RecordSet (0x0E) and the AVM+ switch (0x11, an AMF3 value) are MALFORMED.
 *
 * Reader: no allocation. pyrec_amf0_read() reads one complete value and validates all of its
 * nested content (depth-limited); strings and containers point into the input (borrowed).
 * Container members are walked with pyrec_amf0_next_prop()/pyrec_amf0_next_item(). Errors
 * carry the offset inside the buffer given to the reader (plus `base`).
 *
 * Writer: appends to a pyrec_buf (errors are the buffer's sticky `oom`). */
#ifndef PYREC_AMF0_H
#define PYREC_AMF0_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/buf.h"
#include "pyrec/error.h"

enum {
  PYREC_AMF0_NUMBER = 0x00,
  PYREC_AMF0_BOOLEAN = 0x01,
  PYREC_AMF0_STRING = 0x02,
  PYREC_AMF0_OBJECT = 0x03,
  PYREC_AMF0_NULL = 0x05,
  PYREC_AMF0_UNDEFINED = 0x06,
  PYREC_AMF0_REFERENCE = 0x07,
  PYREC_AMF0_ECMA_ARRAY = 0x08,
  PYREC_AMF0_OBJECT_END = 0x09,
  PYREC_AMF0_STRICT_ARRAY = 0x0A,
  PYREC_AMF0_DATE = 0x0B,
  PYREC_AMF0_LONG_STRING = 0x0C,
  PYREC_AMF0_UNSUPPORTED = 0x0D,
  PYREC_AMF0_XML_DOC = 0x0F,
  PYREC_AMF0_TYPED_OBJECT = 0x10,
};

#define PYREC_AMF0_MAX_DEPTH 32 /* default nesting limit (containers inside containers) */

typedef struct pyrec_amf0_value {
  int type;                /* PYREC_AMF0_* marker */
  double num;              /* number; date (ms since epoch); reference index */
  int boolean;             /* boolean */
  int16_t tz;              /* date: time-zone field (reserved, usually 0) */
  const uint8_t *str;      /* string / long string / XML: bytes (not NUL-terminated);
                            * typed object: class name */
  size_t str_len;
  uint32_t count;          /* ECMA array: declared count (advisory); strict array: count */
  const uint8_t *body;     /* containers: first byte after the container header (members) */
  size_t body_len;         /* containers: bytes of members incl. the end marker (if any) */
  const uint8_t *raw;      /* the whole encoded value, marker included */
  size_t raw_len;
} pyrec_amf0_value;

typedef struct pyrec_amf0_reader {
  const uint8_t *p;
  size_t len;
  size_t pos;
  int max_depth;      /* 0 = PYREC_AMF0_MAX_DEPTH */
  int64_t base;       /* added to error offsets (e.g. the message's stream offset) */
  pyrec_errinfo *err; /* may be NULL */
} pyrec_amf0_reader;

void pyrec_amf0_reader_init(pyrec_amf0_reader *r, const uint8_t *p, size_t len,
                            pyrec_errinfo *err);
static inline int pyrec_amf0_at_end(const pyrec_amf0_reader *r) { return r->pos >= r->len; }

/* Read one value. 0, or TRUNCATED (a field runs past the end) / MALFORMED (unknown marker,
 * object end outside an object, nesting deeper than max_depth), errors naming the offset. */
int pyrec_amf0_read(pyrec_amf0_reader *r, pyrec_amf0_value *v);

/* Walk an object / ECMA array / typed object value read before: *it starts at 0. Returns 1
 * with the next key and value, 0 at the end. The value was validated by pyrec_amf0_read, so
 * this cannot fail (a malformed body just ends the walk). */
int pyrec_amf0_next_prop(const pyrec_amf0_value *obj, size_t *it, const uint8_t **key,
                         size_t *key_len, pyrec_amf0_value *val);
/* Walk a strict array: returns 1 with the next element, 0 at the end. */
int pyrec_amf0_next_item(const pyrec_amf0_value *arr, size_t *it, pyrec_amf0_value *val);
/* Find a property by key in an object / ECMA array: 1 found, 0 not. */
int pyrec_amf0_get(const pyrec_amf0_value *obj, const char *key, pyrec_amf0_value *val);
/* 1 when v is a string (or long string) equal to s. */
int pyrec_amf0_streq(const pyrec_amf0_value *v, const char *s);

/* Writer. Strings longer than 65535 bytes are written as long strings. */
void pyrec_amf0_put_number(pyrec_buf *b, double v);
void pyrec_amf0_put_bool(pyrec_buf *b, int v);
void pyrec_amf0_put_string(pyrec_buf *b, const char *s);
void pyrec_amf0_put_string_n(pyrec_buf *b, const void *s, size_t n);
void pyrec_amf0_put_null(pyrec_buf *b);
void pyrec_amf0_put_undefined(pyrec_buf *b);
void pyrec_amf0_put_date(pyrec_buf *b, double ms, int16_t tz);
void pyrec_amf0_put_object_begin(pyrec_buf *b);
void pyrec_amf0_put_ecma_begin(pyrec_buf *b, uint32_t count);
void pyrec_amf0_put_strict_array_begin(pyrec_buf *b, uint32_t count); /* then count values */
/* A property key inside an object / ECMA array (keys are UTF-8-empty-or-short: <= 65535). */
void pyrec_amf0_put_key(pyrec_buf *b, const char *key);
void pyrec_amf0_put_object_end(pyrec_buf *b); /* 00 00 09, closes an object or ECMA array */

#endif
