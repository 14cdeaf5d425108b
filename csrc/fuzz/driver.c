/* A plain fuzzing driver for the fuzz_*.c targets when libFuzzer is not used (gcc builds,
 * CI): runs every corpus file, then mutates corpus inputs (bit flips, byte changes, inserts,
 * deletes, truncation, splices of two inputs, repeated blocks) for PYREC_FUZZ_SECONDS seconds
 * with seed PYREC_FUZZ_SEED. Crashes are reported by the sanitizers (abort). Prints the
 * executions run. Usage: fuzz_x CORPUS_DIR_OR_FILE... */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct input {
  uint8_t *data;
  size_t len;
} input;

static input corpus[256];
static int ncorpus;
static uint64_t rng;

static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void add_file(const char *path) {
  if (ncorpus >= (int)(sizeof corpus / sizeof corpus[0]))
    return;
  FILE *f = fopen(path, "rb");
  if (!f)
    return;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (n < 0 || n > (64 << 20)) {
    fclose(f);
    return;
  }
  uint8_t *d = malloc((size_t)n + 1);
  if (d && fread(d, 1, (size_t)n, f) == (size_t)n) {
    corpus[ncorpus].data = d;
    corpus[ncorpus++].len = (size_t)n;
  } else {
    free(d);
  }
  fclose(f);
}

static void add_path(const char *p) {
  struct stat st;
  if (stat(p, &st) != 0)
    return;
  if (!S_ISDIR(st.st_mode)) {
    add_file(p);
    return;
  }
  DIR *d = opendir(p);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char q[4096];
    snprintf(q, sizeof q, "%s/%s", p, e->d_name);
    add_file(q);
  }
  if (d)
    closedir(d);
}

/* One mutant of a corpus input into a fresh exact-size allocation (ASAN sees overreads). */
static uint8_t *mutate(size_t *len) {
  const input *a = &corpus[rnd() % (uint64_t)ncorpus];
  size_t n = a->len, cap = n + 4096;
  uint8_t *m = malloc(cap);
  memcpy(m, a->data, n);
  int rounds = 1 + (int)(rnd() % 8);
  for (int r = 0; r < rounds; r++) {
    size_t at = n ? (size_t)(rnd() % n) : 0;
    switch (rnd() % 8) {
    case 0: /* bit flip */
      if (n)
        m[at] ^= (uint8_t)(1u << (rnd() % 8));
      break;
    case 1: /* random byte */
      if (n)
        m[at] = (uint8_t)rnd();
      break;
    case 2: /* interesting value */
      if (n) {
        static const uint8_t vals[] = {0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x3f, 0x40};
        m[at] = vals[rnd() % sizeof vals];
      }
      break;
    case 3: /* delete a run */
      if (n) {
        size_t k = 1 + (size_t)(rnd() % 64);
        if (k > n - at)
          k = n - at;
        memmove(m + at, m + at + k, n - at - k);
        n -= k;
      }
      break;
    case 4: /* insert random bytes */
      if (n + 64 < cap) {
        size_t k = 1 + (size_t)(rnd() % 64);
        memmove(m + at + k, m + at, n - at);
        for (size_t i = 0; i < k; i++)
          m[at + i] = (uint8_t)rnd();
        n += k;
      }
      break;
    case 5: /* truncate */
      n = at;
      break;
    case 6: { /* splice the tail of another input */
      const input *b = &corpus[rnd() % (uint64_t)ncorpus];
      if (b->len) {
        size_t from = (size_t)(rnd() % b->len), k = b->len - from;
        if (k > cap - at)
          k = cap - at;
        memcpy(m + at, b->data + from, k);
        n = at + k;
      }
      break;
    }
    default: /* repeat a block */
      if (n && n + 256 < cap) {
        size_t k = 1 + (size_t)(rnd() % 256);
        if (k > n - at)
          k = n - at;
        memmove(m + at + k, m + at, n - at);
        n += k;
      }
      break;
    }
  }
  uint8_t *exact = malloc(n ? n : 1);
  memcpy(exact, m, n);
  free(m);
  *len = n;
  return exact;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    add_path(argv[i]);
  if (ncorpus == 0) {
    fprintf(stderr, "fuzz: no corpus input found\n");
    return 1;
  }
  const char *sec = getenv("PYREC_FUZZ_SECONDS");
  const char *seed = getenv("PYREC_FUZZ_SEED");
  double budget = sec ? atof(sec) : 0;
  rng = seed ? strtoull(seed, NULL, 10) : 0x9e3779b97f4a7c15ull;
  if (!rng)
    rng = 1;
  uint64_t execs = 0;
  for (int i = 0; i < ncorpus; i++) {
    uint8_t *exact = malloc(corpus[i].len ? corpus[i].len : 1);
    memcpy(exact, corpus[i].data, corpus[i].len);
    LLVMFuzzerTestOneInput(exact, corpus[i].len);
    free(exact);
    execs++;
  }
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  double elapsed = 0;
  while (elapsed < budget) {
    for (int k = 0; k < 16; k++) {
      size_t n;
      uint8_t *m = mutate(&n);
      LLVMFuzzerTestOneInput(m, n);
      free(m);
      execs++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    elapsed = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
  }
  for (int i = 0; i < ncorpus; i++)
    free(corpus[i].data);
  printf("fuzz: %d corpus inputs, %llu executions in %.1f s, no crash\n", ncorpus,
         (unsigned long long)execs, elapsed);
  return 0;
}
