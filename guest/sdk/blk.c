/* virtio-blk driver (see blk.h): one request queue, one request in flight, each a chain of header
   (device reads), optional data, and status byte (device writes). */
#include "blk.h"

#include "virtio.h"

/* Sectors per request: any transfer is split into requests of at most this many. */
#define BLK_MAX_PER_REQUEST 128u  /* 64 KiB: lockstep advertises SIZE_MAX 64 KiB (a logged read must fit one event) */

typedef struct blk_req_hdr {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
} blk_req_hdr;

static vio_dev dev;
static vio_queue rq;
static int ready;
static uint64_t capacity;
static blk_req_hdr hdr;
static volatile uint8_t status;

int blk_init(void) {
  int r = vio_find(VIO_ID_BLK, 0, &dev);
  if (r == 0) r = vio_begin(&dev, 0, (1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_FLUSH));
  if (r == 0) r = vio_queue_init(&dev, &rq, 0, 0);
  if (r != 0) return r;
  capacity = vio_config64(&dev, 0);
  vio_driver_ok(&dev);
  ready = 1;
  return 0;
}

uint64_t blk_capacity(void) { return capacity; }

int blk_read_only(void) { return (dev.features >> VIRTIO_BLK_F_RO) & 1u; }

/* Submits one request and sleeps until it completes. `data` may be NULL (flush). */
static int request(uint32_t type, uint64_t sector, void *data, uint32_t len, int device_writes) {
  if (!ready) return VIO_ERR_NOT_FOUND;
  hdr.type = type;
  hdr.reserved = 0;
  hdr.sector = sector;
  status = 0xff;
  vio_buf b[3];
  unsigned n = 0;
  b[n++] = (vio_buf){&hdr, sizeof hdr, 0};
  if (data) b[n++] = (vio_buf){data, len, (uint32_t)device_writes};
  b[n++] = (vio_buf){(void *)&status, 1, 1};
  int head = vio_submit(&rq, b, n, 0);
  if (head < 0) return head;
  vio_notify(&rq);
  while (!vio_next_used(&rq, 0, 0)) vio_wait();
  return status == VIRTIO_BLK_S_OK ? 0 : VIO_ERR_IO;
}

static int transfer(uint32_t type, uint64_t sector, void *buf, uint32_t count) {
  if (!ready) return VIO_ERR_NOT_FOUND;
  if (sector > capacity || count > capacity - sector) return VIO_ERR_IO;
  uint8_t *p = (uint8_t *)buf;
  while (count > 0) {
    uint32_t n = count < BLK_MAX_PER_REQUEST ? count : BLK_MAX_PER_REQUEST;
    int r = request(type, sector, p, n * BLK_SECTOR, type == VIRTIO_BLK_T_IN);
    if (r != 0) return r;
    sector += n;
    p += n * BLK_SECTOR;
    count -= n;
  }
  return 0;
}

int blk_read(uint64_t sector, void *buf, uint32_t count) { return transfer(VIRTIO_BLK_T_IN, sector, buf, count); }

int blk_write(uint64_t sector, const void *buf, uint32_t count) {
  if (blk_read_only()) return VIO_ERR_IO;
  return transfer(VIRTIO_BLK_T_OUT, sector, (void *)buf, count);
}

int blk_flush(void) {
  if (!((dev.features >> VIRTIO_BLK_F_FLUSH) & 1u)) return ready ? 0 : VIO_ERR_NOT_FOUND;
  return request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0);
}

int blk_get_id(char id[BLK_ID_BYTES]) {
  for (unsigned i = 0; i < BLK_ID_BYTES; i++) id[i] = 0;
  return request(VIRTIO_BLK_T_GET_ID, 0, id, BLK_ID_BYTES, 1);
}
