/* virtio-rng example: reads 64 bytes of entropy and checks they are not all zero. The bytes differ
   on every run, so only the verdict is printed. QEMU: -device virtio-rng-device (with
   -global virtio-mmio.force-legacy=false, as for every virtio guest). */
#include "lockstep.h"
#include "rng.h"
#include "virtio.h"

static uint8_t buf[64];

int main(void) {
  int r = rng_init();
  if (r != 0) {
    ls_puts("rng: init failed: ");
    ls_puts(vio_strerror(r));
    ls_putc('\n');
    return 1;
  }
  r = rng_read(buf, sizeof buf);
  if (r != (int)sizeof buf) {
    ls_puts("rng: read failed: ");
    ls_puts(vio_strerror(r));
    ls_putc('\n');
    return 1;
  }
  uint8_t any = 0;
  for (size_t i = 0; i < sizeof buf; i++) any |= buf[i];
  ls_puts("rng: 64 bytes, not all zero: ");
  ls_puts(any ? "yes\n" : "no\n");
  return any ? 0 : 1;
}
