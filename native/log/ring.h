// Lock-free single-producer / single-consumer byte ring over caller-owned memory (a JS
// SharedArrayBuffer). Neither end blocks here: each reports how much it moved, and its owner decides
// how to wait. The JS ends are src/native/ring.ts; every end follows the layout below.
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
///
/// The producer initialises the header (version, capacity, head = tail = start index) before the
/// consumer is given the memory; after that head is written only by the producer and tail only by
/// the consumer. Byte i of the stream lives at data[i & (cap - 1)].
struct RingLayout {
  static constexpr size_t kHead = 0;
  static constexpr size_t kVersion = 4;
  static constexpr size_t kCapacity = 8;
  static constexpr size_t kTail = 64;
  static constexpr size_t kData = 128;
  static constexpr uint32_t kVersionValue = 1;
};
static_assert(RingLayout::kTail % 64 == 0 && RingLayout::kData % 64 == 0, "ring indices on their own cache lines");
static_assert(RingLayout::kVersion == RingLayout::kHead + 4 && RingLayout::kCapacity == RingLayout::kVersion + 4,
              "version and capacity follow head on the producer's line");
static_assert(RingLayout::kCapacity + 4 <= RingLayout::kTail, "the header fits before tail's cache line");
static_assert(RingLayout::kTail + 4 <= RingLayout::kData, "tail fits before the data");
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free, "JS Atomics on the same words need lock-free u32");
static_assert(std::atomic_ref<uint32_t>::required_alignment <= 4, "head and tail are only 4-byte aligned");

/// The producer's head counter of a ring, read from any thread. acquire: pairs with the producer's
/// release store in push() (or Atomics.store in ByteRingWriter.write), so the bytes below it are
/// published. A consumer uses it to mark a point of the stream (the logging channel's message fences).
inline uint32_t ring_head(uint8_t* mem) {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(mem + RingLayout::kHead)).load(std::memory_order_acquire);
}

class ByteRingProducer {
 public:
  /// `mem` spans kData + capacity bytes; capacity is a power of two. The memory must outlive this.
  ByteRingProducer(uint8_t* mem, uint32_t capacity)
      : mem_(mem), data_(mem + RingLayout::kData), mask_(capacity - 1), capacity_(capacity) {}

  static bool valid_capacity(uint64_t cap) { return cap >= 64 && cap <= (1u << 30) && (cap & (cap - 1)) == 0; }

  /// Writes the header. Call before the consumer sees the memory (starting its thread, or handing the
  /// buffer to JS, orders these plain stores before its reads). `start` is where head and tail begin:
  /// 0 normally; tests start near 2^32 to cross the u32 wrap-around.
  void init(uint32_t start = 0) {
    head().store(start, std::memory_order_relaxed);
    tail().store(start, std::memory_order_relaxed);
    uint32_t v = RingLayout::kVersionValue;
    std::memcpy(mem_ + RingLayout::kVersion, &v, 4);
    std::memcpy(mem_ + RingLayout::kCapacity, &capacity_, 4);
  }

  /// Copies as much of data as fits; returns the count.
  size_t push(const uint8_t* data, size_t n) {
    const uint32_t h = head().load(std::memory_order_relaxed);  // only this thread writes head
    // acquire: pairs with the consumer's release store of tail (Atomics.store in ByteRingReader.read,
    // or ByteRingConsumer::consume):
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
    // release: publishes the bytes written above; pairs with Atomics.load(head) in ByteRingReader.read(),
    // or the acquire load of head in ByteRingConsumer::peek().
    head().store(h + static_cast<uint32_t>(m), std::memory_order_release);
    return m;
  }

  size_t used() const {
    return head().load(std::memory_order_relaxed) - tail().load(std::memory_order_acquire);
  }

  /// Bytes that a push() would accept now (a lower bound: the consumer may free more meanwhile).
  size_t free_space() const { return capacity_ - used(); }

 private:
  std::atomic_ref<uint32_t> head() const { return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(mem_ + RingLayout::kHead)); }
  std::atomic_ref<uint32_t> tail() const { return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(mem_ + RingLayout::kTail)); }

  uint8_t* mem_;
  uint8_t* data_;
  uint32_t mask_;
  uint32_t capacity_;
};

/// The native consumer: reads what a producer on another thread (or JS, ByteRingWriter in
/// src/native/ring.ts) published. Only one thread may consume a ring.
class ByteRingConsumer {
 public:
  /// `mem` spans kData + capacity bytes, already initialised by the producer. Must outlive this.
  ByteRingConsumer(uint8_t* mem, uint32_t capacity)
      : mem_(mem), data_(mem + RingLayout::kData), mask_(capacity - 1), capacity_(capacity) {}

  /// True when the header carries this layout's version and this capacity, i.e. the producer has
  /// initialised the ring (ByteRingProducer::init, or the ByteRingWriter constructor in JS).
  bool header_matches() const {
    uint32_t v, cap;
    std::memcpy(&v, mem_ + RingLayout::kVersion, 4);
    std::memcpy(&cap, mem_ + RingLayout::kCapacity, 4);
    return v == RingLayout::kVersionValue && cap == capacity_;
  }

  /// Bytes published and not yet consumed.
  size_t available() const {
    // acquire: pairs with the producer's release store of head (ByteRingProducer::push, or
    // Atomics.store in ByteRingWriter.write), so the bytes below head are visible once we see it.
    return head().load(std::memory_order_acquire) - tail().load(std::memory_order_relaxed);
  }

  /// Copies up to `max` published bytes to `out` without consuming them; returns the count.
  size_t peek(uint8_t* out, size_t max) const {
    const uint32_t t = tail().load(std::memory_order_relaxed);  // only this thread writes tail
    // acquire: pairs with the producer's release store of head (as in available()).
    const uint32_t h = head().load(std::memory_order_acquire);
    const size_t m = std::min<size_t>(max, h - t);
    for (size_t i = 0; i < m;) {
      const uint32_t at = (t + static_cast<uint32_t>(i)) & mask_;
      const size_t chunk = std::min<size_t>(m - i, capacity_ - at);
      std::memcpy(out + i, data_ + at, chunk);
      i += chunk;
    }
    return m;
  }

  /// Releases `n` bytes (at most available()) back to the producer.
  void consume(size_t n) {
    const uint32_t t = tail().load(std::memory_order_relaxed);
    // release: our reads of these bytes (peek) happen before the producer may overwrite them; pairs
    // with the producer's acquire load of tail (ByteRingProducer::push, Atomics.load in ByteRingWriter.write).
    tail().store(t + static_cast<uint32_t>(n), std::memory_order_release);
  }

  /// peek() then consume() of what was copied.
  size_t pop(uint8_t* out, size_t max) {
    const size_t m = peek(out, max);
    if (m) consume(m);
    return m;
  }

  /// The published bytes [tail + offset, tail + offset + n) in place, as at most two pieces (`b` is
  /// empty unless the range wraps): a consumer that hands them to writev() copies nothing. They stay
  /// valid until consume() passes them. offset + n must be at most available().
  void pieces(size_t offset, size_t n, const uint8_t** a, size_t* an, const uint8_t** b, size_t* bn) const {
    const uint32_t at = (tail().load(std::memory_order_relaxed) + static_cast<uint32_t>(offset)) & mask_;  // only this thread writes tail
    const size_t first = std::min<size_t>(n, capacity_ - at);
    *a = data_ + at;
    *an = first;
    *b = data_;
    *bn = n - first;
  }

  /// Copies the published bytes [tail + offset, tail + offset + n) to `out` (offset + n <= available()).
  void copy_at(size_t offset, uint8_t* out, size_t n) const {
    const uint8_t *a, *b;
    size_t an, bn;
    pieces(offset, n, &a, &an, &b, &bn);
    std::memcpy(out, a, an);
    if (bn) std::memcpy(out + an, b, bn);
  }

  uint32_t capacity() const { return capacity_; }
  /// The stream position of the next byte to consume (free-running, like ring_head()).
  uint32_t tail_index() const { return tail().load(std::memory_order_relaxed); }  // only this thread writes tail

 private:
  std::atomic_ref<uint32_t> head() const { return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(mem_ + RingLayout::kHead)); }
  std::atomic_ref<uint32_t> tail() const { return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(mem_ + RingLayout::kTail)); }

  uint8_t* mem_;
  uint8_t* data_;
  uint32_t mask_;
  uint32_t capacity_;
};

}  // namespace lockstep
