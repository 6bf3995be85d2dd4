// PrecopyProbe (the lockstep_test addon, never shipped in lockstep.node): the pre-copy engine alone over a
// plain memory whose "guest" is the test (write()) or a native thread standing in for the vCPU (spin()).
// Argument conversion and the stand-in only; the behaviour is native/runner/precopy.cc's.
#include <napi.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "cpu/cpu.h"
#include "runner/precopy.h"

namespace lockstep {
namespace {

/// RAM and a dirty-page bitmap as the Cpu keeps them: a store to a page marks every consumer's bit.
class PlainMemory final : public PrecopyMemory {
 public:
  explicit PlainMemory(uint32_t pages) : ram_(static_cast<size_t>(pages) * PrecopyEngine::kPageBytes), dirty_(pages, 0) {}
  uint32_t pages() const override { return static_cast<uint32_t>(dirty_.size()); }
  const uint8_t* dirty() const override { return dirty_.data(); }
  const uint8_t* page(uint32_t p) const override { return ram_.data() + static_cast<size_t>(p) * PrecopyEngine::kPageBytes; }
  void clean(uint32_t p) override { dirty_[p] &= static_cast<uint8_t>(~kDirtyCopy); }
  /// A guest store: every 32-bit word of page `p` becomes `value`.
  void write(uint32_t p, uint32_t value) {
    uint8_t* dst = ram_.data() + static_cast<size_t>(p) * PrecopyEngine::kPageBytes;
    for (size_t i = 0; i < PrecopyEngine::kPageBytes; i += 4) std::memcpy(dst + i, &value, 4);
    dirty_[p] = kDirtyAll;
  }
  const std::vector<uint8_t>& ram() const { return ram_; }

 private:
  std::vector<uint8_t> ram_;
  std::vector<uint8_t> dirty_;
};

class PrecopyProbe : public Napi::ObjectWrap<PrecopyProbe> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "PrecopyProbe",
                       {InstanceMethod<&PrecopyProbe::JsWrite>("write"), InstanceMethod<&PrecopyProbe::JsStart>("start"),
                        InstanceMethod<&PrecopyProbe::JsActive>("active"), InstanceMethod<&PrecopyProbe::JsCopy>("copy"),
                        InstanceMethod<&PrecopyProbe::JsTake>("take"), InstanceMethod<&PrecopyProbe::JsCopyAll>("copyAll"),
                        InstanceMethod<&PrecopyProbe::JsRam>("ram"), InstanceMethod<&PrecopyProbe::JsSpin>("spin"),
                        InstanceMethod<&PrecopyProbe::JsSpinning>("spinning"), InstanceMethod<&PrecopyProbe::JsSteps>("steps"),
                        InstanceMethod<&PrecopyProbe::JsStop>("stop")});
  }

  // new PrecopyProbe(pages: number): a zeroed memory of `pages` pages, nothing written yet.
  explicit PrecopyProbe(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PrecopyProbe>(info), memory_(Pages(info)) {}
  ~PrecopyProbe() override { Stop(); }

 private:
  static uint32_t Pages(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Uint32Value() > (1u << 20)) {
      Napi::TypeError::New(info.Env(), "new PrecopyProbe(pages: 0 … 2^20)").ThrowAsJavaScriptException();
      return 0;
    }
    return info[0].As<Napi::Number>().Uint32Value();
  }
  // The memory belongs to the spinner while it runs (as the machine to a running vCPU thread).
  bool Idle(const Napi::CallbackInfo& info) {
    if (!spinner_.joinable()) return true;
    Napi::Error::New(info.Env(), "the spinner owns the memory: stop() first").ThrowAsJavaScriptException();
    return false;
  }
  // write(page, value): a guest store filling page `page` with the u32 `value`.
  Napi::Value JsWrite(const Napi::CallbackInfo& info) {
    if (!Idle(info)) return info.Env().Undefined();
    const uint32_t p = info[0].As<Napi::Number>().Uint32Value();
    if (p >= memory_.pages()) {
      Napi::RangeError::New(info.Env(), "write: no such page").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    memory_.write(p, info[1].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  Napi::Value JsStart(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), engine_.start(info[0].ToBoolean().Value()));
  }
  Napi::Value JsActive(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), engine_.active()); }
  // copy(maxPages): boolean — one chunk, as the vCPU thread at a slice boundary.
  Napi::Value JsCopy(const Napi::CallbackInfo& info) {
    if (!Idle(info)) return info.Env().Undefined();
    return Napi::Boolean::New(info.Env(), engine_.copy(memory_, info[0].As<Napi::Number>().Uint32Value()));
  }
  // take(): { pages: Uint8Array (page records), done: boolean }
  Napi::Value JsTake(const Napi::CallbackInfo& info) {
    bool done = false;
    const std::vector<uint8_t> pages = engine_.take(&done);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("pages", Napi::Buffer<uint8_t>::Copy(info.Env(), pages.data(), pages.size()));
    r.Set("done", Napi::Boolean::New(info.Env(), done));
    return r;
  }
  Napi::Value JsCopyAll(const Napi::CallbackInfo& info) {
    if (!Idle(info)) return info.Env().Undefined();
    const std::vector<uint8_t> pages = engine_.copy_all(memory_, info[0].ToBoolean().Value());
    return Napi::Buffer<uint8_t>::Copy(info.Env(), pages.data(), pages.size());
  }
  // ram(): a copy of the whole memory.
  Napi::Value JsRam(const Napi::CallbackInfo& info) {
    if (!Idle(info)) return info.Env().Undefined();
    return Napi::Buffer<uint8_t>::Copy(info.Env(), memory_.ram().data(), memory_.ram().size());
  }
  // spin(maxPages, dirtyPerStep, seed): a native thread plays the vCPU until the round ends or stop():
  // a chunk of at most maxPages, then stores to dirtyPerStep consecutive pages (wrapping; all of them if
  // dirtyPerStep >= pages) from one a seeded xorshift picks, each writing the step number, as a guest does
  // between two slice boundaries.
  Napi::Value JsSpin(const Napi::CallbackInfo& info) {
    if (!Idle(info)) return info.Env().Undefined();
    const uint32_t max_pages = info[0].As<Napi::Number>().Uint32Value();
    const uint32_t per_step = info[1].As<Napi::Number>().Uint32Value();
    uint32_t seed = info[2].As<Napi::Number>().Uint32Value() | 1u;
    stop_.store(false, std::memory_order_relaxed);
    steps_.store(0, std::memory_order_relaxed);
    finished_.store(false, std::memory_order_relaxed);
    spinner_ = std::thread([this, max_pages, per_step, seed]() mutable {
      const uint32_t n = memory_.pages();
      // relaxed: stop_ is a request to end soon; join() orders everything the thread did.
      while (!stop_.load(std::memory_order_relaxed) && engine_.active()) {
        engine_.copy(memory_, max_pages);
        const uint32_t step = steps_.fetch_add(1, std::memory_order_relaxed) + 1;  // relaxed: a counter for JS
        if (n == 0) continue;
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        for (uint32_t i = 0; i < per_step && i < n; i++) memory_.write((seed + i) % n, step);
      }
      finished_.store(true, std::memory_order_release);  // pairs with the acquire load in JsSpinning()
    });
    return info.Env().Undefined();
  }
  // spinning(): false once the spinner ended (its round is over or it was stopped); stop() reaps it.
  Napi::Value JsSpinning(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), spinner_.joinable() && !finished_.load(std::memory_order_acquire));
  }
  Napi::Value JsSteps(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), steps_.load(std::memory_order_relaxed));  // relaxed: a counter
  }
  // stop(): ends the spinner (mid-round or not) and joins it; the round stays where it was.
  Napi::Value JsStop(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }
  void Stop() {
    stop_.store(true, std::memory_order_relaxed);
    if (spinner_.joinable()) spinner_.join();
  }

  PlainMemory memory_;
  PrecopyEngine engine_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::atomic<uint32_t> steps_{0};
  std::thread spinner_;
};

}  // namespace

Napi::Function InitPrecopyProbe(Napi::Env env) { return PrecopyProbe::Init(env); }

}  // namespace lockstep
