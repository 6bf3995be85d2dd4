// Lock-free single-producer / single-consumer byte ring over caller-owned memory (a JS
// SharedArrayBuffer). The producer never blocks here: it reports how much fitted, and its owner
// decides how to wait. The JS consumer is src/native/ring.ts; both follow the layout below.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lockstep {

/// Shared layout (little-endian, offsets in bytes). head and tail are free-running u32 counters;
/// head - tail is the fill level. Each lives on its own cache line so the two sides do not
/// false-share.
///
///   0          4                      64         68                    128                 128+cap
///   +----------+----------------------+----------+---------------------+-------------------+
///   | head u32 | version u32, cap u32 | tail u32 |      (padding)      |  data[cap]        |
///   +----------+----------------------+----------+---------------------+-------------------+
///     producer   written once at init   consumer                          cap = 2^k
struct RingLayout {
  static constexpr size_t kHead = 0;
  static constexpr size_t kVersion = 4;
  static constexpr size_t kCapacity = 8;
  static constexpr size_t kTail = 64;
  static constexpr size_t kData = 128;
  static constexpr uint32_t kVersionValue = 1;
};
static_assert(RingLayout::kTail % 64 == 0 && RingLayout::kData % 64 == 0, "ring indices on their own cache lines");

class ByteRingProducer {
 public:
  /// `mem` spans kData + capacity bytes; capacity is a power of two. The memory must outlive this.
  ByteRingProducer(uint8_t* mem, uint32_t capacity)
      : mem_(mem), data_(mem + RingLayout::kData), mask_(capacity - 1), capacity_(capacity) {}

  static bool valid_capacity(uint64_t cap) { return cap >= 64 && cap <= (1u << 30) && (cap & (cap - 1)) == 0; }

  void init() {
    head().store(0, std::memory_order_relaxed);
    tail().store(0, std::memory_order_relaxed);
    uint32_t v = RingLayout::kVersionValue;
    std::memcpy(mem_ + RingLayout::kVersion, &v, 4);
    std::memcpy(mem_ + RingLayout::kCapacity, &capacity_, 4);
  }

  /// Copies as much of data as fits; returns the count.
  size_t push(const uint8_t* data, size_t n) {
    const uint32_t h = head().load(std::memory_order_relaxed);  // only this thread writes head
    // acquire: pairs with the consumer's release store of tail (Atomics.store in ByteRingReader.read):
    // the bytes it consumed are no longer read once we see the new tail, so we may overwrite them.
    const uint32_t t = tail().load(std::memory_order_acquire);
    const uint32_t free_bytes = capacity_ - (h - t);
    const size_t m = n < free_bytes ? n : free_bytes;
    for (size_t i = 0; i < m;) {
      const uint32_t at = (h + static_cast<uint32_t>(i)) & mask_;
      const size_t chunk = std::min<size_t>(m - i, capacity_ - at);
      std::memcpy(data_ + at, data + i, chunk);
      i += chunk;
    }
    // release: publishes the bytes written above; pairs with Atomics.load(head) in ByteRingReader.read().
    head().store(h + static_cast<uint32_t>(m), std::memory_order_release);
    return m;
  }

  size_t used() const {
    return head().load(std::memory_order_relaxed) - tail().load(std::memory_order_acquire);
  }

 private:
  std::atomic_ref<uint32_t> head() const { return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(mem_ + RingLayout::kHead)); }
  std::atomic_ref<uint32_t> tail() const { return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(mem_ + RingLayout::kTail)); }

  uint8_t* mem_;
  uint8_t* data_;
  uint32_t mask_;
  uint32_t capacity_;
};

}  // namespace lockstep
