/* CPU benchmark from code nobody here wrote: the Linux kernel's zlib (lib/zlib_deflate and
   lib/zlib_inflate, v6.1, extracted from Debian's linux-source-6.1 at build time). Deflates 32 KiB
   of text-like data at level 6, inflates it back and checks the round trip, rounds times.
   Longest-match search, Huffman trees, bit I/O, table-driven decoding. */
#include <linux/zlib.h>
#include <string.h>
#include "common.h"
#include "lockstep.h"

#define SIZE 32768u
#define ROUNDS 56u
#define DEFLATE_WS (512u * 1024)
#define INFLATE_WS (64u * 1024)

static uint8_t src[SIZE];
static uint8_t out[SIZE];
static uint8_t packed[SIZE + SIZE / 8 + 64];
/* Workspaces above 1 MiB (sdk/virt.ld's .highbss). */
static uint8_t deflate_ws[DEFLATE_WS] __attribute__((section(".highbss"), aligned(8)));
static uint8_t inflate_ws[INFLATE_WS] __attribute__((section(".highbss"), aligned(8)));

int main(void) {
  if ((uint32_t)zlib_deflate_workspacesize(MAX_WBITS, DEF_MEM_LEVEL) > DEFLATE_WS ||
      (uint32_t)zlib_inflate_workspacesize() > INFLATE_WS) {
    ls_puts("klib-zlib: workspace too small\n");
    return 1;
  }
  uint32_t seed = 0x9e3779b9u;
  kl_text(src, SIZE, &seed);
  uint32_t sum = 2166136261u;
  uint32_t total = 0;
  struct z_stream_s s;
  for (uint32_t r = 0; r < ROUNDS; r++) {
    for (int k = 0; k < 16; k++) {
      uint32_t x = kl_xorshift(&seed);
      src[x % SIZE] = (uint8_t)(x >> 24);
    }
    memset(&s, 0, sizeof s);
    s.workspace = deflate_ws;
    if (zlib_deflateInit2(&s, 6, Z_DEFLATED, MAX_WBITS, DEF_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
      ls_puts("klib-zlib: deflateInit2 failed\n");
      return 1;
    }
    s.next_in = src;
    s.avail_in = SIZE;
    s.next_out = packed;
    s.avail_out = sizeof packed;
    if (zlib_deflate(&s, Z_FINISH) != Z_STREAM_END) {
      ls_puts("klib-zlib: deflate did not finish\n");
      return 1;
    }
    uint32_t n = (uint32_t)s.total_out;
    zlib_deflateEnd(&s);

    memset(&s, 0, sizeof s);
    s.workspace = inflate_ws;
    if (zlib_inflateInit2(&s, MAX_WBITS) != Z_OK) {
      ls_puts("klib-zlib: inflateInit2 failed\n");
      return 1;
    }
    s.next_in = packed;
    s.avail_in = n;
    s.next_out = out;
    s.avail_out = SIZE;
    int rc = zlib_inflate(&s, Z_FINISH);
    if (rc != Z_STREAM_END || s.total_out != SIZE || memcmp(out, src, SIZE) != 0) {
      ls_puts("klib-zlib: round trip differs in round ");
      ls_putdec(r);
      ls_putc('\n');
      return 1;
    }
    zlib_inflateEnd(&s);
    sum = kl_fnv(sum, packed, n);
    total += n;
  }
  ls_puts("klib-zlib: ");
  ls_putdec(ROUNDS);
  ls_puts(" rounds of 32 KiB at level 6, ");
  ls_putdec(total);
  ls_puts(" bytes deflated, round trips ok, fnv ");
  ls_puthex(sum);
  ls_putc('\n');
  return 0;
}
