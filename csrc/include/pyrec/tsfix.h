/* Timestamp repair: per track unwrap, monotonic DTS, PTS >= DTS, jump re-anchoring; a group
 * shares re-anchor offsets so that tracks keep their relative alignment. Pure functions of
 * their inputs: no clock, no I/O.
 *
 * Per packet (pyrec_tsfix_apply):
 *  1. Unwrap. With wrap_bits b (1..62), the raw DTS is taken modulo 2^b and the step from the
 *     previous raw DTS is read as a signed value in [-2^(b-1), 2^(b-1)); unwrapped = previous
 *     unwrapped + step. A forward crossing of the modulus counts in `wraps`. PTS is given in
 *     the same wrapped domain and is unwrapped relative to the unwrapped DTS (so a PTS that
 *     wrapped before its DTS did is still right). wrap_bits 0: raw values are used as they are.
 *  2. Map: candidate = unwrapped + offset. The first packet has offset 0, so its output is the
 *     unwrapped input (the caller subtracts a common origin later; outputs are int64 and may be
 *     negative or large).
 *  3. Jump (jump_threshold > 0 and |candidate - last output| > jump_threshold): re-anchor, i.e.
 *     change `offset` so that the output is last + duration (duration = last normal step, else
 *     default_duration). With a group, see below. Counted in `jumps`.
 *  4. Monotonic: candidate == last → last + 1 (`equal`); candidate < last → last + 1
 *     (`backward`). These do not change `offset`: the next packet maps as before.
 *  5. PTS moves with DTS by the same number of ticks; then PTS < DTS → PTS = DTS (`pts_fixed`).
 *     A missing PTS (PYREC_NOPTS) becomes DTS without counting: that is normal for audio.
 *  Missing DTS: the PTS is used as the DTS; when both are missing the output is last + duration
 *  (pts = dts), the raw state and offset are left alone, nothing is counted; before the first
 *  packet both missing means raw time 0.
 *
 * Group (pyrec_tsgroup, optional, one per stream): a track that re-anchors publishes the offset
 * change and the raw jump (both in seconds) and bumps `epoch`. A track that later detects a
 * jump while the group holds an epoch it has not followed yet, and whose own raw jump is within
 * jump_threshold of the published one, applies the same offset change (converted to its own
 * timescale, rounded to the nearest tick) instead of computing its own, so the tracks keep the
 * relative alignment they had in the source. Otherwise it re-anchors on its own and publishes.
 * A track follows only re-anchors published after its pyrec_tsfix_init.
 * Limitation: a track that starts after another track wrapped or re-anchored starts with
 * offset 0 (its first output is its unwrapped raw time); start tracks together or align their
 * origins in the caller. */
#ifndef PYREC_TSFIX_H
#define PYREC_TSFIX_H

#include <stdint.h>

#define PYREC_NOPTS INT64_MIN

typedef struct pyrec_tsfix_opts {
  int wrap_bits;            /* 32 (RTMP ms), 33 (MPEG-TS 90 kHz), 0 = no wrap */
  int64_t jump_threshold;   /* ticks: a DTS step beyond +- this is a jump (re-anchor); 0 = off */
  int64_t default_duration; /* ticks: step used when a duration is unknown; 0 = 1 */
} pyrec_tsfix_opts;

typedef struct pyrec_tsfix_counts {
  uint64_t packets;
  uint64_t wraps;    /* wrap-arounds unwrapped */
  uint64_t backward; /* DTS went backward (less than a jump) and was raised */
  uint64_t equal;    /* DTS equal to the previous one and was raised */
  uint64_t jumps;    /* re-anchors after a jump forward or backward */
  uint64_t pts_fixed; /* PTS below DTS, raised to DTS (a missing PTS is not counted) */
} pyrec_tsfix_counts;

/* Shared across the tracks of one stream: the latest re-anchor, so a second track that jumps
 * by the same amount reuses the same offset (alignment kept exactly). Offsets are kept in
 * seconds as a rational (num/den per track timescale). */
typedef struct pyrec_tsgroup {
  uint64_t epoch;        /* incremented at each re-anchor */
  double offset_seconds; /* the offset (seconds) applied by the latest re-anchor */
  double jump_seconds;   /* the raw jump (seconds) that caused it */
  double total_seconds;  /* sum of all published offset changes (informational) */
} pyrec_tsgroup;

typedef struct pyrec_tsfix {
  pyrec_tsfix_opts o;
  uint32_t timescale;
  pyrec_tsgroup *group; /* may be NULL */
  uint64_t group_epoch; /* last group epoch this track followed */
  int started;
  int64_t last_raw;      /* last raw (wrapped) dts */
  int64_t last_unwrapped; /* last unwrapped dts */
  int64_t offset;        /* added to unwrapped time to produce output */
  int64_t last_dts;      /* last output dts */
  int64_t last_duration; /* last normal (unrepaired) output step, 0 before two packets */
  int force_anchor;      /* re-anchor at the next packet whatever its step (new session) */
  pyrec_tsfix_counts c;
} pyrec_tsfix;

void pyrec_tsgroup_init(pyrec_tsgroup *g);
/* The next packet starts a new timeline (e.g. a publisher reconnected): it is placed one
 * duration after the last output, as after a jump; tracks of a group follow together. */
void pyrec_tsfix_reanchor(pyrec_tsfix *t);
/* `o` may be NULL (no wrap, no jump detection, default duration 1). wrap_bits outside 0..62
 * is treated as 0. timescale 0 is treated as 1000. */
void pyrec_tsfix_init(pyrec_tsfix *t, uint32_t timescale, const pyrec_tsfix_opts *o,
                      pyrec_tsgroup *group);
/* Repair one packet. `dts`/`pts` are raw input times (pts may be PYREC_NOPTS; dts may be
 * PYREC_NOPTS, then pts is used, then last+duration). Output dts strictly increases; output
 * pts >= output dts, and pts keeps its offset from dts when dts is moved. */
void pyrec_tsfix_apply(pyrec_tsfix *t, int64_t dts, int64_t pts, int64_t *out_dts,
                       int64_t *out_pts);

#endif
