// The three virtio devices: entropy, block and network. Each is a deterministic state machine on the
// vCPU thread; what enters from the host (entropy, read data and completion points, frames) goes
// through the Machine, which logs it (record) or takes it from the log (replay).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "machine/block_file.h"
#include "machine/virtio.h"

namespace lockstep {

class Machine;

class VirtioRng final : public VirtioDevice {
 public:
  VirtioRng(Machine* m, VirtioMmio* t) : m_(m), t_(t) {}
  uint32_t device_id() const override { return 4; }
  uint64_t device_features() const override { return 0; }
  uint32_t num_queues() const override { return 1; }
  uint32_t config_read(uint32_t, unsigned) const override { return 0; }
  void notify(uint32_t q) override;
  void reset() override {}

 private:
  Machine* m_;
  VirtioMmio* t_;
};

class VirtioBlk final : public VirtioDevice {
 public:
  // Advertised (virtio 1.2 §5.2.4): size_max bounds each data segment and seg_max their number, so a
  // request carries at most kMaxRequest bytes (Linux merges up to seg_max pages into one).
  static constexpr uint32_t kSizeMax = 64 * 1024;
  static constexpr uint32_t kSegMax = 64;
  static constexpr uint32_t kMaxRequest = kSizeMax * kSegMax;
  VirtioBlk(Machine* m, VirtioMmio* t, uint64_t capacity_bytes) : m_(m), t_(t), sectors_(capacity_bytes / 512) {}
  uint32_t device_id() const override { return 2; }
  uint64_t device_features() const override;
  uint32_t num_queues() const override { return 1; }
  uint32_t config_read(uint32_t off, unsigned size) const override;
  void notify(uint32_t q) override;
  void reset() override {
    pending_.clear();
    generation_++;  // completions of requests from before the reset are stale
  }
  uint32_t generation() const { return generation_; }
  uint64_t capacity_bytes() const { return sectors_ * 512; }
  /// A request finished (from the I/O thread on the recording side, from the log when replaying).
  /// False if no such request is pending (a replay divergence).
  bool complete(uint16_t head, uint8_t status, const uint8_t* data, uint32_t n);
  /// Requests waiting for completion, oldest first (for the host to submit to a back-end).
  struct Pending {
    uint8_t type;
    uint64_t sector;
    std::vector<Chain::Segment> in;  // where read data goes
    uint32_t in_bytes;
    uint32_t status_offset;
    std::vector<Chain::Segment> out;  // write: the data segments (after the 16-byte header)
    uint32_t out_bytes = 0;
  };
  const std::map<uint16_t, Pending>& pending() const { return pending_; }
  /// Hands every pending request to the disk again (go-live: the old primary may or may not have
  /// performed them; reads, writes of the same bytes and flushes are idempotent).
  void reissue();
  /// The disk operation of pending request `head` (a write's data gathered from guest RAM). False if
  /// no such request is pending.
  bool request_for(uint16_t head, BlockFile::Request* out) const;
  void save(std::vector<uint8_t>* out) const;
  bool restore(const uint8_t** p, const uint8_t* end);

 private:
  Machine* m_;
  VirtioMmio* t_;
  uint64_t sectors_;
  std::map<uint16_t, Pending> pending_;  // by chain head: ordered, so snapshots and hashes are stable
  uint32_t generation_ = 0;
};

class VirtioNet final : public VirtioDevice {
 public:
  static constexpr uint32_t kHeader = 12;     // struct virtio_net_hdr with num_buffers (VERSION_1)
  static constexpr uint32_t kMaxFrame = 1514 + 4;
  VirtioNet(Machine* m, VirtioMmio* t, const uint8_t mac[6]);
  uint32_t device_id() const override { return 1; }
  uint64_t device_features() const override { return 1ull << 5; }  // VIRTIO_NET_F_MAC
  uint32_t num_queues() const override { return 2; }
  uint32_t config_read(uint32_t off, unsigned size) const override;
  void notify(uint32_t q) override;
  void reset() override {}
  /// Whether a frame could be delivered now: kClosed (the driver is not running: a frame would be
  /// dropped), kFull (no receive buffer posted: a frame should wait) or kReady.
  enum class Rx : uint8_t { kClosed, kFull, kReady };
  Rx rx_state() const;
  /// Puts a frame into the next receive buffer. False (frame dropped) when the guest has none ready.
  bool deliver(const uint8_t* frame, uint32_t n);
  uint64_t dropped() const { return dropped_; }

 private:
  Machine* m_;
  VirtioMmio* t_;
  uint8_t mac_[6];
  uint64_t dropped_ = 0;
};

}  // namespace lockstep
