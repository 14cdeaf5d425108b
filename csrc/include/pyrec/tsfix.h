/* Timestamp repair: per track unwrap, strictly increasing DTS with room between packets,
 * PTS >= DTS, jump re-anchoring; a group shares re-anchor offsets so that tracks keep their
 * relative alignment. Pure functions of their inputs: no clock, no I/O. All rules are in
 * ticks of the track's timescale (no millisecond assumption).
 *
 * Typical duration d: frame_duration when the codec fixes it (AAC: 1024 samples); otherwise
 * the lower median of the last PYREC_TSFIX_STEPS positive raw DTS steps of the track that were
 * not jumps (the input's own spacing: a repeated DTS adds nothing, a frame after a gap adds
 * one odd value that the median ignores), default_duration before the first one and at most
 * default_duration until PYREC_TSFIX_TRUST steps are known (a lone step may be a gap).
 * h = max(1, d / 2) is the least step the output ever has ("room").
 *
 * Per packet (pyrec_tsfix_push):
 *  1. Unwrap. With wrap_bits b (1..62), the raw DTS is taken modulo 2^b and the step from the
 *     previous raw DTS is read as a signed value in [-2^(b-1), 2^(b-1)); unwrapped = previous
 *     unwrapped + step. A forward crossing of the modulus counts in `wrap`. PTS is given in
 *     the same wrapped domain and is unwrapped relative to the unwrapped DTS (so a PTS that
 *     wrapped before its DTS did is still right). wrap_bits 0: raw values are used as they are.
 *  2. Map: candidate C = unwrapped + offset. The first packet has offset 0, so its output is
 *     the unwrapped input (the caller subtracts a common origin later; outputs are int64).
 *     Let P be the last output DTS.
 *  3. Jumps (only when jump_threshold > 0), judged on the raw step s = unwrapped DTS minus
 *     the previous packet's: s > jump_threshold is a forward jump (`jump_forward`);
 *     s < -min(jump_threshold, 4 d) is a backward jump (`jump_backward`: a publisher's clock
 *     restart, a spliced file). A smaller step back is jitter (step 4). Both jumps re-anchor:
 *     `offset` changes so that the output is P + d; with a group, see below. A forced
 *     re-anchor (pyrec_tsfix_reanchor) counts by the sign of the raw step.
 *  4. Room: C >= P + h is placed at C. Otherwise the packet is a repair: `equal` when its
 *     unwrapped DTS equals the previous packet's (a repeated DTS), else `backward` (small
 *     backward jitter, or a step below h). Its place depends on the next packet of the track,
 *     so it is held (push returns it later):
 *      - the next packet's candidate N (which is not a jump) leaves room (N - P >= d): the
 *        held packet goes to P + min(d, (N - P) / 2), at least h from both neighbours;
 *      - no room: it goes to P + d and the timeline slides forward. Later packets still
 *        behind it are held and placed the same way, one by one, so a run of repeats ends
 *        where the source's times leave room again (no lasting drift). A later packet whose
 *        raw step from its predecessor is normal (>= h) but that lands behind shifts
 *        `offset` so that it sits one raw step after the last output (counted `backward`),
 *        and the packets after it follow without repair: a lasting slide, never squeezed;
 *      - the next packet is a jump, a forced re-anchor or pyrec_tsfix_flush: P + d.
 *     A held packet is never moved closer than h to either neighbour, and output order is
 *     input order.
 *  5. PTS moves with DTS by the same number of ticks (B-frames keep their composition
 *     offsets); then PTS < DTS → PTS = DTS (`pts_fixed`). A missing PTS (PYREC_NOPTS) becomes
 *     DTS without counting: that is normal for audio.
 *  Missing DTS: the PTS is used as the DTS; when both are missing the output is P + d
 *  (pts = dts), the raw state and offset are left alone, nothing is counted; before the first
 *  packet both missing means raw time 0.
 *
 * Group (pyrec_tsgroup, optional, one per stream): a track that re-anchors publishes the offset
 * change and the raw jump (both in seconds) and bumps `epoch`. A track that later detects a
 * jump while the group holds an epoch it has not followed yet, and whose own raw jump is within
 * jump_threshold (at least 1 s) of the published one, applies the same offset change
 * (converted to its own timescale, rounded to the nearest tick) instead of computing its own,
 * so the tracks keep the relative alignment they had in the source. Otherwise it re-anchors
 * on its own and publishes. A backward step of a track is also a jump when the group holds
 * an unfollowed backward re-anchor whose raw jump is within half of it of this step (a
 * restart of the stream's clock that is small on this track's scale). A track follows only
 * re-anchors published after its pyrec_tsfix_init. Slides (step 4) are the track's own and
 * are not published.
 * Limitation: a track that starts after another track wrapped or re-anchored starts with
 * offset 0 (its first output is its unwrapped raw time); start tracks together or align their
 * origins in the caller. */
#ifndef PYREC_TSFIX_H
#define PYREC_TSFIX_H

#include <stdint.h>

#define PYREC_NOPTS INT64_MIN
#define PYREC_TSFIX_STEPS 15 /* raw steps kept for the typical duration (median) */
#define PYREC_TSFIX_TRUST 3  /* steps needed before the median may exceed the default */

typedef struct pyrec_tsfix_opts {
  int wrap_bits;            /* 32 (RTMP ms), 33 (MPEG-TS 90 kHz), 0 = no wrap */
  int64_t jump_threshold;   /* ticks: a DTS step beyond + this is a jump (re-anchor), and
                             * backward beyond min(this, 4 typical durations); 0 = off */
  int64_t default_duration; /* ticks: typical duration before one is measured; 0 = 1 */
  int64_t frame_duration;   /* ticks: every frame's duration when the codec fixes it (then
                             * it is the typical duration, not measured); 0 = measure */
} pyrec_tsfix_opts;

typedef struct pyrec_tsfix_counts {
  uint64_t packets;
  uint64_t wrap;          /* wrap-arounds unwrapped */
  uint64_t equal;         /* DTS repeated the previous packet's: placed with room */
  uint64_t backward;      /* DTS behind, or closer than half a typical duration: placed */
  uint64_t jump_forward;  /* re-anchors after a forward jump (or a forced one going forward) */
  uint64_t jump_backward; /* re-anchors after a backward jump (clock restart) */
  uint64_t pts_fixed;     /* PTS below DTS, raised to DTS (a missing PTS is not counted) */
} pyrec_tsfix_counts;

/* Shared across the tracks of one stream: the latest re-anchor, so a second track that jumps
 * by the same amount reuses the same offset (alignment kept exactly). */
typedef struct pyrec_tsgroup {
  uint64_t epoch;        /* incremented at each re-anchor */
  double offset_seconds; /* the offset (seconds) applied by the latest re-anchor */
  double jump_seconds;   /* the raw jump (seconds) that caused it */
  double total_seconds;  /* sum of all published offset changes (informational) */
} pyrec_tsgroup;

/* One placed packet. */
typedef struct pyrec_tsout {
  int64_t dts, pts;
} pyrec_tsout;

typedef struct pyrec_tsfix {
  pyrec_tsfix_opts o;
  uint32_t timescale;
  pyrec_tsgroup *group; /* may be NULL */
  uint64_t group_epoch; /* last group epoch this track followed */
  int started;
  int64_t last_raw;       /* last raw (wrapped) dts */
  int64_t last_unwrapped; /* last unwrapped dts */
  int64_t offset;         /* added to unwrapped time to produce output */
  int64_t last_dts;       /* last output dts (P) */
  int64_t steps[PYREC_TSFIX_STEPS]; /* recent normal steps (ring) */
  unsigned nsteps, step_pos;
  int64_t typical;        /* cached median of steps, 0 = recompute */
  int held;               /* a packet waits for its successor to be placed */
  int64_t held_cto;       /* its pts - dts (unwrapped), or PYREC_NOPTS */
  int force_anchor;       /* re-anchor at the next packet whatever its step (new session) */
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
 * PYREC_NOPTS, then pts is used, then last+duration). Returns how many packets got their
 * output times (0, 1 or 2), in input order in out[]: when a packet was held before the call
 * (pyrec_tsfix_holding), out[0] is that packet; the current packet is the last one out
 * unless it is held now (pyrec_tsfix_holding after the call). Output DTS strictly increase
 * by at least h; output pts >= dts. */
int pyrec_tsfix_push(pyrec_tsfix *t, int64_t dts, int64_t pts, pyrec_tsout out[2]);
/* A packet is held (its time waits for the next packet of the track). */
int pyrec_tsfix_holding(const pyrec_tsfix *t);
/* End of input (or of a session): place a held packet at last + typical duration. Returns 1
 * and fills *out when there was one, else 0. */
int pyrec_tsfix_flush(pyrec_tsfix *t, pyrec_tsout *out);
/* push + flush: the current packet's times, without look-ahead (a packet needing room goes
 * to last + typical duration and the timeline slides). For callers that cannot hold. */
void pyrec_tsfix_apply(pyrec_tsfix *t, int64_t dts, int64_t pts, int64_t *out_dts,
                       int64_t *out_pts);
/* The typical duration d in ticks (see above). */
int64_t pyrec_tsfix_typical(pyrec_tsfix *t);

#endif
