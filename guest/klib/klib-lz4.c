/* CPU benchmark from code nobody here wrote: the Linux kernel's LZ4 (lib/lz4, v6.1, extracted from
   Debian's linux-source-6.1 at build time). Compresses 64 KiB of text-like data with
   LZ4_compress_default, decompresses it with LZ4_decompress_safe and checks the round trip, rounds
   times, the data changing a little each round. Hash-table probes, byte copies, match loops. */
#include <linux/lz4.h>
#include <string.h>
#include "common.h"
#include "lockstep.h"

#define SIZE 65536u
#define ROUNDS 120u

static uint8_t src[SIZE];
static uint8_t out[SIZE];
static uint8_t packed[LZ4_COMPRESSBOUND(SIZE)];
static uint8_t wrkmem[LZ4_MEM_COMPRESS] __attribute__((aligned(8)));

int main(void) {
  uint32_t seed = 0x2545f491u;
  kl_text(src, SIZE, &seed);
  uint32_t sum = 2166136261u;
  uint32_t total = 0;
  for (uint32_t r = 0; r < ROUNDS; r++) {
    /* Change a few bytes so no round repeats another. */
    for (int k = 0; k < 16; k++) {
      uint32_t x = kl_xorshift(&seed);
      src[x % SIZE] = (uint8_t)(x >> 24);
    }
    int n = LZ4_compress_default((const char *)src, (char *)packed, SIZE, sizeof packed, wrkmem);
    if (n <= 0) {
      ls_puts("klib-lz4: compress failed\n");
      return 1;
    }
    int m = LZ4_decompress_safe((const char *)packed, (char *)out, n, SIZE);
    if (m != (int)SIZE || memcmp(out, src, SIZE) != 0) {
      ls_puts("klib-lz4: round trip differs in round ");
      ls_putdec(r);
      ls_putc('\n');
      return 1;
    }
    sum = kl_fnv(sum, packed, (size_t)n);
    total += (uint32_t)n;
  }
  ls_puts("klib-lz4: ");
  ls_putdec(ROUNDS);
  ls_puts(" rounds of 64 KiB, ");
  ls_putdec(total);
  ls_puts(" bytes compressed, round trips ok, fnv ");
  ls_puthex(sum);
  ls_putc('\n');
  return 0;
}
