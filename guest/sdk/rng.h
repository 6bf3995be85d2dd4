/* virtio-rng driver for the guest SDK: entropy from the host (QEMU's -device virtio-rng-device, or
   lockstep's device, whose bytes are logged on a recording and replayed from the log). */
#ifndef LOCKSTEP_RNG_H
#define LOCKSTEP_RNG_H

#include <stddef.h>

/* Finds and initialises the first virtio-rng device. Returns 0 or a VIO_ERR_* code. */
int rng_init(void);

/* Fills buf with n bytes of entropy, sleeping (WFI) while the device works. Returns n, or a
   negative VIO_ERR_* code (rng_init() not done or failed, or the device returned nothing). */
int rng_read(void *buf, size_t n);

#endif
