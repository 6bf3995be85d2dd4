// The virtio guests (rng, disk, kvserver) on the oracle: QEMU `virt` with modern virtio-mmio devices.
// Validates the guest SDK's drivers and IPv4 stack; test/guest/kv-script.ts holds the kvserver request
// script so the same answers can be demanded of lockstep's devices.
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freeUdpPort } from '../helpers/ft-pair.js';
import { qemuArgs, qemuAvailable, QEMU } from '../helpers/qemu.js';
import { elfPath, expectedOutput, QEMU_TIMEOUT_MS } from './guests.js';
import { bootLine, KV_AFTER_FLUSH, KV_AFTER_RESTART, KV_RECOVERED, KV_SCRIPT, KvUdpClient, runKvSteps, type KvStep } from './kv-script.js';

/** QEMU 7.2's virtio-mmio is legacy (version 1) unless told otherwise; lockstep's devices are version 2. */
const MODERN = ['-global', 'virtio-mmio.force-legacy=false'];

interface Running {
  child: ChildProcess;
  args: string[];
  output(): string;
  /** Resolves with the output once it matches, rejects when QEMU exits or the timeout passes first. */
  waitFor(re: RegExp, timeoutMs: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const spawned: ChildProcess[] = [];

/**
 * Starts `guest` under QEMU with the plain `-serial stdio` console plus `deviceArgs`. The process is
 * killed by the afterEach hook, or, with `owned` false, left to the caller to kill (a group's afterAll).
 */
function startQemu(guest: string, deviceArgs: string[], owned = true): Running {
  const args = [...qemuArgs(elfPath(guest), false), ...MODERN, ...deviceArgs];
  const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (owned) spawned.push(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (b: Buffer) => {
    out.push(b);
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      resolve({ code, signal });
      for (const l of listeners) l();
    });
  });
  const output = (): string => Buffer.concat(out).toString('latin1');
  const describeRun = (): string =>
    `${QEMU} ${args.join(' ')}\n  output: ${JSON.stringify(output().slice(-500))}\n  stderr: ${Buffer.concat(err).toString('utf8').trim()}`;
  const waitFor = (re: RegExp, timeoutMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (re.test(output())) {
          done();
          resolve(output());
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done();
          reject(new Error(`QEMU exited before printing ${String(re)}: ${describeRun()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${String(re)} after ${timeoutMs} ms: ${describeRun()}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  return { child, args, output, waitFor, exited };
}

/** Runs `guest` to its exit (bounded by QEMU_TIMEOUT_MS) and returns console output and exit code. */
async function runToExit(guest: string, deviceArgs: string[]): Promise<{ stdout: string; exitCode: number | null }> {
  const q = startQemu(guest, deviceArgs);
  const timer = setTimeout(() => q.child.kill('SIGKILL'), QEMU_TIMEOUT_MS);
  const { code } = await q.exited;
  clearTimeout(timer);
  return { stdout: q.output(), exitCode: code };
}

/** guest/examples/disk.c's fill(): xorshift32 seeded from the sector number. */
function diskPattern(sector: number): Buffer {
  const b = Buffer.alloc(512);
  let x = Math.imul(0x9e3779b9, sector + 1) >>> 0;
  for (let i = 0; i < 512; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    b[i] = x & 0xff;
  }
  return b;
}


/** How long kvserver may take to boot and answer (QEMU boots it in well under a second). */
const KV_BOOT_MS = 20_000;

/**
 * Boots kvserver on `img` with user-mode networking forwarding a free host UDP port to guest port
 * 11211; resolves once the boot line is out and the server answers. Retries with another port if
 * QEMU could not bind the one picked (another process took it in between).
 */
async function startKvserver(img: string, recovered: number | undefined): Promise<{ q: Running; client: KvUdpClient; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freeUdpPort();
    const q = startQemu('kvserver', [
      '-drive', `file=${img},if=none,format=raw,id=d0`,
      '-device', 'virtio-blk-device,drive=d0',
      '-netdev', `user,id=n0,hostfwd=udp:127.0.0.1:${port}-:11211`,
      '-device', 'virtio-net-device,netdev=n0',
    ]);
    try {
      await q.waitFor(/items recovered\n|kvserver: no network/, KV_BOOT_MS);
    } catch (e) {
      if (attempt < 3 && q.child.exitCode !== null) continue; // e.g. the port was taken: try another
      throw e;
    }
    if (recovered === undefined) expect(q.output()).toMatch(/^kvserver: listening on 10\.0\.2\.15:11211, \d+ items recovered\n$/);
    else expect(q.output()).toBe(bootLine(recovered));
    const client = new KvUdpClient(port, '127.0.0.1', { timeoutMs: 1000, attempts: 5 });
    clients.push(client);
    await client.waitUntilServing(KV_BOOT_MS);
    return { q, client, port };
  }
}

/** Kills QEMU without warning (a crash, as far as the guest knows) and waits until it is gone. */
async function crash(q: Running): Promise<void> {
  q.child.kill('SIGKILL');
  await q.exited;
}

async function expectSteps(client: KvUdpClient, steps: readonly KvStep[]): Promise<void> {
  for (const o of await runKvSteps(client, steps)) {
    expect(o.got, `step '${o.step.name}': ${JSON.stringify(o.step.request.slice(0, 80))}`).toBe(o.want);
  }
}

const clients: KvUdpClient[] = [];

// ---- Layer-2 helpers: frames built and parsed by hand, so the stack is checked byte for byte ----

const GUEST_MAC = Buffer.from([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]); // QEMU's default
const GUEST_MAC_BCAST = Buffer.alloc(6, 0xff);
const HOST_MAC = Buffer.from([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const ZERO_MAC = Buffer.alloc(6);
const ip4 = (a: number, b: number, c: number, d: number): number => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
const GUEST_IP = ip4(10, 0, 2, 15);
const GATEWAY_IP = ip4(10, 0, 2, 2);
const HOST_IP = ip4(10, 0, 2, 99);

const hex = (b: Buffer): string => b.toString('hex');

function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length & 1) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function eth(dst: Buffer, src: Buffer, type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(14);
  dst.copy(h, 0);
  src.copy(h, 6);
  h.writeUInt16BE(type, 12);
  return Buffer.concat([h, payload]);
}

function arp(op: number, sha: Buffer, spa: number, tha: Buffer, tpa: number): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(op, 6);
  sha.copy(a, 8);
  a.writeUInt32BE(spa, 14);
  tha.copy(a, 18);
  a.writeUInt32BE(tpa, 24);
  return a;
}

function ipv4(src: number, dst: number, proto: number, payload: Buffer, flagsFrag = 0): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(0x4242, 4);
  h.writeUInt16BE(flagsFrag, 6);
  h[8] = 64;
  h[9] = proto;
  h.writeUInt32BE(src, 12);
  h.writeUInt32BE(dst, 16);
  h.writeUInt16BE(checksum(h), 10);
  return Buffer.concat([h, payload]);
}

function pseudoHeader(src: number, dst: number, proto: number, len: number): Buffer {
  const p = Buffer.alloc(12);
  p.writeUInt32BE(src, 0);
  p.writeUInt32BE(dst, 4);
  p[9] = proto;
  p.writeUInt16BE(len, 10);
  return p;
}

function udp(src: number, dst: number, sport: number, dport: number, data: Buffer, mode: 'ok' | 'none' | 'bad'): Buffer {
  const u = Buffer.alloc(8);
  u.writeUInt16BE(sport, 0);
  u.writeUInt16BE(dport, 2);
  u.writeUInt16BE(8 + data.length, 4);
  const d = Buffer.concat([u, data]);
  if (mode !== 'none') {
    const c = checksum(Buffer.concat([pseudoHeader(src, dst, 17, d.length), d])) || 0xffff;
    d.writeUInt16BE(mode === 'ok' ? c : c ^ 0x0800, 6);
  }
  return d;
}

function icmpEcho(type: number, id: number, seq: number, data: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = type;
  h.writeUInt16BE(id, 4);
  h.writeUInt16BE(seq, 6);
  const m = Buffer.concat([h, data]);
  m.writeUInt16BE(checksum(m), 2);
  return m;
}

/** A memcached UDP frame: 8-byte header (request id, seq 0, 1 datagram, reserved) and the text. */
function mcFrame(id: number, text: string): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(1, 4);
  return Buffer.concat([h, Buffer.from(text, 'latin1')]);
}

function parseIpv4(f: Buffer): { src: number; dst: number; headerChecksumOk: boolean; payload: Buffer } {
  const ip = f.subarray(14);
  const ihl = (ip[0]! & 15) * 4;
  const total = ip.readUInt16BE(2);
  return {
    src: ip.readUInt32BE(12),
    dst: ip.readUInt32BE(16),
    headerChecksumOk: checksum(ip.subarray(0, ihl)) === 0,
    payload: ip.subarray(ihl, total),
  };
}

/** The host end of QEMU's `-netdev socket,udp=…`: one Ethernet frame per UDP datagram each way. */
class L2Wire {
  private frames: Buffer[] = [];
  private wake: (() => void) | undefined;
  private constructor(
    private readonly socket: ReturnType<typeof createSocket>,
    readonly port: number,
    readonly qemuPort: number,
  ) {
    socket.on('message', (m: Buffer) => {
      this.frames.push(m);
      this.wake?.();
    });
  }

  static async open(): Promise<L2Wire> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new L2Wire(socket, socket.address().port, await freeUdpPort());
  }

  send(frame: Buffer): void {
    this.socket.send(frame, this.qemuPort, '127.0.0.1');
  }

  /** The next frame from the guest that matches (earlier non-matching ones are dropped). */
  async next(match: (f: Buffer) => boolean, timeoutMs = 30_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.frames.length > 0) {
        const f = this.frames.shift()!;
        if (match(f)) return f;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching frame from the guest within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Asserts that the guest sends nothing for `ms`. */
  async expectSilence(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    expect(this.frames.map(hex)).toEqual([]);
  }

  drain(): void {
    this.frames = [];
  }

  close(): void {
    this.socket.close();
  }
}

function killAll(): Promise<void> {
  for (const c of clients.splice(0)) c.close();
  const waits = spawned.splice(0).map(
    (c) =>
      new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve();
        c.once('close', () => resolve());
        c.kill('SIGKILL');
      }),
  );
  return Promise.all(waits).then(() => undefined);
}

const skipReason = qemuAvailable() ? undefined : `${QEMU} not found on PATH (apt-get install qemu-system-misc)`;
if (skipReason) console.warn(`test/guest/devices.test.ts skipped: ${skipReason}`);

if (skipReason !== undefined) {
  it.skip(`virtio guests under QEMU: ${skipReason}`, () => {});
} else {
  describe('virtio guests under QEMU', () => {
    let dir = '';
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'lockstep-devices-'));
    });
    afterEach(killAll);
    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('rng reads 64 bytes from virtio-rng', async () => {
      const r = await runToExit('rng', ['-device', 'virtio-rng-device']);
      expect(r.stdout).toBe(expectedOutput('rng'));
      expect(r.exitCode).toBe(0);
    });

    it('disk writes, flushes, reads back and verifies 4 sectors of a 1 MiB image', async () => {
      const img = join(dir, 'disk.img');
      writeFileSync(img, Buffer.alloc(1 << 20));
      const r = await runToExit('disk', ['-drive', `file=${img},if=none,format=raw,id=d0`, '-device', 'virtio-blk-device,drive=d0']);
      expect(r.stdout).toBe(expectedOutput('disk'));
      expect(r.exitCode).toBe(0);
      // The pattern really reached the image file, in the right sectors; the rest is still zero.
      const data = readFileSync(img);
      const written = new Set([1, 2, 1024, 2047]);
      for (let s = 0; s < 2048; s++) {
        const got = data.subarray(s * 512, (s + 1) * 512);
        const want = written.has(s) ? diskPattern(s) : Buffer.alloc(512);
        expect(got.equals(want), `sector ${s}`).toBe(true);
      }
    });

    it('kvserver answers the request script and keeps every acknowledged write across crashes', async () => {
      const img = join(dir, 'kv.img');
      writeFileSync(img, Buffer.alloc(1 << 20));

      let { q, client } = await startKvserver(img, KV_RECOVERED[0]);
      await expectSteps(client, KV_SCRIPT);
      await crash(q);

      ({ q, client } = await startKvserver(img, KV_RECOVERED[1]));
      await expectSteps(client, KV_AFTER_RESTART);
      await crash(q);

      ({ q, client } = await startKvserver(img, KV_RECOVERED[2]));
      await expectSteps(client, KV_AFTER_FLUSH);
      // Nothing but the boot line on the console, whatever happened on the network.
      expect(q.output()).toBe(bootLine(KV_RECOVERED[2]));
    });

    it('kvserver reads kvserver.storage=memory from -append through semihosting (and, without semihosting, finds no command line)', async () => {
      const q = startQemu('kvserver', [
        '-semihosting-config', 'enable=on,target=native',
        '-append', 'kvserver.storage=memory',
        '-netdev', 'user,id=n0',
        '-device', 'virtio-net-device,netdev=n0',
      ]);
      await q.waitFor(/items recovered\n/, KV_BOOT_MS);
      expect(q.output()).toBe('kvserver: memory-only (kvserver.storage=memory): writes are acknowledged without a disk and lost at a restart\n' + bootLine(0));
    });

    it('kvserver compacts its log when a half fills, and recovers the compacted log', async () => {
      // 64 KiB: 128 sectors, two halves of 63; every small write takes one sector.
      const img = join(dir, 'kv-small.img');
      writeFileSync(img, Buffer.alloc(64 << 10));
      let { q, client } = await startKvserver(img, 0);
      const want = new Map<string, string>();
      for (let round = 0; round < 30; round++) {
        for (let k = 0; k < 10; k++) {
          const key = `key${k}`;
          const value = `v${round}-${k}`;
          const r = await client.request(`set ${key} ${k} 0 ${value.length}\r\n${value}\r\n`);
          expect(r.text, `set ${key} in round ${round}`).toBe('STORED\r\n');
          want.set(key, value);
        }
      }
      expect((await client.request('delete key3\r\n')).text).toBe('DELETED\r\n');
      want.delete('key3');
      const stats = (await client.request('stats\r\n')).text ?? '';
      const compactions = Number(/STAT wal_compactions (\d+)\r\n/.exec(stats)?.[1]);
      expect(compactions, stats).toBeGreaterThanOrEqual(4); // 301 records, at most ~53 per half
      expect(stats).toMatch(/STAT wal_errors 0\r\n/);
      const getAll = 'get ' + Array.from({ length: 10 }, (_, k) => `key${k}`).join(' ') + '\r\n';
      const expected =
        [...want.entries()].map(([key, v]) => `VALUE ${key} ${key.slice(3)} ${v.length}\r\n${v}\r\n`).join('') + 'END\r\n';
      expect((await client.request(getAll)).text).toBe(expected);
      await crash(q);

      ({ q, client } = await startKvserver(img, 9));
      expect((await client.request(getAll)).text).toBe(expected);
    });

    it('kvserver: every write acknowledged before a crash under load is there after the restart', async () => {
      const img = join(dir, 'kv-crash.img');
      writeFileSync(img, Buffer.alloc(1 << 20));
      const { q, port } = await startKvserver(img, 0);
      // A client of its own with short retries: requests in flight at the crash fail quickly.
      const load = new KvUdpClient(port, '127.0.0.1', { timeoutMs: 200, attempts: 2 });
      clients.push(load);
      const acked = new Map<string, string>();
      const N = 400;
      const KILL_AFTER = 150;
      let next = 0;
      let killed = false;
      const worker = async (): Promise<void> => {
        while (next < N && !killed) {
          const i = next++;
          const key = `d${i}`;
          const value = `value-${i}-${'z'.repeat(i % 50)}`;
          try {
            const r = await load.request(`set ${key} ${i} 0 ${value.length}\r\n${value}\r\n`);
            if (r.text === 'STORED\r\n') acked.set(key, value);
          } catch {
            // No answer: the server died with it in flight; it may or may not have been applied.
          }
          if (acked.size >= KILL_AFTER && !killed) {
            killed = true;
            q.child.kill('SIGKILL'); // with other workers' requests still in flight
          }
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      await q.exited;
      expect(acked.size).toBeGreaterThanOrEqual(KILL_AFTER);

      const again = await startKvserver(img, undefined);
      const recovered = Number(/(\d+) items recovered/.exec(again.q.output())![1]);
      expect(recovered).toBeGreaterThanOrEqual(acked.size);
      for (const [key, value] of acked) {
        const r = await again.client.request(`get ${key}\r\n`);
        expect(r.text, key).toBe(`VALUE ${key} ${key.slice(1)} ${value.length}\r\n${value}\r\nEND\r\n`);
      }
    });

    describe('kvserver\'s IPv4 stack at layer 2 (QEMU -netdev socket: Ethernet frames as UDP datagrams)', () => {
      let q: Running;
      let wire: L2Wire;
      beforeAll(async () => {
        wire = await L2Wire.open();
        q = startQemu('kvserver', [
          '-netdev', `socket,id=n0,udp=127.0.0.1:${wire.port},localaddr=127.0.0.1:${wire.qemuPort}`,
          '-device', 'virtio-net-device,netdev=n0',
        ], false);
        await q.waitFor(/items recovered\n/, KV_BOOT_MS);
        // No disk: the server says so, and that it will refuse writes.
        expect(q.output()).toBe('kvserver: no usable disk (no disk device): every write will be refused; boot with kvserver.storage=memory to serve from memory only\n' + bootLine(0));
        // It asks for its gateway as its interface comes up (nobody answers here).
        const ask = await wire.next(() => true);
        expect(hex(ask.subarray(0, 6))).toBe('ffffffffffff');
        expect(hex(ask.subarray(14, 42))).toBe(hex(arp(1, GUEST_MAC, GUEST_IP, ZERO_MAC, GATEWAY_IP)));
      });
      afterAll(async () => {
        wire?.close();
        if (q) await crash(q);
      });
      afterEach(() => wire.drain());

      it('answers an ARP request for its address', async () => {
        wire.send(eth(GUEST_MAC_BCAST, HOST_MAC, 0x0806, arp(1, HOST_MAC, HOST_IP, ZERO_MAC, GUEST_IP)));
        const f = await wire.next((f) => f.readUInt16BE(12) === 0x0806);
        expect(hex(f.subarray(0, 6))).toBe(hex(HOST_MAC));
        expect(hex(f.subarray(6, 12))).toBe(hex(GUEST_MAC));
        expect(hex(f.subarray(14, 42))).toBe(hex(arp(2, GUEST_MAC, GUEST_IP, HOST_MAC, HOST_IP)));
        // Nothing for another address.
        wire.send(eth(GUEST_MAC_BCAST, HOST_MAC, 0x0806, arp(1, HOST_MAC, HOST_IP, ZERO_MAC, ip4(10, 0, 2, 16))));
        await wire.expectSilence(150);
      });

      it('answers ICMP echo requests with valid checksums, and ignores one with a bad checksum', async () => {
        const payload = Buffer.from('lockstep ping payload 0123456789');
        const bad = icmpEcho(8, 0x1234, 7, payload);
        bad.writeUInt16BE(bad.readUInt16BE(2) ^ 0x0101, 2);
        wire.send(eth(GUEST_MAC, HOST_MAC, 0x0800, ipv4(HOST_IP, GUEST_IP, 1, bad)));
        await wire.expectSilence(150);
        wire.send(eth(GUEST_MAC, HOST_MAC, 0x0800, ipv4(HOST_IP, GUEST_IP, 1, icmpEcho(8, 0x1234, 8, payload))));
        const f = await wire.next((f) => f.readUInt16BE(12) === 0x0800 && f[23] === 1);
        const ip = parseIpv4(f);
        expect(ip.src).toBe(GUEST_IP);
        expect(ip.dst).toBe(HOST_IP);
        expect(ip.headerChecksumOk).toBe(true);
        expect(checksum(ip.payload)).toBe(0);
        expect(hex(ip.payload)).toBe(hex(icmpEcho(0, 0x1234, 8, payload)));
      });

      it('verifies UDP checksums on receive (a zero checksum means none) and computes them on send', async () => {
        const req = mcFrame(0x0101, 'version\r\n');
        wire.send(eth(GUEST_MAC, HOST_MAC, 0x0800, ipv4(HOST_IP, GUEST_IP, 17, udp(HOST_IP, GUEST_IP, 4000, 11211, req, 'bad'))));
        await wire.expectSilence(150);
        for (const mode of ['none', 'ok'] as const) {
          wire.send(eth(GUEST_MAC, HOST_MAC, 0x0800, ipv4(HOST_IP, GUEST_IP, 17, udp(HOST_IP, GUEST_IP, 4000, 11211, mcFrame(mode === 'ok' ? 2 : 3, 'version\r\n'), mode))));
          const f = await wire.next((f) => f.readUInt16BE(12) === 0x0800 && f[23] === 17);
          const ip = parseIpv4(f);
          expect(ip.headerChecksumOk).toBe(true);
          const u = ip.payload;
          expect(u.readUInt16BE(0)).toBe(11211);
          expect(u.readUInt16BE(2)).toBe(4000);
          expect(u.readUInt16BE(6)).not.toBe(0);
          expect(checksum(Buffer.concat([pseudoHeader(GUEST_IP, HOST_IP, 17, u.length), u]))).toBe(0);
          expect(u.subarray(8).toString('latin1')).toBe(mcFrame(mode === 'ok' ? 2 : 3, 'VERSION 1.6.0-lockstep\r\n').toString('latin1'));
        }
      });

      it('answers a datagram to an unbound port with ICMP port unreachable', async () => {
        const datagram = ipv4(HOST_IP, GUEST_IP, 17, udp(HOST_IP, GUEST_IP, 4001, 9, Buffer.from('discard me'), 'ok'));
        wire.send(eth(GUEST_MAC, HOST_MAC, 0x0800, datagram));
        const f = await wire.next((f) => f.readUInt16BE(12) === 0x0800 && f[23] === 1);
        const icmp = parseIpv4(f).payload;
        expect([icmp[0], icmp[1]]).toEqual([3, 3]);
        expect(checksum(icmp)).toBe(0);
        expect(hex(icmp.subarray(8))).toBe(hex(datagram.subarray(0, 28)));
      });

      it('drops IPv4 fragments and frames for another MAC', async () => {
        // A "first fragment" whose UDP length says it is whole is malformed; a later fragment is dropped.
        const frag = ipv4(HOST_IP, GUEST_IP, 17, udp(HOST_IP, GUEST_IP, 4000, 11211, mcFrame(4, 'version\r\n'), 'ok'), 0x2000);
        wire.send(eth(GUEST_MAC, HOST_MAC, 0x0800, frag));
        wire.send(eth(GUEST_MAC, HOST_MAC, 0x0800, ipv4(HOST_IP, GUEST_IP, 17, Buffer.from('the rest of a datagram'), 0x2000 | 185)));
        wire.send(eth(Buffer.from([0x52, 0x54, 0, 0x12, 0x34, 0x57]), HOST_MAC, 0x0800,
          ipv4(HOST_IP, GUEST_IP, 17, udp(HOST_IP, GUEST_IP, 4000, 11211, mcFrame(5, 'version\r\n'), 'ok'))));
        await wire.expectSilence(200);
      });

      it('answers the first fragment of a request too large for one frame instead of staying silent', async () => {
        const whole = udp(HOST_IP, GUEST_IP, 4003, 11211, mcFrame(6, `set big 0 0 2000\r\n${'b'.repeat(2000)}\r\n`), 'ok');
        wire.send(eth(GUEST_MAC, HOST_MAC, 0x0800, ipv4(HOST_IP, GUEST_IP, 17, whole.subarray(0, 1480), 0x2000)));
        const f = await wire.next((f) => f.readUInt16BE(12) === 0x0800 && f[23] === 17);
        expect(parseIpv4(f).payload.subarray(8).toString('latin1')).toBe(mcFrame(6, 'SERVER_ERROR object too large for cache\r\n').toString('latin1'));
      });

      it('survives malformed frames and still answers', async () => {
        const good = udp(HOST_IP, GUEST_IP, 4002, 11211, mcFrame(9, 'version\r\n'), 'ok');
        // (No empty frame: QEMU's socket netdev takes a 0-byte datagram for end of connection.)
        const bad: Buffer[] = [
          Buffer.from([1, 2, 3]),
          eth(GUEST_MAC, HOST_MAC, 0x0800, Buffer.alloc(0)), // no IP header
          eth(GUEST_MAC, HOST_MAC, 0x0806, Buffer.alloc(10)), // truncated ARP
          eth(GUEST_MAC, HOST_MAC, 0x0800, ipv4(HOST_IP, GUEST_IP, 17, good).subarray(0, 30)), // truncated datagram
          eth(GUEST_MAC, HOST_MAC, 0x0800, ipv4(HOST_IP, GUEST_IP, 17, udp(HOST_IP, GUEST_IP, 4002, 11211, Buffer.alloc(0), 'none').subarray(0, 4))),
          eth(GUEST_MAC, HOST_MAC, 0x0800, ipv4(HOST_IP, GUEST_IP, 99, Buffer.alloc(8))), // unknown protocol
          eth(GUEST_MAC, HOST_MAC, 0x86dd, Buffer.alloc(60)), // IPv6
        ];
        // An IP header whose total length exceeds the frame, one with IHL 4, one with a bad header checksum.
        const long = ipv4(HOST_IP, GUEST_IP, 17, good);
        long.writeUInt16BE(1400, 2);
        long.writeUInt16BE(0, 10);
        long.writeUInt16BE(checksum(long.subarray(0, 20)), 10);
        const ihl4 = ipv4(HOST_IP, GUEST_IP, 17, good);
        ihl4[0] = 0x44;
        const badsum = ipv4(HOST_IP, GUEST_IP, 17, good);
        badsum[10] = badsum[10]! ^ 0xff;
        // A UDP length above the IP payload.
        const ulen = udp(HOST_IP, GUEST_IP, 4002, 11211, mcFrame(10, 'version\r\n'), 'none');
        ulen.writeUInt16BE(900, 4);
        bad.push(...[long, ihl4, badsum, ipv4(HOST_IP, GUEST_IP, 17, ulen)].map((p) => eth(GUEST_MAC, HOST_MAC, 0x0800, p)));
        // Random bytes behind a valid Ethernet header, deterministic.
        let x = 0x12345678;
        for (let i = 0; i < 200; i++) {
          const b = Buffer.alloc(14 + ((i * 37) % 1500));
          for (let k = 0; k < b.length; k++) {
            x ^= x << 13;
            x ^= x >>> 17;
            x ^= x << 5;
            b[k] = x & 0xff;
          }
          GUEST_MAC.copy(b, 0);
          b.writeUInt16BE(i & 1 ? 0x0800 : 0x0806, 12);
          if (i & 1) b[14] = 0x45;
          bad.push(b);
        }
        for (const f of bad) wire.send(f);
        await wire.expectSilence(300);
        wire.send(eth(GUEST_MAC, HOST_MAC, 0x0800, ipv4(HOST_IP, GUEST_IP, 17, good)));
        const f = await wire.next((f) => f.readUInt16BE(12) === 0x0800 && f[23] === 17);
        expect(parseIpv4(f).payload.subarray(8).toString('latin1')).toBe(mcFrame(9, 'VERSION 1.6.0-lockstep\r\n').toString('latin1'));
      });

      it('gleans the MAC of an on-link sender from its IPv4 frame (no ARP request)', async () => {
        const mac = Buffer.from([0x02, 0, 0, 0, 0, 0x77]);
        const ip = ip4(10, 0, 2, 77);
        wire.send(eth(GUEST_MAC, mac, 0x0800, ipv4(ip, GUEST_IP, 17, udp(ip, GUEST_IP, 5000, 11211, mcFrame(6, 'version\r\n'), 'ok'))));
        const f = await wire.next(() => true);
        expect(f.readUInt16BE(12)).toBe(0x0800);
        expect(hex(f.subarray(0, 6))).toBe(hex(mac));
        expect(parseIpv4(f).dst).toBe(ip);
      });

      it('reaches an off-link sender through the gateway, resolving the gateway with an ARP request', async () => {
        const remote = ip4(192, 168, 7, 9);
        const gwMac = Buffer.from([0x52, 0x55, 0x0a, 0, 2, 2]);
        // The request comes from the gateway's MAC but an off-link source: nothing to glean.
        wire.send(eth(GUEST_MAC, gwMac, 0x0800, ipv4(remote, GUEST_IP, 17, udp(remote, GUEST_IP, 6000, 11211, mcFrame(7, 'version\r\n'), 'ok'))));
        const req = await wire.next(() => true);
        expect(req.readUInt16BE(12)).toBe(0x0806);
        expect(hex(req.subarray(0, 6))).toBe('ffffffffffff');
        expect(hex(req.subarray(14, 42))).toBe(hex(arp(1, GUEST_MAC, GUEST_IP, ZERO_MAC, GATEWAY_IP)));
        wire.send(eth(GUEST_MAC, gwMac, 0x0806, arp(2, gwMac, GATEWAY_IP, GUEST_MAC, GUEST_IP)));
        const f = await wire.next(() => true);
        expect(f.readUInt16BE(12)).toBe(0x0800);
        expect(hex(f.subarray(0, 6))).toBe(hex(gwMac));
        const ip = parseIpv4(f);
        expect(ip.dst).toBe(remote);
        expect(ip.payload.subarray(8).toString('latin1')).toBe(mcFrame(7, 'VERSION 1.6.0-lockstep\r\n').toString('latin1'));
      });
    });

    it('rng reports a legacy device instead of driving it', async () => {
      const q = startQemu('rng', ['-global', 'virtio-mmio.force-legacy=true', '-device', 'virtio-rng-device']);
      const { code } = await q.exited;
      expect(q.output()).toMatch(/rng: init failed: legacy virtio-mmio/);
      expect(code).toBe(1);
    });
  });
}
