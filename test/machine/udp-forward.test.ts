// The `udp` back-end's forwarder against a stand-in machine: it routes by the addresses in each packet
// and keeps no table of clients, so a forwarder that never saw a client (a new primary re-emitting
// replies at go-live) still delivers to it; a datagram too large for one frame becomes a first fragment.
import { createSocket, type Socket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { GATEWAY_MAC, UdpForwarder, type Machine } from '../../src/index.js';

const GUEST_MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** What UdpForwarder needs of a Machine: 'frame' events out of the guest, sendFrame() into it. */
class StandIn extends EventEmitter {
  readonly toGuest: Uint8Array[] = [];
  sendFrame(f: Uint8Array): void {
    this.toGuest.push(f);
  }
}

async function forwarder(m: StandIn): Promise<{ f: UdpForwarder; port: number }> {
  const { forwarder: f, ports } = await UdpForwarder.create(m as unknown as Machine, [{ hostPort: 0, guestPort: 11211 }]);
  cleanup.push(() => f.close());
  return { f, port: ports[0]! };
}

async function socket(): Promise<{ s: Socket; got: Buffer[] }> {
  const s = createSocket('udp4');
  const got: Buffer[] = [];
  s.on('message', (m) => got.push(m));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  cleanup.push(() => new Promise<void>((r) => s.close(() => r())));
  return { s, got };
}

async function until(what: () => boolean, failure: string): Promise<void> {
  for (let i = 0; !what(); i++) {
    if (i > 2000) throw new Error(failure);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** An IPv4/UDP frame the guest sends from 10.0.2.15:11211 to `dst`:`port` (checksums left 0). */
function fromGuest(dst: number[], port: number, payload: Buffer): Uint8Array {
  const f = Buffer.alloc(14 + 20 + 8 + payload.length);
  Buffer.from(GATEWAY_MAC).copy(f, 0);
  Buffer.from(GUEST_MAC).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(20 + 8 + payload.length, 16);
  f[22] = 64;
  f[23] = 17;
  Buffer.from([10, 0, 2, 15]).copy(f, 26);
  Buffer.from(dst).copy(f, 30);
  f.writeUInt16BE(11211, 34);
  f.writeUInt16BE(port, 36);
  f.writeUInt16BE(8 + payload.length, 38);
  payload.copy(f, 42);
  return f;
}

describe('UdpForwarder', () => {
  it('delivers a reply to a client it never saw: the guest\'s packet names its destination', async () => {
    const m = new StandIn();
    const { f } = await forwarder(m);
    const client = await socket();
    m.emit('frame', fromGuest([127, 0, 0, 1], client.s.address().port, Buffer.from('re-emitted reply')));
    await until(() => client.got.length === 1, 'the reply never reached the client');
    expect(client.got[0]!.toString()).toBe('re-emitted reply');
    expect(f.stats).toMatchObject({ toClients: 1, ignoredFrames: 0 });
  });

  it('shows the guest each client\'s own port, and a client on the host\'s loopback as 10.0.2.2 (QEMU\'s host address), so nothing needs remembering', async () => {
    // A loopback source is a martian to a real IP stack: Linux drops it on eth0, so a Linux guest
    // could not be reached from 127.0.0.1 at all (found booting Linux). QEMU's user network shows
    // the host as 10.0.2.2; a reply to 10.0.2.2 comes back to 127.0.0.1.
    const m = new StandIn();
    const { port } = await forwarder(m);
    const client = await socket();
    client.s.send(Buffer.from('get k\r\n'), port, '127.0.0.1');
    await until(() => m.toGuest.length === 1, 'nothing reached the guest');
    const frame = Buffer.from(m.toGuest[0]!);
    expect([...frame.subarray(26, 30)]).toEqual([10, 0, 2, 2]); // source: the host, as QEMU names it
    expect([...frame.subarray(30, 34)]).toEqual([10, 0, 2, 15]);
    expect(frame.readUInt16BE(34)).toBe(client.s.address().port);
    expect(frame.readUInt16BE(36)).toBe(11211);
    expect(frame.subarray(42).toString()).toBe('get k\r\n');
  });

  it('sends a reply the guest addresses to 10.0.2.2 to the client on 127.0.0.1', async () => {
    const m = new StandIn();
    const { f } = await forwarder(m);
    const client = await socket();
    m.emit('frame', fromGuest([10, 0, 2, 2], client.s.address().port, Buffer.from('to the host')));
    await until(() => client.got.length === 1, 'the reply never reached the client on 127.0.0.1');
    expect(client.got[0]!.toString()).toBe('to the host');
    expect(f.stats).toMatchObject({ toClients: 1, ignoredFrames: 0 });
  });

  it('refuses a loopback client other than 127.0.0.1 (no address of the guest\'s network maps back to it)', async () => {
    const m = new StandIn();
    const { f, port } = await forwarder(m);
    const other = createSocket('udp4');
    cleanup.push(() => new Promise<void>((r) => other.close(() => r())));
    await new Promise<void>((r) => other.bind(0, '127.0.0.2', () => r()));
    other.send(Buffer.from('x'), port, '127.0.0.1');
    await until(() => f.stats.refused === 1, 'the datagram from 127.0.0.2 was not refused');
    expect(m.toGuest).toHaveLength(0);
  });

  it('hands the guest the first fragment of a datagram too large for one frame', async () => {
    const m = new StandIn();
    const { f, port } = await forwarder(m);
    const client = await socket();
    client.s.send(Buffer.alloc(2000, 0x61), port, '127.0.0.1');
    await until(() => m.toGuest.length === 1, 'nothing reached the guest');
    const frame = Buffer.from(m.toGuest[0]!);
    expect(frame.length).toBe(14 + 1500);
    expect(frame.readUInt16BE(16)).toBe(1500); // IPv4 total length of this fragment
    expect(frame.readUInt16BE(20)).toBe(0x2000); // more fragments, offset 0
    expect(frame.readUInt16BE(38)).toBe(2008); // the UDP length of the whole datagram
    expect(f.stats).toMatchObject({ toGuest: 1, truncated: 1 });
  });

  it('answers ARP for every address but the guest\'s own, with the gateway\'s MAC', async () => {
    const m = new StandIn();
    await forwarder(m);
    const arp = (target: number[]) => {
      const f = Buffer.alloc(42);
      f.fill(0xff, 0, 6);
      Buffer.from(GUEST_MAC).copy(f, 6);
      f.writeUInt16BE(0x0806, 12);
      Buffer.from([0, 1, 8, 0, 6, 4, 0, 1]).copy(f, 14);
      Buffer.from(GUEST_MAC).copy(f, 22);
      Buffer.from([10, 0, 2, 15]).copy(f, 28);
      Buffer.from(target).copy(f, 38);
      return f;
    };
    m.emit('frame', arp([10, 0, 2, 2]));
    m.emit('frame', arp([10, 0, 2, 77]));
    m.emit('frame', arp([10, 0, 2, 15]));
    expect(m.toGuest).toHaveLength(2);
    for (const [i, ip] of [[10, 0, 2, 2], [10, 0, 2, 77]].entries()) {
      const r = Buffer.from(m.toGuest[i]!);
      expect(r.readUInt16BE(20)).toBe(2);
      expect([...r.subarray(22, 28)]).toEqual([...GATEWAY_MAC]);
      expect([...r.subarray(28, 32)]).toEqual(ip);
    }
  });
});
