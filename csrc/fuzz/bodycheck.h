/* Shared by the structure-aware fuzz targets: parse one FLV/RTMP media body (exact-size heap
 * copy) with pyrec_flv_parse_body, check what it reports (abort on a violated invariant, so
 * the plain build catches it too, not only ASAN), and pass good tags on to a recording source
 * (track discovery -> timestamp repair -> recorder -> codec conversion -> fMP4 to /dev/null). */
#ifndef PYREC_FUZZ_BODYCHECK_H
#define PYREC_FUZZ_BODYCHECK_H

#include "pyrec/flv.h"
#include "pyrec/flvsrc.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fz_open_cb(void *opaque, uint32_t seq, int64_t start_ms, int *fd) {
  *fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  return *fd < 0 ? -1 : 0;
}

static int fz_close_cb(void *opaque, const pyrec_rec_file *f) {
  close(f->fd);
  return 0;
}

typedef struct fz_sink {
  pyrec_rec_opts ro;
  int sink;
} fz_sink;

static void fz_ready_cb(void *opaque, pyrec_flvsrc *s) {
  fz_sink *z = opaque;
  pyrec_rec_callbacks cb = {fz_open_cb, fz_close_cb, NULL};
  pyrec_errinfo e;
  unsigned n = pyrec_flvsrc_ntracks(s);
  pyrec_flvsrc_attach(s, n ? 0xffffffffu >> (32 - n) : 0, &z->ro, &cb, &z->sink, &e);
}

/* A source whose recorder options come from `mode`. */
static pyrec_flvsrc *fz_source(fz_sink *z, uint8_t mode) {
  memset(z, 0, sizeof *z);
  z->sink = -1;
  z->ro.part_duration_ms = 100 + 100u * (mode & 3);
  z->ro.interval_ms = (mode & 4) ? 500 : 0;
  z->ro.continuity = (mode >> 3) & 1;
  z->ro.jump_threshold_ms = (mode & 0x10) ? 100 : 0;
  pyrec_flvsrc_opts o;
  memset(&o, 0, sizeof o);
  o.on_ready = fz_ready_cb;
  o.opaque = z;
  o.probe_ms = 500;
  o.max_tag_size = 1 << 20;
  o.max_probe_bytes = 1 << 20;
  o.has_video = (mode >> 5) & 1;
  o.has_audio = (mode >> 6) & 1;
  pyrec_flvsrc *s;
  pyrec_errinfo e;
  return pyrec_flvsrc_new(&s, &o, &e) ? NULL : s;
}

static volatile uint8_t fz_sink_byte;

/* Parse `body` (an exact-size allocation of `len` bytes) as an FLV tag body of `type`. On
 * success the tag is checked and, with `src`, recorded. Returns the parser's code. */
static int fz_check_body(uint8_t type, uint32_t ts, const uint8_t *body, size_t len,
                         pyrec_flvsrc *src) {
  pyrec_flv_tag t;
  pyrec_errinfo e;
  pyrec_clearerr(&e);
  int rc = pyrec_flv_parse_body(type, ts, body, len, &t, &e);
  if (rc) {
    if (e.code != rc || !e.msg[0]) {
      fprintf(stderr, "fuzz: error %d without its message\n", rc);
      abort();
    }
    return rc;
  }
  /* The payload is the body's tail, after the headers the first byte announced. */
  if (!t.payload || t.payload < body || (size_t)(t.payload - body) > len ||
      t.payload_len != len - (size_t)(t.payload - body)) {
    fprintf(stderr, "fuzz: payload outside its %zu-byte body (offset %td, length %zu)\n", len,
            t.payload && body ? t.payload - body : -1, t.payload_len);
    abort();
  }
  if (t.type != type || t.timestamp != ts || (t.supported && t.codec_label))
    abort();
  uint8_t x = 0;
  for (size_t i = 0; i < t.payload_len; i++) /* ASAN sees any byte outside the body */
    x ^= t.payload[i];
  fz_sink_byte = x;
  if (src)
    pyrec_flvsrc_tag(src, &t);
  return 0;
}

#endif
