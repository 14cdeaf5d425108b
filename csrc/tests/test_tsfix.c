/* Timestamp repair: table-driven rows with exact expected outputs. */
#include "pyrec/tsfix.h"
#include "t.h"

#include <stdint.h>

#define NP PYREC_NOPTS

typedef struct row {
  int64_t dts, pts; /* raw input */
} row;

typedef struct tcase {
  const char *name;
  uint32_t timescale;
  pyrec_tsfix_opts o;
  const row *in;
  size_t nin;
  const pyrec_tsout *want; /* every output in order (push, then a flush at the end) */
  size_t nwant;
  pyrec_tsfix_counts count; /* packets filled in automatically */
} tcase;

#define N(a) (sizeof a / sizeof a[0])

static const row i_wrap32[] = {
    {4294967290LL, 4294967290LL}, {4294967295LL, 4294967295LL}, {3, 3},
    {40, 4294967290LL}, /* pts "before the wrap": < dts, fixed */
    {80, 200},
};
static const pyrec_tsout o_wrap32[] = {
    {4294967290LL, 4294967290LL}, {4294967295LL, 4294967295LL}, {4294967299LL, 4294967299LL},
    {4294967336LL, 4294967336LL}, {4294967376LL, 4294967496LL},
};

/* 33-bit MPEG-TS clock; pts wraps before dts does */
static const row i_wrap33[] = {
    {8589931592LL, 8589932592LL}, {8589933092LL, 500}, {600, 4600}, {4200, NP}};
static const pyrec_tsout o_wrap33[] = {{8589931592LL, 8589932592LL},
                                       {8589933092LL, 8589935092LL},
                                       {8589935192LL, 8589939192LL},
                                       {8589938792LL, 8589938792LL}};

/* small backward jitter: placed between its neighbours (next packet looked at), >= d/2 from
 * both; pts moves with dts */
static const row i_backward[] = {{1000, 1000}, {1033, 1033}, {1066, 1066},
                                 {1050, 1080}, {1100, 1160}, {1133, 1133}};
static const pyrec_tsout o_backward[] = {{1000, 1000}, {1033, 1033}, {1066, 1066},
                                         {1083, 1113}, {1100, 1160}, {1133, 1133}};

/* a repeated DTS (B-frame: its pts kept its composition offset) lands where it belonged */
static const row i_equal[] = {{0, 0}, {33, 33}, {66, 66}, {66, 99}, {132, 132}, {165, 165}};
static const pyrec_tsout o_equal[] = {{0, 0},     {33, 33},   {66, 66},
                                      {99, 132},  {132, 132}, {165, 165}};

/* three equal DTS: no room for the second, the timeline slides; the next real step gives
 * room again (never closer than d/2) */
static const row i_repeats[] = {{0, 0}, {33, 33}, {33, 33}, {33, 33}, {100, 100}, {133, 133}};
static const pyrec_tsout o_repeats[] = {{0, 0},  {33, 33},   {66, 66},
                                        {83, 83}, {100, 100}, {133, 133}};

/* frames batched on one timestamp (audio from some relays): spread by the codec's frame
 * duration (measured, the input's spacing would say 84) */
static const row i_batch[] = {{0, NP}, {0, NP}, {0, NP}, {0, NP}, {84, NP}, {84, NP},
                              {84, NP}, {84, NP}, {168, NP}};
static const pyrec_tsout o_batch[] = {{0, 0},   {21, 21},   {42, 42},   {63, 63},   {84, 84},
                                      {105, 105}, {126, 126}, {147, 147}, {168, 168}};

/* a gap of 1 s after the first frame: the median recovers at once, nothing is repaired */
static const row i_gap[] = {{0, 0}, {1000, 1000}, {1033, 1033}, {1066, 1066}, {1100, 1100}};
static const pyrec_tsout o_gap[] = {{0, 0}, {1000, 1000}, {1033, 1033}, {1066, 1066},
                                    {1100, 1100}};

/* a run of repeats at the start, then the first real step (104, a gap worth 4 frames): one
 * step is not trusted over the default, the run is spread by it */
static const row i_run[] = {{0, NP}, {0, NP}, {0, NP}, {0, NP}, {104, NP}, {130, NP}, {156, NP}};
static const pyrec_tsout o_run[] = {{0, 0},   {26, 26},   {52, 52},  {78, 78},
                                    {104, 104}, {130, 130}, {156, 156}};

/* a step below half the typical duration (14 < 33 / 2) is a repair too: placed with room */
static const row i_close[] = {{0, 0}, {33, 33}, {66, 66}, {80, 80}, {132, 132}};
static const pyrec_tsout o_close[] = {{0, 0}, {33, 33}, {66, 66}, {99, 99}, {132, 132}};

/* a repeat followed by a gap: one typical duration after the last, not half the gap */
static const row i_repeat_gap[] = {{0, 0}, {33, 33}, {66, 66}, {66, 66}, {200, 200}};
static const pyrec_tsout o_repeat_gap[] = {{0, 0}, {33, 33}, {66, 66}, {99, 99}, {200, 200}};

/* the typical duration is the lower median: steps 30 30 40 40 give 30 */
static const row i_median[] = {{0, 0}, {30, 30}, {60, 60}, {100, 100}, {140, 140}, {0, 0}};
static const pyrec_tsout o_median[] = {{0, 0},     {30, 30},   {60, 60},
                                       {100, 100}, {140, 140}, {170, 170}};

/* a small restart (49 ms back, under 4 d): the packet after it slides the timeline, later
 * packets follow at their own steps */
static const row i_slide[] = {{0, 0},   {33, 33},  {66, 66},   {99, 99},
                              {50, 50}, {83, 83},  {116, 116}, {149, 149}};
static const pyrec_tsout o_slide[] = {{0, 0},     {33, 33},   {66, 66},   {99, 99},
                                      {132, 132}, {165, 165}, {198, 198}, {231, 231}};

/* a publisher's clock restart (5 s back): re-anchored one typical duration after the last */
static const row i_restart[] = {{5000, 5000}, {5033, 5066}, {5066, 5066}, {5099, 5099},
                                {0, 33},      {33, 33},     {66, 66}};
static const pyrec_tsout o_restart[] = {{5000, 5000}, {5033, 5066}, {5066, 5066},
                                        {5099, 5099}, {5132, 5165}, {5165, 5165},
                                        {5198, 5198}};

/* one odd step does not change the typical duration (median of recent steps), so a restart
 * right after it still lands one frame after the last */
static const row i_odd[] = {{0, 0}, {33, 33}, {66, 66}, {99, 99}, {132, 132}, {200, 200}, {0, 0}};
static const pyrec_tsout o_odd[] = {{0, 0},     {33, 33},   {66, 66}, {99, 99},
                                    {132, 132}, {200, 200}, {233, 233}};

/* forward jump of 1 h (threshold 10 s), a backward jump of 2 h, then jitter at the end
 * (flushed at last + d) */
static const row i_jumps[] = {{0, 0},       {40, 80},           {80, 80},
                              {3600080, 3600120}, {3600120, 3600120}, {1600120, 1600120},
                              {1600160, 1600200}, {1600150, 1600150}};
static const pyrec_tsout o_jumps[] = {{0, 0},     {40, 80},   {80, 80},   {120, 160},
                                      {160, 160}, {200, 200}, {240, 280}, {280, 280}};

/* a jump with no measured duration uses default_duration */
static const row i_jump_first[] = {{1000, 1000}, {90000000, 90000000}, {90000010, NP}};
static const pyrec_tsout o_jump_first[] = {{1000, 1000}, {1005, 1005}, {1015, 1015}};
static const row i_no_threshold[] = {{1000, 1000}, {1033, 1033}, {90000000, 90000000},
                                     {90000033, NP}};
static const pyrec_tsout o_no_threshold[] = {
    {1000, 1000}, {1033, 1033}, {90000000, 90000000}, {90000033, 90000033}};

/* B-frames: dts increasing, pts reordered; everything preserved exactly */
static const row i_bframes[] = {{-66, 0}, {-33, 100}, {0, 33}, {33, 66}, {66, 200}, {100, 133}};
static const pyrec_tsout o_bframes[] = {{-66, 0}, {-33, 100}, {0, 33},
                                        {33, 66}, {66, 200},  {100, 133}};

static const row i_nopts[] = {{0, NP}, {21, NP}, {42, NP}, {NP, 64}, /* dts missing: pts */
                              {NP, NP}, /* both missing: last + typical (21) */
                              {107, NP}};
static const pyrec_tsout o_nopts[] = {{0, 0}, {21, 21}, {42, 42}, {64, 64}, {85, 85}, {107, 107}};

static const row i_pts_lt_dts[] = {{100, 90}, {133, 133}, {166, 100}, {200, 233}, {233, 232}};
static const pyrec_tsout o_pts_lt_dts[] = {
    {100, 100}, {133, 133}, {166, 166}, {200, 233}, {233, 233}};

/* 48 kHz audio (timescale = sample rate), AAC frames of 1024: a repeat and a restart near 0,
 * in ticks (nothing assumes milliseconds) */
static const row i_48k[] = {{0, NP},    {1024, NP}, {2048, NP}, {2048, NP}, {4096, NP},
                            {5120, NP}, {1000, NP}, {2024, NP}};
static const pyrec_tsout o_48k[] = {{0, 0},       {1024, 1024}, {2048, 2048}, {3072, 3072},
                                    {4096, 4096}, {5120, 5120}, {6144, 6144}, {7168, 7168}};

#define CASE(name, ts, wrap, thr, dflt, i, o, ...)                                           \
  {name, ts, {wrap, thr, dflt, 0}, i, N(i), o, N(o), {0, __VA_ARGS__}}
#define CASE_FIXED(name, ts, wrap, thr, frame, i, o, ...)                                    \
  {name, ts, {wrap, thr, 0, frame}, i, N(i), o, N(o), {0, __VA_ARGS__}}

/* counts: wrap, equal, backward, jump_forward, jump_backward, pts_fixed */
static const tcase cases[] = {
    CASE("wrap32", 1000, 32, 10000, 0, i_wrap32, o_wrap32, 1, 0, 0, 0, 0, 1),
    CASE("wrap33", 90000, 33, 900000, 0, i_wrap33, o_wrap33, 1, 0, 0, 0, 0, 0),
    CASE("backward", 1000, 32, 10000, 33, i_backward, o_backward, 0, 0, 1, 0, 0, 0),
    CASE("equal", 1000, 32, 10000, 33, i_equal, o_equal, 0, 1, 0, 0, 0, 0),
    CASE("repeats", 1000, 32, 10000, 33, i_repeats, o_repeats, 0, 2, 0, 0, 0, 0),
    CASE_FIXED("batch", 1000, 32, 10000, 21, i_batch, o_batch, 0, 6, 0, 0, 0, 0),
    CASE("repeats_then_gap", 1000, 32, 10000, 26, i_run, o_run, 0, 3, 0, 0, 0, 0),
    CASE("too_close", 1000, 32, 10000, 33, i_close, o_close, 0, 0, 1, 0, 0, 0),
    CASE("repeat_then_gap", 1000, 32, 10000, 33, i_repeat_gap, o_repeat_gap, 0, 1, 0, 0, 0, 0),
    CASE("lower_median", 1000, 32, 10000, 40, i_median, o_median, 0, 0, 0, 0, 1, 0),
    CASE("start_gap", 1000, 32, 10000, 0, i_gap, o_gap, 0, 0, 0, 0, 0, 0),
    CASE("slide", 1000, 32, 10000, 33, i_slide, o_slide, 0, 0, 2, 0, 0, 0),
    CASE("restart", 1000, 32, 10000, 33, i_restart, o_restart, 0, 0, 0, 0, 1, 0),
    CASE("odd_step", 1000, 32, 10000, 0, i_odd, o_odd, 0, 0, 0, 0, 1, 0),
    CASE("jumps", 1000, 32, 10000, 40, i_jumps, o_jumps, 0, 0, 1, 1, 1, 0),
    CASE("jump_default_duration", 1000, 0, 10000, 5, i_jump_first, o_jump_first, 0, 0, 0, 1,
         0, 0),
    CASE("no_threshold", 1000, 0, 0, 0, i_no_threshold, o_no_threshold, 0, 0, 0, 0, 0, 0),
    CASE("bframes", 1000, 0, 10000, 0, i_bframes, o_bframes, 0, 0, 0, 0, 0, 0),
    CASE("nopts", 1000, 32, 10000, 0, i_nopts, o_nopts, 0, 0, 0, 0, 0, 0),
    CASE("pts_lt_dts", 1000, 32, 10000, 0, i_pts_lt_dts, o_pts_lt_dts, 0, 0, 0, 0, 0, 3),
    CASE("audio_48k", 48000, 0, 480000, 960, i_48k, o_48k, 0, 1, 0, 0, 1, 0),
};

static void test_table(void) {
  for (size_t i = 0; i < N(cases); i++) {
    const tcase *c = &cases[i];
    pyrec_tsfix t;
    pyrec_tsfix_init(&t, c->timescale, &c->o, NULL);
    pyrec_tsout got[64];
    size_t n = 0;
    for (size_t j = 0; j < c->nin; j++) {
      int had = pyrec_tsfix_holding(&t);
      int k = pyrec_tsfix_push(&t, c->in[j].dts, c->in[j].pts, &got[n]);
      /* the current packet is out, or held now; a held one came out first */
      CHECK_EQ(k, had + !pyrec_tsfix_holding(&t));
      n += (size_t)k;
    }
    n += (size_t)pyrec_tsfix_flush(&t, &got[n]);
    CHECK_EQ(pyrec_tsfix_holding(&t), 0);
    if (n != c->nwant)
      fprintf(stderr, "  case %s: %zu outputs, want %zu\n", c->name, n, c->nwant);
    CHECK_EQ(n, c->nwant);
    for (size_t j = 0; j < n && j < c->nwant; j++) {
      if (got[j].dts != c->want[j].dts || got[j].pts != c->want[j].pts)
        fprintf(stderr, "  case %s out %zu: got %lld/%lld want %lld/%lld\n", c->name, j,
                (long long)got[j].dts, (long long)got[j].pts, (long long)c->want[j].dts,
                (long long)c->want[j].pts);
      CHECK_EQ(got[j].dts, c->want[j].dts);
      CHECK_EQ(got[j].pts, c->want[j].pts);
    }
    if (t.c.equal != c->count.equal || t.c.backward != c->count.backward ||
        t.c.jump_forward != c->count.jump_forward ||
        t.c.jump_backward != c->count.jump_backward)
      fprintf(stderr, "  case %s counts: equal %llu backward %llu jf %llu jb %llu\n", c->name,
              (unsigned long long)t.c.equal, (unsigned long long)t.c.backward,
              (unsigned long long)t.c.jump_forward, (unsigned long long)t.c.jump_backward);
    CHECK_EQ(t.c.packets, c->nin);
    CHECK_EQ(t.c.wrap, c->count.wrap);
    CHECK_EQ(t.c.equal, c->count.equal);
    CHECK_EQ(t.c.backward, c->count.backward);
    CHECK_EQ(t.c.jump_forward, c->count.jump_forward);
    CHECK_EQ(t.c.jump_backward, c->count.jump_backward);
    CHECK_EQ(t.c.pts_fixed, c->count.pts_fixed);
  }
}

/* Without look-ahead (apply): a packet needing room goes to last + typical duration. */
static void test_apply(void) {
  pyrec_tsfix t;
  pyrec_tsfix_opts o = {32, 10000, 33, 0};
  pyrec_tsfix_init(&t, 1000, &o, NULL);
  const int64_t in[] = {0, 33, 66, 66, 99, 132}, want[] = {0, 33, 66, 99, 132, 165};
  for (size_t i = 0; i < N(in); i++) {
    int64_t d, p;
    pyrec_tsfix_apply(&t, in[i], in[i], &d, &p);
    CHECK_EQ(d, want[i]);
    CHECK_EQ(p, want[i]);
  }
  CHECK_EQ(t.c.equal, 1);
  CHECK_EQ(t.c.backward, 1); /* 99 after the slide to 99: behind, normal step: slides */
}

/* A forced re-anchor (publisher reconnected) with a packet held: the held one goes to
 * last + d, the new session's first packet one d later. */
static void test_reanchor_held(void) {
  pyrec_tsfix t;
  pyrec_tsfix_opts o = {32, 10000, 33, 0};
  pyrec_tsfix_init(&t, 1000, &o, NULL);
  pyrec_tsout out[2];
  CHECK_EQ(pyrec_tsfix_push(&t, 500, 500, out), 1);
  CHECK_EQ(pyrec_tsfix_push(&t, 533, 533, out), 1);
  CHECK_EQ(pyrec_tsfix_push(&t, 533, 533, out), 0); /* repeat: held */
  pyrec_tsfix_reanchor(&t);
  CHECK_EQ(pyrec_tsfix_push(&t, 0, 40, out), 2);
  CHECK_EQ(out[0].dts, 566);
  CHECK_EQ(out[1].dts, 599);
  CHECK_EQ(out[1].pts, 639);
  CHECK_EQ(t.c.jump_backward, 1);
  CHECK_EQ(t.c.equal, 1);
  /* a new session that goes on at the same raw time is not a backward jump */
  pyrec_tsfix_reanchor(&t);
  CHECK_EQ(pyrec_tsfix_push(&t, 0, 0, out), 1);
  CHECK_EQ(out[0].dts, 632);
  CHECK_EQ(t.c.jump_forward, 1);
  CHECK_EQ(t.c.jump_backward, 1);
}

/* Both tracks of a stream restart their clock 150 ms back. Audio sees it first (129 ms back,
 * over 4 of its 21 ms durations: a jump); video's own step (117 ms back) is under 4 of its
 * 33 ms durations, yet it follows audio's re-anchor, so A/V keep their source offset. */
static void test_group_small_restart(void) {
  pyrec_tsgroup g;
  pyrec_tsgroup_init(&g);
  pyrec_tsfix_opts ov = {32, 10000, 33, 0}, oa = {32, 10000, 21, 0};
  pyrec_tsfix v, a;
  pyrec_tsfix_init(&v, 1000, &ov, &g);
  pyrec_tsfix_init(&a, 1000, &oa, &g);
  int64_t d, p;
  const int64_t vin[] = {1000, 1033, 1066, 1100, 1133};
  const int64_t ain[] = {1000, 1021, 1043, 1064, 1085, 1107, 1128};
  for (size_t i = 0; i < N(vin); i++)
    pyrec_tsfix_apply(&v, vin[i], vin[i], &d, &p);
  for (size_t i = 0; i < N(ain); i++)
    pyrec_tsfix_apply(&a, ain[i], NP, &d, &p);
  pyrec_tsfix_apply(&a, 1149 - 150, NP, &d, &p);
  CHECK_EQ(d, 1149);
  pyrec_tsfix_apply(&v, 1166 - 150, 1166 - 150, &d, &p);
  CHECK_EQ(d, 1166); /* followed: exactly where the source had it */
  pyrec_tsfix_apply(&a, 1170 - 150, NP, &d, &p);
  CHECK_EQ(d, 1170);
  pyrec_tsfix_apply(&v, 1199 - 150, 1199 - 150, &d, &p);
  CHECK_EQ(d, 1199);
  CHECK_EQ(v.c.jump_backward, 1);
  CHECK_EQ(a.c.jump_backward, 1);
  CHECK_EQ(a.c.backward + a.c.equal + v.c.backward + v.c.equal, 0);
  /* later audio jitter is not taken for the restart again */
  pyrec_tsfix_apply(&a, 1010, NP, &d, &p);
  CHECK_EQ(a.c.jump_backward, 1);
  CHECK_EQ(a.c.backward, 1);
}

/* Two tracks in a group: video (1000) jumps +1 h first and re-anchors; audio jumps by
 * nearly the same raw amount and follows the same offset change, so the 5 ms lead audio had
 * in the source is kept exactly (its own re-anchor would have produced 85, not 90). */
static void test_group_aligned(void) {
  pyrec_tsgroup g;
  pyrec_tsgroup_init(&g);
  pyrec_tsfix_opts o = {32, 10000, 33, 0};
  pyrec_tsfix v, a;
  pyrec_tsfix_init(&v, 1000, &o, &g);
  pyrec_tsfix_init(&a, 1000, &o, &g);
  int64_t d, p;
  const int64_t vin[] = {0, 33, 66}, ain[] = {0, 21, 42, 64};
  for (int i = 0; i < 3; i++) {
    pyrec_tsfix_apply(&v, vin[i], vin[i], &d, &p);
    CHECK_EQ(d, vin[i]);
  }
  for (int i = 0; i < 4; i++) {
    pyrec_tsfix_apply(&a, ain[i], NP, &d, &p);
    CHECK_EQ(d, ain[i]);
  }
  pyrec_tsfix_apply(&v, 3600099, 3600132, &d, &p); /* +1 h */
  CHECK_EQ(d, 99);
  CHECK_EQ(p, 132);
  CHECK_EQ(g.epoch, 1);
  CHECK(g.offset_seconds == -3600.0);
  pyrec_tsfix_apply(&a, 3600090, NP, &d, &p);
  CHECK_EQ(d, 90); /* source: audio 90 vs video 99 → still 9 ms apart */
  CHECK_EQ(a.group_epoch, 1);
  CHECK_EQ(g.epoch, 1); /* follower does not publish */
  pyrec_tsfix_apply(&v, 3600132, 3600132, &d, &p);
  CHECK_EQ(d, 132);
  pyrec_tsfix_apply(&a, 3600111, NP, &d, &p);
  CHECK_EQ(d, 111);
  CHECK_EQ(v.c.jump_forward, 1);
  CHECK_EQ(a.c.jump_forward, 1);
  CHECK_EQ(v.offset, a.offset);

  /* audio leads a backward jump this time; video follows */
  pyrec_tsfix_apply(&a, 111 + 21, NP, &d, &p); /* raw back by ~1 h: jump */
  CHECK_EQ(d, 132);                           /* 111 + last duration 21 */
  CHECK_EQ(g.epoch, 2);
  pyrec_tsfix_apply(&v, 165, 198, &d, &p);
  CHECK_EQ(d, 165);
  CHECK_EQ(p, 198);
  CHECK_EQ(v.offset, a.offset);
  CHECK_EQ(v.c.jump_forward, 1);
  CHECK_EQ(v.c.jump_backward, 1);
}

/* Different timescales: video 90 kHz, audio 48 kHz; the change is converted and rounded. */
static void test_group_timescales(void) {
  pyrec_tsgroup g;
  pyrec_tsgroup_init(&g);
  pyrec_tsfix_opts ov = {33, 900000, 3000, 0}, oa = {0, 480000, 1024, 0};
  pyrec_tsfix v, a;
  pyrec_tsfix_init(&v, 90000, &ov, &g);
  pyrec_tsfix_init(&a, 48000, &oa, &g);
  int64_t d, p;
  pyrec_tsfix_apply(&v, 0, 0, &d, &p);
  pyrec_tsfix_apply(&v, 3000, 3000, &d, &p);
  pyrec_tsfix_apply(&a, 0, NP, &d, &p);
  pyrec_tsfix_apply(&a, 1024, NP, &d, &p);
  /* both jump +100 s (video 9000000 ticks, audio 4800000) */
  pyrec_tsfix_apply(&v, 9006000, 9006000, &d, &p);
  CHECK_EQ(d, 6000);
  pyrec_tsfix_apply(&a, 4802048, NP, &d, &p);
  CHECK_EQ(d, 2048); /* change -100 s = -4800000 ticks */
  CHECK_EQ(a.offset, -4800000);

  /* a jump of a different size is not followed: own re-anchor */
  pyrec_tsfix_apply(&v, 9006000 + 9000000 * 5, 0, &d, &p); /* +500 s */
  CHECK_EQ(d, 9000);
  pyrec_tsfix_apply(&a, 4802048 + 48000 * 50, NP, &d, &p); /* +50 s */
  CHECK_EQ(d, 3072);
  CHECK_EQ(g.epoch, 3);
}

/* Degenerate input: extreme values must not overflow (UBSan), output stays increasing. */
static void test_extremes(void) {
  pyrec_tsfix t;
  pyrec_tsfix_opts o = {0, 1000, 0, 0};
  pyrec_tsfix_init(&t, 1000, &o, NULL);
  int64_t d, p, last = INT64_MIN;
  const int64_t in[] = {INT64_MAX - 5, INT64_MIN + 1, 0, INT64_MAX, -1, NP, 7};
  for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
    pyrec_tsfix_apply(&t, in[i], in[i] == NP ? NP : INT64_MIN + 2, &d, &p);
    CHECK(i == 0 || d > last || d == INT64_MAX);
    CHECK(p >= d);
    last = d;
  }
  pyrec_tsfix_init(&t, 1000, NULL, NULL);
  pyrec_tsfix_apply(&t, NP, NP, &d, &p);
  CHECK_EQ(d, 0);
  pyrec_tsfix_apply(&t, NP, NP, &d, &p);
  CHECK_EQ(d, 1);
  pyrec_tsfix_opts bad = {99, -5, -1, -7};
  pyrec_tsfix_init(&t, 0, &bad, NULL);
  CHECK_EQ(t.o.wrap_bits, 0);
  CHECK_EQ(t.timescale, 1000);
  CHECK_EQ(t.o.default_duration, 1);
  CHECK_EQ(t.o.frame_duration, 0);
}

int main(void) {
  RUN(test_table);
  RUN(test_apply);
  RUN(test_reanchor_held);
  RUN(test_group_small_restart);
  RUN(test_group_aligned);
  RUN(test_group_timescales);
  RUN(test_extremes);
  return T_DONE();
}
