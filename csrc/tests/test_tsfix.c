/* Timestamp repair: table-driven rows with exact expected outputs. */
#include "pyrec/tsfix.h"
#include "t.h"

#include <stdint.h>

#define NP PYREC_NOPTS

typedef struct row {
  int64_t dts, pts;         /* raw input */
  int64_t want_dts, want_pts;
} row;

typedef struct tcase {
  const char *name;
  uint32_t timescale;
  pyrec_tsfix_opts o;
  const row *rows;
  size_t n;
  pyrec_tsfix_counts want; /* packets filled in automatically */
} tcase;

static const row r_wrap32[] = {
    {4294967290LL, 4294967290LL, 4294967290LL, 4294967290LL},
    {4294967295LL, 4294967295LL, 4294967295LL, 4294967295LL},
    {3, 3, 4294967299LL, 4294967299LL},           /* wrapped */
    {40, 4294967290LL, 4294967336LL, 4294967336LL}, /* pts "before the wrap": < dts, fixed */
    {80, 200, 4294967376LL, 4294967496LL},
};

/* 33-bit MPEG-TS clock; pts wraps before dts does */
static const row r_wrap33[] = {
    {8589931592LL, 8589932592LL, 8589931592LL, 8589932592LL},
    {8589933092LL, 500, 8589933092LL, 8589935092LL},
    {600, 4600, 8589935192LL, 8589939192LL},
    {4200, NP, 8589938792LL, 8589938792LL},
};

static const row r_backward[] = {
    {1000, 1000, 1000, 1000}, {1040, 1040, 1040, 1040}, {1020, 1020, 1041, 1041},
    {1030, 1100, 1042, 1112}, /* moved by +12 with its pts */
    {1100, 1100, 1100, 1100}, /* back on the source timeline (offset unchanged) */
};

static const row r_equal[] = {
    {0, 0, 0, 0}, {0, 0, 1, 1}, /* equal */
    {0, 0, 2, 2},                /* below the raised 1: counted as backward */
    {33, 33, 33, 33}, {33, 66, 34, 67}, /* equal, pts moved with dts */
};

/* B-frames: dts increasing, pts reordered; everything preserved exactly */
static const row r_bframes[] = {
    {-66, 0, -66, 0},   {-33, 100, -33, 100}, {0, 33, 0, 33},
    {33, 66, 33, 66},   {66, 200, 66, 200},   {100, 133, 100, 133},
};

static const row r_nopts[] = {
    {0, NP, 0, 0},    {21, NP, 21, 21}, {42, NP, 42, 42},
    {NP, 64, 64, 64}, /* dts missing: pts used */
    {NP, NP, 86, 86}, /* both missing: last + last duration (22) */
    {107, NP, 107, 107},
};

static const row r_pts_lt_dts[] = {
    {100, 90, 100, 100}, {133, 133, 133, 133}, {166, 100, 166, 166}, {200, 233, 200, 233},
};

/* forward jump of 1 h (threshold 10 s), then a backward jump of 2 h */
static const row r_jumps[] = {
    {0, 0, 0, 0},          {40, 80, 40, 80},   {80, 80, 80, 80},
    {3600080, 3600120, 120, 160}, /* re-anchored: last + 40 */
    {3600120, 3600120, 160, 160},
    {1600120, 1600120, 200, 200}, /* backward jump: re-anchored again */
    {1600160, 1600200, 240, 280},
    {1600150, 1600150, 241, 241}, /* small backward step: raised */
};

/* jump with no known duration uses default_duration */
static const row r_jump_first[] = {
    {1000, 1000, 1000, 1000}, {90000000, 90000000, 1005, 1005}, {90000010, NP, 1015, 1015},
};

static const tcase cases[] = {
    {"wrap32", 1000, {32, 10000, 0}, r_wrap32, 5, {0, 1, 0, 0, 0, 1}},
    {"wrap33", 90000, {33, 900000, 0}, r_wrap33, 4, {0, 1, 0, 0, 0, 0}},
    {"backward", 1000, {32, 10000, 0}, r_backward, 5, {0, 0, 2, 0, 0, 0}},
    {"equal", 1000, {32, 10000, 0}, r_equal, 5, {0, 0, 1, 2, 0, 0}},
    {"bframes", 1000, {0, 10000, 0}, r_bframes, 6, {0, 0, 0, 0, 0, 0}},
    {"nopts", 1000, {32, 10000, 0}, r_nopts, 6, {0, 0, 0, 0, 0, 0}},
    {"pts_lt_dts", 1000, {32, 10000, 0}, r_pts_lt_dts, 4, {0, 0, 0, 0, 0, 2}},
    {"jumps", 1000, {32, 10000, 0}, r_jumps, 8, {0, 0, 1, 0, 2, 0}},
    {"jump_default_duration", 1000, {0, 10000, 5}, r_jump_first, 3, {0, 0, 0, 0, 1, 0}},
    {"no_threshold", 1000, {0, 0, 0}, r_jump_first, 3, {0, 0, 0, 0, 0, 0}},
};

static void test_table(void) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const tcase *c = &cases[i];
    pyrec_tsfix t;
    pyrec_tsfix_init(&t, c->timescale, &c->o, NULL);
    for (size_t j = 0; j < c->n; j++) {
      int64_t d = 0, p = 0;
      pyrec_tsfix_apply(&t, c->rows[j].dts, c->rows[j].pts, &d, &p);
      int64_t wd = c->rows[j].want_dts, wp = c->rows[j].want_pts;
      if (c == &cases[9] && j > 0) { /* no threshold: the jump passes through */
        wd = c->rows[j].dts;
        wp = c->rows[j].pts == NP ? wd : c->rows[j].pts;
      }
      if (d != wd || p != wp)
        fprintf(stderr, "  case %s row %zu: got %lld/%lld want %lld/%lld\n", c->name, j,
                (long long)d, (long long)p, (long long)wd, (long long)wp);
      CHECK_EQ(d, wd);
      CHECK_EQ(p, wp);
    }
    CHECK_EQ(t.c.packets, c->n);
    CHECK_EQ(t.c.wraps, c->want.wraps);
    CHECK_EQ(t.c.backward, c->want.backward);
    CHECK_EQ(t.c.equal, c->want.equal);
    CHECK_EQ(t.c.jumps, c->want.jumps);
    CHECK_EQ(t.c.pts_fixed, c->want.pts_fixed);
  }
}

/* Two tracks in a group: video (1000) jumps +1 h first and re-anchors; audio jumps by
 * nearly the same raw amount and follows the same offset change, so the 5 ms lead audio had
 * in the source is kept exactly (its own re-anchor would have produced 85, not 90). */
static void test_group_aligned(void) {
  pyrec_tsgroup g;
  pyrec_tsgroup_init(&g);
  pyrec_tsfix_opts o = {32, 10000, 0};
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
  CHECK_EQ(v.c.jumps, 1);
  CHECK_EQ(a.c.jumps, 1);
  CHECK_EQ(v.offset, a.offset);

  /* audio leads a backward jump this time; video follows */
  pyrec_tsfix_apply(&a, 111 + 21, NP, &d, &p); /* raw back by ~1 h: jump */
  CHECK_EQ(d, 132);                           /* 111 + last duration 21 */
  CHECK_EQ(g.epoch, 2);
  pyrec_tsfix_apply(&v, 165, 198, &d, &p);
  CHECK_EQ(d, 165);
  CHECK_EQ(p, 198);
  CHECK_EQ(v.offset, a.offset);
  CHECK_EQ(v.c.jumps, 2);
}

/* Different timescales: video 90 kHz, audio 48 kHz; the change is converted and rounded. */
static void test_group_timescales(void) {
  pyrec_tsgroup g;
  pyrec_tsgroup_init(&g);
  pyrec_tsfix_opts ov = {33, 900000, 0}, oa = {0, 480000, 0};
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
  pyrec_tsfix_opts o = {0, 1000, 0};
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
  pyrec_tsfix_opts bad = {99, -5, -1};
  pyrec_tsfix_init(&t, 0, &bad, NULL);
  CHECK_EQ(t.o.wrap_bits, 0);
  CHECK_EQ(t.timescale, 1000);
  CHECK_EQ(t.o.default_duration, 1);
}

int main(void) {
  RUN(test_table);
  RUN(test_group_aligned);
  RUN(test_group_timescales);
  RUN(test_extremes);
  return T_DONE();
}
