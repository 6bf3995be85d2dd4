/* CPU benchmark: integer hashing. xorshift32 feeds FNV-1a, murmur3's finaliser and a 64-bit
   multiply-mix, so the loop is all ALU, shifts and M-extension multiplies with no memory traffic. */
#include "lockstep.h"

#define ROUNDS 14000000u /* ~34 instructions each: ~476 M retired */

static inline uint32_t xorshift32(uint32_t x) {
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return x;
}

static inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

int main(void) {
  uint32_t x = 2463534242u;
  uint32_t fnv = 2166136261u;
  uint32_t mur = 0;
  uint64_t mix = 0x9e3779b97f4a7c15ull;
  for (uint32_t i = 0; i < ROUNDS; i++) {
    x = xorshift32(x);
    fnv = (fnv ^ (x & 0xff)) * 16777619u;
    mur = fmix32(mur ^ x) + i;
    mix = (mix ^ x) * 0xff51afd7ed558ccdull;
    mix ^= mix >> 29;
  }
  uint32_t sum = fnv ^ mur ^ (uint32_t)mix ^ (uint32_t)(mix >> 32);

  ls_puts("hash: fnv=");
  ls_puthex(fnv);
  ls_puts(" murmur=");
  ls_puthex(mur);
  ls_puts(" mix=");
  ls_puthex64(mix);
  ls_puts("\nhash: checksum ");
  ls_puthex(sum);
  ls_putc('\n');
  return 0;
}
