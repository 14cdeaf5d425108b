/* Timestamp repair per track (unwrap, monotonic DTS, PTS >= DTS, jump re-anchor) and across
 * the tracks of a stream (shared re-anchor offsets). See pyrec/tsfix.h for the rules. */
#include "pyrec/tsfix.h"

#include <string.h>

/* Saturating int64 arithmetic: adversarial timestamps must not cause signed overflow. */
static int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}

static int64_t sat_sub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r))
    return b < 0 ? INT64_MAX : INT64_MIN;
  return r;
}

/* Nearest integer of a double, clamped to the int64 range (no UB on huge values). */
static int64_t round_ticks(double v) {
  if (!(v == v))
    return 0;
  if (v >= 9.2e18)
    return INT64_MAX;
  if (v <= -9.2e18)
    return INT64_MIN;
  return (int64_t)(v < 0 ? v - 0.5 : v + 0.5);
}

static int64_t iabs64(int64_t v) { return v < 0 ? (v == INT64_MIN ? INT64_MAX : -v) : v; }

/* Value of `v` modulo 2^bits, in [0, 2^bits). */
static int64_t wrap_mod(int64_t v, int bits) {
  uint64_t mask = ((uint64_t)1 << bits) - 1;
  return (int64_t)((uint64_t)v & mask);
}

/* (a - b) modulo 2^bits read as signed, in [-2^(bits-1), 2^(bits-1)). */
static int64_t wrap_diff(int64_t a, int64_t b, int bits) {
  uint64_t m = (uint64_t)1 << bits;
  uint64_t d = ((uint64_t)a - (uint64_t)b) & (m - 1);
  if (d >= m / 2)
    return -(int64_t)(m - d);
  return (int64_t)d;
}

void pyrec_tsgroup_init(pyrec_tsgroup *g) { memset(g, 0, sizeof *g); }

void pyrec_tsfix_init(pyrec_tsfix *t, uint32_t timescale, const pyrec_tsfix_opts *o,
                      pyrec_tsgroup *group) {
  memset(t, 0, sizeof *t);
  if (o)
    t->o = *o;
  if (t->o.wrap_bits < 0 || t->o.wrap_bits > 62)
    t->o.wrap_bits = 0;
  if (t->o.jump_threshold < 0)
    t->o.jump_threshold = 0;
  if (t->o.default_duration <= 0)
    t->o.default_duration = 1;
  t->timescale = timescale ? timescale : 1000;
  t->group = group;
  /* Re-anchors published before this track existed are not this track's business. */
  t->group_epoch = group ? group->epoch : 0;
}

static int64_t step_duration(const pyrec_tsfix *t) {
  return t->last_duration > 0 ? t->last_duration : t->o.default_duration;
}

/* Re-anchor after a jump: returns the new offset. `unwrapped` is this packet's unwrapped DTS. */
static int64_t reanchor(pyrec_tsfix *t, int64_t unwrapped) {
  double ts = (double)t->timescale;
  double raw_jump_s = (double)sat_sub(unwrapped, t->last_unwrapped) / ts;
  pyrec_tsgroup *g = t->group;
  t->c.jumps++;
  if (g && g->epoch > t->group_epoch) {
    double thr_s = (double)t->o.jump_threshold / ts;
    if (thr_s < 1.0) /* forced re-anchors without jump detection: tracks within 1 s follow */
      thr_s = 1.0;
    double diff = raw_jump_s - g->jump_seconds;
    if (diff < 0)
      diff = -diff;
    t->group_epoch = g->epoch;
    if (diff <= thr_s) /* the same jump another track saw: follow it exactly */
      return sat_add(t->offset, round_ticks(g->offset_seconds * ts));
  }
  int64_t target = sat_add(t->last_dts, step_duration(t));
  int64_t off = sat_sub(target, unwrapped);
  if (g) {
    double change_s = (double)sat_sub(off, t->offset) / ts;
    g->epoch++;
    g->offset_seconds = change_s;
    g->jump_seconds = raw_jump_s;
    g->total_seconds += change_s;
    t->group_epoch = g->epoch;
  }
  return off;
}

void pyrec_tsfix_reanchor(pyrec_tsfix *t) {
  if (t->started)
    t->force_anchor = 1;
}

void pyrec_tsfix_apply(pyrec_tsfix *t, int64_t dts, int64_t pts, int64_t *out_dts,
                       int64_t *out_pts) {
  int bits = t->o.wrap_bits;
  t->c.packets++;

  if (dts == PYREC_NOPTS) {
    if (pts != PYREC_NOPTS) {
      dts = pts;
    } else if (t->started) { /* no time at all: continue the timeline by one duration */
      int64_t d = sat_add(t->last_dts, step_duration(t));
      if (d <= t->last_dts) /* saturated */
        d = t->last_dts;
      t->last_dts = d;
      *out_dts = *out_pts = d;
      return;
    } else {
      dts = 0;
    }
  }

  /* 1. unwrap DTS, then PTS relative to it */
  int64_t raw = bits ? wrap_mod(dts, bits) : dts;
  int64_t unwrapped;
  if (!t->started) {
    unwrapped = raw;
  } else if (bits) {
    int64_t delta = wrap_diff(raw, t->last_raw, bits);
    if (raw < t->last_raw && delta > 0)
      t->c.wraps++;
    unwrapped = sat_add(t->last_unwrapped, delta);
  } else {
    unwrapped = raw;
  }
  int64_t pts_unwrapped = PYREC_NOPTS;
  if (pts != PYREC_NOPTS)
    pts_unwrapped = bits ? sat_add(unwrapped, wrap_diff(pts, raw, bits)) : pts;

  /* 2-4. map, re-anchor on jumps, keep DTS strictly increasing */
  int64_t cand, out;
  if (!t->started) {
    t->offset = 0;
    cand = out = unwrapped;
  } else {
    cand = sat_add(unwrapped, t->offset);
    int64_t step = sat_sub(cand, t->last_dts);
    if (t->force_anchor || (t->o.jump_threshold > 0 && iabs64(step) > t->o.jump_threshold)) {
      t->force_anchor = 0;
      t->offset = reanchor(t, unwrapped);
      cand = sat_add(unwrapped, t->offset);
      step = sat_sub(cand, t->last_dts);
    } else if (step > 0) {
      t->last_duration = step;
    }
    if (step > 0) {
      out = cand;
    } else {
      if (step == 0)
        t->c.equal++;
      else
        t->c.backward++;
      out = sat_add(t->last_dts, 1);
    }
  }

  /* 5. PTS follows DTS; PTS >= DTS */
  int64_t opts;
  if (pts_unwrapped == PYREC_NOPTS) {
    opts = out;
  } else {
    opts = sat_add(sat_add(pts_unwrapped, t->offset), sat_sub(out, cand));
    if (opts < out) {
      opts = out;
      t->c.pts_fixed++;
    }
  }

  t->started = 1;
  t->last_raw = raw;
  t->last_unwrapped = unwrapped;
  t->last_dts = out;
  *out_dts = out;
  *out_pts = opts;
}
