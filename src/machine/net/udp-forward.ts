// The `udp` network back-end: user-mode forwarding of host UDP ports to guest UDP ports, like QEMU's
// `-netdev user,hostfwd=udp:...`, with QEMU's addresses (guest 10.0.2.15, gateway 10.0.2.2). No
// privileges; it answers the guest's ARP for the gateway and carries UDP only.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { Machine } from '../machine.js';

export const GUEST_IP = [10, 0, 2, 15] as const;
export const GATEWAY_IP = [10, 0, 2, 2] as const;
/** The gateway's MAC, as QEMU's user network uses. */
export const GATEWAY_MAC = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02] as const;
const GUEST_MAC_DEFAULT = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

export interface UdpForward {
  /** Host address and port to listen on (port 0: any free port). */
  host?: string;
  hostPort: number;
  /** The guest UDP port datagrams go to. */
  guestPort: number;
}

function checksum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * Connects a machine's virtio-net to host UDP sockets. Each client (address, port) gets a gateway-side
 * port of its own, so replies find their way back.
 */
export class UdpForwarder {
  readonly #machine: Machine;
  readonly #sockets: { socket: Socket; guestPort: number }[] = [];
  readonly #clients = new Map<number, { socket: Socket; rinfo: RemoteInfo }>(); // gateway port → client
  readonly #ports = new Map<string, number>(); // "host:port" → gateway port
  #nextPort = 40000;
  #guestMac: number[] = GUEST_MAC_DEFAULT;
  readonly #onFrame = (f: Uint8Array) => this.#fromGuest(f);
  /** Datagrams forwarded to the guest and back. */
  stats = { toGuest: 0, toClients: 0, ignoredFrames: 0 };

  private constructor(machine: Machine) {
    this.#machine = machine;
    machine.on('frame', this.#onFrame);
  }

  /** Listens on every forward; resolves with the bound host ports, in order. */
  static async create(machine: Machine, forwards: UdpForward[]): Promise<{ forwarder: UdpForwarder; ports: number[] }> {
    const f = new UdpForwarder(machine);
    const ports: number[] = [];
    for (const fw of forwards) {
      const socket = createSocket('udp4');
      try {
        await new Promise<void>((resolve, reject) => {
          socket.once('error', reject);
          socket.bind(fw.hostPort, fw.host ?? '127.0.0.1', () => resolve());
        });
      } catch (err) {
        // A port in use: undo what was set up, or every retry would leave a socket and a listener behind.
        socket.close();
        f.close();
        throw err;
      }
      socket.on('message', (msg, rinfo) => f.#toGuest(socket, fw.guestPort, msg, rinfo));
      f.#sockets.push({ socket, guestPort: fw.guestPort });
      ports.push(socket.address().port);
    }
    return { forwarder: f, ports };
  }

  #freePort(): number {
    for (let i = 0; i < 25536; i++) {
      const p = this.#nextPort++;
      if (this.#nextPort > 65535) this.#nextPort = 40000;
      if (!this.#clients.has(p)) return p;
    }
    return this.#nextPort;
  }

  close(): void {
    this.#machine.off('frame', this.#onFrame);
    for (const { socket } of this.#sockets) socket.close();
    this.#sockets.length = 0;
  }

  #toGuest(socket: Socket, guestPort: number, payload: Buffer, rinfo: RemoteInfo): void {
    const key = `${rinfo.address}:${rinfo.port}`;
    let gwPort = this.#ports.get(key);
    if (gwPort === undefined) {
      // The client's own port when it is free: a forwarder on another host (a new primary after a
      // failover) then gives the same client the same gateway port, so the guest recognises a retried
      // request (kvserver's reply cache is keyed by source address and port).
      gwPort = rinfo.port !== 0 && !this.#clients.has(rinfo.port) ? rinfo.port : this.#freePort();
      this.#ports.set(key, gwPort);
    }
    this.#clients.set(gwPort, { socket, rinfo });
    if (payload.length > 1472) return; // one Ethernet frame, no fragmentation
    const udpLen = 8 + payload.length;
    const frame = new Uint8Array(14 + 20 + udpLen);
    frame.set(this.#guestMac, 0);
    frame.set(GATEWAY_MAC, 6);
    frame[12] = 0x08;
    frame[13] = 0x00;
    const ip = frame.subarray(14, 34);
    ip[0] = 0x45;
    const total = 20 + udpLen;
    ip[2] = total >> 8;
    ip[3] = total & 0xff;
    ip[8] = 64;
    ip[9] = 17;
    ip.set(GATEWAY_IP, 12);
    ip.set(GUEST_IP, 16);
    const ipSum = ~checksum(ip) & 0xffff;
    ip[10] = ipSum >> 8;
    ip[11] = ipSum & 0xff;
    const udp = frame.subarray(34);
    udp[0] = gwPort >> 8;
    udp[1] = gwPort & 0xff;
    udp[2] = guestPort >> 8;
    udp[3] = guestPort & 0xff;
    udp[4] = udpLen >> 8;
    udp[5] = udpLen & 0xff;
    udp.set(payload, 8);
    const pseudo = new Uint8Array(12);
    pseudo.set(GATEWAY_IP, 0);
    pseudo.set(GUEST_IP, 4);
    pseudo[9] = 17;
    pseudo[10] = udpLen >> 8;
    pseudo[11] = udpLen & 0xff;
    let sum = ~checksum(udp, checksum(pseudo)) & 0xffff;
    if (sum === 0) sum = 0xffff;
    udp[6] = sum >> 8;
    udp[7] = sum & 0xff;
    this.stats.toGuest++;
    this.#machine.sendFrame(frame);
  }

  #fromGuest(f: Uint8Array): void {
    if (f.length < 14) return void this.stats.ignoredFrames++;
    const type = (f[12]! << 8) | f[13]!;
    if (type === 0x0806 && f.length >= 42) {
      // ARP request for the gateway: answer with the gateway's MAC.
      const op = (f[20]! << 8) | f[21]!;
      const target = [...f.subarray(38, 42)];
      if (op === 1 && target.every((b, i) => b === GATEWAY_IP[i])) {
        this.#guestMac = [...f.subarray(22, 28)];
        const r = new Uint8Array(42);
        r.set(f.subarray(22, 28), 0);
        r.set(GATEWAY_MAC, 6);
        r.set([0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02], 12);
        r.set(GATEWAY_MAC, 22);
        r.set(GATEWAY_IP, 28);
        r.set(f.subarray(22, 32), 32);
        this.#machine.sendFrame(r);
        return;
      }
    }
    if (type !== 0x0800 || f.length < 42 || f[23] !== 17) return void this.stats.ignoredFrames++;
    this.#guestMac = [...f.subarray(6, 12)];
    const ihl = (f[14]! & 0x0f) * 4;
    const udp = 14 + ihl;
    const dstPort = (f[udp + 2]! << 8) | f[udp + 3]!;
    const len = (f[udp + 4]! << 8) | f[udp + 5]!;
    const client = this.#clients.get(dstPort);
    if (!client || len < 8 || udp + len > f.length) return void this.stats.ignoredFrames++;
    this.stats.toClients++;
    client.socket.send(f.subarray(udp + 8, udp + len), client.rinfo.port, client.rinfo.address);
  }
}
