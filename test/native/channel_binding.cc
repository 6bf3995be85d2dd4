// Test and benchmark binding of native/channel (its own addon, lockstep_channel_test.node, never in
// the production one): SHA-256/HMAC per implementation, the frame codec, and harnesses that run real
// LogChannel threads over a socketpair or TCP loopback and report what came out of them.
#include <napi.h>

#include <arpa/inet.h>
#include <poll.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "channel/channel.h"
#include "channel/frame.h"
#include "channel/sha256.h"
#include "log/event.h"
#include "log/ring.h"

namespace lockstep {
namespace {

// ---- argument helpers ---------------------------------------------------------------------------

bool Fail(Napi::Env env, const std::string& what) {
  Napi::TypeError::New(env, what).ThrowAsJavaScriptException();
  return false;
}

bool Bytes(const Napi::CallbackInfo& info, size_t i, const char* name, std::vector<uint8_t>* out) {
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    return Fail(info.Env(), std::string(name) + " must be a Uint8Array");
  }
  Napi::Uint8Array a = info[i].As<Napi::Uint8Array>();
  out->assign(a.Data(), a.Data() + a.ByteLength());
  return true;
}

bool Num(Napi::Env env, Napi::Value v, const char* name, double lo, double hi, double* out) {
  if (!v.IsNumber()) return Fail(env, std::string(name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<int64_t>(d))) {
    Napi::RangeError::New(env, std::string(name) + " must be an integer from " + std::to_string(static_cast<int64_t>(lo)) + " to " +
                                   std::to_string(static_cast<int64_t>(hi)))
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = d;
  return true;
}

bool Opt(Napi::Object o, const char* name, double lo, double hi, double dflt, double* out) {
  if (!o.Has(name) || o.Get(name).IsUndefined()) {
    *out = dflt;
    return true;
  }
  return Num(o.Env(), o.Get(name), name, lo, hi, out);
}

bool Impl(Napi::Env env, Napi::Value v, Sha256Impl* out) {
  double d;
  if (!Num(env, v, "impl", 0, 1, &d)) return false;
  *out = static_cast<Sha256Impl>(static_cast<int>(d));
  if (!sha256_available(*out)) {
    Napi::Error::New(env, std::string(sha256_impl_name(*out)) + " is not available on this CPU").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

Napi::Buffer<uint8_t> Buf(Napi::Env env, const uint8_t* p, size_t n) { return Napi::Buffer<uint8_t>::Copy(env, p, n); }

// ---- SHA-256, HMAC, frames ----------------------------------------------------------------------

Napi::Value ImplAvailable(const Napi::CallbackInfo& info) {
  double d;
  if (!Num(info.Env(), info[0], "impl", 0, 1, &d)) return info.Env().Undefined();
  return Napi::Boolean::New(info.Env(), sha256_available(static_cast<Sha256Impl>(static_cast<int>(d))));
}

Napi::Value DefaultImpl(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<int>(sha256_default())); }

/// Feeds `data` in pieces cut at `cuts` (ascending offsets), so the streaming paths are exercised.
template <typename Update>
bool FeedCuts(const Napi::CallbackInfo& info, size_t i, const std::vector<uint8_t>& data, Update update) {
  size_t at = 0;
  if (info.Length() > i && info[i].IsArray()) {
    Napi::Array cuts = info[i].As<Napi::Array>();
    for (uint32_t k = 0; k < cuts.Length(); k++) {
      double c;
      if (!Num(info.Env(), cuts.Get(k), "cut", static_cast<double>(at), static_cast<double>(data.size()), &c)) return false;
      update(data.data() + at, static_cast<size_t>(c) - at);
      at = static_cast<size_t>(c);
    }
  }
  update(data.data() + at, data.size() - at);
  return true;
}

// sha256(impl, data, cuts?) → 32-byte Buffer
Napi::Value Sha256Js(const Napi::CallbackInfo& info) {
  Sha256Impl impl;
  std::vector<uint8_t> data;
  if (!Impl(info.Env(), info[0], &impl) || !Bytes(info, 1, "data", &data)) return info.Env().Undefined();
  Sha256 h(impl);
  if (!FeedCuts(info, 2, data, [&](const uint8_t* p, size_t n) { h.update(p, n); })) return info.Env().Undefined();
  uint8_t out[Sha256::kDigest];
  h.finish(out);
  return Buf(info.Env(), out, sizeof out);
}

// hmac(impl, key, data, cuts?) → 32-byte Buffer
Napi::Value HmacJs(const Napi::CallbackInfo& info) {
  Sha256Impl impl;
  std::vector<uint8_t> key, data;
  if (!Impl(info.Env(), info[0], &impl) || !Bytes(info, 1, "key", &key) || !Bytes(info, 2, "data", &data)) return info.Env().Undefined();
  HmacKey k(key.data(), key.size(), impl);
  HmacKey::Mac mac(k);
  if (!FeedCuts(info, 3, data, [&](const uint8_t* p, size_t n) { mac.update(p, n); })) return info.Env().Undefined();
  uint8_t out[Sha256::kDigest];
  mac.finish(out);
  return Buf(info.Env(), out, sizeof out);
}

// hmacPair(impl, key, a, b, cutA, cutB) → [mac(a), mac(b)]: a's first cutA bytes and b's first cutB
// alone, then as much as both have left through HmacKey::Mac::update2, then the rest alone.
Napi::Value HmacPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Sha256Impl impl;
  std::vector<uint8_t> key, a, b;
  double ca, cb;
  if (!Impl(env, info[0], &impl) || !Bytes(info, 1, "key", &key) || !Bytes(info, 2, "a", &a) || !Bytes(info, 3, "b", &b)) return env.Undefined();
  if (!Num(env, info[4], "cutA", 0, static_cast<double>(a.size()), &ca) || !Num(env, info[5], "cutB", 0, static_cast<double>(b.size()), &cb)) {
    return env.Undefined();
  }
  HmacKey k(key.data(), key.size(), impl);
  HmacKey::Mac ma(k), mb(k);
  const size_t cut_a = static_cast<size_t>(ca), cut_b = static_cast<size_t>(cb);
  ma.update(a.data(), cut_a);
  mb.update(b.data(), cut_b);
  const size_t both = std::min(a.size() - cut_a, b.size() - cut_b);
  HmacKey::Mac::update2(ma, a.data() + cut_a, mb, b.data() + cut_b, both);
  ma.update(a.data() + cut_a + both, a.size() - cut_a - both);
  mb.update(b.data() + cut_b + both, b.size() - cut_b - both);
  uint8_t da[Sha256::kDigest], db[Sha256::kDigest];
  ma.finish(da);
  mb.finish(db);
  Napi::Array r = Napi::Array::New(env, 2);
  r.Set(0u, Buf(env, da, sizeof da));
  r.Set(1u, Buf(env, db, sizeof db));
  return r;
}

// encodeFrame(key, type, sequence, payload) → header + payload + HMAC trailer
Napi::Value EncodeFrame(const Napi::CallbackInfo& info) {
  std::vector<uint8_t> key, payload;
  double type, seq;
  if (!Bytes(info, 0, "key", &key) || !Num(info.Env(), info[1], "type", 0, 255, &type) ||
      !Num(info.Env(), info[2], "sequence", 0, static_cast<double>(FrameLayout::kMaxSequence), &seq) || !Bytes(info, 3, "payload", &payload)) {
    return info.Env().Undefined();
  }
  HmacKey k(key.data(), key.size());
  std::vector<uint8_t> out(FrameLayout::kHeader + payload.size() + FrameLayout::kTrailer);
  encode_frame_header(out.data(), static_cast<uint8_t>(type), static_cast<uint32_t>(payload.size()), static_cast<uint64_t>(seq));
  if (!payload.empty()) std::memcpy(out.data() + FrameLayout::kHeader, payload.data(), payload.size());
  HmacKey::Mac mac(k);
  mac.update(out.data(), FrameLayout::kHeader + payload.size());
  mac.finish(out.data() + FrameLayout::kHeader + payload.size());
  return Buf(info.Env(), out.data(), out.size());
}

Napi::Object ErrorObject(Napi::Env env, ChannelError code, const std::string& message) {
  Napi::Object e = Napi::Object::New(env);
  e.Set("code", static_cast<int>(code));
  e.Set("name", channel_error_name(code));
  e.Set("message", message);
  return e;
}

// decodeFrames(key, firstSequence, maxPayload, bytes) → { frames: [{type, sequence, payload}], consumed, error? }
Napi::Value DecodeFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<uint8_t> key, bytes;
  double seq, max;
  if (!Bytes(info, 0, "key", &key) || !Num(env, info[1], "firstSequence", 0, static_cast<double>(FrameLayout::kMaxSequence), &seq) ||
      !Num(env, info[2], "maxPayload", 0, 4294967295.0, &max) || !Bytes(info, 3, "bytes", &bytes)) {
    return env.Undefined();
  }
  HmacKey k(key.data(), key.size());
  FrameReader reader(&k, static_cast<uint64_t>(seq), static_cast<uint32_t>(max));
  Napi::Object result = Napi::Object::New(env);
  Napi::Array frames = Napi::Array::New(env);
  size_t at = 0;
  for (;;) {
    FrameView f;
    size_t need = 0;
    const auto status = reader.next(bytes.data() + at, bytes.size() - at, &f, &need);
    if (status == FrameReader::Status::kNeedMore) {
      result.Set("need", static_cast<double>(need));
      break;
    }
    if (status == FrameReader::Status::kError) {
      result.Set("error", ErrorObject(env, reader.error(), reader.message()));
      break;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("type", f.type);
    o.Set("sequence", static_cast<double>(f.sequence));
    o.Set("payload", Buf(env, f.payload, f.length));
    frames.Set(frames.Length(), o);
    reader.accept();
    at += f.total;
  }
  result.Set("frames", frames);
  result.Set("consumed", static_cast<double>(at));
  return result;
}

// ---- channel harnesses --------------------------------------------------------------------------

/// Ring memory (header + data), 64-byte aligned, zeroed.
struct RingMem {
  explicit RingMem(uint32_t cap) : capacity(cap), mem(static_cast<uint8_t*>(std::aligned_alloc(64, RingLayout::kData + cap))) {
    std::memset(mem, 0, RingLayout::kData + cap);
  }
  ~RingMem() { std::free(mem); }
  uint32_t capacity;
  uint8_t* mem;
};

/// A connected pair of stream sockets: AF_UNIX, or TCP over 127.0.0.1 (listen, connect, accept).
bool Connect(bool tcp, int fds[2], std::string* why) {
  if (!tcp) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0) return true;
    *why = std::string("socketpair: ") + std::strerror(errno);
    return false;
  }
  const int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bool ok = ls >= 0 && bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(ls, 1) == 0 &&
            getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  fds[0] = ok ? socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
  ok = ok && fds[0] >= 0 && connect(fds[0], reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  fds[1] = ok ? accept4(ls, nullptr, nullptr, SOCK_CLOEXEC) : -1;
  ok = ok && fds[1] >= 0;
  if (!ok) {
    *why = std::string("TCP loopback: ") + std::strerror(errno);
    if (fds[0] >= 0) close(fds[0]);
  }
  if (ls >= 0) close(ls);
  return ok;
}

/// A socketpair for a harness; false with a pending JavaScript exception when none can be made.
bool SocketPair(Napi::Env env, int fds[2]) {
  std::string why;
  if (Connect(false, fds, &why)) return true;
  Napi::Error::New(env, why).ThrowAsJavaScriptException();
  return false;
}

/// Synthetic sealed batches: header as native/log/event.h lays it out, records taken from a random
/// pool at an lsn-dependent offset, so the consumer can check every byte without keeping a copy.
struct BatchMaker {
  BatchMaker(uint32_t min_records, uint32_t max_records, uint32_t seed) : min(min_records), max(max_records), pool(2 * BatchLayout::kMaxLength) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& b : pool) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      b = static_cast<uint8_t>(x);
    }
  }
  uint32_t records(uint64_t lsn) const { return min + static_cast<uint32_t>((lsn * 2654435761ull >> 7) % (max - min + 1)); }
  size_t offset(uint64_t lsn) const { return (lsn * 7919) % BatchLayout::kMaxLength; }
  void make(uint64_t lsn, std::vector<uint8_t>* out) const {
    const uint32_t n = records(lsn);
    out->resize(BatchLayout::kHeader + n);
    uint8_t* p = out->data();
    std::memset(p, 0, BatchLayout::kHeader);
    std::memcpy(p + BatchLayout::kLength, &n, 4);
    std::memcpy(p + BatchLayout::kLsn, &lsn, 8);
    std::memcpy(p + BatchLayout::kHeader, pool.data() + offset(lsn), n);
  }
  bool check(uint64_t lsn, const uint8_t* p, size_t size) const {
    uint32_t n;
    uint64_t got;
    std::memcpy(&n, p + BatchLayout::kLength, 4);
    std::memcpy(&got, p + BatchLayout::kLsn, 8);
    return got == lsn && n == records(lsn) && size == BatchLayout::kHeader + n &&
           std::memcmp(p + BatchLayout::kHeader, pool.data() + offset(lsn), n) == 0;
  }
  uint32_t min, max;
  std::vector<uint8_t> pool;
};

/// Counts events and wakes waiters: a ring hook, an ACK, or a channel's end.
struct Bell {
  std::mutex m;
  std::condition_variable cv;
  uint64_t n = 0;
  void ring() {
    std::lock_guard<std::mutex> l(m);
    n++;
    cv.notify_all();
  }
  uint64_t count() {
    std::lock_guard<std::mutex> l(m);
    return n;
  }
  /// False once `deadline` has passed.
  bool wait(uint64_t seen, std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> l(m);
    return cv.wait_until(l, deadline, [&] { return n != seen; }) || std::chrono::steady_clock::now() < deadline;
  }
};

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

Napi::Object StatsObject(Napi::Env env, const ChannelStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("bytesSent", static_cast<double>(s.bytes_sent));
  o.Set("bytesReceived", static_cast<double>(s.bytes_received));
  o.Set("framesSent", static_cast<double>(s.frames_sent));
  o.Set("framesReceived", static_cast<double>(s.frames_received));
  o.Set("logBytes", static_cast<double>(s.log_bytes));
  o.Set("logFrames", static_cast<double>(s.log_frames));
  o.Set("logBatches", static_cast<double>(s.log_batches));
  o.Set("acks", static_cast<double>(s.acks));
  o.Set("ackInstret", static_cast<double>(s.ack_instret));
  o.Set("wakeups", static_cast<double>(s.wakeups));
  o.Set("cpuNs", static_cast<double>(s.cpu_ns));
  return o;
}

Napi::Object EndObject(Napi::Env env, LogChannel& ch) {
  if (!ch.ended()) return ErrorObject(env, ChannelError::kNone, "(still running)");
  return ErrorObject(env, ch.error(), ch.message());
}

ChannelConfig Config(int fd, const std::vector<uint8_t>& send_key, const std::vector<uint8_t>& recv_key, Sha256Impl impl, uint32_t max_log_frame) {
  ChannelConfig c;
  c.fd = fd;
  c.send_key = send_key;
  c.recv_key = recv_key;
  c.send_sequence = 2;  // as after a handshake (HELLO, AUTH)
  c.recv_sequence = 2;
  c.max_log_frame = max_log_frame;
  c.impl = impl;
  return c;
}

const std::vector<uint8_t> kKeyP2S(32, 0x11), kKeyS2P(32, 0x22);

// loopback({ batches, minRecords, maxRecords, tcp, impl, maxLogFrame, sinkBytes, seed, timeoutMs, releaseEvery, splitEvery })
// A native sender and a native receiver on one connection; a producer thread fills the log ring with
// synthetic batches, a consumer thread checks every byte that comes out of the replay ring. When all
// are acknowledged the sender says BYE and both ends close. With releaseEvery k, a RELEASE message
// (send()) follows every k-th batch. With splitEvery k, every k-th batch is published in two pushes with
// a RELEASE of the batch before it sent in between (a message fenced in the middle of a batch, as a vCPU
// that fills the ring leaves it). Returns counts, ends, time and CPU.
Napi::Value Loopback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return Fail(env, "loopback(options)"), env.Undefined();
  Napi::Object o = info[0].As<Napi::Object>();
  double batches, minr, maxr, maxframe, sinkbytes, seed, timeout, implv, every_d, split_d;
  if (!Opt(o, "batches", 0, 1e12, 1000, &batches) || !Opt(o, "minRecords", 0, BatchLayout::kMaxLength, 0, &minr) ||
      !Opt(o, "maxRecords", 0, BatchLayout::kMaxLength, 4096, &maxr) || !Opt(o, "maxLogFrame", 1, 16 << 20, 1 << 20, &maxframe) ||
      !Opt(o, "sinkBytes", 64, 1 << 30, 4 << 20, &sinkbytes) || !Opt(o, "seed", 0, 4294967295.0, 1, &seed) ||
      !Opt(o, "timeoutMs", 1, 1e9, 120000, &timeout) || !Opt(o, "impl", 0, 1, static_cast<int>(sha256_default()), &implv) ||
      !Opt(o, "releaseEvery", 0, 1e12, 0, &every_d) || !Opt(o, "splitEvery", 0, 1e12, 0, &split_d)) {
    return env.Undefined();
  }
  const uint64_t every = static_cast<uint64_t>(every_d);
  const uint64_t split = static_cast<uint64_t>(split_d);
  if (minr > maxr) return Fail(env, "minRecords must be at most maxRecords"), env.Undefined();
  const Sha256Impl impl = static_cast<Sha256Impl>(static_cast<int>(implv));
  if (!sha256_available(impl)) return Fail(env, "impl is not available on this CPU"), env.Undefined();
  const bool tcp = o.Has("tcp") && o.Get("tcp").ToBoolean().Value();
  if (!ByteRingProducer::valid_capacity(static_cast<uint64_t>(sinkbytes))) return Fail(env, "sinkBytes must be a power of two"), env.Undefined();

  int fds[2];
  std::string why;
  if (!Connect(tcp, fds, &why)) {
    Napi::Error::New(env, why).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const uint64_t n = static_cast<uint64_t>(batches);
  const BatchMaker maker(static_cast<uint32_t>(minr), static_cast<uint32_t>(maxr), static_cast<uint32_t>(seed));
  RingMem log(4u << 20), sink(static_cast<uint32_t>(sinkbytes));
  ByteRingProducer log_producer(log.mem, log.capacity);
  log_producer.init();
  Bell space, data, acked;

  LogChannel::Hooks sh;
  sh.on_ring = [&] { space.ring(); };
  sh.on_ack = [&](uint64_t, uint64_t) { acked.ring(); };
  sh.on_end = [&] { space.ring(), acked.ring(); };
  LogChannel sender(LogChannel::Role::kSender, Config(fds[0], kKeyP2S, kKeyS2P, impl, static_cast<uint32_t>(maxframe)), {log.mem, log.capacity, 0},
                    std::move(sh));
  std::atomic<uint64_t> consumed_lsn{0};
  LogChannel::Hooks rh;
  rh.on_ring = [&] { data.ring(); };
  rh.on_end = [&] { data.ring(); };
  rh.progress = [&] { return consumed_lsn.load(std::memory_order_relaxed); };
  // RELEASE messages sent after batch lsn must arrive after it, in order (send() fences them).
  uint64_t releases = 0, release_faults = 0, last_release = 0;
  LogChannel* rx = nullptr;
  rh.on_message = [&](uint8_t type, const uint8_t* p, size_t len) {
    const uint64_t lsn = type == msg::kRelease && len == 8 ? load_be64(p) : UINT64_MAX;
    if (lsn == UINT64_MAX || rx->log_lsn1() < lsn + 1 || (releases && lsn <= last_release)) release_faults++;
    last_release = lsn;
    releases++;
  };
  LogChannel receiver(LogChannel::Role::kReceiver, Config(fds[1], kKeyS2P, kKeyP2S, impl, static_cast<uint32_t>(maxframe)),
                      {sink.mem, sink.capacity, 0}, std::move(rh));
  rx = &receiver;

  const double cpu0 = CpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  // Every wait below is bounded by it: a harness that hangs fails with timedOut instead of wedging.
  const auto deadline = t0 + std::chrono::milliseconds(static_cast<int64_t>(timeout));
  const bool started = receiver.start() && sender.start();
  std::atomic<bool> give_up{false};
  std::string consumer_error;
  uint64_t got = 0, got_bytes = 0;

  std::thread producer([&] {
    std::vector<uint8_t> b;
    for (uint64_t lsn = 0; lsn < n && started; lsn++) {
      maker.make(lsn, &b);
      for (;;) {
        const uint64_t seen = space.count();
        if (log_producer.free_space() >= b.size()) break;
        if (sender.ended() || give_up.load()) return;
        if (!space.wait(seen, deadline)) return give_up.store(true);
      }
      if (split && lsn > 0 && lsn % split == 0) {
        const size_t half = b.size() / 2;
        log_producer.push(b.data(), half);
        sender.notify();
        std::vector<uint8_t> release(8);
        store_be64(release.data(), lsn - 1);
        sender.send(msg::kRelease, std::move(release));
        log_producer.push(b.data() + half, b.size() - half);
      } else {
        log_producer.push(b.data(), b.size());
      }
      sender.notify();
      if (every && (lsn + 1) % every == 0) {
        std::vector<uint8_t> release(8);
        store_be64(release.data(), lsn);
        sender.send(msg::kRelease, std::move(release));
      }
    }
  });
  std::thread consumer([&] {
    ByteRingConsumer ring(sink.mem, sink.capacity);
    std::vector<uint8_t> b;
    uint8_t hdr[BatchLayout::kHeader];
    while (got < n && started) {
      const uint64_t seen = data.count();
      const size_t avail = ring.available();
      size_t size = 0;
      if (avail >= BatchLayout::kHeader) {
        ring.copy_at(0, hdr, sizeof hdr);
        uint32_t records;
        std::memcpy(&records, hdr + BatchLayout::kLength, 4);
        size = BatchLayout::kHeader + records;
      }
      if (size == 0 || avail < size) {
        if (receiver.ended() || give_up.load()) return;
        if (!data.wait(seen, deadline)) return give_up.store(true);
        continue;
      }
      b.resize(size);
      ring.pop(b.data(), size);
      receiver.notify_space();  // as the replaying vCPU does: a wake-up only when the channel waits for space
      if (!maker.check(got, b.data(), size)) {
        consumer_error = "batch " + std::to_string(got) + " arrived different from what was sent";
        give_up = true;
        space.ring();
        return;
      }
      got++;
      got_bytes += size;
      consumed_lsn.store(got, std::memory_order_relaxed);
    }
  });
  producer.join();
  consumer.join();
  const auto t1 = std::chrono::steady_clock::now();
  const double cpu1 = CpuSeconds();
  // Every batch acknowledged, then an orderly close: BYE, and finish() waits for the peer's close.
  while (started && !give_up.load() && !sender.ended() && sender.acked_lsn1() < n) {
    const uint64_t seen = acked.count();
    if (sender.acked_lsn1() >= n || sender.ended()) break;
    if (!acked.wait(seen, deadline)) give_up = true;
  }
  const uint64_t acked_lsn1 = sender.acked_lsn1();
  const char bye[] = "loopback done";
  sender.send(msg::kBye, std::vector<uint8_t>(bye, bye + sizeof bye - 1));
  sender.finish();
  const int left = static_cast<int>(std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
  const bool ended = receiver.wait_end(left) && sender.wait_end(left);
  const bool timed_out = (give_up.load() && consumer_error.empty()) || !ended;
  sender.stop();  // joins: the thread CPU times are in the stats from here
  receiver.stop();

  Napi::Object r = Napi::Object::New(env);
  r.Set("batches", static_cast<double>(got));
  r.Set("bytes", static_cast<double>(got_bytes));
  r.Set("ackedLsn1", static_cast<double>(acked_lsn1));
  r.Set("releases", static_cast<double>(releases));
  r.Set("releaseFaults", static_cast<double>(release_faults));
  r.Set("ns", static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
  r.Set("cpuSeconds", cpu1 - cpu0);
  r.Set("impl", sha256_impl_name(impl));
  r.Set("ended", ended);
  r.Set("timedOut", timed_out);
  if (!consumer_error.empty()) r.Set("consumerError", consumer_error);
  r.Set("sender", StatsObject(env, sender.stats()));
  r.Set("receiver", StatsObject(env, receiver.stats()));
  r.Set("senderEnd", EndObject(env, sender));
  r.Set("receiverEnd", EndObject(env, receiver));
  return r;
}

/// Reads everything the socket has until EOF or `until` bytes (bounded by `deadline`).
std::vector<uint8_t> ReadAll(int fd, size_t until, std::chrono::steady_clock::time_point deadline) {
  std::vector<uint8_t> out;
  uint8_t buf[65536];
  while (out.size() < until && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const ssize_t k = read(fd, buf, sizeof buf);
    if (k <= 0) break;
    out.insert(out.end(), buf, buf + k);
  }
  return out;
}

bool WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;  // the channel ended and closed its end: the rest is not wanted
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

// rawLoopback({ bytes, tcp, chunk }) → { bytes, ns, cpuSeconds }
// The same kind of connection with no channel: one thread writes `chunk`-byte pieces, another reads
// them. The ceiling the machine puts on any channel (kernel copies only, no framing, no HMAC).
Napi::Value RawLoopback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return Fail(env, "rawLoopback(options)"), env.Undefined();
  Napi::Object o = info[0].As<Napi::Object>();
  double total, chunk;
  if (!Opt(o, "bytes", 1, 1e13, 1 << 30, &total) || !Opt(o, "chunk", 1, 64 << 20, 1 << 20, &chunk)) return env.Undefined();
  const bool tcp = o.Has("tcp") && o.Get("tcp").ToBoolean().Value();
  int fds[2];
  std::string why;
  if (!Connect(tcp, fds, &why)) {
    Napi::Error::New(env, why).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const uint64_t n = static_cast<uint64_t>(total);
  std::vector<uint8_t> out(static_cast<size_t>(chunk), 0x5a);
  uint64_t got = 0;
  const double cpu0 = CpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  std::thread writer([&] {
    for (uint64_t sent = 0; sent < n;) {
      if (!WriteAll(fds[0], out.data(), static_cast<size_t>(std::min<uint64_t>(out.size(), n - sent)))) break;
      sent += std::min<uint64_t>(out.size(), n - sent);
    }
    shutdown(fds[0], SHUT_WR);
  });
  std::vector<uint8_t> in(1 << 20);
  for (;;) {
    const ssize_t k = read(fds[1], in.data(), in.size());
    if (k <= 0) break;
    got += static_cast<uint64_t>(k);
  }
  writer.join();
  const auto t1 = std::chrono::steady_clock::now();
  const double cpu1 = CpuSeconds();
  close(fds[0]);
  close(fds[1]);
  Napi::Object r = Napi::Object::New(env);
  r.Set("bytes", static_cast<double>(got));
  r.Set("ns", static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
  r.Set("cpuSeconds", cpu1 - cpu0);
  return r;
}

// receiverFeed({ wire, close, impl, firstLsn, timeoutMs }) → { end, sink, reply, stats, woke }
// A native receiver on one end of a socketpair; `wire` (frames made by the test, e.g. with
// src/protocol/frame.ts) goes in at the other end, which then closes if `close`. Returns what the
// receiver published to its ring, what it wrote back (ACK frames), how it ended, and, for each time it
// woke the ring's consumer, the position published then and the bytes it had written back by then.
Napi::Value ReceiverFeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return Fail(env, "receiverFeed(options)"), env.Undefined();
  Napi::Object o = info[0].As<Napi::Object>();
  double timeout, implv, first;
  if (!o.Get("wire").IsTypedArray()) return Fail(env, "wire must be a Uint8Array"), env.Undefined();
  if (!Opt(o, "timeoutMs", 1, 1e9, 60000, &timeout) || !Opt(o, "impl", 0, 1, static_cast<int>(sha256_default()), &implv) ||
      !Opt(o, "firstLsn", 0, 9007199254740991.0, 0, &first)) {
    return env.Undefined();
  }
  Napi::Uint8Array w = o.Get("wire").As<Napi::Uint8Array>();
  std::vector<uint8_t> wire(w.Data(), w.Data() + w.ByteLength());
  const bool close_after = o.Has("close") && o.Get("close").ToBoolean().Value();
  int fds[2];
  if (!SocketPair(env, fds)) return env.Undefined();
  RingMem sink(16u << 20);
  // What the receiver had written back (its ACKs) each time it woke the ring's consumer.
  LogChannel* self = nullptr;
  std::vector<std::pair<uint64_t, uint64_t>> woke;  // (log_lsn1, bytes_sent) at each on_ring
  LogChannel::Hooks hooks;
  hooks.on_ring = [&] { woke.emplace_back(self->log_lsn1(), self->stats().bytes_sent); };
  LogChannel receiver(LogChannel::Role::kReceiver, Config(fds[1], kKeyS2P, kKeyP2S, static_cast<Sha256Impl>(static_cast<int>(implv)), 1 << 20),
                      {sink.mem, sink.capacity, static_cast<uint64_t>(first)}, std::move(hooks));
  self = &receiver;
  receiver.start();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout));
  std::thread writer([&] {
    WriteAll(fds[0], wire.data(), wire.size());
    if (close_after) shutdown(fds[0], SHUT_WR);
  });
  const bool ended = receiver.wait_end(static_cast<int>(timeout));
  if (!ended) shutdown(fds[0], SHUT_RDWR);  // unblocks the writer
  writer.join();
  const std::vector<uint8_t> reply = ReadAll(fds[0], SIZE_MAX, ended ? deadline : std::chrono::steady_clock::now());
  ByteRingConsumer ring(sink.mem, sink.capacity);
  std::vector<uint8_t> published(ring.available());
  ring.pop(published.data(), published.size());
  close(fds[0]);

  Napi::Object r = Napi::Object::New(env);
  r.Set("ended", ended);
  r.Set("end", EndObject(env, receiver));
  r.Set("sink", Buf(env, published.data(), published.size()));
  r.Set("reply", Buf(env, reply.data(), reply.size()));
  r.Set("logLsn1", static_cast<double>(receiver.log_lsn1()));
  r.Set("stats", StatsObject(env, receiver.stats()));
  receiver.stop();  // joined: `woke` is complete
  Napi::Array wakes = Napi::Array::New(env, woke.size());
  for (size_t i = 0; i < woke.size(); i++) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("logLsn1", static_cast<double>(woke[i].first));
    e.Set("bytesSent", static_cast<double>(woke[i].second));
    wakes.Set(static_cast<uint32_t>(i), e);
  }
  r.Set("woke", wakes);
  return r;
}

// senderFeed({ batches, reply, close, impl, timeoutMs }) → { wire, ackedLsn1, end, stats }
// A native sender on one end of a socketpair: `batches` (concatenated sealed batches) go into its log
// ring; once all of it is on the wire the test's `reply` (e.g. ACK frames from src/protocol/frame.ts)
// goes back, then that end closes if `close`. Returns the wire bytes the sender produced.
Napi::Value SenderFeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return Fail(env, "senderFeed(options)"), env.Undefined();
  Napi::Object o = info[0].As<Napi::Object>();
  double timeout, implv, maxframe, expect_d;
  if (!o.Get("batches").IsTypedArray() || !o.Get("reply").IsTypedArray()) return Fail(env, "batches and reply must be Uint8Arrays"), env.Undefined();
  if (!Opt(o, "timeoutMs", 1, 1e9, 60000, &timeout) || !Opt(o, "impl", 0, 1, static_cast<int>(sha256_default()), &implv) ||
      !Opt(o, "maxLogFrame", 1, 16 << 20, 1 << 20, &maxframe) || !Opt(o, "expectAcked", 0, 9007199254740991.0, 0, &expect_d)) {
    return env.Undefined();
  }
  const uint64_t expect = static_cast<uint64_t>(expect_d);
  Napi::Uint8Array b = o.Get("batches").As<Napi::Uint8Array>(), rp = o.Get("reply").As<Napi::Uint8Array>();
  std::vector<uint8_t> batches(b.Data(), b.Data() + b.ByteLength()), reply(rp.Data(), rp.Data() + rp.ByteLength());
  if (batches.size() > (4u << 20) - 128) return Fail(env, "batches must fit the 4 MiB log ring"), env.Undefined();
  const bool close_after = o.Has("close") && o.Get("close").ToBoolean().Value();
  int fds[2];
  if (!SocketPair(env, fds)) return env.Undefined();
  RingMem log(4u << 20);
  ByteRingProducer producer(log.mem, log.capacity);
  producer.init();
  producer.push(batches.data(), batches.size());
  Bell acked;
  LogChannel::Hooks h;
  h.on_ack = [&](uint64_t, uint64_t) { acked.ring(); };
  h.on_end = [&] { acked.ring(); };
  LogChannel sender(LogChannel::Role::kSender, Config(fds[0], kKeyP2S, kKeyS2P, static_cast<Sha256Impl>(static_cast<int>(implv)),
                                                      static_cast<uint32_t>(maxframe)),
                    {log.mem, log.capacity, 0}, std::move(h));
  sender.start();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout));
  // The LOG frames: everything the ring held, framed (its size is known once the ring is empty).
  std::vector<uint8_t> wire;
  while (std::chrono::steady_clock::now() < deadline && !sender.ended()) {
    std::vector<uint8_t> more = ReadAll(fds[1], 1, std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
    wire.insert(wire.end(), more.begin(), more.end());
    ByteRingConsumer view(log.mem, log.capacity);
    if (view.available() == 0 && wire.size() == sender.stats().bytes_sent) break;
  }
  WriteAll(fds[1], reply.data(), reply.size());
  if (close_after) shutdown(fds[1], SHUT_WR);
  // Waits for the end (a closed or refused reply) or, with expectAcked, for that acknowledged position.
  while (!sender.ended() && std::chrono::steady_clock::now() < deadline && (expect == 0 || sender.acked_lsn1() < expect)) {
    const uint64_t seen = acked.count();
    if (sender.ended() || (expect && sender.acked_lsn1() >= expect)) break;
    acked.wait(seen, deadline);
  }
  const bool ended = sender.ended();
  const uint64_t acked_lsn1 = sender.acked_lsn1();
  sender.stop();
  close(fds[1]);

  Napi::Object r = Napi::Object::New(env);
  r.Set("ended", ended);
  r.Set("end", EndObject(env, sender));
  r.Set("wire", Buf(env, wire.data(), wire.size()));
  r.Set("ackedLsn1", static_cast<double>(acked_lsn1));
  r.Set("stats", StatsObject(env, sender.stats()));
  return r;
}

// senderCoalesce({ first, later, ack?, rider? }) → { framesInFlight, framesAfterRide, wire, stats }
// Group commit on a socketpair: `first` (sealed batches) is published and its frame read off the wire;
// then each batch of `later` is published as the vCPU does (push, then send_now()) while that frame is
// unacknowledged, and framesInFlight is the sender's LOG frame count after the last one. Then `ack` (an
// ACK frame of `first`), if given, goes back and everything left is read off the wire; without it, what
// was sent so far. `rider` (a RELEASE payload), if given, is set with ride() once `first` is on the wire,
// and framesAfterRide is the sender's frame count after a whole round of its thread that followed.
Napi::Value SenderCoalesce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return Fail(env, "senderCoalesce(options)"), env.Undefined();
  Napi::Object o = info[0].As<Napi::Object>();
  const bool has_ack = o.Has("ack") && !o.Get("ack").IsUndefined();
  const bool has_rider = o.Has("rider") && !o.Get("rider").IsUndefined();
  if (!o.Get("first").IsTypedArray() || (has_ack && !o.Get("ack").IsTypedArray()) || (has_rider && !o.Get("rider").IsTypedArray()) ||
      !o.Get("later").IsArray()) {
    return Fail(env, "first, ack and rider must be Uint8Arrays, later an array of them"), env.Undefined();
  }
  auto bytes_of = [](Napi::Value v) {
    Napi::Uint8Array a = v.As<Napi::Uint8Array>();
    return std::vector<uint8_t>(a.Data(), a.Data() + a.ByteLength());
  };
  const std::vector<uint8_t> first = bytes_of(o.Get("first")), ack = has_ack ? bytes_of(o.Get("ack")) : std::vector<uint8_t>();
  std::vector<std::vector<uint8_t>> later;
  Napi::Array l = o.Get("later").As<Napi::Array>();
  size_t total = first.size();
  for (uint32_t i = 0; i < l.Length(); i++) {
    if (!l.Get(i).IsTypedArray()) return Fail(env, "later must hold Uint8Arrays"), env.Undefined();
    later.push_back(bytes_of(l.Get(i)));
    total += later.back().size();
  }
  if (total > (4u << 20) - 128) return Fail(env, "the batches must fit the 4 MiB log ring"), env.Undefined();
  int fds[2];
  if (!SocketPair(env, fds)) return env.Undefined();
  RingMem log(4u << 20);
  ByteRingProducer producer(log.mem, log.capacity);
  producer.init();
  LogChannel sender(LogChannel::Role::kSender, Config(fds[0], kKeyP2S, kKeyS2P, sha256_default(), 1u << 20), {log.mem, log.capacity, 0}, {});
  sender.start();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<uint8_t> wire;
  auto read_until = [&](uint64_t sent) {
    while (wire.size() < sent && std::chrono::steady_clock::now() < deadline) {
      std::vector<uint8_t> more = ReadAll(fds[1], 1, std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
      wire.insert(wire.end(), more.begin(), more.end());
    }
  };
  producer.push(first.data(), first.size());
  sender.send_now();
  while (sender.stats().log_frames == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  read_until(sender.stats().bytes_sent);
  uint64_t frames_after_ride = 0;
  if (has_rider) {
    sender.ride(msg::kRelease, bytes_of(o.Get("rider")));
    // A whole round of the channel's thread (woken, then asleep again) passes before the count.
    const uint64_t slept = sender.stats().wakeups;
    sender.notify();
    while (sender.stats().wakeups == slept && !sender.ended() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    frames_after_ride = sender.stats().frames_sent;
  }
  for (const auto& b : later) {
    producer.push(b.data(), b.size());
    sender.send_now();
  }
  const uint64_t in_flight = sender.stats().log_frames;
  if (has_ack) WriteAll(fds[1], ack.data(), ack.size());
  while (has_ack && sender.stats().log_bytes < total && !sender.ended() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  read_until(sender.stats().bytes_sent);
  sender.stop();
  close(fds[1]);
  Napi::Object r = Napi::Object::New(env);
  r.Set("framesInFlight", static_cast<double>(in_flight));
  r.Set("framesAfterRide", static_cast<double>(frames_after_ride));
  r.Set("wire", Buf(env, wire.data(), wire.size()));
  r.Set("stats", StatsObject(env, sender.stats()));
  return r;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("implAvailable", Napi::Function::New(env, ImplAvailable));
  exports.Set("defaultImpl", Napi::Function::New(env, DefaultImpl));
  exports.Set("sha256", Napi::Function::New(env, Sha256Js));
  exports.Set("hmac", Napi::Function::New(env, HmacJs));
  exports.Set("hmacPair", Napi::Function::New(env, HmacPair));
  exports.Set("encodeFrame", Napi::Function::New(env, EncodeFrame));
  exports.Set("decodeFrames", Napi::Function::New(env, DecodeFrames));
  exports.Set("loopback", Napi::Function::New(env, Loopback));
  exports.Set("rawLoopback", Napi::Function::New(env, RawLoopback));
  exports.Set("receiverFeed", Napi::Function::New(env, ReceiverFeed));
  // The direction keys every harness uses (a test seals or checks frames with them in TypeScript).
  exports.Set("primaryKey", Buf(env, kKeyP2S.data(), kKeyP2S.size()));
  exports.Set("secondaryKey", Buf(env, kKeyS2P.data(), kKeyS2P.size()));
  exports.Set("senderFeed", Napi::Function::New(env, SenderFeed));
  exports.Set("senderCoalesce", Napi::Function::New(env, SenderCoalesce));
  return exports;
}

}  // namespace
}  // namespace lockstep

static Napi::Object InitChannelTest(Napi::Env env, Napi::Object exports) { return lockstep::Init(env, exports); }

NODE_API_MODULE(lockstep_channel_test, InitChannelTest)
