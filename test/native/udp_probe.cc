// UdpProbe (the lockstep_test addon, never shipped in lockstep.node): the native udp back-end alone, with
// the guest side played by the test: frames "from the guest" go to send(), frames "for the guest" are
// collected for take(). Argument conversion only; the behaviour is native/machine/net/udp.cc's.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "machine/net/udp.h"

namespace lockstep {

class UdpProbe : public Napi::ObjectWrap<UdpProbe> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "UdpProbe",
                       {InstanceMethod<&UdpProbe::JsPorts>("ports"), InstanceMethod<&UdpProbe::JsSend>("send"),
                        InstanceMethod<&UdpProbe::JsTake>("take"), InstanceMethod<&UdpProbe::JsStats>("stats"),
                        InstanceMethod<&UdpProbe::JsClose>("close")});
  }

  // new UdpProbe(forwards: {host, hostPort, guestPort}[], guestMac: Uint8Array(6)); a failed bind throws an
  // Error whose code is the errno's name.
  explicit UdpProbe(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpProbe>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsTypedArray() || info[1].As<Napi::Uint8Array>().ByteLength() != 6) {
      Napi::TypeError::New(env, "new UdpProbe(forwards, guestMac: Uint8Array(6))").ThrowAsJavaScriptException();
      return;
    }
    Napi::Array list = info[0].As<Napi::Array>();
    std::vector<UdpForwardSpec> forwards;
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Object o = list.Get(i).As<Napi::Object>();
      forwards.push_back({o.Get("host").As<Napi::String>().Utf8Value(), static_cast<uint16_t>(o.Get("hostPort").As<Napi::Number>().Uint32Value()),
                          static_cast<uint16_t>(o.Get("guestPort").As<Napi::Number>().Uint32Value())});
    }
    int err = 0;
    size_t failed = 0;
    backend_ = UdpBackend::open(
        forwards, info[1].As<Napi::Uint8Array>().Data(),
        [this](std::vector<std::vector<uint8_t>>& batch) {
          std::lock_guard<std::mutex> lock(mu_);
          for (std::vector<uint8_t>& f : batch) frames_.push_back(std::move(f));
        },
        &err, &failed);
    if (!backend_) {
      Napi::Error e = Napi::Error::New(env, std::string("bind: ") + std::strerror(err));
      const char* name = strerrorname_np(err);
      e.Set("code", Napi::String::New(env, name ? name : "EIO"));
      e.ThrowAsJavaScriptException();
    }
  }

 private:
  Napi::Value JsPorts(const Napi::CallbackInfo& info) {
    Napi::Array out = Napi::Array::New(info.Env());
    if (backend_) {
      for (size_t i = 0; i < backend_->ports().size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), backend_->ports()[i]));
    }
    return out;
  }
  Napi::Value JsSend(const Napi::CallbackInfo& info) {
    if (backend_ && info.Length() > 0 && info[0].IsTypedArray()) {
      Napi::Uint8Array f = info[0].As<Napi::Uint8Array>();
      backend_->send(f.Data(), f.ByteLength());
    }
    return info.Env().Undefined();
  }
  Napi::Value JsTake(const Napi::CallbackInfo& info) {
    std::vector<std::vector<uint8_t>> frames;
    {
      std::lock_guard<std::mutex> lock(mu_);
      frames.swap(frames_);
    }
    Napi::Array out = Napi::Array::New(info.Env(), frames.size());
    for (size_t i = 0; i < frames.size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(info.Env(), frames[i].data(), frames[i].size()));
    return out;
  }
  Napi::Value JsStats(const Napi::CallbackInfo& info) {
    const UdpStats s = backend_ ? backend_->stats() : last_;
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("toGuest", Napi::Number::New(info.Env(), static_cast<double>(s.to_guest)));
    o.Set("truncated", Napi::Number::New(info.Env(), static_cast<double>(s.truncated)));
    o.Set("refused", Napi::Number::New(info.Env(), static_cast<double>(s.refused)));
    o.Set("toClients", Napi::Number::New(info.Env(), static_cast<double>(s.to_clients)));
    o.Set("ignoredFrames", Napi::Number::New(info.Env(), static_cast<double>(s.ignored_frames)));
    return o;
  }
  Napi::Value JsClose(const Napi::CallbackInfo& info) {
    if (backend_) last_ = backend_->stats();
    backend_.reset();  // joins the reader before the frame list it writes goes away
    return info.Env().Undefined();
  }

  std::mutex mu_;
  std::vector<std::vector<uint8_t>> frames_;  // under mu_
  UdpStats last_;
  std::unique_ptr<UdpBackend> backend_;  // last member: destroyed (reader joined) first
};

Napi::Function InitUdpProbe(Napi::Env env) { return UdpProbe::Init(env); }

}  // namespace lockstep
