/* Sample grid for audio times given in another timescale. See pyrec/tsgrid.h. */
#include "pyrec/tsgrid.h"

#include <string.h>

#include "pyrec/tsfix.h"

void pyrec_tsgrid_init(pyrec_tsgrid *g, uint32_t in_ts, uint32_t out_ts, int wrap_bits,
                       int64_t first_at) {
  memset(g, 0, sizeof *g);
  g->in_ts = in_ts ? in_ts : 1000;
  g->out_ts = out_ts ? out_ts : 1000;
  g->wrap_bits = wrap_bits > 0 && wrap_bits <= 62 ? wrap_bits : 0;
  g->first_at = first_at;
}

/* v * out / in, rounded to the nearest tick (halves away from zero), saturated. */
static int64_t convert(const pyrec_tsgrid *g, int64_t v) {
  __int128 x = (__int128)v * g->out_ts;
  __int128 h = g->in_ts / 2;
  __int128 q = x >= 0 ? (x + h) / g->in_ts : -((-x + h) / g->in_ts);
  if (q > INT64_MAX / 2)
    return INT64_MAX / 2;
  if (q < INT64_MIN / 2)
    return INT64_MIN / 2;
  return (int64_t)q;
}

/* |t (output ticks) - v (input ticks)| <= 1 ms, exactly. */
static int within_ms(const pyrec_tsgrid *g, int64_t t, int64_t v) {
  __int128 d = (__int128)t * g->in_ts - (__int128)v * g->out_ts;
  if (d < 0)
    d = -d;
  return d * 1000 <= (__int128)g->in_ts * g->out_ts;
}

static int64_t unwrap(pyrec_tsgrid *g, int64_t raw_in) {
  int bits = g->wrap_bits;
  if (!bits) {
    g->last_raw = raw_in;
    return raw_in;
  }
  uint64_t m = (uint64_t)1 << bits;
  int64_t raw = (int64_t)((uint64_t)raw_in & (m - 1));
  int64_t u = raw;
  if (g->started) {
    uint64_t d = ((uint64_t)raw - (uint64_t)g->last_raw) & (m - 1);
    int64_t delta = d >= m / 2 ? -(int64_t)(m - d) : (int64_t)d;
    if (raw < g->last_raw && delta > 0)
      g->wraps++;
    u = g->last_in + delta;
  }
  g->last_raw = raw;
  return u;
}

void pyrec_tsgrid_apply(pyrec_tsgrid *g, int64_t dts, int64_t pts, uint32_t frame,
                        int64_t *out_dts, int64_t *out_pts) {
  if (dts == PYREC_NOPTS)
    dts = pts;
  if (dts == PYREC_NOPTS) {
    /* No time at all: the end of the previous packet, if known; else repair decides. */
    *out_dts = *out_pts = g->have_next ? g->next : PYREC_NOPTS;
    if (g->have_next && frame)
      g->next += frame;
    else
      g->have_next = 0;
    return;
  }
  int64_t raw = g->wrap_bits ? (int64_t)((uint64_t)dts & (((uint64_t)1 << g->wrap_bits) - 1))
                             : dts;
  int64_t u = unwrap(g, dts);
  int64_t out;
  if (g->have_next && within_ms(g, g->next, u)) {
    out = g->next;
    g->snapped++;
  } else if (!g->started && g->first_at != INT64_MIN && within_ms(g, g->first_at, u)) {
    out = g->first_at;
    g->snapped++;
  } else {
    out = convert(g, u);
    g->kept++;
  }
  *out_dts = out;
  if (pts == PYREC_NOPTS) {
    *out_pts = PYREC_NOPTS;
  } else {
    int64_t off = pts - dts;
    if (g->wrap_bits) { /* the PTS offset, read in the wrapped domain */
      uint64_t m = (uint64_t)1 << g->wrap_bits;
      uint64_t d = ((uint64_t)pts - (uint64_t)raw) & (m - 1);
      off = d >= m / 2 ? -(int64_t)(m - d) : (int64_t)d;
    }
    *out_pts = out + convert(g, off);
  }
  g->started = 1;
  g->last_in = u;
  g->have_next = frame != 0;
  g->next = out + frame;
}
