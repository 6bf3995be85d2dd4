// lockstep's virtio devices with the SDK's drivers: entropy, disk and network (kvserver over the `udp`
// back-end answering the same script QEMU answers), and a kvserver session recorded and replayed.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Machine, Recorder, Replayer, UdpForwarder, EventKind, decodeRecords, encodeBatch, parseBatch, type MachineOptions } from '../../src/index.js';
import { bootLine, KV_SCRIPT, KvUdpClient, runKvSteps } from '../guest/kv-script.js';

const elf = (name: string) => readFileSync(new URL(`../../guest/bin/${name}.elf`, import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-devices-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const cleanup: (() => void)[] = [];
afterEach(() => {
  while (cleanup.length) cleanup.pop()!();
});

function disk(name: string, bytes = 1 << 20): string {
  const path = join(tmp, name);
  writeFileSync(path, Buffer.alloc(bytes));
  return path;
}

function machine(options: MachineOptions): { m: Machine; out: () => string } {
  const m = new Machine(options);
  cleanup.push(() => m.close());
  let text = '';
  m.on('console', (c) => (text += Buffer.from(c).toString('latin1')));
  return { m, out: () => text };
}

async function until(what: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('virtio devices', () => {
  for (const clock of ['virtual', 'real'] as const) {
    it(`virtio-rng hands the rng guest entropy (${clock} clock)`, async () => {
      const { m, out } = machine({ memory: 1 << 20, clock, devices: { rng: true } });
      m.load(elf('rng'));
      expect(await m.run()).toMatchObject({ kind: 'exit', code: 0 });
      expect(out()).toBe('rng: 64 bytes, not all zero: yes\n');
    });

    it(`virtio-blk serves the disk guest's writes, flush and reads (${clock} clock)`, async () => {
      const { m, out } = machine({ memory: 1 << 20, clock, devices: { disk: { path: disk(`d-${clock}.img`) } } });
      m.load(elf('disk'));
      expect(await m.run()).toMatchObject({ kind: 'exit', code: 0 });
      expect(out()).toBe('disk: capacity 2048 sectors, 4 sectors written and verified\n');
    });
  }

  it('virtual-clock entropy is reproducible: two runs reach the same state hash', async () => {
    const hashes: bigint[] = [];
    for (let i = 0; i < 2; i++) {
      const { m } = machine({ memory: 1 << 20, devices: { rng: true } });
      m.load(elf('rng'));
      await m.run();
      hashes.push(m.stateHash());
    }
    expect(hashes[0]).toBe(hashes[1]);
  });

  it('refuses a disk image that does not exist, naming it', () => {
    expect(() => new Machine({ devices: { disk: { path: join(tmp, 'missing.img') } } })).toThrow(/devices\.disk\.path: cannot open disk image .*missing\.img/);
  });

  it('a missing disk image whose path contains "tap" is reported as the disk, not the TAP device', () => {
    const path = join(tmp, 'tap0', 'laptop-disk.img');
    let err: unknown;
    try {
      new Machine({ devices: { net: true, disk: { path } } });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'ERR_LOCKSTEP_OPTION_INVALID', field: 'devices.disk.path' });
    expect((err as Error).message).toContain('laptop-disk.img');
  });

  it('kvserver on virtio-net and virtio-blk answers the request script exactly as under QEMU', async () => {
    const { m, out } = machine({ memory: 64 << 20, clock: 'real', devices: { net: true, disk: { path: disk('kv.img') } } });
    m.load(elf('kvserver'));
    const { forwarder, ports } = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11211 }]);
    cleanup.push(() => forwarder.close());
    const running = m.run();
    await until(() => out().includes('listening'), 10_000);
    expect(out()).toBe(bootLine(0));
    const client = new KvUdpClient(ports[0]!, '127.0.0.1', { timeoutMs: 1000, attempts: 5 });
    cleanup.push(() => client.close());
    for (const o of await runKvSteps(client, KV_SCRIPT)) expect(o.got, o.step.name).toBe(o.want);
    m.stop();
    expect((await running).kind).toBe('stopped');
  });

  it('malformed and random frames reach the guest without harm: it still answers afterwards', async () => {
    const { m, out } = machine({ memory: 64 << 20, clock: 'real', devices: { net: true } });
    m.load(elf('kvserver'));
    const { forwarder, ports } = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11211 }]);
    cleanup.push(() => forwarder.close());
    const running = m.run();
    await until(() => out().includes('listening'), 10_000);
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
    for (let i = 0; i < 300; i++) {
      const len = 14 + (rnd() * 6) % 1500;
      const f = Uint8Array.from({ length: len }, rnd);
      if (i % 3 === 0) f.set([0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02, 0x08, i % 2 ? 0x00 : 0x06]); // to us, IPv4 or ARP garbage
      m.sendFrame(f);
    }
    expect(() => m.sendFrame(new Uint8Array(10))).toThrow(RangeError); // not even an Ethernet header
    const client = new KvUdpClient(ports[0]!, '127.0.0.1', { timeoutMs: 1000, attempts: 5 });
    cleanup.push(() => client.close());
    const r = await client.request('version\r\n', { expectReply: true });
    expect(r.text).toBe('VERSION 1.6.0-lockstep\r\n');
    m.stop();
    expect((await running).kind).toBe('stopped');
  });

  it('frames for the guest wait on the host, at most 1024; those beyond, or met by a driver not yet running, are dropped and counted', async () => {
    const { m, out } = machine({ memory: 16 << 20, clock: 'real', devices: { net: true } });
    const f = new Uint8Array(60).fill(0xff, 0, 6);
    for (let i = 0; i < 1100; i++) m.sendFrame(f);
    expect(m.netStats).toEqual({ queued: 1024, delivered: 0, deliveredBytes: 0, dropped: 76 });
    m.load(elf('kvserver'));
    const running = m.run();
    await until(() => out().includes('listening'), 10_000);
    // The first boundary met them before the guest's driver was up: dropped, as a NIC would.
    expect(m.netStats).toEqual({ queued: 0, delivered: 0, deliveredBytes: 0, dropped: 1100 });
    m.stop();
    await running;
  });

  it('a kvserver session under real UDP load, recorded, replays to the identical state hash', async () => {
    const image = disk('kv-rec.img');
    const pristine = join(tmp, 'kv-pristine.img');
    copyFileSync(image, pristine);
    const { m, out } = machine({ memory: 64 << 20, clock: 'real', devices: { net: true, disk: { path: image } } });
    m.load(elf('kvserver'));
    const rec = new Recorder(m, { hashInterval: 1 << 20 });
    const batches: Uint8Array[] = [];
    rec.on('batch', (b) => batches.push(b.slice()));
    const { forwarder, ports } = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11211 }]);
    cleanup.push(() => forwarder.close());
    const running = m.run();
    await until(() => out().includes('listening'), 10_000);
    const client = new KvUdpClient(ports[0]!, '127.0.0.1', { timeoutMs: 1000, attempts: 5 });
    cleanup.push(() => client.close());
    await runKvSteps(client, KV_SCRIPT);
    m.stop();
    const r = await running;
    rec.finish(r);
    const hash = m.stateHash();
    // The TypeScript codec reads the native batches (device events included) and re-encodes them exactly.
    const kinds = new Set<number>();
    for (const b of batches) {
      const lsn = new DataView(b.buffer, b.byteOffset).getBigUint64(8, true);
      const { batch } = parseBatch(b, 0, lsn);
      const events = decodeRecords(batch);
      for (const e of events) kinds.add(e.kind);
      const base = { instret: batch.baseInstret, branches: batch.baseBranches, pc: batch.basePc, clock: batch.baseClock };
      expect(encodeBatch(lsn, base, events)).toEqual(b);
    }
    expect(kinds.has(EventKind.NetRx)).toBe(true);
    expect(kinds.has(EventKind.BlockDone)).toBe(true);

    const { m: s, out: sout } = machine({ memory: 64 << 20, clock: 'real', devices: { net: true, disk: { path: pristine } } });
    s.load(elf('kvserver'));
    const frames: Uint8Array[] = [];
    s.on('frame', (f) => frames.push(f));
    const rep = new Replayer(s);
    for (const b of batches) rep.feed(b);
    rep.end();
    const rr = await s.run();
    expect(rr).toMatchObject({ kind: 'end-of-log', recorded: 'stopped', instret: r.instret });
    expect(s.stateHash()).toBe(hash);
    expect(sout()).toBe(out());
    expect(frames).toEqual([]); // a replaying machine emits nothing...
    expect(s.suppressedOutputs).toBeGreaterThan(0); // ...it counts what it suppressed
    expect(readFileSync(pristine).every((b) => b === 0)).toBe(true); // and never writes the shared disk
  });
});
