/* CPU workload around C library code nobody here wrote: Debian's picolibc — its printf engine
   (snprintf with integer, hex, string, padding and double conversions; doubles on libgcc's soft-float,
   the hart has no F/D), qsort, strcmp, strlen, memcpy, memmove, memcmp. Each round formats 1 024 generated
   records, sorts them by name (strings) and by value (structs), checks both orders, parses the hex
   field back by hand and moves the table about; the output is checksums and a count of mismatches,
   which must be 0. (Nothing that sets errno: picolibc keeps errno in thread-local storage, which the
   SDK does not set up, so strtoul and libm stay out.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lockstep.h"

#define N 1024u
#define ROUNDS 72u

struct rec {
  char name[24];
  uint32_t value;
};

static struct rec recs[N], copy[N];
static char *names[N];

static uint32_t xorshift(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int by_value(const void *a, const void *b) {
  const struct rec *x = a, *y = b;
  return (x->value > y->value) - (x->value < y->value);
}

static uint32_t hex(const char *p, const char **end) {
  uint32_t v = 0;
  for (;; p++) {
    uint32_t d = *p >= '0' && *p <= '9' ? (uint32_t)(*p - '0') : *p >= 'a' && *p <= 'f' ? (uint32_t)(*p - 'a' + 10) : 16u;
    if (d == 16u) break;
    v = v * 16u + d;
  }
  *end = p;
  return v;
}

static uint32_t fnv(uint32_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
  return h;
}

int main(void) {
  uint32_t seed = 0x6a09e667u, h = 2166136261u, bad = 0;
  double acc = 0;
  for (uint32_t r = 0; r < ROUNDS; r++) {
    for (uint32_t i = 0; i < N; i++) {
      uint32_t v = xorshift(&seed);
      recs[i].value = v;
      snprintf(recs[i].name, sizeof recs[i].name, "%c%c-%08x-%u", 'a' + (int)(v % 26), 'a' + (int)((v >> 5) % 26), (unsigned)v, (unsigned)(i % 97));
      names[i] = recs[i].name;
    }
    qsort(names, N, sizeof names[0], by_name);
    for (uint32_t i = 1; i < N; i++) bad += strcmp(names[i - 1], names[i]) > 0;
    for (uint32_t i = 0; i < N; i++) {
      const char *end;
      uint32_t v = hex(names[i] + 3, &end);
      bad += *end != '-' || end - names[i] != 11;
      h = fnv(h, &v, sizeof v);
    }
    qsort(recs, N, sizeof recs[0], by_value);
    for (uint32_t i = 1; i < N; i++) bad += recs[i - 1].value > recs[i].value;
    /* Rotate the table by one record and back: overlapping moves both ways. */
    memcpy(copy, recs, sizeof recs);
    struct rec first = recs[0];
    memmove(&recs[0], &recs[1], (N - 1) * sizeof recs[0]);
    memmove(&recs[1], &recs[0], (N - 1) * sizeof recs[0]);
    recs[0] = first;
    bad += memcmp(copy, recs, sizeof recs) != 0;
    h = fnv(h, recs, sizeof recs);

    /* Doubles through the printf engine: fixed, exponent and shortest forms, widths and precisions. */
    for (uint32_t i = 0; i < 64; i++) {
      char buf[96];
      double x = (double)(int32_t)xorshift(&seed) / 4096.0;
      int n = snprintf(buf, sizeof buf, "%12.4f|%-14.6e|%g|%+.3f|%08.2f", x, x / 7.0, x * 1e-9, -x, x / 1000.0);
      bad += n <= 0 || (size_t)n != strlen(buf);
      h = fnv(h, buf, strlen(buf));
      acc += x / 1e6;
    }
  }
  char line[64];
  snprintf(line, sizeof line, "%.6f", acc);
  ls_puts("libc: ");
  ls_putdec(ROUNDS);
  ls_puts(" rounds of snprintf, qsort, strcmp and memmove over 1024 records, ");
  ls_putdec(bad);
  ls_puts(" mismatches, fnv ");
  ls_puthex(h);
  ls_puts(", sum ");
  ls_puts(line);
  ls_putc('\n');
  return bad != 0;
}
