// The only file that includes <napi.h>: the NativeMachine class (argument checks and conversion
// only), the doorbell, and the environment cleanup hook. No machine logic lives here.
#include <napi.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <unordered_set>

#include "runner/replication_link.h"
#include "runner/vcpu_thread.h"

namespace lockstep {
namespace {

struct AddonData {
  std::unordered_set<class NativeMachine*> machines;
  /// JS-owned error construction (src/native/addon.ts hands it over once at load, as better-sqlite3 hands
  /// over SqliteError): makeError(code, message, field?) returns an instance of the coded class.
  Napi::FunctionReference make_error;
};

/// Throws the coded error `code` (ERR_LOCKSTEP_*), built by the JS-owned factory; `field` names the
/// option at fault for ERR_LOCKSTEP_OPTION_INVALID. Without a factory (a bare require of the addon) a
/// plain Error with a `code` property. Never throws over a pending exception.
/// `cause`: the system error's name (EADDRINUSE) behind it, for errors that come from a system call.
void ThrowCoded(Napi::Env env, const char* code, const std::string& message, const char* field = nullptr, const char* cause = nullptr) {
  if (env.IsExceptionPending()) return;
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data && !data->make_error.IsEmpty()) {
    Napi::Value err = cause ? data->make_error.Call({Napi::String::New(env, code), Napi::String::New(env, message), Napi::String::New(env, field ? field : ""),
                                                     Napi::String::New(env, cause)})
                      : field ? data->make_error.Call({Napi::String::New(env, code), Napi::String::New(env, message), Napi::String::New(env, field)})
                              : data->make_error.Call({Napi::String::New(env, code), Napi::String::New(env, message)});
    if (env.IsExceptionPending()) return;
    Napi::Error(env, err).ThrowAsJavaScriptException();
    return;
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
}

class NativeMachine : public Napi::ObjectWrap<NativeMachine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeMachine",
                       {
                           InstanceMethod<&NativeMachine::JsWriteMemory>("writeMemory"),
                           InstanceMethod<&NativeMachine::JsReadMemory>("readMemory"),
                           InstanceMethod<&NativeMachine::JsGetPc>("getPc"),
                           InstanceMethod<&NativeMachine::JsSetPc>("setPc"),
                           InstanceMethod<&NativeMachine::JsGetRegisters>("getRegisters"),
                           InstanceMethod<&NativeMachine::JsSetRegister>("setRegister"),
                           InstanceMethod<&NativeMachine::JsGetCsr>("getCsr"),
                           InstanceMethod<&NativeMachine::JsSetCsr>("setCsr"),
                           InstanceMethod<&NativeMachine::JsGetPrivilege>("getPrivilege"),
                           InstanceMethod<&NativeMachine::JsGetCounters>("getCounters"),
                           InstanceMethod<&NativeMachine::JsSetTohost>("setTohost"),
                           InstanceMethod<&NativeMachine::JsRun>("run"),
                           InstanceMethod<&NativeMachine::JsStop>("stop"),
                           InstanceMethod<&NativeMachine::JsInput>("input"),
                           InstanceMethod<&NativeMachine::JsConsoleDrained>("consoleDrained"),
                           InstanceMethod<&NativeMachine::JsTakeReport>("takeReport"),
                           InstanceMethod<&NativeMachine::JsBusy>("busy"),
                           InstanceMethod<&NativeMachine::JsClose>("close"),
                           InstanceMethod<&NativeMachine::JsStartRecording>("startRecording"),
                           InstanceMethod<&NativeMachine::JsFinishRecording>("finishRecording"),
                           InstanceMethod<&NativeMachine::JsStartReplay>("startReplay"),
                           InstanceMethod<&NativeMachine::JsSetDebug>("setDebug"),
                           InstanceMethod<&NativeMachine::JsTranslate>("translate"),
                           InstanceMethod<&NativeMachine::JsFeed>("feed"),
                           InstanceMethod<&NativeMachine::JsEndOfLog>("endOfLog"),
                           InstanceMethod<&NativeMachine::JsStateHash>("stateHash"),
                           InstanceMethod<&NativeMachine::JsSnapshot>("snapshot"),
                           InstanceMethod<&NativeMachine::JsRestore>("restore"),
                           InstanceMethod<&NativeMachine::JsTakeDirtyPages>("takeDirtyPages"),
                           InstanceMethod<&NativeMachine::JsTakeFrames>("takeFrames"),
                           InstanceMethod<&NativeMachine::JsNetInput>("netInput"),
                           InstanceMethod<&NativeMachine::JsSuppressed>("suppressedOutputs"),
                           InstanceMethod<&NativeMachine::JsNetStats>("netStats"),
                           InstanceMethod<&NativeMachine::JsSetGate>("setGate"),
                           InstanceMethod<&NativeMachine::JsRelease>("release"),
                           InstanceMethod<&NativeMachine::JsSetShadow>("setShadow"),
                           InstanceMethod<&NativeMachine::JsShadowRelease>("shadowRelease"),
                           InstanceMethod<&NativeMachine::JsGoLive>("goLive"),
                           InstanceMethod<&NativeMachine::JsHeld>("held"),
                           InstanceMethod<&NativeMachine::JsConsolePosition>("consolePosition"),
                           InstanceMethod<&NativeMachine::JsSetConsolePosition>("setConsolePosition"),
                           InstanceMethod<&NativeMachine::JsProgress>("progress"),
                           InstanceMethod<&NativeMachine::JsWatchdogPets>("watchdogPets"),
                           InstanceMethod<&NativeMachine::JsJitStats>("jitStats"),
                           InstanceMethod<&NativeMachine::JsSetThrottle>("setThrottle"),
                           InstanceMethod<&NativeMachine::JsPrecopyStart>("precopyStart"),
                           InstanceMethod<&NativeMachine::JsTakePrecopy>("takePrecopy"),
                           InstanceMethod<&NativeMachine::JsCopyPages>("copyPages"),
                           InstanceMethod<&NativeMachine::JsWritePages>("writePages"),
                           InstanceMethod<&NativeMachine::JsAnnounce>("announce"),
                           InstanceMethod<&NativeMachine::JsTakeDiskDirty>("takeDiskDirty"),
                           InstanceMethod<&NativeMachine::JsDiskInFlight>("diskInFlight"),
                           InstanceMethod<&NativeMachine::JsDiskSyncs>("diskSyncs"),
                           InstanceMethod<&NativeMachine::JsLinkStart>("linkStart"),
                           InstanceMethod<&NativeMachine::JsLinkSend>("linkSend"),
                           InstanceMethod<&NativeMachine::JsLinkReport>("linkReport"),
                           InstanceMethod<&NativeMachine::JsLinkFinish>("linkFinish"),
                           InstanceMethod<&NativeMachine::JsLinkStop>("linkStop"),
                           InstanceMethod<&NativeMachine::JsLinkTake>("linkTake"),
                           InstanceMethod<&NativeMachine::JsLinkEmitted>("linkEmitted"),
                           InstanceMethod<&NativeMachine::JsLinkFigures>("linkFigures"),
                           InstanceMethod<&NativeMachine::JsReleaseDelays>("releaseDelays"),
                           InstanceMethod<&NativeMachine::JsLogFree>("logFree"),
                           InstanceMethod<&NativeMachine::JsAbandonLog>("abandonLog"),
                           InstanceMethod<&NativeMachine::JsUdpAttach>("udpAttach"),
                           InstanceMethod<&NativeMachine::JsUdpStats>("udpStats"),
                           InstanceMethod<&NativeMachine::JsUdpDetach>("udpDetach"),
                       });
  }

  // new NativeMachine({ ramSize, realClock }, consoleRing: Uint8Array over a SharedArrayBuffer, doorbell: () => void)
  // (Node-API 8 has no SharedArrayBuffer type check; a typed array over one gives its data pointer.)
  explicit NativeMachine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeMachine>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsTypedArray() || !info[2].IsFunction()) {
      Napi::TypeError::New(env, "NativeMachine(options, consoleRing: Uint8Array, doorbell: Function)")
          .ThrowAsJavaScriptException();
      return;
    }
    Napi::Object opts = info[0].As<Napi::Object>();
    MachineConfig config;
    Napi::Value ram = opts.Get("ramSize");
    if (!ram.IsNumber()) {
      Napi::TypeError::New(env, "options.ramSize must be a number").ThrowAsJavaScriptException();
      return;
    }
    const double ram_size = ram.As<Napi::Number>().DoubleValue();
    if (!(ram_size >= kPageSize && ram_size <= 0x7ffff000 && static_cast<uint64_t>(ram_size) % kPageSize == 0)) {
      Napi::RangeError::New(env, "options.ramSize must be a multiple of 4096 between 4 KiB and 2 GiB - 4 KiB")
          .ThrowAsJavaScriptException();
      return;
    }
    config.ram_size = static_cast<uint32_t>(ram_size);
    config.real_clock = opts.Get("realClock").ToBoolean().Value();
    Napi::Value step = opts.Get("clockStepTicks");
    if (step.IsNumber()) {
      const double t = step.As<Napi::Number>().DoubleValue();
      if (!(t >= 0 && t <= 1e7)) {
        Napi::RangeError::New(env, "options.clockStepTicks must be from 0 to 10000000").ThrowAsJavaScriptException();
        return;
      }
      config.clock_step_ticks = static_cast<uint64_t>(t);
    }
    config.rng = opts.Get("rng").ToBoolean().Value();
    config.jit = opts.Get("jit").ToBoolean().Value();
    config.net = opts.Get("net").ToBoolean().Value();
    Napi::Value mac = opts.Get("mac");
    if (mac.IsTypedArray()) {
      Napi::Uint8Array m = mac.As<Napi::Uint8Array>();
      if (m.ByteLength() != 6) {
        Napi::RangeError::New(env, "options.mac must be 6 bytes").ThrowAsJavaScriptException();
        return;
      }
      std::memcpy(config.mac, m.Data(), 6);
    }
    Napi::Value disk = opts.Get("disk");
    if (disk.IsString()) config.disk = disk.As<Napi::String>().Utf8Value();
    Napi::Value separate = opts.Get("diskSeparate");
    if (separate.IsBoolean()) config.disk_separate = separate.As<Napi::Boolean>().Value();
    Napi::Value lock = opts.Get("diskLock");
    if (lock.IsBoolean()) config.disk_lock = lock.As<Napi::Boolean>().Value();
    Napi::Value cmdline = opts.Get("cmdline");
    if (cmdline.IsString()) config.cmdline = cmdline.As<Napi::String>().Utf8Value();

    // The ring memory belongs to a JS SharedArrayBuffer; the reference keeps it alive until the
    // vCPU thread is joined (see Shutdown()).
    Napi::Uint8Array ab = info[1].As<Napi::Uint8Array>();
    const size_t bytes = ab.ByteLength();
    if (bytes <= RingLayout::kData || !ByteRingProducer::valid_capacity(bytes - RingLayout::kData)) {
      Napi::RangeError::New(env, "consoleRing must be 128 + 2^k bytes (k >= 6)").ThrowAsJavaScriptException();
      return;
    }
    ring_ref_ = Napi::Persistent(ab);

    // binding.gyp defines NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: a doorbell call that lands while a
    // worker terminates cannot run JS, and must not turn that refusal into a fatal napi_throw.
    doorbell_ = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "lockstep-doorbell", 0, 1);
    doorbell_.Unref(env);  // an idle machine does not keep the process alive
    auto* pending = &bell_pending_;
    auto tsfn = doorbell_;
    bell_ = [pending, tsfn]() mutable {
          // Coalesce: at most one doorbell call is queued; the JS side drains everything each time.
          if (!pending->exchange(true, std::memory_order_acq_rel)) {
            tsfn.NonBlockingCall([pending](Napi::Env, Napi::Function fn) {
              // acq_rel: reads the `true` the vCPU's exchange wrote, so everything it pushed before is
              // visible to the reads below (a plain release store would not synchronize); and the next
              // ring on the vCPU thread then queues a fresh call. Pairs with the exchange above.
              pending->exchange(false, std::memory_order_acq_rel);
              fn.Call({});
            });
          }
        };
    vcpu_ = std::make_unique<VcpuThread>(config, static_cast<uint8_t*>(ab.Data()), static_cast<uint32_t>(bytes - RingLayout::kData), bell_);
    data_ = env.GetInstanceData<AddonData>();
    data_->machines.insert(this);
    // Each failure names its own option: the disk image (opened by the machine) or the TAP device.
    std::string why = vcpu_->machine().error();
    const char* field = "devices.disk.path";
    Napi::Value tap = opts.Get("tap");
    if (why.empty() && tap.IsString()) {
      field = "devices.net.tap";
      vcpu_->attach_tap(tap.As<Napi::String>().Utf8Value(), &why);
    }
    if (!why.empty()) {
      Shutdown();
      ThrowCoded(env, "ERR_LOCKSTEP_OPTION_INVALID", why, field);
    }
  }

  ~NativeMachine() override { Shutdown(); }

  /// Stop the thread, then release what it used. Called by close(), the destructor and env teardown.
  void Shutdown() {
    if (closed_) return;
    closed_ = true;
    link_.reset();  // its channel thread calls into the vCPU thread's object
    if (vcpu_) vcpu_->shutdown();
    if (doorbell_) doorbell_.Release();
    vcpu_.reset();
    if (!ring_ref_.IsEmpty()) ring_ref_.Reset();
    if (!log_ref_.IsEmpty()) log_ref_.Reset();
    if (data_) data_->machines.erase(this);
  }

 private:
  bool Usable(const Napi::CallbackInfo& info) {
    if (closed_ || !vcpu_) {
      ThrowCoded(info.Env(), "ERR_LOCKSTEP_MACHINE_CLOSED", "the machine is closed");
      return false;
    }
    if (vcpu_->busy()) {
      ThrowCoded(info.Env(), "ERR_LOCKSTEP_MACHINE_BUSY", "the machine is running; await run() or call stop() first");
      return false;
    }
    return true;
  }
  static bool U32(const Napi::CallbackInfo& info, size_t i, uint32_t* out) {
    if (i >= info.Length() || !info[i].IsNumber()) {
      Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number").ThrowAsJavaScriptException();
      return false;
    }
    const double d = info[i].As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint64_t>(d))) {
      Napi::RangeError::New(info.Env(), "argument " + std::to_string(i) + " must be a u32").ThrowAsJavaScriptException();
      return false;
    }
    *out = static_cast<uint32_t>(d);
    return true;
  }

  Napi::Value JsWriteMemory(const Napi::CallbackInfo& info) {
    uint32_t addr;
    if (!Usable(info) || !U32(info, 0, &addr)) return info.Env().Undefined();
    if (info.Length() < 2 || !info[1].IsTypedArray()) {
      Napi::TypeError::New(info.Env(), "writeMemory(addr, data: Uint8Array)").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    Napi::Uint8Array data = info[1].As<Napi::Uint8Array>();
    if (!vcpu_->machine().write_ram(addr, data.Data(), static_cast<uint32_t>(data.ByteLength()))) {
      Napi::RangeError::New(info.Env(), "range is not inside guest RAM").ThrowAsJavaScriptException();
    }
    return info.Env().Undefined();
  }

  Napi::Value JsReadMemory(const Napi::CallbackInfo& info) {
    uint32_t addr, len;
    if (!Usable(info) || !U32(info, 0, &addr) || !U32(info, 1, &len)) return info.Env().Undefined();
    Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), len);
    if (!vcpu_->machine().read_ram(addr, out.Data(), len)) {
      Napi::RangeError::New(info.Env(), "range is not inside guest RAM").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    return out;
  }

  Napi::Value JsGetPc(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), vcpu_->machine().cpu().pc);
  }
  Napi::Value JsSetPc(const Napi::CallbackInfo& info) {
    uint32_t pc;
    if (!Usable(info) || !U32(info, 0, &pc)) return info.Env().Undefined();
    Cpu& cpu = vcpu_->machine().cpu();
    cpu.pc = pc & ~1u;
    cpu.wfi = false;
    return info.Env().Undefined();
  }
  Napi::Value JsGetRegisters(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    Napi::Uint32Array out = Napi::Uint32Array::New(info.Env(), 32);
    const Cpu& cpu = vcpu_->machine().cpu();
    for (int i = 0; i < 32; i++) out[i] = cpu.x[i];
    out[0] = 0;
    return out;
  }
  Napi::Value JsSetRegister(const Napi::CallbackInfo& info) {
    uint32_t i, v;
    if (!Usable(info) || !U32(info, 0, &i) || !U32(info, 1, &v)) return info.Env().Undefined();
    if (i > 31) {
      Napi::RangeError::New(info.Env(), "register index must be 0..31").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    if (i != 0) vcpu_->machine().cpu().x[i] = v;
    return info.Env().Undefined();
  }
  Napi::Value JsGetCsr(const Napi::CallbackInfo& info) {
    uint32_t csr, v;
    if (!Usable(info) || !U32(info, 0, &csr)) return info.Env().Undefined();
    if (!vcpu_->machine().cpu().host_read_csr(csr, &v)) return info.Env().Null();  // no such CSR
    return Napi::Number::New(info.Env(), v);
  }
  Napi::Value JsSetCsr(const Napi::CallbackInfo& info) {
    uint32_t csr, v;
    if (!Usable(info) || !U32(info, 0, &csr) || !U32(info, 1, &v)) return info.Env().Undefined();
    return Napi::Boolean::New(info.Env(), vcpu_->machine().cpu().host_write_csr(csr, v));
  }
  Napi::Value JsGetPrivilege(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), static_cast<int>(vcpu_->machine().cpu().priv));
  }
  Napi::Value JsGetCounters(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    const Cpu& cpu = vcpu_->machine().cpu();
    Napi::Array out = Napi::Array::New(info.Env(), 2);
    out.Set(0u, Napi::BigInt::New(info.Env(), static_cast<uint64_t>(cpu.instret)));
    out.Set(1u, Napi::BigInt::New(info.Env(), static_cast<uint64_t>(cpu.branches)));
    return out;
  }
  Napi::Value JsSetTohost(const Napi::CallbackInfo& info) {
    uint32_t addr;
    if (!Usable(info) || !U32(info, 0, &addr)) return info.Env().Undefined();
    vcpu_->machine().set_tohost(addr);
    return info.Env().Undefined();
  }

  // run(targetInstret: bigint): starts the vCPU; completion is signalled through the doorbell.
  Napi::Value JsRun(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    if (info.Length() < 1 || !info[0].IsBigInt()) {
      Napi::TypeError::New(info.Env(), "run(targetInstret: bigint)").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    bool lossless;
    const uint64_t target = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) {
      Napi::RangeError::New(info.Env(), "targetInstret must fit in 64 bits").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    doorbell_.Ref(info.Env());  // a running guest keeps the process alive until its run settles
    if (!vcpu_->start(target)) {
      doorbell_.Unref(info.Env());
      ThrowCoded(info.Env(), "ERR_LOCKSTEP_MACHINE_BUSY", "the machine is running");
    }
    return info.Env().Undefined();
  }
  Napi::Value JsStop(const Napi::CallbackInfo& info) {
    if (vcpu_) vcpu_->request_stop();
    return info.Env().Undefined();
  }
  Napi::Value JsInput(const Napi::CallbackInfo& info) {
    if (!vcpu_ || info.Length() < 1 || !info[0].IsTypedArray()) return info.Env().Undefined();
    Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
    vcpu_->input(data.Data(), data.ByteLength());
    return info.Env().Undefined();
  }
  Napi::Value JsConsoleDrained(const Napi::CallbackInfo& info) {
    if (vcpu_) vcpu_->console_drained();
    return info.Env().Undefined();
  }
  Napi::Value JsBusy(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), vcpu_ && vcpu_->busy());
  }
  // takeReport(): null, or the finished run's report { kind, code, via, cause, pc, tval, reason }.
  Napi::Value JsTakeReport(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RunReport r;
    if (!vcpu_ || !vcpu_->take_report(&r)) return env.Null();
    doorbell_.Unref(env);
    Napi::Object o = Napi::Object::New(env);
    static const char* const kKinds[] = {"budget", "exit", "trap", "halted", "stopped", "divergence", "end-of-log", "debug"};
    static const char* const kVia[] = {"none", "finisher", "semihosting", "htif"};
    o.Set("kind", kKinds[static_cast<int>(r.kind)]);
    o.Set("code", Napi::Number::New(env, r.exit_code));
    o.Set("via", kVia[static_cast<int>(r.via)]);
    o.Set("cause", Napi::Number::New(env, r.cause));
    o.Set("pc", Napi::Number::New(env, r.trap_pc));
    o.Set("tval", Napi::Number::New(env, r.tval));
    o.Set("reason", r.halt_reason);
    o.Set("divergence", r.divergence);
    o.Set("endReason", Napi::Number::New(env, r.end_reason));
    o.Set("endCode", Napi::Number::New(env, static_cast<double>(r.end_code)));
    o.Set("replayed", Napi::Boolean::New(env, r.replayed));
    o.Set("logEnded", Napi::Boolean::New(env, r.log_ended));
    o.Set("finalHash", Napi::Boolean::New(env, r.final_hash));
    return o;
  }

  // startRecording(logRing: Uint8Array over a SharedArrayBuffer, hashInterval: number): void
  Napi::Value JsStartRecording(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Usable(info)) return env.Undefined();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "startRecording(logRing: Uint8Array, hashInterval: number)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array ring = info[0].As<Napi::Uint8Array>();
    const size_t bytes = ring.ByteLength();
    if (bytes <= RingLayout::kData || !ByteRingProducer::valid_capacity(bytes - RingLayout::kData)) {
      Napi::RangeError::New(env, "logRing must be 128 + 2^k bytes (k >= 6)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const double interval = info[1].As<Napi::Number>().DoubleValue();
    if (!(interval >= 0 && interval <= 9007199254740991.0)) {
      Napi::RangeError::New(env, "hashInterval must be a non-negative integer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!vcpu_->start_recording(static_cast<uint8_t*>(ring.Data()), static_cast<uint32_t>(bytes - RingLayout::kData),
                                static_cast<uint64_t>(interval))) {
      ThrowCoded(env, "ERR_LOCKSTEP_MACHINE_BUSY", "cannot start recording: the machine is running");
      return env.Undefined();
    }
    link_.reset();  // a link of an earlier recording reads nothing of this one
    log_ref_ = Napi::Persistent(ring);  // the vCPU thread writes into it until the machine is closed
    log_mem_ = static_cast<uint8_t*>(ring.Data());
    log_capacity_ = static_cast<uint32_t>(bytes - RingLayout::kData);
    return env.Undefined();
  }
  // finishRecording(reason: number, code: number): boolean — the host drains the log ring first.
  Napi::Value JsFinishRecording(const Napi::CallbackInfo& info) {
    uint32_t reason;
    if (!Usable(info) || !U32(info, 0, &reason)) return info.Env().Undefined();
    if (reason > static_cast<uint32_t>(EndReason::kStopped) || info.Length() < 2 || !info[1].IsNumber()) {
      Napi::RangeError::New(info.Env(), "finishRecording(reason: 0..4, code: number)").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    const int64_t code = info[1].As<Napi::Number>().Int64Value();
    return Napi::Boolean::New(info.Env(), vcpu_->finish_recording(static_cast<EndReason>(reason), code));
  }
  // startReplay(resumeAt?: bigint): resumeAt is the instret of the snapshot this machine was restored
  // from, taken while replaying the same log (events up to it are skipped).
  Napi::Value JsStartReplay(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    uint64_t resume_at = UINT64_MAX;
    if (info.Length() > 0 && info[0].IsBigInt()) {
      bool lossless;
      resume_at = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless || resume_at == UINT64_MAX) {
        Napi::RangeError::New(info.Env(), "resumeAt must be below 2^64 - 1").ThrowAsJavaScriptException();
        return info.Env().Undefined();
      }
    }
    if (!vcpu_->start_replay(resume_at)) ThrowCoded(info.Env(), "ERR_LOCKSTEP_MACHINE_BUSY", "cannot start replaying: the machine is running");
    return info.Env().Undefined();
  }
  // setDebug(null) detaches the debugger; setDebug(breakpoints: Uint32Array, watches: Uint32Array of
  // (addr, len, on) triples, step: boolean, resumePc: number, resumeInstret: bigint) attaches it.
  Napi::Value JsSetDebug(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Usable(info)) return env.Undefined();
    Machine& m = vcpu_->machine();
    if (info.Length() < 1 || info[0].IsNull()) {
      m.set_debugging(false);
      return env.Undefined();
    }
    if (info.Length() < 5 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsBoolean() || !info[3].IsNumber() || !info[4].IsBigInt()) {
      Napi::TypeError::New(env, "setDebug(breakpoints: Uint32Array, watches: Uint32Array, step: boolean, resumePc: number, resumeInstret: bigint)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::TypedArray bt = info[0].As<Napi::TypedArray>(), wt = info[1].As<Napi::TypedArray>();
    if (bt.TypedArrayType() != napi_uint32_array || wt.TypedArrayType() != napi_uint32_array || wt.ElementLength() % 3 != 0) {
      Napi::TypeError::New(env, "breakpoints and watches must be Uint32Arrays (watches in triples)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint32Array b = bt.As<Napi::Uint32Array>(), w = wt.As<Napi::Uint32Array>();
    DebugState& d = m.debug_state();
    d.breakpoints.assign(b.Data(), b.Data() + b.ElementLength());
    d.watches.clear();
    for (size_t i = 0; i + 2 < w.ElementLength(); i += 3) {
      d.watches.push_back(DebugState::Watch{w[i], w[i + 1], static_cast<uint8_t>(w[i + 2] & 3)});
    }
    d.step = info[2].As<Napi::Boolean>().Value();
    d.resume_pc = info[3].As<Napi::Number>().Uint32Value();
    bool lossless;
    d.resume_instret = info[4].As<Napi::BigInt>().Uint64Value(&lossless);
    d.hit = DebugState::kNone;
    m.set_debugging(true);
    return env.Undefined();
  }
  // translate(va: number): the physical address a load or store at va would reach now, or null.
  Napi::Value JsTranslate(const Napi::CallbackInfo& info) {
    uint32_t va, pa;
    if (!Usable(info) || !U32(info, 0, &va)) return info.Env().Undefined();
    if (!vcpu_->machine().cpu().debug_translate(va, &pa)) return info.Env().Null();
    return Napi::Number::New(info.Env(), pa);
  }
  Napi::Value JsFeed(const Napi::CallbackInfo& info) {
    if (!vcpu_ || info.Length() < 1 || !info[0].IsTypedArray()) {
      Napi::TypeError::New(info.Env(), "feed(batch: Uint8Array)").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
    vcpu_->feed(data.Data(), data.ByteLength());
    return info.Env().Undefined();
  }
  Napi::Value JsEndOfLog(const Napi::CallbackInfo& info) {
    if (vcpu_) vcpu_->end_of_log();
    return info.Env().Undefined();
  }
  // snapshot(includeRam = true): without RAM, the final state of a clone whose pages went ahead.
  Napi::Value JsSnapshot(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    const bool ram = info.Length() < 1 || !info[0].IsBoolean() || info[0].As<Napi::Boolean>().Value();
    if (!ram) vcpu_->machine().settle_clock();  // a clone's or a migration's final state: the clock now
    const std::vector<uint8_t> bytes = vcpu_->machine().save(ram);
    return Napi::Buffer<uint8_t>::Copy(info.Env(), bytes.data(), bytes.size());
  }
  // restore(snapshot: Uint8Array): void — throws ERR_LOCKSTEP_SNAPSHOT_{CORRUPT,VERSION,MISMATCH} saying what
  // is wrong (the machine is then unchanged).
  Napi::Value JsRestore(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    if (info.Length() < 1 || !info[0].IsTypedArray()) {
      Napi::TypeError::New(info.Env(), "restore(snapshot: Uint8Array)").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
    std::string error;
    SnapshotProblem problem = SnapshotProblem::kCorrupt;
    if (vcpu_->machine().restore(data.Data(), data.ByteLength(), &error, &problem)) return info.Env().Undefined();
    static const char* const kCodes[] = {"ERR_LOCKSTEP_SNAPSHOT_CORRUPT", "ERR_LOCKSTEP_SNAPSHOT_VERSION", "ERR_LOCKSTEP_SNAPSHOT_MISMATCH"};
    ThrowCoded(info.Env(), kCodes[static_cast<int>(problem)], error);
    return info.Env().Undefined();
  }
  // takeDirtyPages(): Uint32Array of RAM page indices written since the previous call (pre-copy).
  Napi::Value JsTakeDirtyPages(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    Cpu& cpu = vcpu_->machine().cpu();
    const std::vector<uint8_t>& dirty = cpu.dirty();
    std::vector<uint32_t> pages;
    for (uint32_t p = 0; p < dirty.size(); p++) {
      if (dirty[p] & kDirtyCopy) pages.push_back(p);
    }
    for (uint32_t p : pages) cpu.clean(p, kDirtyCopy);
    Napi::Uint32Array out = Napi::Uint32Array::New(info.Env(), pages.size());
    for (size_t i = 0; i < pages.size(); i++) out[i] = pages[i];
    return out;
  }
  // ---- fault tolerance ----------------------------------------------------------------------------
  static bool Lsn(const Napi::CallbackInfo& info, size_t i, uint64_t* out) {
    if (i >= info.Length() || !info[i].IsBigInt()) {
      Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a bigint lsn").ThrowAsJavaScriptException();
      return false;
    }
    bool lossless;
    *out = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) {
      Napi::RangeError::New(info.Env(), "lsn must be 0..2^64-1").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }
  // { console: Uint8Array, frames: Uint8Array[], deviceFrames: number, blocks: number }
  static Napi::Object OutputsToJs(Napi::Env env, const VcpuThread::Outputs& o) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("console", Napi::Buffer<uint8_t>::Copy(env, o.console.data(), o.console.size()));
    Napi::Array frames = Napi::Array::New(env, o.frames.size());
    for (size_t i = 0; i < o.frames.size(); i++) frames.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, o.frames[i].data(), o.frames[i].size()));
    r.Set("frames", frames);
    r.Set("deviceFrames", Napi::Number::New(env, o.device_frames));
    r.Set("blocks", Napi::Number::New(env, o.blocks));
    return r;
  }
  bool Open(const Napi::CallbackInfo& info) {
    if (closed_ || !vcpu_) {
      ThrowCoded(info.Env(), "ERR_LOCKSTEP_MACHINE_CLOSED", "the machine is closed");
      return false;
    }
    return true;
  }
  // setGate(closed: boolean): Outputs — opening releases everything held.
  Napi::Value JsSetGate(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    const bool closed = info.Length() > 0 && info[0].ToBoolean().Value();
    return OutputsToJs(info.Env(), vcpu_->set_gate(closed));
  }
  // release(lsn: bigint): Outputs held behind batches up to lsn.
  Napi::Value JsRelease(const Napi::CallbackInfo& info) {
    uint64_t lsn;
    if (!Open(info) || !Lsn(info, 0, &lsn)) return info.Env().Undefined();
    return OutputsToJs(info.Env(), vcpu_->release(lsn));
  }
  Napi::Value JsSetShadow(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    vcpu_->set_shadow(info.Length() > 0 && info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }
  Napi::Value JsShadowRelease(const Napi::CallbackInfo& info) {
    uint64_t lsn;
    if (!Open(info) || !Lsn(info, 0, &lsn)) return info.Env().Undefined();
    vcpu_->shadow_release(lsn);
    return info.Env().Undefined();
  }
  // goLive(released: bigint): Outputs to re-emit; throws ERR_LOCKSTEP_REPLICATION_GO_LIVE when not replaying
  // or the log was not replayed to its end.
  Napi::Value JsGoLive(const Napi::CallbackInfo& info) {
    uint64_t lsn;
    if (!Open(info) || !Lsn(info, 0, &lsn)) return info.Env().Undefined();
    VcpuThread::Outputs out;
    if (!vcpu_->go_live(lsn, &out)) {
      ThrowCoded(info.Env(), "ERR_LOCKSTEP_REPLICATION_GO_LIVE", "go-live refused: the machine is not replaying, or the log was not replayed to its end");
      return info.Env().Undefined();
    }
    return OutputsToJs(info.Env(), out);
  }
  Napi::Value JsHeld(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), static_cast<double>(vcpu_->held()));
  }
  // consolePosition(): bigint console bytes the guest wrote, counted from where the numbering started.
  Napi::Value JsConsolePosition(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    return Napi::BigInt::New(info.Env(), vcpu_->console_position());
  }
  // setConsolePosition(position: bigint): idle only.
  Napi::Value JsSetConsolePosition(const Napi::CallbackInfo& info) {
    uint64_t position;
    if (!Usable(info) || !Lsn(info, 0, &position)) return info.Env().Undefined();
    vcpu_->set_console_position(position);
    return info.Env().Undefined();
  }
  // progress(): bigint instret (at the last slice end while running; exact when idle).
  Napi::Value JsProgress(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    const uint64_t v = vcpu_->busy() ? vcpu_->progress() : vcpu_->machine().cpu().instret;
    return Napi::BigInt::New(info.Env(), v);
  }
  // watchdogPets(): bigint, the guest watchdog's pets so far (readable while running).
  Napi::Value JsWatchdogPets(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    return Napi::BigInt::New(info.Env(), vcpu_->machine().watchdog_pets());
  }
  // jitStats(): null with the interpreter alone, else { blocks, invalidated, flushes, entries,
  // instructions, translatedBlocks, translatedEntries, translatedInstructions }. Idle only
  // (the JS side checks): the counters belong to the vCPU thread.
  Napi::Value JsJitStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(info)) return env.Undefined();
    const JitStats* s = vcpu_->machine().cpu().jit_stats();
    if (!s) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("blocks", Napi::Number::New(env, static_cast<double>(s->blocks)));
    o.Set("invalidated", Napi::Number::New(env, static_cast<double>(s->invalidated)));
    o.Set("flushes", Napi::Number::New(env, static_cast<double>(s->flushes)));
    o.Set("entries", Napi::Number::New(env, static_cast<double>(s->entries)));
    o.Set("translatedBlocks", Napi::Number::New(env, static_cast<double>(s->translated_blocks)));
    o.Set("translatedEntries", Napi::Number::New(env, static_cast<double>(s->translated_entries)));
    o.Set("instructions", Napi::Number::New(env, static_cast<double>(s->instructions)));
    o.Set("translatedInstructions", Napi::Number::New(env, static_cast<double>(s->translated_instructions)));
    return o;
  }
  Napi::Value JsSetThrottle(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(info.Env(), "setThrottle(ratio: number)").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    vcpu_->set_throttle(info[0].As<Napi::Number>().DoubleValue());
    return info.Env().Undefined();
  }
  // precopyStart(first: boolean): boolean — a round on the running vCPU thread (false: one is going).
  Napi::Value JsPrecopyStart(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    return Napi::Boolean::New(info.Env(), vcpu_->precopy_start(info.Length() > 0 && info[0].ToBoolean().Value()));
  }
  // takePrecopy(): { pages: Uint8Array ([u32 index][4096 bytes]…), done: boolean }
  Napi::Value JsTakePrecopy(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    bool done = false;
    const std::vector<uint8_t> pages = vcpu_->take_precopy(&done);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("pages", Napi::Buffer<uint8_t>::Copy(info.Env(), pages.data(), pages.size()));
    r.Set("done", Napi::Boolean::New(info.Env(), done));
    return r;
  }
  // copyPages(first: boolean): Uint8Array — idle: a whole round at once (the final stop-and-copy).
  Napi::Value JsCopyPages(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    // Handed to JS without a copy (the stop-and-copy pause is the time this takes): the Buffer owns it.
    auto* pages = new std::vector<uint8_t>(vcpu_->copy_pages(info.Length() > 0 && info[0].ToBoolean().Value()));
    if (pages->empty()) {
      delete pages;
      return Napi::Buffer<uint8_t>::New(info.Env(), 0);
    }
    return Napi::Buffer<uint8_t>::New(info.Env(), pages->data(), pages->size(), [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, pages);
  }
  // writePages(pages: Uint8Array): void — applies [u32 index][4096 bytes]… (idle); validated completely
  // before any page is written (ERR_LOCKSTEP_REPLICATION_PAGES names the first bad record).
  Napi::Value JsWritePages(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    if (info.Length() < 1 || !info[0].IsTypedArray()) {
      Napi::TypeError::New(info.Env(), "writePages(pages: Uint8Array)").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
    constexpr size_t kRec = 4 + 4096;
    Machine& m = vcpu_->machine();
    const uint32_t npages = m.ram_size() / 4096;
    if (data.ByteLength() % kRec != 0) {
      ThrowCoded(info.Env(), "ERR_LOCKSTEP_REPLICATION_PAGES", "page data is " + std::to_string(data.ByteLength()) + " bytes, not a whole number of 4100-byte records");
      return info.Env().Undefined();
    }
    for (size_t at = 0; at < data.ByteLength(); at += kRec) {
      uint32_t index;
      std::memcpy(&index, data.Data() + at, 4);
      if (index >= npages) {
        ThrowCoded(info.Env(), "ERR_LOCKSTEP_REPLICATION_PAGES", "page index " + std::to_string(index) + " at byte " + std::to_string(at) + " is outside RAM (" + std::to_string(npages) + " pages)");
        return info.Env().Undefined();
      }
    }
    for (size_t at = 0; at < data.ByteLength(); at += kRec) {
      uint32_t index;
      std::memcpy(&index, data.Data() + at, 4);
      m.write_ram(kRamBase + index * 4096u, data.Data() + at + 4, 4096);
    }
    return info.Env().Undefined();
  }
  // takeDiskDirty(first: boolean): Uint32Array — 64 KiB disk chunks written since the last call (first:
  // all of them, and tracking starts). Empty without a disk. Any time (the disk has its own lock).
  Napi::Value JsTakeDiskDirty(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    BlockFile* b = vcpu_->machine().block_file();
    const std::vector<uint32_t> chunks = b ? b->take_dirty(info.Length() > 0 && info[0].ToBoolean().Value()) : std::vector<uint32_t>{};
    Napi::Uint32Array out = Napi::Uint32Array::New(info.Env(), chunks.size());
    for (size_t i = 0; i < chunks.size(); i++) out[i] = chunks[i];
    return out;
  }
  // diskInFlight(): number — virtio-blk requests not yet completed (idle only).
  Napi::Value JsDiskInFlight(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), static_cast<double>(vcpu_->machine().disk_in_flight()));
  }
  // diskSyncs(): number — syncs the disk image has had (0 without a disk). Any time while open.
  Napi::Value JsDiskSyncs(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), static_cast<double>(vcpu_->machine().disk_syncs()));
  }
  Napi::Value JsAnnounce(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    vcpu_->announce();
    return info.Env().Undefined();
  }
  // takeFrames(): Uint8Array[] — frames the guest transmitted since the last call.
  Napi::Value JsTakeFrames(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!vcpu_) return Napi::Array::New(env, 0);
    const auto frames = vcpu_->take_frames();
    Napi::Array out = Napi::Array::New(env, frames.size());
    for (size_t i = 0; i < frames.size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, frames[i].data(), frames[i].size()));
    return out;
  }
  // udpAttach(forwards: {host, hostPort, guestPort}[], guestMac: Uint8Array(6)): {id, ports} — the udp
  // back-end (any time, also while running). Throws ERR_LOCKSTEP_LISTEN_IN_USE/_FAILED (field: the address,
  // cause: the errno's name), or ERR_LOCKSTEP_OPTION_INVALID when a network back-end is attached already.
  Napi::Value JsUdpAttach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || !vcpu_) {
      ThrowCoded(env, "ERR_LOCKSTEP_MACHINE_CLOSED", "the machine is closed");
      return env.Undefined();
    }
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsTypedArray() || info[1].As<Napi::Uint8Array>().ByteLength() != 6) {
      Napi::TypeError::New(env, "udpAttach(forwards: {host, hostPort, guestPort}[], guestMac: Uint8Array(6))").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array list = info[0].As<Napi::Array>();
    std::vector<UdpForwardSpec> forwards;
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value v = list.Get(i);
      if (!v.IsObject()) {
        Napi::TypeError::New(env, "udpAttach: forward " + std::to_string(i) + " must be an object").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      Napi::Object o = v.As<Napi::Object>();
      Napi::Value host = o.Get("host"), hp = o.Get("hostPort"), gp = o.Get("guestPort");
      if (!host.IsString() || !hp.IsNumber() || !gp.IsNumber()) {
        Napi::TypeError::New(env, "udpAttach: forward " + std::to_string(i) + " needs host (string), hostPort and guestPort (numbers)").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      const uint32_t host_port = hp.As<Napi::Number>().Uint32Value(), guest_port = gp.As<Napi::Number>().Uint32Value();
      if (host_port > 65535 || guest_port > 65535) {
        Napi::RangeError::New(env, "udpAttach: ports are 0..65535").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      forwards.push_back({host.As<Napi::String>().Utf8Value(), static_cast<uint16_t>(host_port), static_cast<uint16_t>(guest_port)});
    }
    std::vector<uint16_t> ports;
    int err = 0;
    size_t failed = 0;
    const uint64_t id = vcpu_->attach_udp(forwards, info[1].As<Napi::Uint8Array>().Data(), &ports, &err, &failed);
    if (id == 0) {
      if (err == EEXIST) {
        ThrowCoded(env, "ERR_LOCKSTEP_OPTION_INVALID", "the machine's virtio-net already has a network back-end (tap, or udp forwards not yet closed)", "devices.net");
        return env.Undefined();
      }
      const std::string address = failed < forwards.size() ? forwards[failed].host + ":" + std::to_string(forwards[failed].host_port) : "";
      const char* name = strerrorname_np(err);
      ThrowCoded(env, err == EADDRINUSE ? "ERR_LOCKSTEP_LISTEN_IN_USE" : "ERR_LOCKSTEP_LISTEN_FAILED",
                 "cannot bind " + address + ": " + std::strerror(err), address.c_str(), name ? name : "EIO");
      return env.Undefined();
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("id", Napi::Number::New(env, static_cast<double>(id)));
    Napi::Array p = Napi::Array::New(env, ports.size());
    for (size_t i = 0; i < ports.size(); i++) p.Set(static_cast<uint32_t>(i), Napi::Number::New(env, ports[i]));
    out.Set("ports", p);
    return out;
  }
  // udpStats(id): the counters of udp back-end `id`, or null when it is not attached (any time).
  Napi::Value JsUdpStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t id;
    if (!U32(info, 0, &id)) return env.Undefined();
    UdpStats s;
    if (closed_ || !vcpu_ || !vcpu_->udp_stats(id, &s)) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("toGuest", Napi::Number::New(env, static_cast<double>(s.to_guest)));
    o.Set("truncated", Napi::Number::New(env, static_cast<double>(s.truncated)));
    o.Set("refused", Napi::Number::New(env, static_cast<double>(s.refused)));
    o.Set("toClients", Napi::Number::New(env, static_cast<double>(s.to_clients)));
    o.Set("ignoredFrames", Napi::Number::New(env, static_cast<double>(s.ignored_frames)));
    return o;
  }
  // udpDetach(id): closes udp back-end `id` (no-op when it is not attached).
  Napi::Value JsUdpDetach(const Napi::CallbackInfo& info) {
    uint32_t id;
    if (!U32(info, 0, &id)) return info.Env().Undefined();
    if (!closed_ && vcpu_) vcpu_->detach_udp(id);
    return info.Env().Undefined();
  }
  Napi::Value JsNetInput(const Napi::CallbackInfo& info) {
    if (!vcpu_ || info.Length() < 1 || !info[0].IsTypedArray()) {
      Napi::TypeError::New(info.Env(), "netInput(frame: Uint8Array)").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    Napi::Uint8Array f = info[0].As<Napi::Uint8Array>();
    if (f.ByteLength() < 14 || f.ByteLength() > 1518) {
      Napi::RangeError::New(info.Env(), "a frame is 14..1518 bytes").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    vcpu_->net_input(f.Data(), f.ByteLength());
    return info.Env().Undefined();
  }
  Napi::Value JsSuppressed(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), static_cast<double>(vcpu_->machine().suppressed_outputs()));
  }
  Napi::Value JsNetStats(const Napi::CallbackInfo& info) {
    if (closed_ || !vcpu_) {
      ThrowCoded(info.Env(), "ERR_LOCKSTEP_MACHINE_CLOSED", "the machine is closed");
      return info.Env().Undefined();
    }
    const VcpuThread::NetStats s = vcpu_->net_stats();  // thread-safe: readable while a run is in progress
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("queued", Napi::Number::New(info.Env(), static_cast<double>(s.queued)));
    o.Set("delivered", Napi::Number::New(info.Env(), static_cast<double>(s.delivered)));
    o.Set("deliveredBytes", Napi::Number::New(info.Env(), static_cast<double>(s.delivered_bytes)));
    o.Set("dropped", Napi::Number::New(info.Env(), static_cast<double>(s.dropped)));
    return o;
  }
  Napi::Value JsStateHash(const Napi::CallbackInfo& info) {
    if (!Usable(info)) return info.Env().Undefined();
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(vcpu_->machine().state_hash()));
  }
  Napi::Value JsClose(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  // ---- the replication link (the log's data path on a native thread) --------------------------------

  static bool Bytes(const Napi::Value& v, std::vector<uint8_t>* out) {
    if (!v.IsTypedArray()) return false;
    Napi::Uint8Array a = v.As<Napi::Uint8Array>();
    out->assign(a.Data(), a.Data() + a.ByteLength());
    return true;
  }
  static bool BigU64(const Napi::Value& v, uint64_t* out) {
    if (!v.IsBigInt()) return false;
    bool lossless = false;
    *out = v.As<Napi::BigInt>().Uint64Value(&lossless);
    return lossless;
  }
  // linkStart({ role: 'sender'|'receiver', fd, sendKey, recvKey, sendSequence: bigint, recvSequence: bigint,
  //   maxPayload, leftover: Uint8Array, replayRingBytes? }): the link works on its own duplicate of the
  //   connected socket `fd` (the caller then closes its descriptor). Throws ERR_LOCKSTEP_REPLICATION_LINK.
  Napi::Value JsLinkStart(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(info)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsObject()) {
      Napi::TypeError::New(env, "linkStart(options: object)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object o = info[0].As<Napi::Object>();
    ChannelConfig c;
    const std::string role = o.Get("role").ToString().Utf8Value();
    Napi::Value fd = o.Get("fd");
    if ((role != "sender" && role != "receiver") || !fd.IsNumber() || !Bytes(o.Get("sendKey"), &c.send_key) || !Bytes(o.Get("recvKey"), &c.recv_key) ||
        !BigU64(o.Get("sendSequence"), &c.send_sequence) || !BigU64(o.Get("recvSequence"), &c.recv_sequence) || !o.Get("maxPayload").IsNumber() ||
        !Bytes(o.Get("leftover"), &c.leftover)) {
      Napi::TypeError::New(env, "linkStart({ role, fd, sendKey, recvKey, sendSequence, recvSequence, maxPayload, leftover })").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    c.fd = fcntl(fd.As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
    if (c.fd < 0) {
      ThrowCoded(env, "ERR_LOCKSTEP_REPLICATION_LINK", std::string("cannot duplicate the socket: ") + std::strerror(errno));
      return env.Undefined();
    }
    c.max_payload = o.Get("maxPayload").As<Napi::Number>().Uint32Value();
    uint32_t replay_bytes = 8u << 20;
    if (o.Get("replayRingBytes").IsNumber()) replay_bytes = o.Get("replayRingBytes").As<Napi::Number>().Uint32Value();
    const bool sender = role == "sender";
    link_.reset();
    std::string why;
    if (sender && !log_mem_) {
      if (c.fd >= 0) close(c.fd);
      ThrowCoded(env, "ERR_LOCKSTEP_REPLICATION_LINK", "a sending link needs a recording (startRecording first)");
      return env.Undefined();
    }
    link_ = ReplicationLink::start(sender ? ReplicationLink::Role::kSender : ReplicationLink::Role::kReceiver, *vcpu_, std::move(c), log_mem_,
                                   log_capacity_, replay_bytes, bell_, &why);
    if (!link_) ThrowCoded(env, "ERR_LOCKSTEP_REPLICATION_LINK", "cannot start the replication link: " + why);
    return env.Undefined();
  }
  // linkSend(type: number, payload: Uint8Array): boolean — false once the link ended (or there is none).
  Napi::Value JsLinkSend(const Napi::CallbackInfo& info) {
    uint32_t type;
    std::vector<uint8_t> payload;
    if (!U32(info, 0, &type)) return info.Env().Undefined();
    if (info.Length() < 2 || !Bytes(info[1], &payload) || type > 255) {
      Napi::TypeError::New(info.Env(), "linkSend(type: 0..255, payload: Uint8Array)").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    return Napi::Boolean::New(info.Env(), link_ && link_->send(static_cast<uint8_t>(type), std::move(payload)));
  }
  Napi::Value JsLinkReport(const Napi::CallbackInfo& info) {
    if (link_) link_->report();
    return info.Env().Undefined();
  }
  Napi::Value JsLinkFinish(const Napi::CallbackInfo& info) {
    if (link_) link_->finish();
    return info.Env().Undefined();
  }
  Napi::Value JsLinkStop(const Napi::CallbackInfo& info) {
    if (link_) link_->stop();
    return info.Env().Undefined();
  }
  // linkTake(): { messages: [{ type, payload }], console, frames, ended?: { error, message, bye, byeReason } } | undefined
  Napi::Value JsLinkTake(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ReplicationLink::HostEvents ev;
    if (!link_ || !link_->take(&ev)) return env.Undefined();
    Napi::Object r = OutputsToJs(env, ev.released).As<Napi::Object>();
    Napi::Array messages = Napi::Array::New(env, ev.messages.size());
    for (size_t i = 0; i < ev.messages.size(); i++) {
      Napi::Object m = Napi::Object::New(env);
      m.Set("type", Napi::Number::New(env, ev.messages[i].type));
      m.Set("payload", Napi::Buffer<uint8_t>::Copy(env, ev.messages[i].payload.data(), ev.messages[i].payload.size()));
      messages.Set(static_cast<uint32_t>(i), m);
    }
    r.Set("messages", messages);
    if (ev.ended) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("error", Napi::String::New(env, channel_error_name(ev.error)));
      e.Set("message", Napi::String::New(env, ev.message));
      e.Set("bye", Napi::Boolean::New(env, ev.bye));
      e.Set("byeReason", Napi::String::New(env, ev.bye_reason));
      r.Set("ended", e);
    }
    return r;
  }
  // linkEmitted(): the host emitted the outputs of every linkTake() so far (ReplicationLink::emitted).
  Napi::Value JsLinkEmitted(const Napi::CallbackInfo& info) {
    if (link_) link_->emitted();
    return info.Env().Undefined();
  }
  // linkFigures(): counters of the link, or undefined without one.
  Napi::Value JsLinkFigures(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!link_) return env.Undefined();
    const ReplicationLink::Figures f = link_->figures();
    Napi::Object o = Napi::Object::New(env);
    o.Set("ackedLsn1", Napi::BigInt::New(env, f.acked_lsn1));
    o.Set("logLsn1", Napi::BigInt::New(env, f.log_lsn1));
    o.Set("releasedLsn1", Napi::BigInt::New(env, f.released_lsn1));
    o.Set("emittedLsn1", Napi::BigInt::New(env, f.emitted_lsn1));
    o.Set("ackInstret", Napi::BigInt::New(env, f.channel.ack_instret));
    const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
    o.Set("heardAgoMs", Napi::Number::New(env, f.heard_ns == 0 ? -1 : static_cast<double>(now - f.heard_ns) / 1e6));
    o.Set("ackRttMs", Napi::Number::New(env, static_cast<double>(f.ack_rtt_ns) / 1e6));
    o.Set("bytesSent", Napi::Number::New(env, static_cast<double>(f.channel.bytes_sent)));
    o.Set("bytesReceived", Napi::Number::New(env, static_cast<double>(f.channel.bytes_received)));
    o.Set("logBytes", Napi::Number::New(env, static_cast<double>(f.channel.log_bytes)));
    o.Set("logBatches", Napi::Number::New(env, static_cast<double>(f.channel.log_batches)));
    o.Set("logFrames", Napi::Number::New(env, static_cast<double>(f.channel.log_frames)));
    o.Set("acks", Napi::Number::New(env, static_cast<double>(f.channel.acks)));
    o.Set("ackBytes", Napi::Number::New(env, static_cast<double>(f.channel.ack_bytes)));
    o.Set("wakeups", Napi::Number::New(env, static_cast<double>(f.channel.wakeups)));
    o.Set("ended", Napi::Boolean::New(env, link_->ended()));
    return o;
  }
  // releaseDelays(): Float64Array of the output rule's added latencies (ms) since the last call.
  Napi::Value JsReleaseDelays(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    const std::vector<uint64_t> d = vcpu_->take_release_delays();
    Napi::Float64Array out = Napi::Float64Array::New(info.Env(), d.size());
    for (size_t i = 0; i < d.size(); i++) out[i] = static_cast<double>(d[i]) / 1e6;
    return out;
  }
  // abandonLog(): the recording's log is discarded from now on (nobody reads the ring).
  Napi::Value JsAbandonLog(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    vcpu_->abandon_log();
    return info.Env().Undefined();
  }
  // logFree(): bytes the log ring could take now (0 when not recording).
  Napi::Value JsLogFree(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), static_cast<double>(vcpu_->log_free()));
  }

  std::unique_ptr<VcpuThread> vcpu_;
  std::unique_ptr<ReplicationLink> link_;
  std::function<void()> bell_;
  uint8_t* log_mem_ = nullptr;
  uint32_t log_capacity_ = 0;
  Napi::ThreadSafeFunction doorbell_;
  std::atomic<bool> bell_pending_{false};
  Napi::Reference<Napi::Uint8Array> ring_ref_;
  Napi::Reference<Napi::Uint8Array> log_ref_;
  AddonData* data_ = nullptr;
  bool closed_ = false;
};

}  // namespace

// setErrorFactory(makeError: (code, message, field?) => Error): called once by src/native/addon.ts at load.
Napi::Value JsSetErrorFactory(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) {
    Napi::TypeError::New(info.Env(), "setErrorFactory(makeError: Function)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  info.Env().GetInstanceData<AddonData>()->make_error = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  // On environment teardown (process exit, worker end): stop and join every vCPU thread first.
  env.AddCleanupHook([data]() {
    auto copy = data->machines;
    for (NativeMachine* m : copy) m->Shutdown();
  });
  exports.Set("NativeMachine", NativeMachine::Init(env));
  exports.Set("setErrorFactory", Napi::Function::New<JsSetErrorFactory>(env, "setErrorFactory"));
  exports.Set("abiVersion", Napi::Number::New(env, 2));  // 2: coded errors through setErrorFactory
  return exports;
}

}  // namespace lockstep

static Napi::Object InitLockstep(Napi::Env env, Napi::Object exports) { return lockstep::Init(env, exports); }

NODE_API_MODULE(lockstep, InitLockstep)
