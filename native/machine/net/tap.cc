// The `tap` network back-end (see tap.h): TUNSETIFF, a reader thread polling the device, RARP frames.
#include "machine/net/tap.h"
#include "machine/thread_name.h"

#include <cerrno>
#include <cstring>

#ifdef __linux__
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>
#endif

namespace lockstep {

std::unique_ptr<TapDevice> TapDevice::open(const std::string& name, std::function<void(const uint8_t*, size_t)> on_frame,
                                           std::string* error) {
#ifdef __linux__
  if (name.empty() || name.size() >= IFNAMSIZ) {
    *error = "tap device name must be 1.." + std::to_string(IFNAMSIZ - 1) + " characters";
    return nullptr;
  }
  const int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    *error = std::string("cannot open /dev/net/tun: ") + std::strerror(errno) + " (the tap back-end needs CAP_NET_ADMIN)";
    return nullptr;
  }
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    *error = "cannot create tap device " + name + ": " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  return std::unique_ptr<TapDevice>(new TapDevice(fd, std::move(on_frame)));
#else
  (void)name;
  (void)on_frame;
  *error = "the tap back-end exists on Linux only";
  return nullptr;
#endif
}

TapDevice::TapDevice(int fd, std::function<void(const uint8_t*, size_t)> on_frame) : fd_(fd), on_frame_(std::move(on_frame)) {
#ifdef __linux__
  reader_ = std::thread([this] {
    name_this_thread("lockstep-tap");
    uint8_t buf[2048];
    // acquire: pairs with the release store in the destructor.
    while (!quit_.load(std::memory_order_acquire)) {
      struct pollfd p = {fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;  // the timeout only bounds how long the destructor waits
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n >= 14 && n <= 1518) on_frame_(buf, static_cast<size_t>(n));
    }
  });
#endif
}

TapDevice::~TapDevice() {
  quit_.store(true, std::memory_order_release);  // pairs with the reader loop's acquire load
  if (reader_.joinable()) reader_.join();
#ifdef __linux__
  ::close(fd_);
#endif
}

void TapDevice::send(const uint8_t* frame, size_t n) {
#ifdef __linux__
  (void)!::write(fd_, frame, n);
#else
  (void)frame;
  (void)n;
#endif
}

void TapDevice::announce(const uint8_t mac[6]) {
  // RARP "reverse request" from the guest's MAC (what VMware FT and QEMU send after a move): no IP
  // needed, and every switch on the segment learns the MAC's new port.
  uint8_t f[60] = {};
  std::memset(f, 0xff, 6);
  std::memcpy(f + 6, mac, 6);
  f[12] = 0x80; f[13] = 0x35;            // ethertype RARP
  f[14] = 0; f[15] = 1;                  // htype Ethernet
  f[16] = 0x08; f[17] = 0x00;            // ptype IPv4
  f[18] = 6; f[19] = 4;                  // hlen, plen
  f[20] = 0; f[21] = 3;                  // op: reverse request
  std::memcpy(f + 22, mac, 6);           // sender MAC (IP 0.0.0.0)
  std::memcpy(f + 32, mac, 6);           // target MAC (IP 0.0.0.0)
  for (int i = 0; i < 3; i++) send(f, sizeof f);
}

}  // namespace lockstep
