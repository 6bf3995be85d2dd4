/* virtio-mmio transport (version 2, "modern") with split virtqueues, for the guest SDK: device
   discovery over the virt board's 8 slots, the init sequence, descriptor chains, used-ring
   consumption, and WFI-based sleeping that services the PLIC itself (no trap handler needed). */
#ifndef LOCKSTEP_VIRTIO_H
#define LOCKSTEP_VIRTIO_H

#include <stddef.h>
#include <stdint.h>

/* ---- The virt board's virtio-mmio slots: slot n at BASE + n*STRIDE, PLIC source 1+n ---- */
#define VIO_MMIO_BASE    0x10001000u
#define VIO_MMIO_STRIDE  0x1000u
#define VIO_SLOTS        8u
#define VIO_IRQ_FIRST    1u

/* ---- Registers (offsets into a slot), virtio 1.1 §4.2.2 ---- */
#define VIO_MAGIC             0x000u /* "virt" = 0x74726976 */
#define VIO_VERSION           0x004u /* 2 for modern; 1 is legacy (QEMU's default, see below) */
#define VIO_DEVICE_ID         0x008u /* 0 = empty slot */
#define VIO_VENDOR_ID         0x00cu
#define VIO_DEVICE_FEATURES   0x010u
#define VIO_DEVICE_FEATURES_SEL 0x014u
#define VIO_DRIVER_FEATURES   0x020u
#define VIO_DRIVER_FEATURES_SEL 0x024u
#define VIO_QUEUE_SEL         0x030u
#define VIO_QUEUE_NUM_MAX     0x034u
#define VIO_QUEUE_NUM         0x038u
#define VIO_QUEUE_READY       0x044u
#define VIO_QUEUE_NOTIFY      0x050u
#define VIO_INTERRUPT_STATUS  0x060u
#define VIO_INTERRUPT_ACK     0x064u
#define VIO_STATUS            0x070u
#define VIO_QUEUE_DESC_LOW    0x080u
#define VIO_QUEUE_DESC_HIGH   0x084u
#define VIO_QUEUE_DRIVER_LOW  0x090u
#define VIO_QUEUE_DRIVER_HIGH 0x094u
#define VIO_QUEUE_DEVICE_LOW  0x0a0u
#define VIO_QUEUE_DEVICE_HIGH 0x0a4u
#define VIO_CONFIG_GENERATION 0x0fcu
#define VIO_CONFIG            0x100u

#define VIO_MAGIC_VALUE 0x74726976u

/* Device status bits */
#define VIO_S_ACKNOWLEDGE 1u
#define VIO_S_DRIVER      2u
#define VIO_S_DRIVER_OK   4u
#define VIO_S_FEATURES_OK 8u
#define VIO_S_NEEDS_RESET 64u
#define VIO_S_FAILED      128u

/* InterruptStatus bits */
#define VIO_INT_USED   1u /* a used buffer was added */
#define VIO_INT_CONFIG 2u /* the configuration changed */

/* Device IDs */
#define VIO_ID_NET 1u
#define VIO_ID_BLK 2u
#define VIO_ID_RNG 4u

/* Transport feature bits (device-specific ones are in the drivers' headers) */
#define VIO_F_VERSION_1 32u

/* ---- Split virtqueue layout, virtio 1.1 §2.6 ---- */
#define VIO_QSZ 64u /* ring entries per queue the SDK allocates; a queue uses min(this, QueueNumMax) */

#define VIO_DESC_F_NEXT  1u
#define VIO_DESC_F_WRITE 2u /* the device writes this buffer */

typedef struct vio_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
} vio_desc;

typedef struct vio_avail {
  uint16_t flags;
  uint16_t idx;
  uint16_t ring[VIO_QSZ];
  uint16_t used_event; /* unused: VIRTIO_F_EVENT_IDX is never negotiated */
} vio_avail;

typedef struct vio_used_elem {
  uint32_t id;  /* head descriptor of the chain */
  uint32_t len; /* bytes the device wrote into the chain's device-writable buffers */
} vio_used_elem;

typedef struct vio_used {
  uint16_t flags;
  uint16_t idx;
  vio_used_elem ring[VIO_QSZ];
  uint16_t avail_event;
} vio_used;

struct vio_dev;

/* One virtqueue with its rings, in static memory. Alignment as the spec requires: descriptor table
   16, driver (avail) ring 2, device (used) ring 4. Only the driver that set it up touches it. */
typedef struct vio_queue {
  vio_desc desc[VIO_QSZ] __attribute__((aligned(16)));
  vio_avail avail __attribute__((aligned(4)));
  vio_used used __attribute__((aligned(4)));
  struct vio_dev *dev;
  uint16_t index;     /* queue number within the device */
  uint16_t num;       /* entries in use (power of two, <= VIO_QSZ) */
  uint16_t free_head; /* first free descriptor (chained through .next) */
  uint16_t num_free;
  uint16_t last_used; /* used.idx value up to which completions were consumed */
  void *cookie[VIO_QSZ]; /* per head descriptor: the caller's token for the chain */
} vio_queue;

/* One device in one slot. */
typedef struct vio_dev {
  uintptr_t base;     /* MMIO base of the slot */
  uint32_t slot;      /* 0..7 */
  uint32_t irq;       /* PLIC source: 1 + slot */
  uint32_t device_id;
  uint64_t features;  /* negotiated */
  volatile uint32_t isr; /* InterruptStatus bits seen by vio_wait() and not yet taken */
} vio_dev;

/* One buffer of a chain: the device reads it, or writes it when device_writes is set. */
typedef struct vio_buf {
  void *addr;
  uint32_t len;
  uint32_t device_writes;
} vio_buf;

/* Error codes (negative returns) */
#define VIO_ERR_NOT_FOUND    (-1) /* no slot holds a device of that ID */
#define VIO_ERR_LEGACY       (-2) /* Version is 1: under QEMU add -global virtio-mmio.force-legacy=false */
#define VIO_ERR_FEATURES     (-3) /* the device lacks a required feature or refused FEATURES_OK */
#define VIO_ERR_QUEUE        (-4) /* the queue does not exist or is already live */
#define VIO_ERR_FULL         (-5) /* not enough free descriptors for the chain */
#define VIO_ERR_IO           (-6) /* the device reported an error (driver-specific) */

/* Scans the 8 slots from slot 0 upwards and fills *dev for the nth (0-based) device with that ID.
   Never assumes a slot: QEMU fills slots from the highest address downwards. */
int vio_find(uint32_t device_id, unsigned nth, vio_dev *dev);

/* Reset, ACKNOWLEDGE, DRIVER, feature negotiation and the FEATURES_OK check. `required` bits must
   all be offered (VIRTIO_F_VERSION_1 always is required); `optional` bits are taken when offered.
   The result is in dev->features. On failure the device is left in FAILED. */
int vio_begin(vio_dev *dev, uint64_t required, uint64_t optional);

/* Sets up queue `index` with min(max_entries, VIO_QSZ, QueueNumMax) entries rounded down to a power
   of two (max_entries 0 means VIO_QSZ). Between vio_begin() and vio_driver_ok(). */
int vio_queue_init(vio_dev *dev, vio_queue *q, uint32_t index, uint32_t max_entries);

/* DRIVER_OK, and routes the device's interrupt through the PLIC (hart 0, M-mode context) with
   mie.MEIE set. mstatus.MIE stays as the caller left it: the SDK expects it clear (see vio_wait). */
void vio_driver_ok(vio_dev *dev);

/* Marks the device FAILED (e.g. after a fatal driver error). */
void vio_fail(vio_dev *dev);

/* Places a chain of n buffers (device-readable ones first, then device-writable ones) in the
   available ring with `cookie` as its token. Returns the head descriptor index, or VIO_ERR_FULL.
   Does not notify: batch several, then call vio_notify(). */
int vio_submit(vio_queue *q, const vio_buf *bufs, unsigned n, void *cookie);

/* Tells the device that queue q has new available buffers. */
void vio_notify(vio_queue *q);

/* Takes the next completed chain from the used ring: returns 1 and sets *len (bytes written by the
   device) and *cookie, or returns 0 when no completion is waiting. Frees the chain's descriptors. */
int vio_next_used(vio_queue *q, uint32_t *len, void **cookie);

/* Number of free descriptors. */
static inline unsigned vio_free(const vio_queue *q) { return q->num_free; }

/* Device-specific configuration space (offset from VIO_CONFIG), read consistently across a
   ConfigGeneration change. */
uint8_t vio_config8(vio_dev *dev, uint32_t off);
uint32_t vio_config32(vio_dev *dev, uint32_t off);
uint64_t vio_config64(vio_dev *dev, uint32_t off);

/* Sleeps in WFI until an enabled interrupt is pending, then claims every pending PLIC source, reads
   and acknowledges InterruptStatus of the virtio device behind it (adding the bits to its ->isr),
   and completes it. Other PLIC sources are completed without action. Runs with mstatus.MIE clear
   (restoring it afterwards), so no trap is taken and no interrupt can slip in between the caller's
   check and the WFI: the idiom is `while (!vio_next_used(q, ...)) vio_wait();`. */
void vio_wait(void);

/* Services pending PLIC sources as vio_wait() does, without sleeping. */
void vio_service_irqs(void);

/* A short name for an error code, for messages. */
const char *vio_strerror(int err);

#endif
