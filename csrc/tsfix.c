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
  if (t->o.frame_duration < 0)
    t->o.frame_duration = 0;
  t->timescale = timescale ? timescale : 1000;
  t->group = group;
  /* Re-anchors published before this track existed are not this track's business. */
  t->group_epoch = group ? group->epoch : 0;
}

/* Lower median of the recent raw steps (insertion sort of at most PYREC_TSFIX_STEPS). */
int64_t pyrec_tsfix_typical(pyrec_tsfix *t) {
  if (t->o.frame_duration > 0)
    return t->o.frame_duration;
  if (t->typical > 0)
    return t->typical;
  if (t->nsteps == 0)
    return t->o.default_duration;
  int64_t v[PYREC_TSFIX_STEPS];
  unsigned n = t->nsteps;
  for (unsigned i = 0; i < n; i++) {
    int64_t x = t->steps[i];
    unsigned j = i;
    for (; j > 0 && v[j - 1] > x; j--)
      v[j] = v[j - 1];
    v[j] = x;
  }
  t->typical = v[(n - 1) / 2] > 0 ? v[(n - 1) / 2] : 1; /* lower median */
  /* Fewer than PYREC_TSFIX_TRUST steps may all be a gap (e.g. the first real step after a
   * run of repeats): never more than the default until then. */
  if (n < PYREC_TSFIX_TRUST && t->typical > t->o.default_duration)
    t->typical = t->o.default_duration;
  return t->typical;
}

static int64_t half_of(int64_t d) { return d / 2 > 0 ? d / 2 : 1; }

static void add_step(pyrec_tsfix *t, int64_t step) {
  /* A full ring that gets back the value it drops keeps its median (the steady state of a
   * constant frame rate): no re-sort per packet. */
  if (t->nsteps < PYREC_TSFIX_STEPS || t->steps[t->step_pos] != step)
    t->typical = 0;
  t->steps[t->step_pos] = step;
  t->step_pos = (t->step_pos + 1) % PYREC_TSFIX_STEPS;
  if (t->nsteps < PYREC_TSFIX_STEPS)
    t->nsteps++;
}

/* Re-anchor after a jump: returns the new offset. `unwrapped` is this packet's unwrapped DTS. */
static int64_t reanchor(pyrec_tsfix *t, int64_t unwrapped) {
  double ts = (double)t->timescale;
  int64_t raw_jump = sat_sub(unwrapped, t->last_unwrapped);
  double raw_jump_s = (double)raw_jump / ts;
  pyrec_tsgroup *g = t->group;
  if (raw_jump < 0)
    t->c.jump_backward++;
  else
    t->c.jump_forward++;
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
  int64_t target = sat_add(t->last_dts, pyrec_tsfix_typical(t));
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

/* Another track of the group re-anchored after a backward jump this track has not followed,
 * and this step goes back by about as much (within half of it): the same clock restart, even
 * when it is too small to count as a jump on this track's own scale. */
static int follows_restart(const pyrec_tsfix *t, int64_t raw_step) {
  const pyrec_tsgroup *g = t->group;
  if (!g || g->epoch <= t->group_epoch || raw_step >= 0 || g->jump_seconds >= 0)
    return 0;
  double diff = (double)raw_step / (double)t->timescale - g->jump_seconds;
  if (diff < 0)
    diff = -diff;
  return diff <= -g->jump_seconds / 2;
}

void pyrec_tsfix_reanchor(pyrec_tsfix *t) {
  if (t->started)
    t->force_anchor = 1;
}

int pyrec_tsfix_holding(const pyrec_tsfix *t) { return t->held; }

/* Output one packet at dts `d` with composition offset `cto` (PYREC_NOPTS: pts = dts). */
static void place(pyrec_tsfix *t, int64_t d, int64_t cto, pyrec_tsout *o) {
  int64_t p = d;
  if (cto != PYREC_NOPTS) {
    p = sat_add(d, cto);
    if (p < d) {
      p = d;
      t->c.pts_fixed++;
    }
  }
  t->last_dts = d;
  o->dts = d;
  o->pts = p;
}

/* The held packet goes to P + min(d, room / 2) when room >= d, else to P + d. */
static void place_held(pyrec_tsfix *t, int64_t room, pyrec_tsout *o) {
  int64_t d = pyrec_tsfix_typical(t);
  int64_t at = room >= d ? (room / 2 < d ? room / 2 : d) : d;
  t->held = 0;
  place(t, sat_add(t->last_dts, at), t->held_cto, o);
}

int pyrec_tsfix_flush(pyrec_tsfix *t, pyrec_tsout *out) {
  if (!t->held)
    return 0;
  place_held(t, 0, out);
  return 1;
}

int pyrec_tsfix_push(pyrec_tsfix *t, int64_t dts, int64_t pts, pyrec_tsout out[2]) {
  int bits = t->o.wrap_bits;
  int n = 0;
  t->c.packets++;

  if (dts == PYREC_NOPTS) {
    if (pts != PYREC_NOPTS) {
      dts = pts;
    } else if (t->started) { /* no time at all: continue the timeline by one duration */
      n = pyrec_tsfix_flush(t, &out[0]);
      place(t, sat_add(t->last_dts, pyrec_tsfix_typical(t)), PYREC_NOPTS, &out[n]);
      return n + 1;
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
      t->c.wrap++;
    unwrapped = sat_add(t->last_unwrapped, delta);
  } else {
    unwrapped = raw;
  }
  int64_t cto = PYREC_NOPTS;
  if (pts != PYREC_NOPTS)
    cto = bits ? wrap_diff(pts, raw, bits) : sat_sub(pts, unwrapped);

  if (!t->started) {
    t->offset = 0;
    t->started = 1;
    t->last_raw = raw;
    t->last_unwrapped = unwrapped;
    t->last_dts = unwrapped;
    place(t, unwrapped, cto, &out[0]);
    return 1;
  }

  int64_t raw_step = sat_sub(unwrapped, t->last_unwrapped);
  int64_t d = pyrec_tsfix_typical(t);
  int64_t h = half_of(d);
  int64_t cand = sat_add(unwrapped, t->offset);
  int64_t step = sat_sub(cand, t->last_dts);

  /* 2-3. jumps re-anchor (a held packet is placed first, without look-ahead) */
  int64_t thr = t->o.jump_threshold, back = 0;
  if (thr > 0) {
    back = d > INT64_MAX / 4 ? INT64_MAX : 4 * d;
    if (back > thr)
      back = thr;
  }
  int jump = t->force_anchor || (thr > 0 && (raw_step > thr || raw_step < -back ||
                                             follows_restart(t, raw_step)));
  if (!jump && raw_step > 0) { /* the input's own spacing, repaired or not, is the measure */
    add_step(t, raw_step);
    d = pyrec_tsfix_typical(t);
    h = half_of(d);
  }
  if (jump) {
    t->force_anchor = 0;
    if (t->held)
      place_held(t, 0, &out[n++]);
    t->offset = reanchor(t, unwrapped);
    cand = sat_add(unwrapped, t->offset);
    step = sat_sub(cand, t->last_dts);
  } else {
    if (t->held) { /* 4. this packet is the held one's next neighbour */
      place_held(t, step, &out[n++]);
      step = sat_sub(cand, t->last_dts);
    }
    if (step < h && raw_step >= h) {
      /* Behind the output (after a slide, or a follower's re-anchor) yet a normal step from
       * its predecessor: the timeline slides, this packet one raw step after the last. */
      t->offset = sat_add(t->offset, sat_sub(sat_add(t->last_dts, raw_step), cand));
      cand = sat_add(unwrapped, t->offset);
      step = sat_sub(cand, t->last_dts);
      t->c.backward++;
    }
  }

  t->last_raw = raw;
  t->last_unwrapped = unwrapped;
  if (step < h) { /* needs room: wait for the next packet of the track */
    if (raw_step == 0)
      t->c.equal++;
    else
      t->c.backward++;
    t->held = 1;
    t->held_cto = cto;
    return n;
  }
  place(t, cand, cto, &out[n++]);
  return n;
}

void pyrec_tsfix_apply(pyrec_tsfix *t, int64_t dts, int64_t pts, int64_t *out_dts,
                       int64_t *out_pts) {
  pyrec_tsout o[2];
  int had = t->held;
  int n = pyrec_tsfix_push(t, dts, pts, o);
  if (n - had < 1)
    pyrec_tsfix_flush(t, &o[n++]);
  *out_dts = o[n - 1].dts;
  *out_pts = o[n - 1].pts;
}
