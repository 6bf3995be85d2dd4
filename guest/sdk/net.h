/* virtio-net driver and a small IPv4 stack for the guest SDK: Ethernet, ARP (answers, cache, gleaning,
   requests), ICMP echo reply, and UDP with checksums and a callback socket API. Static configuration
   as QEMU's user network expects: 10.0.2.15/24, gateway 10.0.2.2, MAC from the device. */
#ifndef LOCKSTEP_NET_H
#define LOCKSTEP_NET_H

#include <stddef.h>
#include <stdint.h>

/* IPv4 addresses are uint32_t in host byte order: NET_IP(10,0,2,15) == 0x0a00020f. */
#define NET_IP(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))

#define NET_DEFAULT_IP      NET_IP(10, 0, 2, 15)
#define NET_DEFAULT_NETMASK NET_IP(255, 255, 255, 0)
#define NET_DEFAULT_GATEWAY NET_IP(10, 0, 2, 2)

/* Used when the device does not offer VIRTIO_NET_F_MAC: QEMU's default guest MAC. */
#define NET_DEFAULT_MAC {0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

/* Largest UDP payload in one unfragmented datagram on a 1500-byte MTU (no IP reassembly here: of a
   fragmented datagram only the first fragment reaches a handler, marked truncated; none is ever sent). */
#define UDP_MAX_PAYLOAD 1472u

/* virtio-net feature bits the driver takes when offered */
#define VIRTIO_NET_F_MAC 5u

/* Sets the static configuration used by net_init(); optional (the defaults above otherwise). */
void net_configure(uint32_t ip, uint32_t netmask, uint32_t gateway);

/* Finds and initialises the first virtio-net device (RX queue 0 with 64 buffers, TX queue 1 with 16),
   fills the RX queue and sends an ARP request for the gateway. Returns 0 or a VIO_ERR_* code. */
int net_init(void);

const uint8_t *net_mac(void); /* 6 bytes */
uint32_t net_ip(void);

/* Processes everything the device has completed: drains the RX queue (dispatching ARP, ICMP and UDP,
   calling UDP handlers) and refills it, and reclaims transmitted TX buffers. Never sleeps, except
   inside a handler that itself waits (e.g. for the disk) or in udp_sendto() when every TX buffer is
   in flight. */
void net_poll(void);

/* The idle loop: net_poll(), then sleep in WFI (vio_wait) until a device interrupts; forever. */
__attribute__((noreturn)) void net_run(void);

/* A UDP receive callback. `data` (len bytes) is valid only during the call; src_ip/src_port are the
   sender, dst_port the local port it was bound to. `full_len` is the datagram's payload length by its
   UDP header: equal to len, except for a datagram too large for one frame, of which only the first
   fragment arrives (fragments are never reassembled): then len < full_len, the bytes are the start
   of the payload and its checksum could not be verified. The handler may call udp_sendto(). */
typedef void (*udp_handler)(uint32_t src_ip, uint16_t src_port, uint16_t dst_port, const uint8_t *data, size_t len,
                            size_t full_len);

/* Binds a local port to a handler (up to 8 ports). Returns 0, or -1 if the port is taken or the
   table is full. Datagrams to unbound ports get an ICMP port unreachable. */
int udp_bind(uint16_t port, udp_handler handler);
int udp_unbind(uint16_t port);

/* Sends one datagram of len <= UDP_MAX_PAYLOAD bytes from local port src_port, with its checksum.
   Off-subnet destinations go through the gateway. When the next hop's MAC is unknown the frame is
   parked (up to 4 frames, the oldest dropped first) and an ARP request sent; it leaves when the
   reply arrives. Returns 0 when the frame was queued or parked, -1 for a bad length. */
int udp_sendto(uint16_t src_port, uint32_t dst_ip, uint16_t dst_port, const void *data, size_t len);

/* Counters (all monotonic). */
typedef struct net_stats {
  uint32_t rx_frames, tx_frames;
  uint32_t rx_dropped;       /* not for us, malformed, bad checksum, later fragments, unknown protocol */
  uint32_t rx_bad_checksum;  /* IPv4 header, ICMP or UDP checksum wrong (also counted as dropped) */
  uint32_t arp_requests_sent, arp_replies_sent;
  uint32_t icmp_echo_replies;
  uint32_t udp_rx, udp_tx, udp_no_port;
  uint32_t udp_rx_truncated;  /* first fragments of datagrams too large for one frame (also in udp_rx) */
  uint32_t tx_parked_dropped; /* parked frames dropped for lack of an ARP answer */
} net_stats;

const net_stats *net_get_stats(void);

/* Internet checksum helpers (RFC 1071), exposed for tests and guests: the one's-complement sum of
   `len` bytes added to `sum` (not folded), and the folded, complemented result. */
uint32_t net_csum_add(uint32_t sum, const uint8_t *p, size_t len);
uint16_t net_csum_fold(uint32_t sum);

#endif
