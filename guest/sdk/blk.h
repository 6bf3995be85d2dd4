/* virtio-blk driver for the guest SDK: synchronous sector reads and writes, flush and get-id on the
   first virtio-blk device, sleeping in WFI while a request is in flight. */
#ifndef LOCKSTEP_BLK_H
#define LOCKSTEP_BLK_H

#include <stdint.h>

#define BLK_SECTOR 512u

/* Request types, virtio 1.1 §5.2.6 */
#define VIRTIO_BLK_T_IN     0u
#define VIRTIO_BLK_T_OUT    1u
#define VIRTIO_BLK_T_FLUSH  4u
#define VIRTIO_BLK_T_GET_ID 8u

/* Status byte the device writes last */
#define VIRTIO_BLK_S_OK     0u
#define VIRTIO_BLK_S_IOERR  1u
#define VIRTIO_BLK_S_UNSUPP 2u

/* Feature bits the driver takes when offered */
#define VIRTIO_BLK_F_RO    5u
#define VIRTIO_BLK_F_FLUSH 9u

#define BLK_ID_BYTES 20u

/* Finds and initialises the first virtio-blk device. Returns 0 or a VIO_ERR_* code. */
int blk_init(void);

/* Capacity in 512-byte sectors (config space offset 0), read at blk_init(). */
uint64_t blk_capacity(void);

/* Whether the device is read-only (VIRTIO_BLK_F_RO). */
int blk_read_only(void);

/* Reads or writes `count` sectors starting at `sector`; the buffer is count*512 bytes anywhere in
   RAM. Return 0, VIO_ERR_IO (device status not OK, or the range is beyond the capacity, or a write
   to a read-only device), or another VIO_ERR_* code. Writes are durable only after blk_flush(). */
int blk_read(uint64_t sector, void *buf, uint32_t count);
int blk_write(uint64_t sector, const void *buf, uint32_t count);

/* Makes every completed write durable (VIRTIO_BLK_T_FLUSH; a no-op returning 0 when the device did
   not offer VIRTIO_BLK_F_FLUSH, which means it writes through). */
int blk_flush(void);

/* The device's ID string: up to 20 bytes, NUL-padded (not terminated when all 20 are used). */
int blk_get_id(char id[BLK_ID_BYTES]);

#endif
