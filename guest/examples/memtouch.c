/* Memory-dirtying benchmark: writes a word in every 4 KiB page of 48 MiB above the image, round after
   round, so a live clone's pre-copy cannot converge (the worst case for the stop-and-copy pause). The
   region starts at 0x8010_0000, past the 1 MiB the image may use: run it with at least 64 MiB of RAM. */
#include "lockstep.h"

#define BASE 0x80100000u
#define BYTES (48u << 20)
/* 12 288 pages, ~8 instructions each: ~295 M retired. A host may patch it before the run (the clone
   benchmark makes it run until stopped). */
volatile uint32_t memtouch_rounds = 3000u;

int main(void) {
  volatile uint32_t *const mem = (volatile uint32_t *)BASE;
  uint32_t sum = 0;
  for (uint32_t r = 0; r < memtouch_rounds; r++) {
    /* A different word of each page every round, so every round changes every page. */
    for (uint32_t off = (r * 68u) % 4096u; off < BYTES; off += 4096u) {
      const uint32_t v = mem[off / 4] + r + off;
      mem[off / 4] = v;
      sum += v;
    }
  }
  ls_puts("memtouch: checksum ");
  ls_puthex(sum);
  ls_puts("\n");
  return 0;
}
