// virtio-mmio version 2 transport and split virtqueues (VIRTIO 1.2, §4.2 and §2.7), shared by the
// net, blk and rng devices. Runs on the vCPU thread; every guest-supplied index, address and length is
// checked, and a bad descriptor chain puts the device into DEVICE_NEEDS_RESET, never the host at risk.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/cpu.h"

namespace lockstep {

class Machine;

/// One element taken from an available ring: the chain's head and its buffers, split into the parts
/// the device reads and the parts it writes (guest RAM offsets, already bounds-checked).
struct Chain {
  uint16_t head = 0;
  struct Segment {
    uint32_t offset;  // into guest RAM (address - 0x8000_0000)
    uint32_t len;
  };
  std::vector<Segment> readable, writable;
  uint32_t readable_bytes = 0, writable_bytes = 0;
};

/// A split virtqueue as the driver configured it.
struct Virtqueue {
  static constexpr uint32_t kMaxSize = 256;
  uint32_t num = 0;        // QueueNum (0: not configured)
  bool ready = false;
  uint64_t desc = 0, driver = 0, device = 0;  // guest physical addresses
  uint16_t last_avail = 0;  // next available-ring entry to take
  uint16_t used_idx = 0;    // our copy of used->idx
  /// A size the rings can be walked with: a power of two up to kMaxSize (never 0).
  static bool valid_size(uint32_t n) { return n != 0 && n <= kMaxSize && (n & (n - 1)) == 0; }
  /// Ready with a valid size. Every ring access checks this, not just `ready`: a request may complete
  /// after the driver disabled or resized the queue, and a restored snapshot may say anything.
  bool usable() const { return ready && valid_size(num); }
};

/// The device-specific half. The transport calls it on the vCPU thread.
class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  virtual uint32_t device_id() const = 0;
  /// Feature bits beyond VIRTIO_F_VERSION_1 (which the transport always offers and requires).
  virtual uint64_t device_features() const = 0;
  virtual uint32_t num_queues() const = 0;
  /// Config space (transport offset 0x100 + off); `size` is 1, 2 or 4.
  virtual uint32_t config_read(uint32_t off, unsigned size) const = 0;
  /// The driver notified queue `q` (already validated as ready).
  virtual void notify(uint32_t q) = 0;
  /// The driver reset the device (status 0): forget in-flight work.
  virtual void reset() = 0;
};

/// The transport: registers, queues, interrupt status; owns nothing of the device's meaning.
class VirtioMmio {
 public:
  static constexpr uint32_t kDeviceNeedsReset = 0x40;
  static constexpr uint32_t kStatusDriverOk = 4;
  static constexpr uint32_t kStatusFeaturesOk = 8;
  static constexpr uint64_t kVersion1 = 1ull << 32;

  VirtioMmio(Machine* machine, uint32_t irq) : machine_(machine), irq_(irq) {}
  void attach(VirtioDevice* dev);
  bool present() const { return dev_ != nullptr; }

  Mmio load(uint32_t off, unsigned size, uint32_t* v);
  Mmio store(uint32_t off, unsigned size, uint32_t v);
  bool irq_line() const { return interrupt_status_ != 0; }
  uint32_t irq() const { return irq_; }

  // For devices.
  Virtqueue& queue(uint32_t q) { return queues_[q]; }
  bool driver_ok() const { return (status_ & kStatusDriverOk) && !(status_ & kDeviceNeedsReset); }
  /// Takes the next available chain of queue q. 1: got one; 0: none; -1: malformed (device now broken).
  int pop(uint32_t q, Chain* out);
  /// Whether queue q has an available chain to pop, without taking it or judging it (no side effects).
  bool has_available(uint32_t q) const;
  /// Returns a chain to the driver with `written` bytes written, and raises the used-buffer interrupt.
  void push(uint32_t q, uint16_t head, uint32_t written);
  /// Puts the device into DEVICE_NEEDS_RESET and tells the driver (config-change interrupt).
  void fail(const std::string& why);
  const std::string& error() const { return error_; }
  /// Guest memory for devices: copies to/from RAM offsets checked by pop().
  uint8_t* ram();

  void save(std::vector<uint8_t>* out) const;
  bool restore(const uint8_t** p, const uint8_t* end);
  uint64_t digest() const;

 private:
  bool guest_range(uint64_t addr, uint64_t len, uint32_t* offset) const;
  void do_reset();

  Machine* machine_;
  uint32_t irq_;
  VirtioDevice* dev_ = nullptr;
  uint32_t status_ = 0, device_features_sel_ = 0, driver_features_sel_ = 0, queue_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t interrupt_status_ = 0, config_generation_ = 0;
  Virtqueue queues_[2];
  std::string error_;
};

}  // namespace lockstep
