/* virtio-rng driver (see rng.h): one request queue; each request is one device-writable buffer that
   the device fills with up to its length in random bytes. */
#include "rng.h"

#include "virtio.h"

static vio_dev dev;
static vio_queue rq;
static int ready;

int rng_init(void) {
  int r = vio_find(VIO_ID_RNG, 0, &dev);
  if (r == 0) r = vio_begin(&dev, 0, 0);
  if (r == 0) r = vio_queue_init(&dev, &rq, 0, 0);
  if (r != 0) return r;
  vio_driver_ok(&dev);
  ready = 1;
  return 0;
}

int rng_read(void *buf, size_t n) {
  if (!ready) return VIO_ERR_NOT_FOUND;
  size_t got = 0;
  /* A device may return fewer bytes than asked for (QEMU: what its back-end had); ask again. A
     completion of 0 bytes is allowed by the spec, so only a long run of them is an error. */
  unsigned empty = 0;
  while (got < n) {
    vio_buf b = {(char *)buf + got, (uint32_t)(n - got), 1};
    int head = vio_submit(&rq, &b, 1, 0);
    if (head < 0) return head;
    vio_notify(&rq);
    uint32_t len = 0;
    while (!vio_next_used(&rq, &len, 0)) vio_wait();
    if (len > n - got) len = (uint32_t)(n - got);
    got += len;
    if (len == 0 && ++empty > 1000) return VIO_ERR_IO;
  }
  return (int)n;
}
