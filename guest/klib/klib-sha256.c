/* CPU benchmark from code nobody here wrote: the Linux kernel's SHA-256 (lib/crypto/sha256.c, v6.1,
   extracted from Debian's linux-source-6.1 at build time). Hashes a 16 KiB buffer rounds times,
   each digest fed back into the buffer; a FIPS 180-2 known answer ("abc") checks the code first.
   Crypto rounds: 32-bit rotates, adds and message-schedule loads. */
#include <crypto/sha2.h>
#include <string.h>
#include "common.h"
#include "lockstep.h"

#define SIZE 16384u
#define ROUNDS 420u

static uint8_t buf[SIZE];

static const uint8_t abc_digest[32] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};

static void put_digest(const uint8_t *d) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    ls_putc(hex[d[i] >> 4]);
    ls_putc(hex[d[i] & 15]);
  }
}

int main(void) {
  uint8_t d[SHA256_DIGEST_SIZE];
  sha256((const u8 *)"abc", 3, d);
  int ok = memcmp(d, abc_digest, 32) == 0;
  ls_puts(ok ? "klib-sha256: sha256(\"abc\") ok\n" : "klib-sha256: sha256(\"abc\") WRONG\n");
  if (!ok) return 1;

  uint32_t seed = 0x6a09e667u;
  for (uint32_t i = 0; i < SIZE; i++) buf[i] = (uint8_t)(kl_xorshift(&seed) >> 24);
  for (uint32_t r = 0; r < ROUNDS; r++) {
    /* Alternate the one-shot call and the incremental interface over uneven pieces. */
    if (r & 1) {
      struct sha256_state st;
      sha256_init(&st);
      sha256_update(&st, buf, 1000);
      sha256_update(&st, buf + 1000, SIZE - 1000);
      sha256_final(&st, d);
    } else {
      sha256(buf, SIZE, d);
    }
    memcpy(buf + (r * 32) % SIZE, d, 32);
  }
  ls_puts("klib-sha256: ");
  ls_putdec(ROUNDS);
  ls_puts(" hashes of 16 KiB, last ");
  put_digest(d);
  ls_putc('\n');
  return 0;
}
