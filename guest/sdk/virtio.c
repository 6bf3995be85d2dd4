/* virtio-mmio version 2 transport and split virtqueues (see virtio.h): the init sequence of virtio
   1.1 §3.1.1, descriptor chains, used-ring consumption, and PLIC servicing from WFI. */
#include "virtio.h"

#include "lockstep.h"

/* PLIC, hart 0 M-mode context (context 0) */
#define PLIC_PRIORITY(irq) ((volatile uint32_t *)(LS_PLIC_BASE + 4u * (irq)))
#define PLIC_ENABLE0 ((volatile uint32_t *)(LS_PLIC_BASE + 0x2000u))
#define PLIC_THRESHOLD0 ((volatile uint32_t *)(LS_PLIC_BASE + 0x200000u))
#define PLIC_CLAIM0 ((volatile uint32_t *)(LS_PLIC_BASE + 0x200004u))

/* Device memory and ring memory ordering: the device may be another thread (lockstep's vCPU-side
   device model runs in order, QEMU's in other threads), so order ring writes against the doorbell. */
#define vio_mb() __asm__ volatile("fence iorw, iorw" ::: "memory")

/* Devices that completed vio_driver_ok(), by PLIC source, for vio_wait(). */
static vio_dev *irq_dev[VIO_IRQ_FIRST + VIO_SLOTS];

static inline uint32_t rd(const vio_dev *d, uint32_t off) { return *(volatile uint32_t *)(d->base + off); }
static inline void wr(const vio_dev *d, uint32_t off, uint32_t v) { *(volatile uint32_t *)(d->base + off) = v; }

int vio_find(uint32_t device_id, unsigned nth, vio_dev *dev) {
  int legacy = 0;
  for (uint32_t slot = 0; slot < VIO_SLOTS; slot++) {
    uintptr_t base = VIO_MMIO_BASE + slot * VIO_MMIO_STRIDE;
    volatile uint32_t *r = (volatile uint32_t *)base;
    if (r[VIO_MAGIC / 4] != VIO_MAGIC_VALUE) continue;
    if (r[VIO_DEVICE_ID / 4] != device_id) continue;
    if (r[VIO_VERSION / 4] != 2u) {
      legacy = 1;
      continue;
    }
    if (nth-- != 0) continue;
    dev->base = base;
    dev->slot = slot;
    dev->irq = VIO_IRQ_FIRST + slot;
    dev->device_id = device_id;
    dev->features = 0;
    dev->isr = 0;
    return 0;
  }
  return legacy ? VIO_ERR_LEGACY : VIO_ERR_NOT_FOUND;
}

void vio_fail(vio_dev *dev) { wr(dev, VIO_STATUS, rd(dev, VIO_STATUS) | VIO_S_FAILED); }

int vio_begin(vio_dev *dev, uint64_t required, uint64_t optional) {
  required |= 1ull << VIO_F_VERSION_1;
  wr(dev, VIO_STATUS, 0); /* reset; a read of 0 confirms it (§4.2.3.1) */
  while (rd(dev, VIO_STATUS) != 0) {
  }
  wr(dev, VIO_STATUS, VIO_S_ACKNOWLEDGE);
  wr(dev, VIO_STATUS, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER);

  uint64_t offered = 0;
  for (uint32_t sel = 0; sel < 2; sel++) {
    wr(dev, VIO_DEVICE_FEATURES_SEL, sel);
    offered |= (uint64_t)rd(dev, VIO_DEVICE_FEATURES) << (32 * sel);
  }
  if ((offered & required) != required) {
    vio_fail(dev);
    return VIO_ERR_FEATURES;
  }
  uint64_t take = required | (optional & offered);
  for (uint32_t sel = 0; sel < 2; sel++) {
    wr(dev, VIO_DRIVER_FEATURES_SEL, sel);
    wr(dev, VIO_DRIVER_FEATURES, (uint32_t)(take >> (32 * sel)));
  }
  wr(dev, VIO_STATUS, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_FEATURES_OK);
  if ((rd(dev, VIO_STATUS) & VIO_S_FEATURES_OK) == 0) {
    vio_fail(dev);
    return VIO_ERR_FEATURES;
  }
  dev->features = take;
  return 0;
}

int vio_queue_init(vio_dev *dev, vio_queue *q, uint32_t index, uint32_t max_entries) {
  wr(dev, VIO_QUEUE_SEL, index);
  if (rd(dev, VIO_QUEUE_READY) != 0) return VIO_ERR_QUEUE;
  uint32_t max = rd(dev, VIO_QUEUE_NUM_MAX);
  if (max == 0) return VIO_ERR_QUEUE;
  uint32_t want = max_entries == 0 || max_entries > VIO_QSZ ? VIO_QSZ : max_entries;
  if (want > max) want = max;
  uint32_t num = 1;
  while (num * 2 <= want) num *= 2;

  uint8_t *p = (uint8_t *)q;
  for (size_t i = 0; i < sizeof *q; i++) p[i] = 0;
  q->dev = dev;
  q->index = (uint16_t)index;
  q->num = (uint16_t)num;
  for (uint32_t i = 0; i < num; i++) q->desc[i].next = (uint16_t)(i + 1);
  q->free_head = 0;
  q->num_free = (uint16_t)num;
  q->last_used = 0;

  wr(dev, VIO_QUEUE_NUM, num);
  /* 32-bit guest: the high halves are 0. */
  wr(dev, VIO_QUEUE_DESC_LOW, (uint32_t)(uintptr_t)q->desc);
  wr(dev, VIO_QUEUE_DESC_HIGH, 0);
  wr(dev, VIO_QUEUE_DRIVER_LOW, (uint32_t)(uintptr_t)&q->avail);
  wr(dev, VIO_QUEUE_DRIVER_HIGH, 0);
  wr(dev, VIO_QUEUE_DEVICE_LOW, (uint32_t)(uintptr_t)&q->used);
  wr(dev, VIO_QUEUE_DEVICE_HIGH, 0);
  vio_mb();
  wr(dev, VIO_QUEUE_READY, 1);
  return 0;
}

void vio_driver_ok(vio_dev *dev) {
  irq_dev[dev->irq] = dev;
  *PLIC_PRIORITY(dev->irq) = 1;
  *PLIC_ENABLE0 |= 1u << dev->irq;
  *PLIC_THRESHOLD0 = 0;
  ls_csr_set(mie, LS_MIE_MEIE);
  wr(dev, VIO_STATUS, rd(dev, VIO_STATUS) | VIO_S_DRIVER_OK);
}

int vio_submit(vio_queue *q, const vio_buf *bufs, unsigned n, void *cookie) {
  if (n == 0 || n > q->num_free) return VIO_ERR_FULL;
  uint16_t head = q->free_head;
  uint16_t i = head;
  for (unsigned k = 0; k < n; k++) {
    vio_desc *d = &q->desc[i];
    d->addr = (uint32_t)(uintptr_t)bufs[k].addr;
    d->len = bufs[k].len;
    d->flags = (uint16_t)((bufs[k].device_writes ? VIO_DESC_F_WRITE : 0u) | (k + 1 < n ? VIO_DESC_F_NEXT : 0u));
    if (k + 1 < n) i = d->next; /* the free list already chains through .next */
  }
  q->free_head = q->desc[i].next;
  q->num_free = (uint16_t)(q->num_free - n);
  q->cookie[head] = cookie;
  q->avail.ring[q->avail.idx & (q->num - 1u)] = head;
  vio_mb(); /* descriptors and ring slot before the index that publishes them */
  q->avail.idx = (uint16_t)(q->avail.idx + 1u);
  return head;
}

void vio_notify(vio_queue *q) {
  vio_mb(); /* avail.idx before the doorbell */
  wr(q->dev, VIO_QUEUE_NOTIFY, q->index);
}

int vio_next_used(vio_queue *q, uint32_t *len, void **cookie) {
  uint16_t used_idx = *(volatile uint16_t *)&q->used.idx;
  if (used_idx == q->last_used) return 0;
  vio_mb(); /* the index before the element it covers */
  vio_used_elem e = q->used.ring[q->last_used & (q->num - 1u)];
  q->last_used = (uint16_t)(q->last_used + 1u);
  uint16_t head = (uint16_t)e.id;
  if (head >= q->num) return 0; /* a broken device; nothing sane to free */
  if (len) *len = e.len;
  if (cookie) *cookie = q->cookie[head];
  /* Return the chain to the free list. */
  uint16_t i = head;
  unsigned n = 1;
  while ((q->desc[i].flags & VIO_DESC_F_NEXT) && n < q->num) {
    i = q->desc[i].next;
    n++;
  }
  q->desc[i].next = q->free_head;
  q->free_head = head;
  q->num_free = (uint16_t)(q->num_free + n);
  return 1;
}

uint8_t vio_config8(vio_dev *dev, uint32_t off) {
  uint32_t gen;
  uint8_t v;
  do {
    gen = rd(dev, VIO_CONFIG_GENERATION);
    v = *(volatile uint8_t *)(dev->base + VIO_CONFIG + off);
  } while (rd(dev, VIO_CONFIG_GENERATION) != gen);
  return v;
}

uint32_t vio_config32(vio_dev *dev, uint32_t off) {
  uint32_t gen, v;
  do {
    gen = rd(dev, VIO_CONFIG_GENERATION);
    v = rd(dev, VIO_CONFIG + off);
  } while (rd(dev, VIO_CONFIG_GENERATION) != gen);
  return v;
}

uint64_t vio_config64(vio_dev *dev, uint32_t off) {
  uint32_t gen, lo, hi;
  do {
    gen = rd(dev, VIO_CONFIG_GENERATION);
    lo = rd(dev, VIO_CONFIG + off);
    hi = rd(dev, VIO_CONFIG + off + 4u);
  } while (rd(dev, VIO_CONFIG_GENERATION) != gen);
  return ((uint64_t)hi << 32) | lo;
}

void vio_service_irqs(void) {
  uint32_t id;
  while ((id = *PLIC_CLAIM0) != 0) {
    vio_dev *d = id < VIO_IRQ_FIRST + VIO_SLOTS ? irq_dev[id] : NULL;
    if (d) {
      uint32_t st = rd(d, VIO_INTERRUPT_STATUS);
      wr(d, VIO_INTERRUPT_ACK, st); /* lowers the line before the PLIC completion re-arms it */
      d->isr |= st;
    }
    *PLIC_CLAIM0 = id;
  }
}

void vio_wait(void) {
  uint32_t mstatus = ls_csr_read(mstatus);
  ls_csr_clear(mstatus, LS_MSTATUS_MIE);
  /* WFI wakes on any pending enabled interrupt (mip & mie) whatever mstatus.MIE says; an interrupt
     raised since the caller's check is still pending here, so the WFI returns at once. */
  __asm__ volatile("wfi");
  vio_service_irqs();
  if (mstatus & LS_MSTATUS_MIE) ls_csr_set(mstatus, LS_MSTATUS_MIE);
}

const char *vio_strerror(int err) {
  switch (err) {
    case 0: return "ok";
    case VIO_ERR_NOT_FOUND: return "no such device";
    case VIO_ERR_LEGACY: return "legacy virtio-mmio (version 1) device; QEMU needs -global virtio-mmio.force-legacy=false";
    case VIO_ERR_FEATURES: return "feature negotiation failed";
    case VIO_ERR_QUEUE: return "queue unavailable";
    case VIO_ERR_FULL: return "queue full";
    case VIO_ERR_IO: return "device I/O error";
    default: return "unknown error";
  }
}
