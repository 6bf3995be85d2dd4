// The `udp` back-end (native/machine/net/udp.cc). Alone, with the guest played by the test (UdpProbe
// of the test-only addon): it routes by the addresses in each packet and keeps no table of clients, so a
// back-end that never saw a client (a new primary re-emitting replies at go-live) still delivers to it;
// a datagram too large for one frame becomes a first fragment. Then through a Machine (UdpForwarder):
// kvserver answers, a taken port is a ListenError, a replaying machine takes nothing from the network.
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { GATEWAY_MAC, ListenError, Machine, OptionError, Replayer, UdpForwarder } from '../../src/index.js';
import { KvUdpClient } from '../guest/kv-script.js';
import { TEST_ADDON_PATH } from '../helpers/ring-probe.js';

const GUEST_MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const KVSERVER = readFileSync(fileURLToPath(new URL('../../guest/bin/kvserver.elf', import.meta.url)));
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

interface UdpProbe {
  ports(): number[];
  send(frame: Uint8Array): void;
  take(): Uint8Array[];
  stats(): { toGuest: number; truncated: number; refused: number; toClients: number; ignoredFrames: number };
  close(): void;
}
type UdpProbeConstructor = new (forwards: { host: string; hostPort: number; guestPort: number }[], mac: Uint8Array) => UdpProbe;
const UdpProbe = (createRequire(import.meta.url)(TEST_ADDON_PATH) as { UdpProbe: UdpProbeConstructor }).UdpProbe;

/** The guest's side of the back-end: frames it sent (emit) and frames that reached it (toGuest). */
class StandIn {
  readonly toGuest: Uint8Array[] = [];
  constructor(readonly probe: UdpProbe) {}
  emit(_event: 'frame', f: Uint8Array): void {
    this.probe.send(f);
  }
  /** Collects the frames the back-end's reader delivered so far. */
  poll(): number {
    this.toGuest.push(...this.probe.take());
    return this.toGuest.length;
  }
  get stats(): ReturnType<UdpProbe['stats']> {
    return this.probe.stats();
  }
}

async function forwarder(): Promise<{ m: StandIn; f: StandIn; port: number }> {
  const probe = new UdpProbe([{ host: '127.0.0.1', hostPort: 0, guestPort: 11211 }], Uint8Array.from(GUEST_MAC));
  cleanup.push(() => probe.close());
  const m = new StandIn(probe);
  return { m, f: m, port: probe.ports()[0]! };
}

async function socket(): Promise<{ s: Socket; got: Buffer[] }> {
  const s = createSocket('udp4');
  const got: Buffer[] = [];
  s.on('message', (m) => got.push(m));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  cleanup.push(() => new Promise<void>((r) => s.close(() => r())));
  return { s, got };
}

/** The ones'-complement sum of 16-bit big-endian words (0xffff over a block whose checksum holds). */
function internetSum(b: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (b.length % 2) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The UDP checksum of an IPv4 frame's datagram, pseudo-header included, over the UDP length's bytes. */
function udpSum(frame: Buffer): number {
  const len = frame.readUInt16BE(38);
  const pseudo = Buffer.alloc(12);
  frame.copy(pseudo, 0, 26, 34);
  pseudo[9] = 17;
  pseudo.writeUInt16BE(len, 10);
  return internetSum(frame.subarray(34, 34 + len), internetSum(pseudo));
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

describe('the native udp back-end', () => {
  it('delivers a reply to a client it never saw: the guest\'s packet names its destination', async () => {
    const { m, f } = await forwarder();
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
    const { m, port } = await forwarder();
    const client = await socket();
    client.s.send(Buffer.from('get k\r\n'), port, '127.0.0.1');
    await until(() => m.poll() === 1, 'nothing reached the guest');
    const frame = Buffer.from(m.toGuest[0]!);
    expect([...frame.subarray(26, 30)]).toEqual([10, 0, 2, 2]); // source: the host, as QEMU names it
    expect([...frame.subarray(30, 34)]).toEqual([10, 0, 2, 15]);
    expect(frame.readUInt16BE(34)).toBe(client.s.address().port);
    expect(frame.readUInt16BE(36)).toBe(11211);
    expect(frame.subarray(42).toString()).toBe('get k\r\n');
    expect(internetSum(frame.subarray(14, 34))).toBe(0xffff); // the IPv4 header checksum holds
    expect(udpSum(frame)).toBe(0xffff); // and so does the UDP checksum (pseudo-header included)
  });

  it('sends a reply the guest addresses to 10.0.2.2 to the client on 127.0.0.1', async () => {
    const { m, f } = await forwarder();
    const client = await socket();
    m.emit('frame', fromGuest([10, 0, 2, 2], client.s.address().port, Buffer.from('to the host')));
    await until(() => client.got.length === 1, 'the reply never reached the client on 127.0.0.1');
    expect(client.got[0]!.toString()).toBe('to the host');
    expect(f.stats).toMatchObject({ toClients: 1, ignoredFrames: 0 });
  });

  it('refuses a loopback client other than 127.0.0.1 (no address of the guest\'s network maps back to it)', async () => {
    const { m, f, port } = await forwarder();
    const other = createSocket('udp4');
    cleanup.push(() => new Promise<void>((r) => other.close(() => r())));
    await new Promise<void>((r) => other.bind(0, '127.0.0.2', () => r()));
    other.send(Buffer.from('x'), port, '127.0.0.1');
    await until(() => f.stats.refused === 1, 'the datagram from 127.0.0.2 was not refused');
    expect(m.poll()).toBe(0);
  });

  it('hands the guest the first fragment of a datagram too large for one frame', async () => {
    const { m, f, port } = await forwarder();
    const client = await socket();
    client.s.send(Buffer.alloc(2000, 0x61), port, '127.0.0.1');
    await until(() => m.poll() === 1, 'nothing reached the guest');
    const frame = Buffer.from(m.toGuest[0]!);
    expect(frame.length).toBe(14 + 1500);
    expect(frame.readUInt16BE(16)).toBe(1500); // IPv4 total length of this fragment
    expect(frame.readUInt16BE(20)).toBe(0x2000); // more fragments, offset 0
    expect(frame.readUInt16BE(38)).toBe(2008); // the UDP length of the whole datagram
    expect(f.stats).toMatchObject({ toGuest: 1, truncated: 1 });
    // The checksum covers the whole datagram, as the first fragment of a real one would carry.
    const whole = Buffer.concat([frame.subarray(0, 42), Buffer.alloc(2000, 0x61)]);
    expect(udpSum(whole)).toBe(0xffff);
    expect(internetSum(frame.subarray(14, 34))).toBe(0xffff);
  });

  it('counts frames that are neither ARP nor UDP, or malformed, as ignored', async () => {
    const { m, f } = await forwarder();
    m.emit('frame', new Uint8Array(10)); // shorter than an Ethernet header
    const tcp = fromGuest([10, 0, 2, 2], 9, Buffer.from('x'));
    tcp[23] = 6;
    m.emit('frame', tcp);
    const long = Buffer.from(fromGuest([10, 0, 2, 2], 9, Buffer.from('x')));
    long.writeUInt16BE(500, 38); // UDP length past the frame
    m.emit('frame', long);
    m.emit('frame', fromGuest([10, 0, 2, 15], 9, Buffer.from('x'))); // to the guest itself
    m.emit('frame', fromGuest([10, 0, 2, 2], 0, Buffer.from('x'))); // to port 0
    expect(f.stats).toMatchObject({ ignoredFrames: 5, toClients: 0 });
  });

  it('answers ARP for every address but the guest\'s own, with the gateway\'s MAC', async () => {
    const { m } = await forwarder();
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
    await until(() => m.poll() >= 2, 'no ARP answers reached the guest');
    expect(m.stats.ignoredFrames).toBe(1); // the request for the guest's own address: not answered
    expect(m.poll()).toBe(2);
    for (const [i, ip] of [[10, 0, 2, 2], [10, 0, 2, 77]].entries()) {
      const r = Buffer.from(m.toGuest[i]!);
      expect(r.readUInt16BE(20)).toBe(2);
      expect([...r.subarray(22, 28)]).toEqual([...GATEWAY_MAC]);
      expect([...r.subarray(28, 32)]).toEqual(ip);
    }
  });
});

describe('UdpForwarder (the udp back-end of a Machine)', () => {
  async function kvserver(): Promise<{ m: Machine; out: () => string; f: UdpForwarder; port: number; running: Promise<unknown> }> {
    const m = new Machine({ memory: 16 << 20, clock: 'real', devices: { net: true }, cmdline: 'kvserver.storage=memory' });
    cleanup.push(() => m.close());
    let text = '';
    m.on('console', (c) => (text += Buffer.from(c).toString('latin1')));
    m.load(KVSERVER);
    const { forwarder: f, ports } = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11211 }]);
    cleanup.push(() => f.close());
    const running = m.run();
    cleanup.push(async () => {
      m.stop();
      await running;
    });
    await until(() => text.includes('listening'), `kvserver did not come up: ${JSON.stringify(text)}`);
    return { m, out: () => text, f, port: ports[0]!, running };
  }

  it('kvserver answers through it, natively: counted both ways, and no frame reaches JavaScript', async () => {
    const { m, f, port } = await kvserver();
    let frames = 0;
    m.on('frame', () => frames++);
    const client = new KvUdpClient(port, '127.0.0.1', { timeoutMs: 1000, attempts: 5 });
    cleanup.push(() => client.close());
    for (let i = 0; i < 20; i++) {
      expect((await client.request(`set k${i} 0 0 1\r\nv\r\n`, { expectReply: true })).text).toBe('STORED\r\n');
    }
    expect((await client.request('get k7\r\n', { expectReply: true })).text).toBe('VALUE k7 0 1\r\nv\r\nEND\r\n');
    const s = f.stats;
    expect(s.toGuest).toBeGreaterThanOrEqual(21);
    expect(s.toClients).toBeGreaterThanOrEqual(21);
    expect(s).toMatchObject({ refused: 0, truncated: 0 });
    expect(frames).toBe(0);
    f.close();
    const closed = f.stats; // closed: the last counts stay readable, and no longer grow
    expect(closed.toClients).toBeGreaterThanOrEqual(s.toClients);
    await client.request('version\r\n', { expectReply: false });
    expect(f.stats).toEqual(closed);
  });

  it('a taken port is a ListenError naming the address (ERR_LOCKSTEP_LISTEN_IN_USE, the errno as its cause)', async () => {
    const holder = createSocket('udp4');
    cleanup.push(() => new Promise<void>((r) => holder.close(() => r())));
    await new Promise<void>((r) => holder.bind(0, '127.0.0.1', () => r()));
    const taken = holder.address().port;
    const m = new Machine({ memory: 1 << 20, devices: { net: true } });
    cleanup.push(() => m.close());
    const err = await UdpForwarder.create(m, [{ hostPort: taken, guestPort: 11211 }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ListenError);
    expect(err).toMatchObject({ code: 'ERR_LOCKSTEP_LISTEN_IN_USE', address: `127.0.0.1:${taken}`, cause: { code: 'EADDRINUSE' } });
    // Said again for what wanted the port, exactly as a bind in JavaScript said it.
    const again = ListenError.from(err, 'the UDP port of VM x', '127.0.0.1', taken);
    expect(again.message).toBe(`the UDP port of VM x: 127.0.0.1:${taken} is in use by another process: stop it, or choose another port`);
    expect(again.code).toBe('ERR_LOCKSTEP_LISTEN_IN_USE');
    const na = await UdpForwarder.create(m, [{ host: '192.0.2.1', hostPort: 0, guestPort: 11211 }]).catch((e: unknown) => e);
    expect(na).toMatchObject({ code: 'ERR_LOCKSTEP_LISTEN_FAILED', cause: { code: 'EADDRNOTAVAIL' } });
    expect(ListenError.from(na, 'w', '192.0.2.1', 0).message).toBe('w: cannot bind 192.0.2.1:0: not an address of this host');
    // Nothing stayed attached: a forwarder can still be made.
    const { forwarder } = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11211 }]);
    forwarder.close();
  });

  it('one back-end per machine: a second forwarder is refused until the first is closed', async () => {
    const m = new Machine({ memory: 1 << 20, devices: { net: true } });
    cleanup.push(() => m.close());
    const { forwarder: first } = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11211 }]);
    const err = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11212 }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OptionError);
    expect(err).toMatchObject({ field: 'devices.net' });
    first.close();
    first.close(); // idempotent
    const { forwarder: second } = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11212 }]);
    second.close();
  });

  it('a replaying machine takes nothing from the network: datagrams are counted, never queued for the guest', async () => {
    const m = new Machine({ memory: 16 << 20, clock: 'real', devices: { net: true } });
    cleanup.push(() => m.close());
    m.load(KVSERVER);
    new Replayer(m); // replay mode from here on: inputs come from the log only
    const { forwarder: f, ports } = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11211 }]);
    cleanup.push(() => f.close());
    const client = await socket();
    for (let i = 0; i < 5; i++) client.s.send(Buffer.from('version\r\n'), ports[0]!, '127.0.0.1');
    await until(() => f.stats.toGuest === 5, 'the datagrams never reached the back-end');
    expect(m.netStats).toEqual({ queued: 0, delivered: 0, deliveredBytes: 0, dropped: 0 });
  });

  it('closing the machine closes its back-end: the port is free again and the counts stay readable', async () => {
    const m = new Machine({ memory: 1 << 20, devices: { net: true } });
    const { forwarder: f, ports } = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11211 }]);
    m.close();
    expect(f.stats).toEqual({ toGuest: 0, truncated: 0, refused: 0, toClients: 0, ignoredFrames: 0 });
    f.close();
    const again = createSocket('udp4');
    cleanup.push(() => new Promise<void>((r) => again.close(() => r())));
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.bind(ports[0]!, '127.0.0.1', () => resolve());
    });
  });
});
