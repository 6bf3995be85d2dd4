// SHA-256 and HMAC-SHA-256 for the logging channel's frame trailers, without OpenSSL: x86 SHA
// extensions when the CPU has them (chosen once at run time through cpuid), portable C++ otherwise.
// Pure: no threads, no allocation, no napi.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockstep {

/// The compression functions this build carries; tests run each against node:crypto.
enum class Sha256Impl : uint8_t {
  kPortable = 0,  ///< plain C++, every target
  kShaNi = 1,     ///< x86-64 SHA extensions (SHA-NI), used when cpuid reports them
};

/// True when `impl` is compiled in and the CPU can run it.
bool sha256_available(Sha256Impl impl);
/// The implementation Sha256 uses by default (the fastest available).
Sha256Impl sha256_default();
const char* sha256_impl_name(Sha256Impl impl);

/// Streaming SHA-256. `impl` must be available (see sha256_available).
class Sha256 {
 public:
  static constexpr size_t kBlock = 64;
  static constexpr size_t kDigest = 32;

  explicit Sha256(Sha256Impl impl = sha256_default()) { reset(impl); }
  void reset(Sha256Impl impl);
  /// Starts from a saved state that has already absorbed `absorbed` bytes (a multiple of kBlock):
  /// HMAC's precomputed inner and outer pads.
  void resume(const uint32_t state[8], uint64_t absorbed, Sha256Impl impl);
  void update(const uint8_t* data, size_t n);
  /// a.update(pa, n) and b.update(pb, n), with SHA-NI nearly in the time of one: the two streams'
  /// blocks are compressed together. Same result as the two calls, for any states and any n.
  static void update2(Sha256& a, const uint8_t* pa, Sha256& b, const uint8_t* pb, size_t n);
  void finish(uint8_t out[kDigest]);
  /// The chaining state; meaningful only at a block boundary (after resume, or updates of whole blocks).
  const uint32_t* state() const { return h_; }

 private:
  using Compress = void (*)(uint32_t state[8], const uint8_t* blocks, size_t count);
  uint32_t h_[8];
  uint8_t buf_[kBlock];
  size_t fill_ = 0;
  uint64_t total_ = 0;
  Compress compress_ = nullptr;
};

/// One HMAC-SHA-256 key with its inner and outer pads already absorbed, so sealing a frame costs the
/// frame's own blocks plus two: no per-frame key schedule.
class HmacKey {
 public:
  HmacKey() = default;
  HmacKey(const uint8_t* key, size_t n, Sha256Impl impl = sha256_default()) { set(key, n, impl); }
  void set(const uint8_t* key, size_t n, Sha256Impl impl = sha256_default());
  /// Wipes the pads (a closed channel leaves no key behind in its memory).
  void clear();
  Sha256Impl impl() const { return impl_; }

  /// A MAC over the concatenation of pieces fed to update().
  class Mac {
   public:
    explicit Mac(const HmacKey& key) : key_(&key), inner_() { inner_.resume(key.inner_, Sha256::kBlock, key.impl_); }
    void update(const uint8_t* data, size_t n) { inner_.update(data, n); }
    /// a.update(pa, n) and b.update(pb, n) together (Sha256::update2).
    static void update2(Mac& a, const uint8_t* pa, Mac& b, const uint8_t* pb, size_t n) { Sha256::update2(a.inner_, pa, b.inner_, pb, n); }
    void finish(uint8_t out[Sha256::kDigest]);

   private:
    const HmacKey* key_;
    Sha256 inner_;
  };

 private:
  uint32_t inner_[8] = {};
  uint32_t outer_[8] = {};
  Sha256Impl impl_ = Sha256Impl::kPortable;
};

/// Constant-time comparison of two 32-byte digests.
bool digest_equal(const uint8_t a[Sha256::kDigest], const uint8_t b[Sha256::kDigest]);

}  // namespace lockstep
