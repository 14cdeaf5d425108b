/* Sample grid: converts an audio track's input times (e.g. FLV/RTMP milliseconds) to ticks of
 * its sample rate, before timestamp repair. Pure function of its inputs.
 *
 * Per packet (pyrec_tsgrid_apply):
 *  1. Unwrap the input DTS (wrap_bits as in pyrec/tsfix.h; 0 = no wrap) and count wraps.
 *  2. exact = input * out_ts / in_ts. When the previous packet's end on the grid (its time
 *     plus its frame length in samples) is within 1 ms of `exact`, the packet goes there
 *     (`snapped`): millisecond times of 1024-sample AAC frames (21.33 ms) become exact.
 *     Otherwise (the first packet, a gap, a jump, an unknown frame length) the packet keeps
 *     the source's time, rounded to the nearest tick (`kept`). The first packet goes to
 *     `first_at` instead when that is within 1 ms (an Opus stream whose first packet starts
 *     at -pre-skip, as Matroska and Ogg time it).
 *  3. PTS keeps its (unwrapped, converted) offset from DTS.
 * The output is unwrapped (int64): repair the result with wrap_bits 0. */
#ifndef PYREC_TSGRID_H
#define PYREC_TSGRID_H

#include <stdint.h>

typedef struct pyrec_tsgrid {
  uint32_t in_ts, out_ts;
  int wrap_bits;
  int started;
  int64_t last_raw, last_in; /* last raw and unwrapped input dts */
  int have_next;
  int64_t next;              /* end of the last packet on the grid (output ticks) */
  int64_t first_at;          /* preferred time of the first packet; INT64_MIN = none */
  uint64_t wraps, snapped, kept;
} pyrec_tsgrid;

/* in_ts, out_ts > 0 (0 is treated as 1000). */
void pyrec_tsgrid_init(pyrec_tsgrid *g, uint32_t in_ts, uint32_t out_ts, int wrap_bits,
                       int64_t first_at);
/* dts/pts in input ticks (PYREC_NOPTS allowed, see pyrec/tsfix.h), frame = samples this
 * packet decodes to (0 = unknown). Outputs are output ticks (PYREC_NOPTS passes through). */
void pyrec_tsgrid_apply(pyrec_tsgrid *g, int64_t dts, int64_t pts, uint32_t frame,
                        int64_t *out_dts, int64_t *out_pts);

#endif
