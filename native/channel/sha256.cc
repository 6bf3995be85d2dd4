// SHA-256 (FIPS 180-4) with two block functions: portable C++, and the x86 SHA extensions compiled
// with a target attribute (so the file builds for any x86-64, and not at all for them elsewhere) and
// picked only when cpuid says the CPU has them.
#include "channel/sha256.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#define LOCKSTEP_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace lockstep {
namespace {

constexpr uint32_t kIv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

alignas(16) constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
    0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
    0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
    0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
    0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
inline uint32_t load_be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
inline void store_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

void compress_portable(uint32_t state[8], const uint8_t* p, size_t count) {
  for (; count > 0; count--, p += Sha256::kBlock) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = load_be32(p + 4 * i);
    for (int i = 16; i < 64; i++) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kK[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

#ifdef LOCKSTEP_SHA_NI
// The SHA extensions keep the state as two vectors, ABEF and CDGH, and run two rounds per
// sha256rnds2; sha256msg1/msg2 compute the message schedule four words at a time. Sixteen groups of
// four rounds per block; group i consumes schedule vector w[i % 4] and prepares the ones after it.
// kLanes independent streams go through the same loop: sha256rnds2 waits for the one before it, so
// one stream leaves the unit idle most of the time, and a second one fills those cycles.
template <int kLanes>
__attribute__((target("sha,sse4.1,ssse3"), always_inline)) inline void shani_lanes(uint32_t* const state[kLanes], const uint8_t* p[kLanes],
                                                                                    size_t count) {
  const __m128i kByteSwap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i state0[kLanes], state1[kLanes];
  for (int l = 0; l < kLanes; l++) {
    __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&state[l][0]));
    __m128i s1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&state[l][4]));
    tmp = _mm_shuffle_epi32(tmp, 0xB1);               // CDAB
    s1 = _mm_shuffle_epi32(s1, 0x1B);                 // EFGH
    state0[l] = _mm_alignr_epi8(tmp, s1, 8);          // ABEF
    state1[l] = _mm_blend_epi16(s1, tmp, 0xF0);       // CDGH
  }
  for (size_t b = 0; b < count; b++) {
    __m128i abef[kLanes], cdgh[kLanes], w[kLanes][4];
    for (int l = 0; l < kLanes; l++) {
      abef[l] = state0[l];
      cdgh[l] = state1[l];
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
      const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(&kK[4 * i]));
#pragma GCC unroll 2
      for (int l = 0; l < kLanes; l++) {
        if (i < 4) w[l][i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[l] + 64 * b + 16 * i)), kByteSwap);
        __m128i msg = _mm_add_epi32(w[l][i % 4], k);
        state1[l] = _mm_sha256rnds2_epu32(state1[l], state0[l], msg);
        if (i >= 3 && i <= 14) {
          // Finishes the schedule vector of group i + 1 (it shares its slot with group i - 3).
          const __m128i t = _mm_alignr_epi8(w[l][i % 4], w[l][(i + 3) % 4], 4);
          w[l][(i + 1) % 4] = _mm_sha256msg2_epu32(_mm_add_epi32(w[l][(i + 1) % 4], t), w[l][i % 4]);
        }
        msg = _mm_shuffle_epi32(msg, 0x0E);
        state0[l] = _mm_sha256rnds2_epu32(state0[l], state1[l], msg);
        // Starts the schedule vector of group i + 3.
        if (i >= 1 && i <= 12) w[l][(i + 3) % 4] = _mm_sha256msg1_epu32(w[l][(i + 3) % 4], w[l][i % 4]);
      }
    }
    for (int l = 0; l < kLanes; l++) {
      state0[l] = _mm_add_epi32(state0[l], abef[l]);
      state1[l] = _mm_add_epi32(state1[l], cdgh[l]);
    }
  }
  for (int l = 0; l < kLanes; l++) {
    const __m128i tmp = _mm_shuffle_epi32(state0[l], 0x1B);  // FEBA
    const __m128i s1 = _mm_shuffle_epi32(state1[l], 0xB1);   // DCHG
    _mm_storeu_si128(reinterpret_cast<__m128i*>(&state[l][0]), _mm_blend_epi16(tmp, s1, 0xF0));  // h[0..3]
    _mm_storeu_si128(reinterpret_cast<__m128i*>(&state[l][4]), _mm_alignr_epi8(s1, tmp, 8));     // h[4..7]
  }
}

__attribute__((target("sha,sse4.1,ssse3"))) void compress_shani(uint32_t state[8], const uint8_t* p, size_t count) {
  uint32_t* const st[1] = {state};
  const uint8_t* ps[1] = {p};
  shani_lanes<1>(st, ps, count);
}

__attribute__((target("sha,sse4.1,ssse3"))) void compress_shani_x2(uint32_t a[8], const uint8_t* pa, uint32_t b[8], const uint8_t* pb, size_t count) {
  uint32_t* const st[2] = {a, b};
  const uint8_t* ps[2] = {pa, pb};
  shani_lanes<2>(st, ps, count);
}

bool cpu_has_shani() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return ssse3 && sse41 && ((b >> 29) & 1);
}
#endif

struct Dispatch {
  bool shani = false;
  Dispatch() {
#ifdef LOCKSTEP_SHA_NI
    shani = cpu_has_shani();
#endif
  }
};
const Dispatch kDispatch;

}  // namespace

bool sha256_available(Sha256Impl impl) {
  switch (impl) {
    case Sha256Impl::kPortable:
      return true;
    case Sha256Impl::kShaNi:
      return kDispatch.shani;
  }
  return false;
}

Sha256Impl sha256_default() { return kDispatch.shani ? Sha256Impl::kShaNi : Sha256Impl::kPortable; }

const char* sha256_impl_name(Sha256Impl impl) { return impl == Sha256Impl::kShaNi ? "sha-ni" : "portable"; }

void Sha256::reset(Sha256Impl impl) { resume(kIv, 0, impl); }

void Sha256::resume(const uint32_t state[8], uint64_t absorbed, Sha256Impl impl) {
  std::memcpy(h_, state, sizeof h_);
  fill_ = 0;
  total_ = absorbed;
#ifdef LOCKSTEP_SHA_NI
  compress_ = impl == Sha256Impl::kShaNi && kDispatch.shani ? compress_shani : compress_portable;
#else
  (void)impl;
  compress_ = compress_portable;
#endif
}

void Sha256::update(const uint8_t* data, size_t n) {
  if (n == 0) return;  // `data` may then be null (an empty vector's), which memcpy may not be given
  total_ += n;
  if (fill_) {
    const size_t take = n < kBlock - fill_ ? n : kBlock - fill_;
    std::memcpy(buf_ + fill_, data, take);
    fill_ += take;
    data += take;
    n -= take;
    if (fill_ < kBlock) return;
    compress_(h_, buf_, 1);
    fill_ = 0;
  }
  if (n >= kBlock) {
    compress_(h_, data, n / kBlock);
    data += n / kBlock * kBlock;
    n %= kBlock;
  }
  if (n) {
    std::memcpy(buf_, data, n);
    fill_ = n;
  }
}

void Sha256::update2(Sha256& a, const uint8_t* pa, Sha256& b, const uint8_t* pb, size_t n) {
#ifdef LOCKSTEP_SHA_NI
  if (a.compress_ == compress_shani && b.compress_ == compress_shani) {
    // Each to a block boundary on its own, then the whole blocks both have, together.
    const size_t ha = a.fill_ ? std::min(n, kBlock - a.fill_) : 0, hb = b.fill_ ? std::min(n, kBlock - b.fill_) : 0;
    a.update(pa, ha);
    b.update(pb, hb);
    pa += ha;
    pb += hb;
    size_t na = n - ha, nb = n - hb;
    if (a.fill_ == 0 && b.fill_ == 0) {
      const size_t blocks = std::min(na, nb) / kBlock;
      compress_shani_x2(a.h_, pa, b.h_, pb, blocks);
      a.total_ += blocks * kBlock;
      b.total_ += blocks * kBlock;
      pa += blocks * kBlock;
      pb += blocks * kBlock;
      na -= blocks * kBlock;
      nb -= blocks * kBlock;
    }
    a.update(pa, na);
    b.update(pb, nb);
    return;
  }
#endif
  a.update(pa, n);
  b.update(pb, n);
}

void Sha256::finish(uint8_t out[kDigest]) {
  const uint64_t bits = total_ * 8;
  buf_[fill_++] = 0x80;
  if (fill_ > kBlock - 8) {
    std::memset(buf_ + fill_, 0, kBlock - fill_);
    compress_(h_, buf_, 1);
    fill_ = 0;
  }
  std::memset(buf_ + fill_, 0, kBlock - 8 - fill_);
  for (int i = 0; i < 8; i++) buf_[kBlock - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
  compress_(h_, buf_, 1);
  for (int i = 0; i < 8; i++) store_be32(out + 4 * i, h_[i]);
}

void HmacKey::set(const uint8_t* key, size_t n, Sha256Impl impl) {
  impl_ = sha256_available(impl) ? impl : Sha256Impl::kPortable;
  uint8_t block[Sha256::kBlock] = {};
  if (n > Sha256::kBlock) {
    Sha256 h(impl_);
    h.update(key, n);
    h.finish(block);
  } else if (n) {
    std::memcpy(block, key, n);
  }
  uint8_t pad[Sha256::kBlock];
  for (size_t i = 0; i < Sha256::kBlock; i++) pad[i] = block[i] ^ 0x36;
  Sha256 inner(impl_);
  inner.update(pad, sizeof pad);
  std::memcpy(inner_, inner.state(), sizeof inner_);
  for (size_t i = 0; i < Sha256::kBlock; i++) pad[i] = block[i] ^ 0x5c;
  Sha256 outer(impl_);
  outer.update(pad, sizeof pad);
  std::memcpy(outer_, outer.state(), sizeof outer_);
  // volatile: the compiler may not drop these stores as dead.
  volatile uint8_t* wipe = block;
  for (size_t i = 0; i < sizeof block; i++) wipe[i] = 0;
  wipe = pad;
  for (size_t i = 0; i < sizeof pad; i++) wipe[i] = 0;
}

void HmacKey::clear() {
  volatile uint32_t* a = inner_;
  volatile uint32_t* b = outer_;
  for (int i = 0; i < 8; i++) {
    a[i] = 0;
    b[i] = 0;
  }
}

void HmacKey::Mac::finish(uint8_t out[Sha256::kDigest]) {
  uint8_t inner[Sha256::kDigest];
  inner_.finish(inner);
  Sha256 outer(key_->impl_);
  outer.resume(key_->outer_, Sha256::kBlock, key_->impl_);
  outer.update(inner, sizeof inner);
  outer.finish(out);
}

bool digest_equal(const uint8_t a[Sha256::kDigest], const uint8_t b[Sha256::kDigest]) {
  uint8_t diff = 0;
  for (size_t i = 0; i < Sha256::kDigest; i++) diff |= a[i] ^ b[i];
  return diff == 0;
}

}  // namespace lockstep
