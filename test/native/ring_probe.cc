// RingProbe (the lockstep_test addon, never shipped in lockstep.node): a test-and-benchmark-only ObjectWrap that drives one end (or both ends) of a byte ring
// from native threads, so tests can stress the ring and benches can time it. Not part of the public
// API; no machine logic. Waiting never spins: a native end sleeps on a condition variable until its
// peer kicks it (the other native thread, or JS through kick()); JS is woken through a doorbell.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "log/ring.h"

namespace lockstep {
namespace {

// ---- The deterministic test stream, mirrored by test/helpers/ring-stream.ts -------------------------
//
// Byte i of the stream for a seed is pattern[i % kPatternBytes], where the pattern holds the
// little-endian bytes of successive xorshift32 words. kPatternBytes is prime so that the pattern
// never lines up with a power-of-two ring. Chunk sizes come from a second xorshift32 of the seed.

constexpr size_t kPatternBytes = 1048573;  // prime, just under 1 MiB
constexpr uint32_t kMaxChunk = 1u << 20;   // largest chunk a probe pushes or pops at once
static_assert(kMaxChunk % 4 == 0, "the pattern extension is filled word by word");

uint32_t xorshift32(uint32_t* s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

uint32_t prng_state(uint32_t seed, uint32_t salt) {
  const uint32_t s = seed ^ salt;
  return s ? s : 1;  // xorshift32 has no zero state
}
constexpr uint32_t kPatternSalt = 0x9E3779B9;
constexpr uint32_t kProducerChunkSalt = 0x85EBCA6B;
constexpr uint32_t kConsumerChunkSalt = 0xC2B2AE35;

/// The pattern plus a copy of its first kMaxChunk bytes, so any chunk starting anywhere in it is
/// contiguous.
std::vector<uint8_t> make_pattern(uint32_t seed) {
  std::vector<uint8_t> p(kPatternBytes + kMaxChunk);
  uint32_t s = prng_state(seed, kPatternSalt);
  for (size_t i = 0; i < kPatternBytes; i += 4) {
    const uint32_t w = xorshift32(&s);
    for (size_t b = 0; b < 4 && i + b < kPatternBytes; b++) p[i + b] = static_cast<uint8_t>(w >> (8 * b));
  }
  // Byte by byte, forwards: kMaxChunk > kPatternBytes, so the copy reads bytes it wrote itself.
  for (size_t i = 0; i < kMaxChunk; i++) p[kPatternBytes + i] = p[i];
  return p;
}

/// Lane hash: the stream's little-endian u32 words, word k into lane k % 8 by FNV-1a's step
/// (lane = (lane ^ word) * 16777619); a final partial word is zero-padded; then the lanes and the
/// 64-bit length are folded together and avalanched. Independent lanes let it run at memory speed;
/// every step is a bijection, so one changed word always changes the result. Mirrored in
/// test/helpers/ring-stream.ts.
class LaneHash {
 public:
  static constexpr size_t kLanes = 8;
  static constexpr size_t kBlock = kLanes * 4;

  LaneHash() {
    for (size_t i = 0; i < kLanes; i++) lanes_[i] = kBasis ^ static_cast<uint32_t>(i);
  }

  void update(const uint8_t* p, size_t n) {
    length_ += n;
    if (fill_) {
      const size_t take = std::min(n, kBlock - fill_);
      std::memcpy(block_ + fill_, p, take);
      fill_ += take;
      p += take;
      n -= take;
      if (fill_ < kBlock) return;
      blocks(block_, 1);
      fill_ = 0;
    }
    blocks(p, n / kBlock);
    p += n / kBlock * kBlock;
    n %= kBlock;
    std::memcpy(block_, p, n);
    fill_ = n;
  }

  uint32_t digest() const {
    uint32_t lanes[kLanes];
    std::memcpy(lanes, lanes_, sizeof lanes);
    for (size_t i = 0; i < fill_; i += 4) {
      uint8_t w[4] = {0, 0, 0, 0};
      std::memcpy(w, block_ + i, std::min<size_t>(4, fill_ - i));
      lanes[i / 4] = (lanes[i / 4] ^ load_le(w)) * kPrime;
    }
    uint32_t h = kBasis;
    for (uint32_t l : lanes) h = (h ^ l) * kPrime;
    h = (h ^ static_cast<uint32_t>(length_)) * kPrime;
    h = (h ^ static_cast<uint32_t>(length_ >> 32)) * kPrime;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
  }

 private:
  static constexpr uint32_t kBasis = 0x811C9DC5u;
  static constexpr uint32_t kPrime = 16777619u;
  static uint32_t load_le(const uint8_t* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
  }
  void blocks(const uint8_t* p, size_t count) {
    uint32_t l[kLanes];
    std::memcpy(l, lanes_, sizeof l);
    for (size_t b = 0; b < count; b++, p += kBlock) {
      for (size_t i = 0; i < kLanes; i++) l[i] = (l[i] ^ load_le(p + 4 * i)) * kPrime;
    }
    std::memcpy(lanes_, l, sizeof l);
  }

  uint32_t lanes_[kLanes];
  uint8_t block_[kBlock];
  size_t fill_ = 0;
  uint64_t length_ = 0;
};

// ---- Waking a sleeping native end without a lost wake-up ----------------------------------------

/// One side sleeps here until the ring state it needs appears; the other side kicks after every
/// push or pop. kick() costs one fence and one relaxed load while nobody sleeps.
class Waker {
 public:
  /// Sleeps until ready() or stop. Returns at once if ready() already holds.
  template <typename Ready>
  void wait(Ready ready, const std::atomic<bool>& stop) {
    std::unique_lock<std::mutex> lock(mu_);
    // relaxed: ordered by the fence below (pairs with kick()'s fence and load of sleepers_).
    sleepers_.fetch_add(1, std::memory_order_relaxed);
    // seq_cst fence: pairs with the fence in kick(). Either the kicker's publish (head or tail store,
    // made before its fence) is visible to ready() below, or its load of sleepers_ sees our increment
    // and it bumps gen_ under mu_, which we hold until cv_.wait releases it. No wake-up is lost.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    uint64_t gen = gen_;
    while (!ready() && !stop.load(std::memory_order_acquire)) {
      cv_.wait(lock, [&] { return gen_ != gen; });
      gen = gen_;
    }
    // relaxed: a kicker that still sees us counted only takes the mutex and notifies for nothing.
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
  }

  void kick() {
    // seq_cst fence: pairs with the fence in wait() (see there); orders our ring publish before the
    // load of sleepers_.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_relaxed) == 0) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      gen_++;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t gen_ = 0;  // guarded by mu_
  std::atomic<uint32_t> sleepers_{0};
};

// ---- The probe ------------------------------------------------------------------------------------

enum class Mode { kIdle, kProduce, kConsume, kPipe };

/// What a run measured. Written by the run's threads, read by JS only after done() (acquire).
struct ProbeResult {
  uint64_t produced = 0;
  uint64_t consumed = 0;
  uint32_t producer_checksum = 0;
  uint32_t consumer_checksum = 0;
  uint64_t producer_waits = 0;
  uint64_t consumer_waits = 0;
  int64_t mismatch_at = -1;  // first stream offset where consumed bytes differ from the pattern
  double producer_seconds = 0;  // from the start of the run to this end's last byte
  double consumer_seconds = 0;
};

class RingProbe : public Napi::ObjectWrap<RingProbe> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RingProbe",
                       {
                           InstanceMethod<&RingProbe::JsProduce>("produce"),
                           InstanceMethod<&RingProbe::JsConsume>("consume"),
                           InstanceMethod<&RingProbe::JsPipe>("pipe"),
                           InstanceMethod<&RingProbe::JsKick>("kick"),
                           InstanceMethod<&RingProbe::JsDone>("done"),
                           InstanceMethod<&RingProbe::JsResult>("result"),
                           InstanceMethod<&RingProbe::JsJoin>("join"),
                           InstanceMethod<&RingProbe::JsClose>("close"),
                       });
  }

  // new RingProbe(ring: Uint8Array over a SharedArrayBuffer (128 + 2^k bytes), doorbell: () => void)
  explicit RingProbe(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingProbe>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "RingProbe(ring: Uint8Array, doorbell: Function)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Uint8Array ring = info[0].As<Napi::Uint8Array>();
    const size_t bytes = ring.ByteLength();
    if (bytes <= RingLayout::kData || !ByteRingProducer::valid_capacity(bytes - RingLayout::kData)) {
      Napi::RangeError::New(env, "ring must be 128 + 2^k bytes (6 <= k <= 30)").ThrowAsJavaScriptException();
      return;
    }
    if (ring.ByteOffset() % 4 != 0) {
      Napi::RangeError::New(env, "ring must start at a multiple of 4 bytes in its buffer").ThrowAsJavaScriptException();
      return;
    }
    mem_ = static_cast<uint8_t*>(ring.Data());
    capacity_ = static_cast<uint32_t>(bytes - RingLayout::kData);
    // Keeps the SharedArrayBuffer alive until the threads are joined (Close()).
    ring_ref_ = Napi::Persistent(ring);
    doorbell_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "lockstep-ring-probe", 0, 1);
    doorbell_.Unref(env);  // referenced only while a run is in flight
    env_ = env;
    // Added after the doorbell, so it runs before the doorbell's own teardown (hooks run in reverse).
    cleanup_ = env.AddCleanupHook(&RingProbe::OnEnvCleanup, this);
  }

  ~RingProbe() override {
    Close();
    // Not after the hook fired: that is environment teardown, where removing a hook finds the wrong
    // (or no) environment through the isolate and corrupts the heap (seen with worker.terminate()).
    if (!hook_fired_ && !cleanup_.IsEmpty()) cleanup_.Remove(env_);
  }

 private:
  static void OnEnvCleanup(RingProbe* self) {
    self->hook_fired_ = true;
    self->Close();
  }

  /// Stops and joins the threads, then releases what they used. Idempotent.
  void Close() {
    if (closed_) return;
    closed_ = true;
    // release: pairs with the loads of stop_ in the threads' loops and in Waker::wait (which reads
    // it under the waker's fence protocol, so the kicks below cannot be missed).
    stop_.store(true, std::memory_order_release);
    data_waker_.kick();
    space_waker_.kick();
    JoinThreads();
    if (doorbell_) doorbell_.Release();
    if (!ring_ref_.IsEmpty()) ring_ref_.Reset();
  }

  void JoinThreads() {
    if (producer_.joinable()) producer_.join();
    if (consumer_.joinable()) consumer_.join();
  }

  bool Done() const {
    // acquire: pairs with the release increment of finished_ at the end of each thread, so the
    // result fields it wrote are visible.
    return finished_.load(std::memory_order_acquire) == started_;
  }

  /// Rings the JS doorbell, coalesced: at most one call is queued at a time.
  void RingDoorbell() {
    // acq_rel: pairs with the exchange in the JS-thread callback below. If we see `true`, a queued
    // call has not cleared the flag yet, and when it does (an RMW, reading our write) our ring
    // publish happens-before the JS side's next read of the ring.
    if (bell_pending_->exchange(true, std::memory_order_acq_rel)) return;
    auto pending = bell_pending_;
    doorbell_.NonBlockingCall([pending](Napi::Env, Napi::Function fn) {
      // acq_rel: pairs with the exchange above (see there); cleared before the call, so progress
      // made while JS runs the doorbell queues a fresh call.
      pending->exchange(false, std::memory_order_acq_rel);
      fn.Call({});
    });
  }

  // ---- argument checks ----

  bool Startable(const Napi::CallbackInfo& info) {
    if (closed_) {
      Napi::Error::New(info.Env(), "probe is closed").ThrowAsJavaScriptException();
      return false;
    }
    if (!Done()) {
      Napi::Error::New(info.Env(), "probe is running: wait until done() is true, then join()").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }
  static bool Integer(const Napi::CallbackInfo& info, size_t i, const char* name, double lo, double hi, double* out) {
    if (i >= info.Length() || !info[i].IsNumber()) {
      Napi::TypeError::New(info.Env(), std::string(name) + " must be a number").ThrowAsJavaScriptException();
      return false;
    }
    const double d = info[i].As<Napi::Number>().DoubleValue();
    if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<int64_t>(d))) {
      Napi::RangeError::New(info.Env(), std::string(name) + " must be an integer from " + std::to_string(static_cast<int64_t>(lo)) +
                                            " to " + std::to_string(static_cast<int64_t>(hi)))
          .ThrowAsJavaScriptException();
      return false;
    }
    *out = d;
    return true;
  }
  /// One run's parameters: (totalBytes, seed, maxChunk, options?) of produce/consume/pipe.
  struct RunSpec {
    uint64_t total = 0;
    uint32_t seed = 0;
    uint32_t max_chunk = 1;
    uint32_t start = 0;      // options.startIndex: where head and tail begin (produce, pipe)
    bool fixed = false;      // options.fixedChunk: every push/pop asks for maxChunk bytes, not 1..maxChunk
    bool check = true;       // options.check: hash (and, consuming, verify) the bytes; off for throughput
    bool native_peer = false;
  };
  static bool Flag(const Napi::CallbackInfo& info, Napi::Object opts, const char* name, bool* out) {
    Napi::Value v = opts.Get(name);
    if (v.IsUndefined()) return true;
    if (!v.IsBoolean()) {
      Napi::TypeError::New(info.Env(), std::string("options.") + name + " must be a boolean").ThrowAsJavaScriptException();
      return false;
    }
    *out = v.As<Napi::Boolean>().Value();
    return true;
  }
  bool RunArgs(const Napi::CallbackInfo& info, bool with_start, RunSpec* spec) {
    double t, s, c;
    if (!Integer(info, 0, "totalBytes", 0, 9007199254740991.0, &t) || !Integer(info, 1, "seed", 0, 4294967295.0, &s) ||
        !Integer(info, 2, "maxChunk", 1, kMaxChunk, &c)) {
      return false;
    }
    spec->total = static_cast<uint64_t>(t);
    spec->seed = static_cast<uint32_t>(s);
    spec->max_chunk = static_cast<uint32_t>(c);
    if (info.Length() <= 3 || info[3].IsUndefined()) return true;
    if (!info[3].IsObject()) {
      Napi::TypeError::New(info.Env(), "options must be an object").ThrowAsJavaScriptException();
      return false;
    }
    Napi::Object opts = info[3].As<Napi::Object>();
    Napi::Value start = opts.Get("startIndex");
    if (!start.IsUndefined()) {
      if (!with_start) {
        Napi::TypeError::New(info.Env(), "consume() takes no startIndex: the ByteRingWriter sets it").ThrowAsJavaScriptException();
        return false;
      }
      double st;
      if (!start.IsNumber()) {
        Napi::TypeError::New(info.Env(), "options.startIndex must be a number").ThrowAsJavaScriptException();
        return false;
      }
      st = start.As<Napi::Number>().DoubleValue();
      if (!(st >= 0 && st <= 4294967295.0) || st != static_cast<double>(static_cast<int64_t>(st))) {
        Napi::RangeError::New(info.Env(), "options.startIndex must be an integer from 0 to 4294967295").ThrowAsJavaScriptException();
        return false;
      }
      spec->start = static_cast<uint32_t>(st);
    }
    return Flag(info, opts, "fixedChunk", &spec->fixed) && Flag(info, opts, "check", &spec->check);
  }

  void Begin(Napi::Env env, Mode mode, int threads) {
    JoinThreads();  // the previous run's threads have finished (Done()); reap them
    mode_ = mode;
    result_ = ProbeResult{};
    // relaxed: no thread of this probe runs now; starting the new ones orders these stores first.
    stop_.store(false, std::memory_order_relaxed);
    finished_.store(0, std::memory_order_relaxed);
    started_ = threads;
    t0_ = std::chrono::steady_clock::now();
    if (!refed_) {
      doorbell_.Ref(env);  // a run in flight keeps the process alive until join()
      refed_ = true;
    }
  }

  // produce(totalBytes, seed, maxChunk, { startIndex, fixedChunk, check }?): initialises the ring
  // (head = tail = startIndex) and starts a native producer; the consumer is JS (ByteRingReader).
  Napi::Value JsProduce(const Napi::CallbackInfo& info) {
    RunSpec spec;
    if (!Startable(info) || !RunArgs(info, true, &spec)) return info.Env().Undefined();
    ByteRingProducer(mem_, capacity_).init(spec.start);  // before the thread starts: the start orders it
    Begin(info.Env(), Mode::kProduce, 1);
    producer_ = std::thread([this, spec] { ProducerMain(spec); });
    return info.Env().Undefined();
  }

  // consume(totalBytes, seed, maxChunk, { fixedChunk, check }?): starts a native consumer of a ring
  // that JS produces into (ByteRingWriter, which initialised the header); unless check is false it
  // verifies the bytes against the seed's stream.
  Napi::Value JsConsume(const Napi::CallbackInfo& info) {
    RunSpec spec;
    if (!Startable(info) || !RunArgs(info, false, &spec)) return info.Env().Undefined();
    if (!ByteRingConsumer(mem_, capacity_).header_matches()) {
      Napi::Error::New(info.Env(), "ring header is not initialised for this capacity: create the ByteRingWriter first")
          .ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    Begin(info.Env(), Mode::kConsume, 1);
    consumer_ = std::thread([this, spec] { ConsumerMain(spec); });
    return info.Env().Undefined();
  }

  // pipe(totalBytes, seed, maxChunk, { startIndex, fixedChunk, check }?): both ends native, on two
  // threads (the shape of the FT logging path).
  Napi::Value JsPipe(const Napi::CallbackInfo& info) {
    RunSpec spec;
    if (!Startable(info) || !RunArgs(info, true, &spec)) return info.Env().Undefined();
    spec.native_peer = true;
    ByteRingProducer(mem_, capacity_).init(spec.start);
    Begin(info.Env(), Mode::kPipe, 2);
    consumer_ = std::thread([this, spec] { ConsumerMain(spec); });
    producer_ = std::thread([this, spec] { ProducerMain(spec); });
    return info.Env().Undefined();
  }

  // kick(): JS read or wrote the ring; wakes a native end waiting for space or data.
  Napi::Value JsKick(const Napi::CallbackInfo& info) {
    data_waker_.kick();
    space_waker_.kick();
    return info.Env().Undefined();
  }

  Napi::Value JsDone(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), Done()); }

  // result(): null while running, else { bytes, checksum, waits, producerWaits, consumerWaits,
  // producerChecksum, consumerChecksum, mismatchAt, seconds }.
  Napi::Value JsResult(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (mode_ == Mode::kIdle || !Done()) return env.Null();
    const ProbeResult& r = result_;
    const bool produce = mode_ == Mode::kProduce;
    Napi::Object o = Napi::Object::New(env);
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(produce ? r.produced : r.consumed)));
    o.Set("checksum", Napi::Number::New(env, produce ? r.producer_checksum : r.consumer_checksum));
    o.Set("waits", Napi::Number::New(env, static_cast<double>(r.producer_waits + r.consumer_waits)));
    o.Set("producerWaits", Napi::Number::New(env, static_cast<double>(r.producer_waits)));
    o.Set("consumerWaits", Napi::Number::New(env, static_cast<double>(r.consumer_waits)));
    o.Set("producerChecksum", Napi::Number::New(env, r.producer_checksum));
    o.Set("consumerChecksum", Napi::Number::New(env, r.consumer_checksum));
    o.Set("mismatchAt", Napi::Number::New(env, static_cast<double>(r.mismatch_at)));
    o.Set("seconds", Napi::Number::New(env, std::max(r.producer_seconds, r.consumer_seconds)));
    return o;
  }

  // join(): reaps the finished run's threads and returns result(). Throws while running, since a
  // native end may be waiting for this very JS thread to read or write.
  Napi::Value JsJoin(const Napi::CallbackInfo& info) {
    if (!Done()) {
      Napi::Error::New(info.Env(), "probe is running: wait until done() is true").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    JoinThreads();
    if (refed_ && !closed_) {
      doorbell_.Unref(info.Env());
      refed_ = false;
    }
    return JsResult(info);
  }

  // close(): stops a run early (its ends give up waiting), joins, releases the ring and doorbell.
  Napi::Value JsClose(const Napi::CallbackInfo& info) {
    Close();
    return info.Env().Undefined();
  }

  // ---- the threads ----

  double Elapsed() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

  void Finish() {
    // release: publishes the result_ fields this thread wrote; pairs with the acquire load in Done().
    finished_.fetch_add(1, std::memory_order_release);
    RingDoorbell();
  }

  static size_t NextChunk(const RunSpec& spec, uint32_t* rng, uint64_t left) {
    const uint64_t c = spec.fixed ? spec.max_chunk : 1 + xorshift32(rng) % spec.max_chunk;
    return static_cast<size_t>(std::min(c, left));
  }

  void ProducerMain(const RunSpec spec) {
    const std::vector<uint8_t> pattern = make_pattern(spec.seed);
    ByteRingProducer ring(mem_, capacity_);
    LaneHash hash;
    uint32_t rng = prng_state(spec.seed, kProducerChunkSalt);
    uint64_t pos = 0, waits = 0;
    const uint64_t total = spec.total;
    const bool native_peer = spec.native_peer;
    // relaxed loads of stop_: only a hint to give up early; the data itself is ordered by the ring.
    while (pos < total && !stop_.load(std::memory_order_relaxed)) {
      const size_t c = NextChunk(spec, &rng, total - pos);
      const uint8_t* src = pattern.data() + pos % kPatternBytes;
      size_t sent = 0;
      while (sent < c) {
        const size_t n = ring.push(src + sent, c - sent);
        if (n) {
          sent += n;
          data_waker_.kick();
          if (!native_peer) RingDoorbell();
          continue;
        }
        waits++;
        space_waker_.wait([&] { return ring.free_space() > 0; }, stop_);
        if (stop_.load(std::memory_order_relaxed)) break;
      }
      if (spec.check) hash.update(src, sent);
      pos += sent;
    }
    result_.producer_seconds = Elapsed();
    result_.produced = pos;
    result_.producer_checksum = hash.digest();
    result_.producer_waits = waits;
    Finish();
  }

  void ConsumerMain(const RunSpec spec) {
    const std::vector<uint8_t> pattern = make_pattern(spec.seed);
    std::vector<uint8_t> buf(spec.max_chunk);
    ByteRingConsumer ring(mem_, capacity_);
    LaneHash hash;
    uint32_t rng = prng_state(spec.seed, kConsumerChunkSalt);
    uint64_t pos = 0, waits = 0;
    int64_t mismatch = -1;
    const uint64_t total = spec.total;
    const bool native_peer = spec.native_peer;
    // relaxed: as in ProducerMain.
    while (pos < total && !stop_.load(std::memory_order_relaxed)) {
      const size_t want = NextChunk(spec, &rng, total - pos);
      const size_t n = ring.pop(buf.data(), want);
      if (n == 0) {
        waits++;
        data_waker_.wait([&] { return ring.available() > 0; }, stop_);
        continue;
      }
      space_waker_.kick();
      if (!native_peer) RingDoorbell();
      if (spec.check) {
        const uint8_t* expect = pattern.data() + pos % kPatternBytes;
        if (mismatch < 0 && std::memcmp(buf.data(), expect, n) != 0) {
          size_t i = 0;
          while (buf[i] == expect[i]) i++;
          mismatch = static_cast<int64_t>(pos + i);
        }
        hash.update(buf.data(), n);
      }
      pos += n;
    }
    result_.consumer_seconds = Elapsed();
    result_.consumed = pos;
    result_.consumer_checksum = hash.digest();
    result_.consumer_waits = waits;
    result_.mismatch_at = mismatch;
    Finish();
  }

  uint8_t* mem_ = nullptr;
  uint32_t capacity_ = 0;
  Napi::Reference<Napi::Uint8Array> ring_ref_;
  Napi::ThreadSafeFunction doorbell_;
  std::shared_ptr<std::atomic<bool>> bell_pending_ = std::make_shared<std::atomic<bool>>(false);
  Napi::Env env_{nullptr};
  Napi::Env::CleanupHook<void (*)(RingProbe*), RingProbe> cleanup_;

  Mode mode_ = Mode::kIdle;
  int started_ = 0;  // threads in the current run; written only while none runs
  std::atomic<int> finished_{0};
  std::atomic<bool> stop_{false};
  Waker data_waker_;   // the consumer sleeps here while the ring is empty
  Waker space_waker_;  // the producer sleeps here while the ring is full
  std::thread producer_;
  std::thread consumer_;
  std::chrono::steady_clock::time_point t0_;
  ProbeResult result_;
  bool refed_ = false;
  bool closed_ = false;
  bool hook_fired_ = false;
};

}  // namespace

}  // namespace lockstep

// A separate addon (build/Release/test/lockstep_test.node, target lockstep_test in binding.gyp): the
// shipped addon carries no test code. Loaded only by tests and benchmarks (test/helpers/ring-probe.ts;
// its UdpProbe by test/machine/udp-forward.test.ts, its PrecopyProbe by test/machine/precopy.test.ts).
namespace lockstep {
Napi::Function InitUdpProbe(Napi::Env env);      // udp_probe.cc
Napi::Function InitPrecopyProbe(Napi::Env env);  // precopy_probe.cc
}  // namespace lockstep

static Napi::Object InitRingProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("RingProbe", lockstep::RingProbe::Init(env));
  exports.Set("UdpProbe", lockstep::InitUdpProbe(env));
  exports.Set("PrecopyProbe", lockstep::InitPrecopyProbe(env));
  return exports;
}

NODE_API_MODULE(lockstep_test, InitRingProbe)
