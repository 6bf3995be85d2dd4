/* virtio-net driver and IPv4 stack (see net.h): RX/TX buffer rings in static memory, Ethernet
   dispatch, ARP with a small cache and parked frames, ICMP echo reply, UDP with port handlers. */
#include "net.h"

#include "lockstep.h"
#include "virtio.h"

/* ---- Frame layout ---- */
#define VNET_HDR 12u    /* struct virtio_net_hdr with num_buffers: always present under VERSION_1 */
#define ETH_HDR 14u
#define ETH_MIN 60u     /* minimum frame without FCS; shorter frames are zero-padded */
#define ETH_MTU 1500u
#define IP_HDR 20u
#define UDP_HDR 8u
#define ICMP_HDR 8u
#define BUF_SIZE 1536u  /* >= VNET_HDR + ETH_HDR + ETH_MTU (+ a VLAN tag) */

#define ETH_P_IP 0x0800u
#define ETH_P_ARP 0x0806u
#define IPPROTO_ICMP 1u
#define IPPROTO_UDP 17u

/* Receive buffers absorb a burst while the guest is busy (a kvserver write waits for the disk); the
   host side queues what does not fit (see the machine's net counters). */
#define NRX 64u
#define NTX 16u
#define ARP_ENTRIES 8u
#define PARKED_MAX 4u
#define UDP_PORTS 8u

static vio_dev dev;
static vio_queue rxq, txq;
static uint8_t rx_buf[NRX][BUF_SIZE] __attribute__((aligned(16)));
static uint8_t tx_buf[NTX][BUF_SIZE] __attribute__((aligned(16)));
static uint8_t tx_busy[NTX]; /* 0 free, 1 in the TX queue, 2 parked waiting for ARP */
static unsigned n_rx, n_tx;   /* buffers actually used: at most NRX / NTX and the queue size */

static uint8_t mac[6] = NET_DEFAULT_MAC;
static uint32_t my_ip = NET_DEFAULT_IP, my_mask = NET_DEFAULT_NETMASK, my_gw = NET_DEFAULT_GATEWAY;
static uint16_t ip_id;
static net_stats stats;
static int ready;

static const uint8_t BROADCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

typedef struct arp_entry {
  uint32_t ip; /* 0 = empty */
  uint8_t mac[6];
  uint32_t used; /* last use stamp, for replacement */
} arp_entry;
static arp_entry arp_cache[ARP_ENTRIES];
static uint32_t arp_clock;

typedef struct parked {
  uint32_t next_hop; /* 0 = empty */
  uint32_t slot;     /* TX buffer holding the frame */
  uint32_t len;      /* bytes after the virtio header */
  uint32_t age;
} parked;
static parked parked_frames[PARKED_MAX];

typedef struct udp_port {
  uint16_t port; /* 0 = free */
  udp_handler handler;
} udp_port;
static udp_port ports[UDP_PORTS];

/* ---- Byte order helpers (frames are unaligned: the IP header sits at offset 26 of a buffer) ---- */
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t get32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static void copy(uint8_t *d, const uint8_t *s, size_t n) {
  for (size_t i = 0; i < n; i++) d[i] = s[i];
}
static int same(const uint8_t *a, const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

uint32_t net_csum_add(uint32_t sum, const uint8_t *p, size_t len) {
  size_t i = 0;
  for (; i + 1 < len; i += 2) sum += (uint32_t)((p[i] << 8) | p[i + 1]);
  if (i < len) sum += (uint32_t)(p[i] << 8);
  return sum;
}

uint16_t net_csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffffu) + (sum >> 16);
  return (uint16_t)~sum;
}

static uint32_t pseudo_sum(uint32_t src, uint32_t dst, uint32_t proto, uint32_t len) {
  return (src >> 16) + (src & 0xffffu) + (dst >> 16) + (dst & 0xffffu) + proto + len;
}

void net_configure(uint32_t ip, uint32_t netmask, uint32_t gateway) {
  my_ip = ip;
  my_mask = netmask;
  my_gw = gateway;
}

const uint8_t *net_mac(void) { return mac; }
uint32_t net_ip(void) { return my_ip; }
const net_stats *net_get_stats(void) { return &stats; }

static int on_link(uint32_t ip) { return (ip & my_mask) == (my_ip & my_mask); }

/* ---- TX buffers ---- */

static void reclaim_tx(void) {
  void *cookie;
  while (vio_next_used(&txq, 0, &cookie)) tx_busy[(uintptr_t)cookie] = 0;
}

/* A free TX buffer, waiting for the device to return one if all are in flight. */
static unsigned tx_alloc(void) {
  for (;;) {
    reclaim_tx();
    for (unsigned i = 0; i < n_tx; i++) {
      if (!tx_busy[i]) {
        tx_busy[i] = 1;
        for (unsigned k = 0; k < VNET_HDR; k++) tx_buf[i][k] = 0; /* no offloads: all-zero header */
        return i;
      }
    }
    vio_wait();
  }
}

/* Queues TX buffer `slot` holding `len` frame bytes (after the virtio header). */
static void tx_submit(unsigned slot, uint32_t len) {
  uint8_t *f = tx_buf[slot] + VNET_HDR;
  while (len < ETH_MIN) f[len++] = 0;
  vio_buf b = {tx_buf[slot], VNET_HDR + len, 0};
  tx_busy[slot] = 1;
  /* n_tx <= queue size and every chain is one descriptor, so there is always room. */
  vio_submit(&txq, &b, 1, (void *)(uintptr_t)slot);
  vio_notify(&txq);
  stats.tx_frames++;
}

/* Ethernet header into TX buffer `slot`; returns the frame start. */
static uint8_t *eth_header(unsigned slot, const uint8_t *dst, uint32_t type) {
  uint8_t *f = tx_buf[slot] + VNET_HDR;
  copy(f, dst, 6);
  copy(f + 6, mac, 6);
  put16(f + 12, type);
  return f;
}

/* ---- ARP ---- */

static arp_entry *arp_find(uint32_t ip) {
  for (unsigned i = 0; i < ARP_ENTRIES; i++)
    if (arp_cache[i].ip == ip) return &arp_cache[i];
  return 0;
}

static void flush_parked(uint32_t ip, const uint8_t *hw);

/* Adds or refreshes an entry (replacing the least recently used), then sends frames parked for it. */
static void arp_learn(uint32_t ip, const uint8_t *hw) {
  if (ip == 0 || ip == my_ip || !on_link(ip)) return;
  if (hw[0] & 1u) return; /* never a multicast or broadcast MAC */
  arp_entry *e = arp_find(ip);
  if (!e) {
    e = &arp_cache[0];
    for (unsigned i = 0; i < ARP_ENTRIES; i++) {
      if (arp_cache[i].ip == 0) {
        e = &arp_cache[i];
        break;
      }
      if (arp_cache[i].used < e->used) e = &arp_cache[i];
    }
    e->ip = ip;
  }
  copy(e->mac, hw, 6);
  e->used = ++arp_clock;
  flush_parked(ip, hw);
}

static void arp_send(uint32_t op, const uint8_t *eth_dst, const uint8_t *tha, uint32_t tpa) {
  unsigned slot = tx_alloc();
  uint8_t *f = eth_header(slot, eth_dst, ETH_P_ARP);
  uint8_t *a = f + ETH_HDR;
  put16(a, 1);          /* Ethernet */
  put16(a + 2, ETH_P_IP);
  a[4] = 6;
  a[5] = 4;
  put16(a + 6, op);
  copy(a + 8, mac, 6);
  put32(a + 14, my_ip);
  copy(a + 18, tha, 6);
  put32(a + 24, tpa);
  tx_submit(slot, ETH_HDR + 28);
  if (op == 1) stats.arp_requests_sent++;
  else stats.arp_replies_sent++;
}

static void arp_input(const uint8_t *f, uint32_t len) {
  if (len < ETH_HDR + 28) goto drop;
  const uint8_t *a = f + ETH_HDR;
  if (get16(a) != 1 || get16(a + 2) != ETH_P_IP || a[4] != 6 || a[5] != 4) goto drop;
  uint32_t op = get16(a + 6);
  uint32_t spa = get32(a + 14), tpa = get32(a + 24);
  /* RFC 826: refresh a known sender always, add it when the packet is for us. */
  if (tpa == my_ip || arp_find(spa)) arp_learn(spa, a + 8);
  if (op == 1 && tpa == my_ip) arp_send(2, a + 8, a + 8, spa);
  return;
drop:
  stats.rx_dropped++;
}

/* Parks a finished frame (TX buffer `slot`, eth destination still unset) until next_hop resolves. */
static void park(unsigned slot, uint32_t len, uint32_t next_hop) {
  parked *p = 0;
  for (unsigned i = 0; i < PARKED_MAX; i++) {
    if (parked_frames[i].next_hop == 0) {
      p = &parked_frames[i];
      break;
    }
    if (!p || parked_frames[i].age < p->age) p = &parked_frames[i];
  }
  if (p->next_hop != 0) { /* full: drop the oldest */
    tx_busy[p->slot] = 0;
    stats.tx_parked_dropped++;
  }
  p->next_hop = next_hop;
  p->slot = slot;
  p->len = len;
  p->age = ++arp_clock;
  tx_busy[slot] = 2;
}

static void flush_parked(uint32_t ip, const uint8_t *hw) {
  for (unsigned i = 0; i < PARKED_MAX; i++) {
    parked *p = &parked_frames[i];
    if (p->next_hop != ip) continue;
    p->next_hop = 0;
    copy(tx_buf[p->slot] + VNET_HDR, hw, 6);
    tx_submit(p->slot, p->len);
  }
}

/* ---- IPv4 output ---- */

/* Fills the IPv4 header of a frame in TX buffer `slot` and sends it (or parks it behind an ARP
   request). `payload_len` bytes of payload are already in place after the IP header. */
static void ip_output(unsigned slot, uint32_t dst, uint32_t proto, uint32_t payload_len) {
  uint8_t *f = tx_buf[slot] + VNET_HDR;
  uint8_t *ip = f + ETH_HDR;
  ip[0] = 0x45;
  ip[1] = 0;
  put16(ip + 2, IP_HDR + payload_len);
  put16(ip + 4, ip_id++);
  put16(ip + 6, 0x4000); /* DF: never fragmented */
  ip[8] = 64;
  ip[9] = (uint8_t)proto;
  put16(ip + 10, 0);
  put32(ip + 12, my_ip);
  put32(ip + 16, dst);
  put16(ip + 10, net_csum_fold(net_csum_add(0, ip, IP_HDR)));
  copy(f + 6, mac, 6);
  put16(f + 12, ETH_P_IP);
  uint32_t len = ETH_HDR + IP_HDR + payload_len;

  if (dst == 0xffffffffu || dst == (my_ip | ~my_mask)) {
    copy(f, BROADCAST, 6);
    tx_submit(slot, len);
    return;
  }
  uint32_t hop = on_link(dst) ? dst : my_gw;
  arp_entry *e = arp_find(hop);
  if (e) {
    e->used = ++arp_clock;
    copy(f, e->mac, 6);
    tx_submit(slot, len);
    return;
  }
  park(slot, len, hop);
  static const uint8_t zero[6] = {0};
  arp_send(1, BROADCAST, zero, hop);
}

/* ---- ICMP ---- */

static void icmp_input(uint32_t src, const uint8_t *p, uint32_t len) {
  if (len < ICMP_HDR || net_csum_fold(net_csum_add(0, p, len)) != 0) {
    stats.rx_bad_checksum += len >= ICMP_HDR;
    stats.rx_dropped++;
    return;
  }
  if (p[0] != 8 || p[1] != 0) return; /* only echo requests are answered */
  unsigned slot = tx_alloc();
  uint8_t *r = tx_buf[slot] + VNET_HDR + ETH_HDR + IP_HDR;
  copy(r, p, len);
  r[0] = 0; /* echo reply */
  put16(r + 2, 0);
  put16(r + 2, net_csum_fold(net_csum_add(0, r, len)));
  ip_output(slot, src, IPPROTO_ICMP, len);
  stats.icmp_echo_replies++;
}

/* Destination unreachable / port unreachable, quoting the IP header and 8 bytes (RFC 792). */
static void icmp_port_unreachable(uint32_t src, const uint8_t *ip, uint32_t ip_len) {
  uint32_t quote = IP_HDR + 8u;
  if (quote > ip_len) quote = ip_len;
  unsigned slot = tx_alloc();
  uint8_t *r = tx_buf[slot] + VNET_HDR + ETH_HDR + IP_HDR;
  r[0] = 3;
  r[1] = 3;
  put16(r + 2, 0);
  put32(r + 4, 0);
  copy(r + ICMP_HDR, ip, quote);
  put16(r + 2, net_csum_fold(net_csum_add(0, r, ICMP_HDR + quote)));
  ip_output(slot, src, IPPROTO_ICMP, ICMP_HDR + quote);
}

/* ---- UDP ---- */

int udp_bind(uint16_t port, udp_handler handler) {
  if (port == 0 || !handler) return -1;
  udp_port *free_slot = 0;
  for (unsigned i = 0; i < UDP_PORTS; i++) {
    if (ports[i].port == port) return -1;
    if (ports[i].port == 0 && !free_slot) free_slot = &ports[i];
  }
  if (!free_slot) return -1;
  free_slot->port = port;
  free_slot->handler = handler;
  return 0;
}

int udp_unbind(uint16_t port) {
  for (unsigned i = 0; i < UDP_PORTS; i++) {
    if (ports[i].port == port) {
      ports[i].port = 0;
      return 0;
    }
  }
  return -1;
}

int udp_sendto(uint16_t src_port, uint32_t dst_ip, uint16_t dst_port, const void *data, size_t len) {
  if (len > UDP_MAX_PAYLOAD || !ready) return -1;
  unsigned slot = tx_alloc();
  uint8_t *u = tx_buf[slot] + VNET_HDR + ETH_HDR + IP_HDR;
  uint32_t ulen = UDP_HDR + (uint32_t)len;
  put16(u, src_port);
  put16(u + 2, dst_port);
  put16(u + 4, ulen);
  put16(u + 6, 0);
  copy(u + UDP_HDR, (const uint8_t *)data, len);
  uint16_t c = net_csum_fold(net_csum_add(pseudo_sum(my_ip, dst_ip, IPPROTO_UDP, ulen), u, ulen));
  put16(u + 6, c == 0 ? 0xffffu : c); /* 0 means "no checksum" on the wire */
  ip_output(slot, dst_ip, IPPROTO_UDP, ulen);
  stats.udp_tx++;
  return 0;
}

/* `truncated`: u is the first fragment of a datagram too large for one frame; only its start is here
   (fragments are never reassembled), so its checksum cannot be checked and the handler sees both
   lengths. */
static void udp_input(uint32_t src, uint32_t dst, const uint8_t *ip, uint32_t ip_len, const uint8_t *u, uint32_t len,
                      int truncated) {
  if (len < UDP_HDR || get16(u + 4) < UDP_HDR) goto drop;
  uint32_t full = get16(u + 4);
  if (truncated ? full <= len : full > len) goto drop;
  if (!truncated) len = full;
  if (!truncated && get16(u + 6) != 0 &&
      net_csum_fold(net_csum_add(pseudo_sum(src, dst, IPPROTO_UDP, len), u, len)) != 0) {
    stats.rx_bad_checksum++;
    goto drop;
  }
  stats.udp_rx++;
  if (truncated) stats.udp_rx_truncated++;
  uint16_t dport = get16(u + 2);
  for (unsigned i = 0; i < UDP_PORTS; i++) {
    if (ports[i].port == dport) {
      ports[i].handler(src, get16(u), dport, u + UDP_HDR, len - UDP_HDR, full - UDP_HDR);
      return;
    }
  }
  stats.udp_no_port++;
  if (dst == my_ip) icmp_port_unreachable(src, ip, ip_len);
  return;
drop:
  stats.rx_dropped++;
}

/* ---- IPv4 input ---- */

static void ip_input(const uint8_t *f, uint32_t len) {
  if (len < ETH_HDR + IP_HDR) goto drop;
  const uint8_t *ip = f + ETH_HDR;
  uint32_t ihl = (ip[0] & 0x0fu) * 4u;
  uint32_t total = get16(ip + 2);
  if ((ip[0] >> 4) != 4 || ihl < IP_HDR || total < ihl || total > len - ETH_HDR) goto drop;
  if (net_csum_fold(net_csum_add(0, ip, ihl)) != 0) {
    stats.rx_bad_checksum++;
    goto drop;
  }
  uint32_t src = get32(ip + 12), dst = get32(ip + 16);
  int bcast = dst == 0xffffffffu || dst == (my_ip | ~my_mask);
  if (dst != my_ip && !bcast) goto drop;
  /* Fragments are not reassembled. The first fragment of a UDP datagram still reaches its handler,
     marked truncated, so a server can answer that the request was too large instead of staying
     silent; later fragments (an offset) are dropped. */
  uint32_t frag = get16(ip + 6);
  int more_fragments = (frag & 0x2000u) != 0;
  if ((frag & 0x1fffu) != 0 || (more_fragments && (ip[9] != IPPROTO_UDP || bcast))) goto drop;
  /* Glean: the sender (if on-link) is reachable at the frame's source MAC. */
  if (!bcast && on_link(src) && src != my_ip) arp_learn(src, f + 6);
  const uint8_t *payload = ip + ihl;
  uint32_t plen = total - ihl;
  switch (ip[9]) {
    case IPPROTO_ICMP:
      if (!bcast) icmp_input(src, payload, plen);
      return;
    case IPPROTO_UDP:
      udp_input(src, dst, ip, total, payload, plen, more_fragments);
      return;
    default:
      goto drop;
  }
drop:
  stats.rx_dropped++;
}

static void eth_input(const uint8_t *f, uint32_t len) {
  stats.rx_frames++;
  if (len < ETH_HDR || (!same(f, mac, 6) && !same(f, BROADCAST, 6))) {
    stats.rx_dropped++;
    return;
  }
  switch (get16(f + 12)) {
    case ETH_P_ARP:
      arp_input(f, len);
      return;
    case ETH_P_IP:
      ip_input(f, len);
      return;
    default:
      stats.rx_dropped++;
  }
}

/* ---- Device ---- */

static void rx_give(unsigned i) {
  vio_buf b = {rx_buf[i], BUF_SIZE, 1};
  vio_submit(&rxq, &b, 1, (void *)(uintptr_t)i);
}

int net_init(void) {
  int r = vio_find(VIO_ID_NET, 0, &dev);
  if (r == 0) r = vio_begin(&dev, 0, 1ull << VIRTIO_NET_F_MAC);
  if (r == 0) r = vio_queue_init(&dev, &rxq, 0, NRX);
  if (r == 0) r = vio_queue_init(&dev, &txq, 1, NTX);
  if (r != 0) {
    if (r != VIO_ERR_NOT_FOUND && r != VIO_ERR_LEGACY) vio_fail(&dev);
    return r;
  }
  if (dev.features & (1ull << VIRTIO_NET_F_MAC))
    for (unsigned i = 0; i < 6; i++) mac[i] = vio_config8(&dev, i);
  n_rx = rxq.num;
  n_tx = txq.num;
  vio_driver_ok(&dev);
  for (unsigned i = 0; i < n_rx; i++) rx_give(i);
  vio_notify(&rxq);
  ready = 1;
  /* Resolve the gateway now, as a host bringing its interface up does: every reply to an off-link
     client goes through it, and a first burst of such requests would otherwise park more replies
     (behind an ARP request whose answer queues behind the burst) than PARKED_MAX holds. */
  static const uint8_t zero[6] = {0};
  if (my_gw != 0 && on_link(my_gw)) arp_send(1, BROADCAST, zero, my_gw);
  return 0;
}

void net_poll(void) {
  if (!ready) return;
  int more;
  do {
    more = 0;
    reclaim_tx();
    uint32_t len;
    void *cookie;
    unsigned given = 0;
    while (vio_next_used(&rxq, &len, &cookie)) {
      unsigned i = (unsigned)(uintptr_t)cookie;
      if (len > VNET_HDR && len <= BUF_SIZE) eth_input(rx_buf[i] + VNET_HDR, len - VNET_HDR);
      else stats.rx_dropped++;
      rx_give(i);
      given++;
      more = 1;
    }
    if (given) vio_notify(&rxq);
  } while (more);
}

void net_run(void) {
  for (;;) {
    net_poll();
    vio_wait();
  }
}
