// The `udp` network back-end (see udp.h): sockets, a reader thread (recvmmsg batches), frames built for
// the guest and parsed from it byte for byte as src/machine/net/udp-forward.ts did in JavaScript.
#include "machine/net/udp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "machine/thread_name.h"

namespace lockstep {
namespace {

constexpr uint8_t kGuestIp[4] = {10, 0, 2, 15};
constexpr uint8_t kGatewayIp[4] = {10, 0, 2, 2};
constexpr uint8_t kGatewayMac[6] = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
constexpr uint32_t kLoopback = 0x7f000001;  // 127.0.0.1, host order
// Largest UDP payload in one 1500-byte Ethernet frame (the guest does not reassemble fragments), and the
// payload of the first fragment of a larger datagram (a multiple of 8, as IPv4 requires).
constexpr size_t kMaxGuestPayload = 1472;
constexpr size_t kFirstFragmentPayload = 1480 - 8;
// Datagrams taken per recvmmsg call; each buffer holds the largest IPv4 UDP payload, since the checksum
// the guest checks covers the whole datagram even when only its first fragment is carried.
constexpr unsigned kBatch = 16;
constexpr size_t kDatagramMax = 65536;

bool same_ip(const uint8_t* a, const uint8_t* b) { return std::memcmp(a, b, 4) == 0; }

uint32_t sum16(const uint8_t* p, size_t n, uint32_t sum) {
  // Big-endian 16-bit words, an odd last byte as the high half of a word; folded at the end. At most
  // 65536 bytes: the 32-bit sum cannot overflow before the fold.
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<uint32_t>(p[n - 1]) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

void put16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

}  // namespace

std::unique_ptr<UdpBackend> UdpBackend::open(const std::vector<UdpForwardSpec>& forwards, const uint8_t guest_mac[6],
                                             ToGuest to_guest, int* err, size_t* failed) {
  std::vector<Forward> bound;
  auto fail = [&](int e, size_t i) {
    for (const Forward& f : bound) ::close(f.fd);
    *err = e;
    *failed = i;
    return nullptr;
  };
  for (size_t i = 0; i < forwards.size(); i++) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(forwards[i].host_port);
    if (inet_pton(AF_INET, forwards[i].host.c_str(), &a.sin_addr) != 1) return fail(EINVAL, i);
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return fail(errno, i);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      const int e = errno;
      ::close(fd);
      return fail(e, i);
    }
    bound.push_back({fd, forwards[i].guest_port});
  }
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) return fail(errno, forwards.size());
  return std::unique_ptr<UdpBackend>(new UdpBackend(std::move(bound), wake, guest_mac, std::move(to_guest)));
}

UdpBackend::UdpBackend(std::vector<Forward> forwards, const int wake[2], const uint8_t guest_mac[6],
                       ToGuest to_guest)
    : forwards_(std::move(forwards)), to_guest_(std::move(to_guest)) {
  wake_[0] = wake[0];
  wake_[1] = wake[1];
  set_guest_mac(guest_mac);
  for (const Forward& f : forwards_) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(f.fd, reinterpret_cast<sockaddr*>(&a), &len);
    ports_.push_back(ntohs(a.sin_port));
  }
  reader_ = std::thread([this] {
    name_this_thread("lockstep-udp");
    reader_main();
  });
}

UdpBackend::~UdpBackend() {
  quit_.store(true, std::memory_order_release);  // pairs with the reader loop's acquire load
  wake();
  if (reader_.joinable()) reader_.join();
  for (const Forward& f : forwards_) ::close(f.fd);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void UdpBackend::wake() {
  const uint8_t b = 1;
  (void)!::write(wake_[1], &b, 1);  // a full pipe already wakes the reader
}

void UdpBackend::set_guest_mac(const uint8_t* mac) {
  uint64_t v = 0;
  for (int i = 0; i < 6; i++) v = v << 8 | mac[i];
  guest_mac_.store(v, std::memory_order_relaxed);
}

UdpStats UdpBackend::stats() const {
  UdpStats s;
  s.to_guest = to_guest_n_.load(std::memory_order_relaxed);
  s.truncated = truncated_.load(std::memory_order_relaxed);
  s.refused = refused_.load(std::memory_order_relaxed);
  s.to_clients = to_clients_.load(std::memory_order_relaxed);
  s.ignored_frames = ignored_.load(std::memory_order_relaxed);
  return s;
}

void UdpBackend::reader_main() {
  std::vector<pollfd> polls;
  polls.push_back({wake_[0], POLLIN, 0});
  for (const Forward& f : forwards_) polls.push_back({f.fd, POLLIN, 0});
  std::vector<uint8_t> bufs(kBatch * kDatagramMax);
  mmsghdr msgs[kBatch];
  iovec iovs[kBatch];
  sockaddr_in from[kBatch];
  // acquire: pairs with the release store in the destructor.
  while (!quit_.load(std::memory_order_acquire)) {
    if (::poll(polls.data(), polls.size(), -1) <= 0) continue;
    if (polls[0].revents) {
      uint8_t drain[64];
      while (::read(wake_[0], drain, sizeof drain) > 0) {
      }
      std::deque<std::vector<uint8_t>> answers;
      {
        std::lock_guard<std::mutex> lock(answers_mu_);
        answers.swap(answers_);
      }
      for (std::vector<uint8_t>& a : answers) out_.push_back(std::move(a));
    }
    for (size_t k = 1; k < polls.size(); k++) {
      if (!polls[k].revents) continue;
      const Forward& f = forwards_[k - 1];
      for (;;) {
        for (unsigned i = 0; i < kBatch; i++) {
          iovs[i] = {bufs.data() + i * kDatagramMax, kDatagramMax};
          msgs[i].msg_hdr = {};
          msgs[i].msg_hdr.msg_name = &from[i];
          msgs[i].msg_hdr.msg_namelen = sizeof from[i];
          msgs[i].msg_hdr.msg_iov = &iovs[i];
          msgs[i].msg_hdr.msg_iovlen = 1;
          msgs[i].msg_len = 0;
        }
        const int got = ::recvmmsg(f.fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
        if (got <= 0) break;  // EAGAIN: drained; an ICMP error reported on the socket: nothing to read
        for (int i = 0; i < got; i++) {
          if (msgs[i].msg_hdr.msg_namelen < sizeof(sockaddr_in) || from[i].sin_family != AF_INET) continue;
          frame_datagram(f.guest_port, ntohl(from[i].sin_addr.s_addr), ntohs(from[i].sin_port), bufs.data() + i * kDatagramMax, msgs[i].msg_len);
        }
        if (static_cast<unsigned>(got) < kBatch) break;
      }
    }
    if (!out_.empty()) {
      to_guest_(out_);
      out_.clear();
    }
  }
}

void UdpBackend::frame_datagram(uint16_t guest_port, uint32_t client_ip, uint16_t client_port, const uint8_t* payload, size_t n) {
  uint8_t client[4] = {static_cast<uint8_t>(client_ip >> 24), static_cast<uint8_t>(client_ip >> 16), static_cast<uint8_t>(client_ip >> 8),
                       static_cast<uint8_t>(client_ip)};
  if (same_ip(client, kGuestIp)) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (client[0] == 127) {
    // A loopback source is a martian to a real IP stack (Linux drops it on eth0). The guest sees the
    // host as QEMU's user network shows it, 10.0.2.2, and a reply to 10.0.2.2 goes back to 127.0.0.1;
    // no address maps back to the rest of 127/8, so those clients are refused.
    if (client_ip != kLoopback) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    std::memcpy(client, kGatewayIp, 4);
  }
  const bool truncated = n > kMaxGuestPayload;
  const size_t udp_len = 8 + n;
  const size_t carried = truncated ? kFirstFragmentPayload : n;
  std::vector<uint8_t> out(14 + 20 + 8 + carried);
  uint8_t* frame = out.data();
  const uint64_t mac = guest_mac_.load(std::memory_order_relaxed);
  for (int i = 0; i < 6; i++) frame[i] = static_cast<uint8_t>(mac >> (40 - 8 * i));
  std::memcpy(frame + 6, kGatewayMac, 6);
  frame[12] = 0x08;
  frame[13] = 0x00;
  uint8_t* ip = frame + 14;
  ip[0] = 0x45;
  put16(ip + 2, static_cast<uint32_t>(20 + 8 + carried));
  if (truncated) ip[6] = 0x20;  // more fragments, offset 0: the rest never comes
  ip[8] = 64;
  ip[9] = 17;
  std::memcpy(ip + 12, client, 4);
  std::memcpy(ip + 16, kGuestIp, 4);
  put16(ip + 10, ~sum16(ip, 20, 0) & 0xffff);
  uint8_t* udp = ip + 20;
  put16(udp, client_port);
  put16(udp + 2, guest_port);
  put16(udp + 4, static_cast<uint32_t>(udp_len));
  uint8_t pseudo[12] = {};
  std::memcpy(pseudo, client, 4);
  std::memcpy(pseudo + 4, kGuestIp, 4);
  pseudo[9] = 17;
  put16(pseudo + 10, static_cast<uint32_t>(udp_len));
  // The checksum covers the whole datagram (header with a zero checksum field, then all of the payload).
  uint32_t sum = sum16(udp, 8, sum16(pseudo, 12, 0));
  sum = sum16(payload, n, sum);
  uint32_t c = ~sum & 0xffff;
  if (c == 0) c = 0xffff;
  put16(udp + 6, c);
  std::memcpy(udp + 8, payload, carried);
  to_guest_n_.fetch_add(1, std::memory_order_relaxed);
  if (truncated) truncated_.fetch_add(1, std::memory_order_relaxed);
  out_.push_back(std::move(out));
}

bool UdpBackend::route(const uint8_t* f, size_t n, Datagram* d) {
  auto ignored = [this] {
    ignored_.fetch_add(1, std::memory_order_relaxed);
    return false;
  };
  if (n < 14) return ignored();
  const uint32_t type = static_cast<uint32_t>(f[12] << 8 | f[13]);
  if (type == 0x0806 && n >= 42) {
    // An ARP request for any address but the guest's own: the gateway answers for all of them (proxy
    // ARP), since every client is reached through it.
    const uint32_t op = static_cast<uint32_t>(f[20] << 8 | f[21]);
    const uint8_t* target = f + 38;
    if (op == 1 && !same_ip(target, kGuestIp)) {
      set_guest_mac(f + 22);
      std::vector<uint8_t> r(42);
      std::memcpy(r.data(), f + 22, 6);
      std::memcpy(r.data() + 6, kGatewayMac, 6);
      const uint8_t head[10] = {0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02};
      std::memcpy(r.data() + 12, head, 10);
      std::memcpy(r.data() + 22, kGatewayMac, 6);
      std::memcpy(r.data() + 28, target, 4);
      std::memcpy(r.data() + 32, f + 22, 10);
      {
        std::lock_guard<std::mutex> lock(answers_mu_);
        answers_.push_back(std::move(r));
      }
      wake();
      return false;
    }
  }
  if (type != 0x0800 || n < 42 || f[23] != 17) return ignored();
  set_guest_mac(f + 6);
  const size_t ihl = static_cast<size_t>(f[14] & 0x0f) * 4;
  const size_t udp = 14 + ihl;
  if (ihl < 20 || udp + 8 > n) return ignored();
  const uint16_t dst_port = static_cast<uint16_t>(f[udp + 2] << 8 | f[udp + 3]);
  const uint16_t src_port = static_cast<uint16_t>(f[udp] << 8 | f[udp + 1]);
  const size_t len = static_cast<size_t>(f[udp + 4] << 8 | f[udp + 5]);
  const uint8_t* dst = f + 30;
  if (len < 8 || udp + len > n || dst_port == 0 || same_ip(dst, kGuestIp)) return ignored();
  if (forwards_.empty()) return ignored();
  const Forward* from = &forwards_[0];
  for (const Forward& fw : forwards_) {
    if (fw.guest_port == src_port) {
      from = &fw;
      break;
    }
  }
  to_clients_.fetch_add(1, std::memory_order_relaxed);
  d->fd = from->fd;
  d->to = sockaddr_in{};
  d->to.sin_family = AF_INET;
  d->to.sin_port = htons(dst_port);
  if (same_ip(dst, kGatewayIp)) {
    d->to.sin_addr.s_addr = htonl(kLoopback);
  } else {
    std::memcpy(&d->to.sin_addr.s_addr, dst, 4);
  }
  d->payload = f + udp + 8;
  d->len = len - 8;
  return true;
}

void UdpBackend::send(const uint8_t* f, size_t n) {
  Datagram d;
  if (!route(f, n, &d)) return;
  // An unreachable client or a full socket buffer loses the datagram, as a network would.
  (void)::sendto(d.fd, d.payload, d.len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&d.to), sizeof d.to);
}

void UdpBackend::send_many(const std::vector<std::vector<uint8_t>>& frames) {
  // One sendmmsg per run of datagrams that leave from the same socket (usually all of them): the output
  // gate releases a batch's replies at once, and a system call each is most of their cost.
  constexpr size_t kMax = 64;
  Datagram d[kMax];
  mmsghdr msgs[kMax];
  iovec iov[kMax];
  size_t k = 0;
  auto flush = [&] {
    for (size_t i = 0; i < k; i++) {
      iov[i] = {const_cast<uint8_t*>(d[i].payload), d[i].len};
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_name = &d[i].to;
      msgs[i].msg_hdr.msg_namelen = sizeof d[i].to;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // A datagram the kernel refuses (unreachable, buffer full) is lost, as on a network; the rest go on.
    for (size_t done = 0; done < k;) {
      const int sent = ::sendmmsg(d[0].fd, msgs + done, static_cast<unsigned>(k - done), MSG_DONTWAIT);
      done += sent > 0 ? static_cast<size_t>(sent) : 1;
    }
    k = 0;
  };
  for (const std::vector<uint8_t>& f : frames) {
    if (!route(f.data(), f.size(), &d[k])) continue;
    if (k > 0 && d[k].fd != d[0].fd) {
      const Datagram next = d[k];
      flush();
      d[0] = next;
    }
    if (++k == kMax) flush();
  }
  flush();
}

}  // namespace lockstep
