/* Fuzz target for the file path of the core: FLV parser -> track discovery -> timestamp repair
 * -> interleaving/splitting recorder -> codec conversion -> fMP4 writer. Output goes to
 * /dev/null. Input: an FLV byte stream (corpus: csrc/fuzz/corpus/flv, a real ffmpeg capture).
 * The first byte picks feeding chunk size and recorder options; the rest is the FLV (when it
 * does not start with "FLV", a valid header is prepended so short inputs reach the tags). */
#include "pyrec/flvsrc.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fz_open(void *opaque, uint32_t seq, int64_t start_ms, int *fd) {
  *fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  return *fd < 0 ? -1 : 0;
}

static int fz_close(void *opaque, const pyrec_rec_file *f) {
  int *closed = opaque;
  (*closed)++;
  close(f->fd);
  return 0;
}

typedef struct fz {
  pyrec_rec_opts ro;
  int closed;
  int sink;
} fz;

static void fz_ready(void *opaque, pyrec_flvsrc *s) {
  fz *z = opaque;
  pyrec_rec_callbacks cb = {fz_open, fz_close, &z->closed};
  pyrec_errinfo e;
  pyrec_flvsrc_attach(s, 0xffffffffu >> (32 - pyrec_flvsrc_ntracks(s)), &z->ro, &cb, &z->sink,
                      &e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t mode = data[0];
  data++;
  size--;
  fz z;
  memset(&z, 0, sizeof z);
  z.sink = -1;
  z.ro.part_duration_ms = 100 + 100u * (mode & 3);
  z.ro.interval_ms = (mode & 4) ? 500 : 0;
  z.ro.continuity = (mode >> 3) & 1;
  z.ro.jump_threshold_ms = (mode & 0x10) ? 100 : 0;
  pyrec_flvsrc_opts o;
  memset(&o, 0, sizeof o);
  o.on_ready = fz_ready;
  o.opaque = &z;
  o.probe_ms = 500;
  o.max_tag_size = 1 << 20;
  o.max_probe_bytes = 1 << 20;
  pyrec_flvsrc *s;
  pyrec_errinfo e;
  if (pyrec_flvsrc_new(&s, &o, &e))
    return 0;
  static const uint8_t hdr[13] = {'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0};
  if (size < 3 || memcmp(data, "FLV", 3) != 0)
    pyrec_flvsrc_feed(s, hdr, sizeof hdr);
  size_t step = (mode & 0x20) ? (size_t)(1 + (mode >> 6) * 97) : size;
  if (step == 0)
    step = 1;
  for (size_t off = 0; off < size; off += step)
    if (pyrec_flvsrc_feed(s, data + off, off + step <= size ? step : size - off))
      break;
  pyrec_flvsrc_close(s);
  pyrec_flvsrc_free(s);
  return 0;
}
