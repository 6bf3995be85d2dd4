// The `udp` network back-end: host UDP ports forwarded to guest UDP ports, like QEMU's
// `-netdev user,hostfwd=udp:...`, with QEMU's addresses (guest 10.0.2.15, gateway 10.0.2.2). No
// privileges; it answers the guest's ARP and carries UDP only. It keeps no per-client state.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import type { Machine } from '../machine.js';

export const GUEST_IP = [10, 0, 2, 15] as const;
export const GATEWAY_IP = [10, 0, 2, 2] as const;
/** The gateway's MAC, as QEMU's user network uses. */
export const GATEWAY_MAC = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02] as const;
const GUEST_MAC_DEFAULT = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const LOOPBACK_IP = [127, 0, 0, 1];

/** Largest UDP payload in one 1500-byte Ethernet frame (the guest does not reassemble fragments). */
export const MAX_GUEST_PAYLOAD = 1472;
/** Payload bytes in the first fragment of a larger datagram (a multiple of 8, as IPv4 requires). */
const FIRST_FRAGMENT_PAYLOAD = 1480 - 8;

export interface UdpForward {
  /** Host address and port to listen on (port 0: any free port). */
  host?: string;
  hostPort: number;
  /** The guest UDP port datagrams go to. */
  guestPort: number;
}

/** Counters of a {@link UdpForwarder}; every field only grows. */
export interface UdpForwarderStats {
  /** Datagrams handed to the guest (queued on its virtio-net; see {@link Machine.netStats} for drops there). */
  toGuest: number;
  /** Datagrams too large for one frame, of which the guest got the first fragment only. */
  truncated: number;
  /** Datagrams from a client whose address the guest could not tell from its own (10.0.2.15) or from the host's (a loopback address other than 127.0.0.1), dropped. */
  refused: number;
  /** Guest datagrams sent on to their destination. */
  toClients: number;
  /** Guest frames that were neither ARP nor UDP to an IPv4 destination, or malformed. */
  ignoredFrames: number;
}

function checksum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function sameIp(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

/**
 * Connects a machine's virtio-net to host UDP sockets, as a router would: the guest sees each client's
 * own IPv4 address and port as the datagram's source (reached through the gateway, whose ARP it
 * answers, as it answers ARP for any other address), and a datagram the guest sends leaves for the
 * address and port in its own header, from the forward whose guest port it came from. A client on the
 * host's loopback, 127.0.0.1, appears as 10.0.2.2, the host's address on QEMU's user network. The forwarder
 * keeps no table of clients: its memory does not grow with their number, and a forwarder that never
 * saw a client (a new primary after a failover, re-emitting replies) routes the guest's replies to
 * it all the same.
 */
export class UdpForwarder {
  readonly #machine: Machine;
  readonly #sockets: { socket: Socket; guestPort: number }[] = [];
  #guestMac: number[];
  readonly #onFrame = (f: Uint8Array) => this.#fromGuest(f);
  /** Datagrams forwarded to the guest and back. */
  readonly stats: UdpForwarderStats = { toGuest: 0, truncated: 0, refused: 0, toClients: 0, ignoredFrames: 0 };

  private constructor(machine: Machine, guestMac: number[]) {
    this.#machine = machine;
    this.#guestMac = guestMac;
    machine.on('frame', this.#onFrame);
  }

  /**
   * Listens on every forward; resolves with the bound host ports, in order. `guestMac` is the MAC of
   * the guest's virtio-net (default QEMU's 52:54:00:12:34:56): until the guest sends a frame, frames
   * for it go there.
   */
  static async create(machine: Machine, forwards: UdpForward[], options: { guestMac?: string } = {}): Promise<{ forwarder: UdpForwarder; ports: number[] }> {
    const mac = options.guestMac === undefined ? GUEST_MAC_DEFAULT : options.guestMac.split(':').map((x) => parseInt(x, 16));
    const f = new UdpForwarder(machine, mac);
    const ports: number[] = [];
    try {
      for (const fw of forwards) {
        const socket = createSocket('udp4');
        f.#sockets.push({ socket, guestPort: fw.guestPort });
        await new Promise<void>((resolve, reject) => {
          socket.once('error', reject);
          socket.bind(fw.hostPort, fw.host ?? '127.0.0.1', () => {
            socket.off('error', reject);
            resolve();
          });
        });
        // Send errors (an unreachable client) must not take the process down.
        socket.on('error', () => undefined);
        socket.on('message', (msg, rinfo) => f.#toGuest(fw.guestPort, msg, rinfo));
        ports.push(socket.address().port);
      }
    } catch (err) {
      f.close();
      throw err;
    }
    return { forwarder: f, ports };
  }

  close(): void {
    this.#machine.off('frame', this.#onFrame);
    for (const { socket } of this.#sockets) {
      try {
        socket.close();
      } catch {
        // never bound
      }
    }
    this.#sockets.length = 0;
  }

  #toGuest(guestPort: number, payload: Buffer, rinfo: RemoteInfo): void {
    let client = isIPv4(rinfo.address) ? rinfo.address.split('.').map(Number) : undefined;
    if (client === undefined || sameIp(client, GUEST_IP)) return void this.stats.refused++;
    if (client[0] === 127) {
      // A loopback source is a martian to a real IP stack (Linux drops it on eth0). The guest sees the
      // host as QEMU's user network shows it, 10.0.2.2, and a reply to 10.0.2.2 goes back to 127.0.0.1;
      // no address maps back to the rest of 127/8, so those clients are refused.
      if (!sameIp(client, LOOPBACK_IP)) return void this.stats.refused++;
      client = [...GATEWAY_IP];
    }
    const truncated = payload.length > MAX_GUEST_PAYLOAD;
    const udpLen = 8 + payload.length;
    const carried = truncated ? FIRST_FRAGMENT_PAYLOAD : payload.length;
    const frame = new Uint8Array(14 + 20 + 8 + carried);
    frame.set(this.#guestMac, 0);
    frame.set(GATEWAY_MAC, 6);
    frame[12] = 0x08;
    frame[13] = 0x00;
    const ip = frame.subarray(14, 34);
    ip[0] = 0x45;
    const total = 20 + 8 + carried;
    ip[2] = total >> 8;
    ip[3] = total & 0xff;
    if (truncated) ip[6] = 0x20; // more fragments, offset 0: the rest never comes
    ip[8] = 64;
    ip[9] = 17;
    ip.set(client, 12);
    ip.set(GUEST_IP, 16);
    const ipSum = ~checksum(ip) & 0xffff;
    ip[10] = ipSum >> 8;
    ip[11] = ipSum & 0xff;
    const udp = new Uint8Array(udpLen);
    udp[0] = rinfo.port >> 8;
    udp[1] = rinfo.port & 0xff;
    udp[2] = guestPort >> 8;
    udp[3] = guestPort & 0xff;
    udp[4] = udpLen >> 8;
    udp[5] = udpLen & 0xff;
    udp.set(payload, 8);
    const pseudo = new Uint8Array(12);
    pseudo.set(client, 0);
    pseudo.set(GUEST_IP, 4);
    pseudo[9] = 17;
    pseudo[10] = udpLen >> 8;
    pseudo[11] = udpLen & 0xff;
    let sum = ~checksum(udp, checksum(pseudo)) & 0xffff;
    if (sum === 0) sum = 0xffff;
    udp[6] = sum >> 8;
    udp[7] = sum & 0xff;
    frame.set(udp.subarray(0, 8 + carried), 34);
    this.stats.toGuest++;
    if (truncated) this.stats.truncated++;
    this.#machine.sendFrame(frame);
  }

  #fromGuest(f: Uint8Array): void {
    if (f.length < 14) return void this.stats.ignoredFrames++;
    const type = (f[12]! << 8) | f[13]!;
    if (type === 0x0806 && f.length >= 42) {
      // An ARP request for any address but the guest's own: the gateway answers for all of them (proxy
      // ARP), since every client is reached through it.
      const op = (f[20]! << 8) | f[21]!;
      const target = f.subarray(38, 42);
      if (op === 1 && !sameIp(target, GUEST_IP)) {
        this.#guestMac = [...f.subarray(22, 28)];
        const r = new Uint8Array(42);
        r.set(f.subarray(22, 28), 0);
        r.set(GATEWAY_MAC, 6);
        r.set([0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02], 12);
        r.set(GATEWAY_MAC, 22);
        r.set(target, 28);
        r.set(f.subarray(22, 32), 32);
        this.#machine.sendFrame(r);
        return;
      }
    }
    if (type !== 0x0800 || f.length < 42 || f[23] !== 17) return void this.stats.ignoredFrames++;
    this.#guestMac = [...f.subarray(6, 12)];
    const ihl = (f[14]! & 0x0f) * 4;
    const udp = 14 + ihl;
    if (ihl < 20 || udp + 8 > f.length) return void this.stats.ignoredFrames++;
    const srcPort = (f[udp]! << 8) | f[udp + 1]!;
    const dstPort = (f[udp + 2]! << 8) | f[udp + 3]!;
    const len = (f[udp + 4]! << 8) | f[udp + 5]!;
    const dst = f.subarray(30, 34);
    if (len < 8 || udp + len > f.length || dstPort === 0 || sameIp(dst, GUEST_IP)) return void this.stats.ignoredFrames++;
    const from = this.#sockets.find((s) => s.guestPort === srcPort) ?? this.#sockets[0];
    if (from === undefined) return void this.stats.ignoredFrames++;
    this.stats.toClients++;
    const host = sameIp(dst, GATEWAY_IP) ? '127.0.0.1' : `${dst[0]}.${dst[1]}.${dst[2]}.${dst[3]}`;
    from.socket.send(f.subarray(udp + 8, udp + len), dstPort, host);
  }
}
