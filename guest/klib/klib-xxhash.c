/* CPU benchmark from code nobody here wrote: the Linux kernel's xxHash (lib/xxhash.c, v6.1,
   extracted from Debian's linux-source-6.1 at build time). xxh32 and xxh64 (64-bit multiplies on a
   32-bit machine) over a 64 KiB buffer at varying offsets and lengths, one-shot and streaming;
   the reference values of the empty input check the code first. */
#include <linux/xxhash.h>
#include <string.h>
#include "common.h"
#include "lockstep.h"

#define SIZE 65536u
#define ROUNDS 600u

static uint8_t buf[SIZE];

int main(void) {
  int ok = xxh32("", 0, 0) == 0x02cc5d05u && xxh64("", 0, 0) == 0xef46db3751d8e999ull;
  ls_puts(ok ? "klib-xxhash: empty-input reference values ok\n" : "klib-xxhash: reference values WRONG\n");
  if (!ok) return 1;

  uint32_t seed = 0xbb67ae85u;
  for (uint32_t i = 0; i < SIZE; i++) buf[i] = (uint8_t)(kl_xorshift(&seed) >> 24);
  uint32_t h32 = 0;
  uint64_t h64 = 0;
  for (uint32_t r = 0; r < ROUNDS; r++) {
    uint32_t off = kl_xorshift(&seed) % 64;
    uint32_t len = SIZE - 64 - (kl_xorshift(&seed) % 256);
    h32 = xxh32(buf + off, len, h32);
    if (r & 1) {
      struct xxh64_state st;
      xxh64_reset(&st, h64);
      xxh64_update(&st, buf + off, 777);
      xxh64_update(&st, buf + off + 777, len - 777);
      h64 = xxh64_digest(&st);
    } else {
      h64 = xxh64(buf + off, len, h64);
    }
    buf[r] ^= (uint8_t)(h32 ^ (uint32_t)h64);
  }
  ls_puts("klib-xxhash: ");
  ls_putdec(ROUNDS);
  ls_puts(" rounds of xxh32 and xxh64 over ~64 KiB, ");
  ls_puthex(h32);
  ls_putc(' ');
  ls_puthex64(h64);
  ls_putc('\n');
  return 0;
}
