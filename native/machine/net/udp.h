// The `udp` network back-end: host UDP ports forwarded to guest UDP ports (QEMU's user network addresses:
// guest 10.0.2.15, gateway 10.0.2.2), natively: no JavaScript per datagram. No napi, no machine state.
#pragma once

#include <netinet/in.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lockstep {

/// One forward: datagrams to host `host`:`host_port` go to the guest's UDP port `guest_port`.
struct UdpForwardSpec {
  std::string host;  // an IPv4 literal (the caller resolves names)
  uint16_t host_port = 0;  // 0: any free port
  uint16_t guest_port = 0;
};

/// Counters; every field only grows (src/machine/net/udp-forward.ts UdpForwarderStats says what each means).
struct UdpStats {
  uint64_t to_guest = 0;
  uint64_t truncated = 0;
  uint64_t refused = 0;
  uint64_t to_clients = 0;
  uint64_t ignored_frames = 0;
};

/// Routes like a stateless router: the guest sees each client's own IPv4 address and port (127.0.0.1 as the
/// gateway 10.0.2.2; other loopback addresses and the guest's own are refused), a guest datagram leaves
/// for the address in its header from the socket of the forward whose guest port it came from, and ARP
/// for any address but the guest's is answered with the gateway's MAC. A datagram too large for one
/// frame reaches the guest as its first fragment. No table of clients is kept.
///
///   clients ──datagrams──▶ sockets ──reader thread: recvmmsg, frame──▶ to_guest (virtio-net input)
///   guest ──frame──▶ send(): ARP ──answer queue──▶ reader thread ──▶ to_guest
///                           UDP ──sendto──▶ clients
class UdpBackend {
 public:
  /// Where frames for the guest go: every frame of one receive batch at once (moved out), so the guest's
  /// queue is locked and its vCPU woken once per batch, not once per datagram.
  using ToGuest = std::function<void(std::vector<std::vector<uint8_t>>&)>;
  /// Binds every forward and starts the reader thread. `to_guest` is called on the reader thread only.
  /// Null on failure: *err the errno of the bind (or EINVAL for an address that is not an IPv4 literal),
  /// *failed the index of the forward that failed.
  static std::unique_ptr<UdpBackend> open(const std::vector<UdpForwardSpec>& forwards, const uint8_t guest_mac[6],
                                          ToGuest to_guest, int* err, size_t* failed);
  /// Stops and joins the reader thread (woken at once), then closes the sockets.
  ~UdpBackend();
  UdpBackend(const UdpBackend&) = delete;
  UdpBackend& operator=(const UdpBackend&) = delete;

  /// The bound host ports, in the order of the forwards.
  const std::vector<uint16_t>& ports() const { return ports_; }
  /// A frame the guest transmitted (any thread; never calls to_guest itself, so a caller may hold locks
  /// that to_guest takes).
  void send(const uint8_t* frame, size_t n);
  /// Frames the guest transmitted, in order, with one sendmmsg per run of datagrams from one socket
  /// (same rules as send()).
  void send_many(const std::vector<std::vector<uint8_t>>& frames);
  UdpStats stats() const;

 private:
  struct Forward {
    int fd;
    uint16_t guest_port;
  };
  /// A guest datagram bound for a client: the socket it leaves from, where to, and its payload.
  struct Datagram {
    int fd = -1;
    sockaddr_in to{};
    const uint8_t* payload = nullptr;
    size_t len = 0;
  };
  /// Parses a guest frame: true with *d for a datagram to send; false for anything else (an ARP request is
  /// answered here, the rest counted as ignored).
  bool route(const uint8_t* frame, size_t n, Datagram* d);
  UdpBackend(std::vector<Forward> forwards, const int wake[2], const uint8_t guest_mac[6], ToGuest to_guest);
  void reader_main();
  void frame_datagram(uint16_t guest_port, uint32_t client_ip, uint16_t client_port, const uint8_t* payload, size_t n);
  void set_guest_mac(const uint8_t* mac);
  void wake();

  std::vector<Forward> forwards_;
  std::vector<uint16_t> ports_;
  int wake_[2];  // a self-pipe: quit, or ARP answers queued (read end polled by the reader)
  ToGuest to_guest_;
  std::vector<std::vector<uint8_t>> out_;  // reader thread: frames of the batch being built
  // The guest's MAC, 6 bytes in the low 48 bits: learnt from its frames, read by the reader thread.
  // relaxed: a lone value, nothing else is published with it.
  std::atomic<uint64_t> guest_mac_{0};
  std::mutex answers_mu_;
  std::deque<std::vector<uint8_t>> answers_;  // under answers_mu_: ARP answers for the reader to deliver
  std::atomic<bool> quit_{false};  // release in the destructor; acquire in the reader loop
  // relaxed: statistics; readers need no ordering with anything.
  std::atomic<uint64_t> to_guest_n_{0}, truncated_{0}, refused_{0}, to_clients_{0}, ignored_{0};
  std::thread reader_;
};

}  // namespace lockstep
