/* virtio-blk example: reads the capacity, writes a pattern to 4 sectors (a 2-sector write at sector
   1, and single sectors in the middle and at the end), flushes, reads them back and verifies them.
   Prints a summary that depends only on the image size. QEMU: -drive file=IMG,if=none,format=raw,
   id=d0 -device virtio-blk-device,drive=d0 (the test uses a 1 MiB image: 2048 sectors). */
#include "blk.h"
#include "lockstep.h"
#include "virtio.h"

static uint8_t wbuf[2 * BLK_SECTOR];
static uint8_t rbuf[2 * BLK_SECTOR];

/* A pattern that differs per sector and per byte, so a misplaced or shifted sector is caught. */
static void fill(uint8_t *p, uint64_t sector, uint32_t count) {
  for (uint32_t s = 0; s < count; s++) {
    uint32_t x = 0x9e3779b9u * (uint32_t)(sector + s + 1u);
    for (uint32_t i = 0; i < BLK_SECTOR; i++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      p[s * BLK_SECTOR + i] = (uint8_t)x;
    }
  }
}

static int fail(const char *what, int r) {
  ls_puts("disk: ");
  ls_puts(what);
  ls_puts(" failed: ");
  ls_puts(vio_strerror(r));
  ls_putc('\n');
  return 1;
}

int main(void) {
  int r = blk_init();
  if (r != 0) return fail("init", r);
  uint64_t cap = blk_capacity();
  if (cap < 8) {
    ls_puts("disk: image too small\n");
    return 1;
  }
  char id[BLK_ID_BYTES];
  r = blk_get_id(id); /* exercised, not printed: the ID is the host's configuration */
  if (r != 0) return fail("get-id", r);

  const uint64_t start[3] = {1, cap / 2, cap - 1};
  const uint32_t count[3] = {2, 1, 1};
  uint32_t sectors = 0;
  for (int i = 0; i < 3; i++) {
    fill(wbuf, start[i], count[i]);
    r = blk_write(start[i], wbuf, count[i]);
    if (r != 0) return fail("write", r);
  }
  r = blk_flush();
  if (r != 0) return fail("flush", r);
  for (int i = 0; i < 3; i++) {
    for (uint32_t k = 0; k < sizeof rbuf; k++) rbuf[k] = 0;
    r = blk_read(start[i], rbuf, count[i]);
    if (r != 0) return fail("read", r);
    fill(wbuf, start[i], count[i]);
    for (uint32_t k = 0; k < count[i] * BLK_SECTOR; k++) {
      if (rbuf[k] != wbuf[k]) {
        ls_puts("disk: mismatch in sector ");
        ls_putdec64(start[i] + k / BLK_SECTOR);
        ls_puts(" at byte ");
        ls_putdec(k % BLK_SECTOR);
        ls_putc('\n');
        return 1;
      }
    }
    sectors += count[i];
  }
  /* A transfer past the end must be refused, not wrap around. */
  if (blk_read(cap - 1, rbuf, 2) == 0) {
    ls_puts("disk: read past the end succeeded\n");
    return 1;
  }
  ls_puts("disk: capacity ");
  ls_putdec64(cap);
  ls_puts(" sectors, ");
  ls_putdec(sectors);
  ls_puts(" sectors written and verified\n");
  return 0;
}
