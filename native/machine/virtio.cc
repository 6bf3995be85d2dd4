// virtio-mmio v2 register file and split-virtqueue walking. The layout constants are the spec's
// (VIRTIO 1.2 §4.2.2); QEMU virt exposes the same.
#include "machine/virtio.h"

#include <cstring>

#include "machine/machine.h"

namespace lockstep {
namespace {

enum Reg : uint32_t {
  kMagic = 0x000, kVersion = 0x004, kDeviceId = 0x008, kVendorId = 0x00c, kDeviceFeatures = 0x010,
  kDeviceFeaturesSel = 0x014, kDriverFeatures = 0x020, kDriverFeaturesSel = 0x024, kQueueSel = 0x030,
  kQueueNumMax = 0x034, kQueueNum = 0x038, kQueueReady = 0x044, kQueueNotify = 0x050,
  kInterruptStatus = 0x060, kInterruptAck = 0x064, kStatus = 0x070, kQueueDescLow = 0x080,
  kQueueDescHigh = 0x084, kQueueDriverLow = 0x090, kQueueDriverHigh = 0x094, kQueueDeviceLow = 0x0a0,
  kQueueDeviceHigh = 0x0a4, kConfigGeneration = 0x0fc, kConfig = 0x100,
};
constexpr uint16_t kDescNext = 1, kDescWrite = 2;

uint16_t rd16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
uint32_t rd32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t rd64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

}  // namespace

void VirtioMmio::attach(VirtioDevice* dev) { dev_ = dev; }

uint8_t* VirtioMmio::ram() { return machine_->ram(); }

bool VirtioMmio::guest_range(uint64_t addr, uint64_t len, uint32_t* offset) const {
  if (addr < kRamBase) return false;
  const uint64_t off = addr - kRamBase;
  if (off > machine_->ram_size() || len > machine_->ram_size() - off) return false;
  *offset = static_cast<uint32_t>(off);
  return true;
}

void VirtioMmio::do_reset() {
  status_ = 0;
  driver_features_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
  interrupt_status_ = 0;
  for (Virtqueue& q : queues_) q = Virtqueue{};
  error_.clear();
  if (dev_) dev_->reset();
}

void VirtioMmio::fail(const std::string& why) {
  if (status_ & kDeviceNeedsReset) return;
  error_ = why;
  status_ |= kDeviceNeedsReset;
  interrupt_status_ |= 2;  // configuration change: the driver should look at the status
}

Mmio VirtioMmio::load(uint32_t off, unsigned size, uint32_t* v) {
  if (!dev_) {
    // An empty slot, as QEMU shows one: right magic and version, device id 0.
    *v = off == kMagic ? 0x74726976 : off == kVersion ? 2 : off == kVendorId ? 0x554d4551 : 0;
    return Mmio::kOk;
  }
  if (off >= kConfig) {
    *v = dev_->config_read(off - kConfig, size);
    return Mmio::kOk;
  }
  if (size != 4 || (off & 3)) return Mmio::kFault;
  const uint64_t features = dev_->device_features() | kVersion1;
  Virtqueue* q = queue_sel_ < dev_->num_queues() ? &queues_[queue_sel_] : nullptr;
  switch (off) {
    case kMagic: *v = 0x74726976; break;
    case kVersion: *v = 2; break;
    case kDeviceId: *v = dev_->device_id(); break;
    case kVendorId: *v = 0x554d4551; break;
    case kDeviceFeatures: *v = device_features_sel_ == 0 ? static_cast<uint32_t>(features) : device_features_sel_ == 1 ? static_cast<uint32_t>(features >> 32) : 0; break;
    case kQueueNumMax: *v = q ? Virtqueue::kMaxSize : 0; break;
    case kQueueReady: *v = q && q->ready ? 1 : 0; break;
    case kInterruptStatus: *v = interrupt_status_; break;
    case kStatus: *v = status_; break;
    case kConfigGeneration: *v = config_generation_; break;
    default: *v = 0; break;
  }
  return Mmio::kOk;
}

Mmio VirtioMmio::store(uint32_t off, unsigned size, uint32_t v) {
  if (!dev_) return Mmio::kOk;
  if (off >= kConfig) return Mmio::kOk;  // device config is read-only for our devices
  if (size != 4 || (off & 3)) return Mmio::kFault;
  Virtqueue* q = queue_sel_ < dev_->num_queues() ? &queues_[queue_sel_] : nullptr;
  auto set_lo = [](uint64_t& x, uint32_t v) { x = (x & 0xffffffff00000000ull) | v; };
  auto set_hi = [](uint64_t& x, uint32_t v) { x = (x & 0xffffffffull) | (static_cast<uint64_t>(v) << 32); };
  switch (off) {
    case kDeviceFeaturesSel: device_features_sel_ = v; break;
    case kDriverFeaturesSel: driver_features_sel_ = v; break;
    case kDriverFeatures:
      if (driver_features_sel_ == 0) set_lo(driver_features_, v);
      else if (driver_features_sel_ == 1) set_hi(driver_features_, v);
      break;
    case kQueueSel: queue_sel_ = v; break;
    case kQueueNum:
      if (q && !q->ready) q->num = v;
      break;
    case kQueueReady:
      if (q) {
        if ((v & 1) && !Virtqueue::valid_size(q->num)) {
          fail("queue " + std::to_string(queue_sel_) + ": size " + std::to_string(q->num) + " is not a power of two up to 256");
        } else {
          q->ready = v & 1;
        }
      }
      break;
    case kQueueDescLow: if (q && !q->ready) set_lo(q->desc, v); break;
    case kQueueDescHigh: if (q && !q->ready) set_hi(q->desc, v); break;
    case kQueueDriverLow: if (q && !q->ready) set_lo(q->driver, v); break;
    case kQueueDriverHigh: if (q && !q->ready) set_hi(q->driver, v); break;
    case kQueueDeviceLow: if (q && !q->ready) set_lo(q->device, v); break;
    case kQueueDeviceHigh: if (q && !q->ready) set_hi(q->device, v); break;
    case kQueueNotify:
      if (v < dev_->num_queues() && queues_[v].ready && driver_ok()) dev_->notify(v);
      break;
    case kInterruptAck: interrupt_status_ &= ~v; break;
    case kStatus:
      if (v == 0) {
        do_reset();
      } else {
        // FEATURES_OK only if the driver accepted VERSION_1 and nothing we did not offer.
        const uint64_t offered = dev_->device_features() | kVersion1;
        if ((v & kStatusFeaturesOk) && (!(driver_features_ & kVersion1) || (driver_features_ & ~offered))) v &= ~kStatusFeaturesOk;
        status_ = v | (status_ & kDeviceNeedsReset);
      }
      break;
    default: break;
  }
  return Mmio::kOkRecheck;  // the interrupt line may have changed
}

bool VirtioMmio::has_available(uint32_t qi) const {
  const Virtqueue& q = queues_[qi];
  uint32_t avail_off;
  if (!q.ready || (status_ & kDeviceNeedsReset) || !guest_range(q.driver, 4, &avail_off)) return false;
  return rd16(machine_->ram() + avail_off + 2) != q.last_avail;
}

int VirtioMmio::pop(uint32_t qi, Chain* out) {
  Virtqueue& q = queues_[qi];
  if (!q.usable() || (status_ & kDeviceNeedsReset)) return 0;
  const uint8_t* ram = machine_->ram();
  uint32_t avail_off, desc_off;
  if (!guest_range(q.driver, 4 + 2ull * q.num + 2, &avail_off) || !guest_range(q.desc, 16ull * q.num, &desc_off)) {
    fail("queue " + std::to_string(qi) + ": rings are not inside guest RAM");
    return -1;
  }
  const uint16_t avail_idx = rd16(ram + avail_off + 2);
  if (static_cast<uint16_t>(avail_idx - q.last_avail) > q.num) {
    fail("queue " + std::to_string(qi) + ": available index ran ahead by more than the queue size");
    return -1;
  }
  if (avail_idx == q.last_avail) return 0;
  const uint16_t head = rd16(ram + avail_off + 4 + 2 * (q.last_avail % q.num));
  q.last_avail++;
  *out = Chain{};
  out->head = head;
  uint64_t readable = 0, writable = 0;  // summed wide: 256 descriptors of up to 2 GiB each
  uint16_t i = head;
  for (uint32_t n = 0;; n++) {
    if (i >= q.num) {
      fail("queue " + std::to_string(qi) + ": descriptor index " + std::to_string(i) + " out of range");
      return -1;
    }
    if (n >= q.num) {
      fail("queue " + std::to_string(qi) + ": descriptor chain loops");
      return -1;
    }
    const uint8_t* d = ram + desc_off + 16u * i;
    const uint64_t addr = rd64(d);
    const uint32_t len = rd32(d + 8);
    const uint16_t flags = rd16(d + 12);
    uint32_t off;
    if (flags & ~(kDescNext | kDescWrite)) {
      fail("queue " + std::to_string(qi) + ": descriptor " + std::to_string(i) + " has unsupported flags (indirect not negotiated)");
      return -1;
    }
    if (!guest_range(addr, len, &off)) {
      fail("queue " + std::to_string(qi) + ": descriptor " + std::to_string(i) + " points outside guest RAM");
      return -1;
    }
    if (flags & kDescWrite) {
      out->writable.push_back({off, len});
      writable += len;
    } else {
      if (!out->writable.empty()) {
        fail("queue " + std::to_string(qi) + ": readable descriptor after a writable one");
        return -1;
      }
      out->readable.push_back({off, len});
      readable += len;
    }
    if (readable > UINT32_MAX || writable > UINT32_MAX) {
      fail("queue " + std::to_string(qi) + ": descriptor chain of more than 4 GiB");
      return -1;
    }
    out->readable_bytes = static_cast<uint32_t>(readable);
    out->writable_bytes = static_cast<uint32_t>(writable);
    if (!(flags & kDescNext)) break;
    i = rd16(d + 14);
  }
  return 1;
}

void VirtioMmio::push(uint32_t qi, uint16_t head, uint32_t written) {
  Virtqueue& q = queues_[qi];
  if (!q.usable()) {
    // The driver disabled (or reset and resized) the queue while the request was in flight: there is no
    // used ring to return it to. A driver error, so the device says so rather than guess.
    fail("queue " + std::to_string(qi) + ": a request completed after the driver disabled the queue");
    return;
  }
  uint32_t used_off;
  if (!guest_range(q.device, 4 + 8ull * q.num + 2, &used_off)) {
    fail("queue " + std::to_string(qi) + ": used ring is not inside guest RAM");
    return;
  }
  uint8_t elem[8];
  const uint32_t id = head;
  std::memcpy(elem, &id, 4);
  std::memcpy(elem + 4, &written, 4);
  machine_->write_ram(kRamBase + used_off + 4 + 8u * (q.used_idx % q.num), elem, 8);
  q.used_idx++;
  machine_->write_ram(kRamBase + used_off + 2, reinterpret_cast<const uint8_t*>(&q.used_idx), 2);
  interrupt_status_ |= 1;
}

void VirtioMmio::save(std::vector<uint8_t>* out) const {
  auto put = [&](const void* p, size_t n) { out->insert(out->end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); };
  put(&status_, 4); put(&device_features_sel_, 4); put(&driver_features_sel_, 4); put(&queue_sel_, 4);
  put(&driver_features_, 8); put(&interrupt_status_, 4); put(&config_generation_, 4);
  for (const Virtqueue& q : queues_) {
    const uint8_t ready = q.ready;
    put(&q.num, 4); put(&ready, 1); put(&q.desc, 8); put(&q.driver, 8); put(&q.device, 8); put(&q.last_avail, 2); put(&q.used_idx, 2);
  }
}

bool VirtioMmio::restore(const uint8_t** p, const uint8_t* end) {
  auto get = [&](void* v, size_t n) {
    if (static_cast<size_t>(end - *p) < n) return false;
    std::memcpy(v, *p, n);
    *p += n;
    return true;
  };
  bool ok = get(&status_, 4) && get(&device_features_sel_, 4) && get(&driver_features_sel_, 4) && get(&queue_sel_, 4) &&
            get(&driver_features_, 8) && get(&interrupt_status_, 4) && get(&config_generation_, 4);
  for (Virtqueue& q : queues_) {
    uint8_t ready = 0;
    ok = ok && get(&q.num, 4) && get(&ready, 1) && get(&q.desc, 8) && get(&q.driver, 8) && get(&q.device, 8) && get(&q.last_avail, 2) &&
         get(&q.used_idx, 2);
    q.ready = ready != 0;
    // The rule the registers enforce: a ready queue has a size the rings can be walked with. A queue
    // that is not ready may hold any size the driver wrote (QueueReady refuses a bad one later).
    if (q.ready && !Virtqueue::valid_size(q.num)) return false;
  }
  return ok;
}

uint64_t VirtioMmio::digest() const {
  std::vector<uint8_t> s;
  save(&s);
  uint64_t h = 1469598103934665603ull;
  for (uint8_t b : s) h = (h ^ b) * 1099511628211ull;
  return h;
}

}  // namespace lockstep
