/* CPU benchmark from code nobody here wrote: the Linux kernel's AES library (lib/crypto/aes.c, v6.1,
   extracted from Debian's linux-source-6.1 at build time). CBC-encrypts and decrypts a 16 KiB
   buffer with AES-128 and AES-256 keys, rounds times, checking the round trip; the FIPS-197
   appendix C vectors check the code first. Table lookups, byte loads, xors. */
#include <crypto/aes.h>
#include <string.h>
#include "common.h"
#include "lockstep.h"

#define SIZE 16384u
#define ROUNDS 72u

static uint8_t buf[SIZE];
static uint8_t ref[SIZE];

static const uint8_t fips_key[32] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
                                     0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
                                     0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
static const uint8_t fips_plain[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                       0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
static const uint8_t fips_c1[16] = {0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30,
                                    0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a}; /* AES-128 */
static const uint8_t fips_c3[16] = {0x8e, 0xa2, 0xb7, 0xca, 0x51, 0x67, 0x45, 0xbf,
                                    0xea, 0xfc, 0x49, 0x90, 0x4b, 0x49, 0x60, 0x89}; /* AES-256 */

static int known_answer(unsigned key_len, const uint8_t *want) {
  struct crypto_aes_ctx ctx;
  uint8_t c[16], p[16];
  if (aes_expandkey(&ctx, fips_key, key_len) != 0) return 0;
  aes_encrypt(&ctx, c, fips_plain);
  aes_decrypt(&ctx, p, c);
  return memcmp(c, want, 16) == 0 && memcmp(p, fips_plain, 16) == 0;
}

static void cbc(const struct crypto_aes_ctx *ctx, uint8_t *iv, int decrypt) {
  uint8_t chain[16], next[16];
  memcpy(chain, iv, 16);
  for (uint32_t off = 0; off < SIZE; off += 16) {
    uint8_t *b = buf + off;
    if (decrypt) {
      memcpy(next, b, 16);
      aes_decrypt(ctx, b, b);
      for (int i = 0; i < 16; i++) b[i] ^= chain[i];
      memcpy(chain, next, 16);
    } else {
      for (int i = 0; i < 16; i++) b[i] ^= chain[i];
      aes_encrypt(ctx, b, b);
      memcpy(chain, b, 16);
    }
  }
  memcpy(iv, chain, 16);
}

int main(void) {
  int ok = known_answer(AES_KEYSIZE_128, fips_c1) && known_answer(AES_KEYSIZE_256, fips_c3);
  ls_puts(ok ? "klib-aes: FIPS-197 C.1 and C.3 ok\n" : "klib-aes: FIPS-197 vectors WRONG\n");
  if (!ok) return 1;

  uint32_t seed = 0x510e527fu;
  for (uint32_t i = 0; i < SIZE; i++) buf[i] = (uint8_t)(kl_xorshift(&seed) >> 24);
  uint32_t sum = 2166136261u;
  struct crypto_aes_ctx ctx;
  uint8_t key[32], iv[16], iv0[16];
  for (uint32_t r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)(kl_xorshift(&seed) >> 24);
    for (int i = 0; i < 16; i++) iv0[i] = (uint8_t)(kl_xorshift(&seed) >> 24);
    aes_expandkey(&ctx, key, (r & 1) ? AES_KEYSIZE_256 : AES_KEYSIZE_128);
    memcpy(ref, buf, SIZE);
    memcpy(iv, iv0, 16);
    cbc(&ctx, iv, 0);
    sum = kl_fnv(sum, buf, SIZE);
    memcpy(iv, iv0, 16);
    cbc(&ctx, iv, 1);
    if (memcmp(buf, ref, SIZE) != 0) {
      ls_puts("klib-aes: decryption differs in round ");
      ls_putdec(r);
      ls_putc('\n');
      return 1;
    }
    /* Keep one ciphertext block so the next round's data depends on this one. */
    buf[r % SIZE] ^= (uint8_t)sum;
  }
  ls_puts("klib-aes: ");
  ls_putdec(ROUNDS);
  ls_puts(" rounds of CBC over 16 KiB both ways, fnv of ciphertexts ");
  ls_puthex(sum);
  ls_putc('\n');
  return 0;
}
