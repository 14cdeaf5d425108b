/* Tiny test runner for the C core: CHECK macros and a closing "N passed, N failed" line. */
#ifndef PYREC_T_H
#define PYREC_T_H

#include <stdio.h>
#include <string.h>

static int t_pass, t_fail;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      t_pass++;                                                                \
    } else {                                                                   \
      t_fail++;                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b)                                                         \
  do {                                                                         \
    long long t_a = (long long)(a), t_b = (long long)(b);                      \
    if (t_a == t_b) {                                                          \
      t_pass++;                                                                \
    } else {                                                                   \
      t_fail++;                                                                \
      fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n",     \
              __FILE__, __LINE__, #a, #b, t_a, t_b);                           \
    }                                                                          \
  } while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

#define RUN(fn)                                                                \
  do {                                                                         \
    int t_before = t_fail;                                                     \
    fn();                                                                      \
    fprintf(stderr, "%s %s\n", t_fail == t_before ? "ok  " : "FAIL", #fn);     \
  } while (0)

#define T_DONE()                                                               \
  (printf("%d passed, %d failed\n", t_pass, t_fail), t_fail ? 1 : 0)

#endif
