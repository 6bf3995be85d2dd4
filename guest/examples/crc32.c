/* CPU benchmark: table-driven CRC-32 (IEEE, reflected) over a 64 KiB buffer, repeated; byte loads
   and table lookups dominate. A known-answer check guards the table against miscompilation. */
#include "lockstep.h"

#define BUF_SIZE 65536u
#define PASSES 640u /* ~0.66 M instructions each: ~425 M retired */

static uint32_t table[256];
static uint8_t buf[BUF_SIZE];

static void make_table(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
}

static uint32_t crc32(uint32_t crc, const uint8_t *p, uint32_t n) {
  crc = ~crc;
  for (uint32_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

int main(void) {
  make_table();
  uint32_t check = crc32(0, (const uint8_t *)"123456789", 9);
  ls_puts("crc32: check(\"123456789\") = ");
  ls_puthex(check);
  ls_puts(check == 0xcbf43926u ? " ok\n" : " WRONG\n");

  uint32_t x = 0x12345678u;
  for (uint32_t i = 0; i < BUF_SIZE; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    buf[i] = (uint8_t)(x >> 24);
  }

  uint32_t crc = 0;
  for (uint32_t pass = 0; pass < PASSES; pass++) {
    crc = crc32(crc, buf, BUF_SIZE);
    /* Feed the result back into the data so no pass can be skipped or reordered. */
    buf[pass] ^= (uint8_t)crc;
  }
  ls_puts("crc32: ");
  ls_putdec(PASSES);
  ls_puts(" passes over ");
  ls_putdec(BUF_SIZE);
  ls_puts(" bytes, crc ");
  ls_puthex(crc);
  ls_putc('\n');
  return check == 0xcbf43926u ? 0 : 1;
}
