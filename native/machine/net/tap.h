// The `tap` network back-end: a Linux TAP device whose frames flow to and from virtio-net natively (no
// JavaScript). Owns the device's file descriptor and its reader thread; no napi, no machine state.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace lockstep {

class TapDevice {
 public:
  /// Creates (or attaches to) TAP device `name` and starts reading it: every frame of 14..1518 bytes
  /// goes to `on_frame` on the reader thread. Null with the reason in *error (not Linux, no
  /// CAP_NET_ADMIN, a bad name).
  static std::unique_ptr<TapDevice> open(const std::string& name, std::function<void(const uint8_t*, size_t)> on_frame,
                                         std::string* error);
  /// Stops and joins the reader thread (within its 100 ms poll), then closes the device.
  ~TapDevice();
  TapDevice(const TapDevice&) = delete;
  TapDevice& operator=(const TapDevice&) = delete;

  /// Writes one frame (any thread: one write(2) per frame is atomic on a TAP device). A full or down
  /// link drops it, as a wire would.
  void send(const uint8_t* frame, size_t n);
  /// Sends a RARP broadcast from `mac` (three times) so that switches learn its new port after a move.
  void announce(const uint8_t mac[6]);

 private:
  TapDevice(int fd, std::function<void(const uint8_t*, size_t)> on_frame);
  const int fd_;
  std::function<void(const uint8_t*, size_t)> on_frame_;
  std::atomic<bool> quit_{false};  // release in the destructor; acquire in the reader loop
  std::thread reader_;
};

}  // namespace lockstep
