// The SPSC byte ring under stress, in both directions and native to native: every byte arrives once,
// in order (checked against the deterministic stream and by checksum on both ends), through tiny and
// small rings, across the u32 wrap of head and tail, with back-pressure when the ring is full.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ByteRingReader,
  ByteRingWriter,
  RING_HEAD,
  RING_TAIL,
  allocateRing,
} from '../../src/native/ring.js';
import { TEST_ADDON_PATH, ringProbeClass, type RingProbe } from '../helpers/ring-probe.js';
import { Doorbell, LaneHash, PATTERN_BYTES, probeFinished, readFromProbe, streamPattern, writeToProbe } from '../helpers/ring-stream.js';

const MiB = 1 << 20;
const RingProbe = ringProbeClass();
const probes: RingProbe[] = [];
afterEach(() => {
  while (probes.length) probes.pop()!.close();
});

function setup(capacity: number): { ring: SharedArrayBuffer; bell: Doorbell; probe: RingProbe } {
  const ring = allocateRing(capacity);
  const bell = new Doorbell();
  const probe = new RingProbe(new Uint8Array(ring), bell.ring);
  probes.push(probe);
  return { ring, bell, probe };
}

/** The lane hash of the first `total` bytes of the seed's stream. */
function expectedChecksum(seed: number, total: number): number {
  const pattern = streamPattern(seed, 0);
  const h = new LaneHash();
  for (let pos = 0; pos < total; ) {
    const n = Math.min(PATTERN_BYTES, total - pos);
    h.update(pattern.subarray(0, n));
    pos += n;
  }
  return h.digest();
}

const u32 = (sab: SharedArrayBuffer, offset: number): number => new Uint32Array(sab, offset, 1)[0]!;

async function nativeToJs(capacity: number, total: number, seed: number, maxChunk: number, maxRead: number, startIndex = 0) {
  const { ring, bell, probe } = setup(capacity);
  probe.produce(total, seed, maxChunk, { startIndex });
  const js = await readFromProbe(probe, new ByteRingReader(ring), bell, total, { seed, max: maxRead });
  await probeFinished(probe, bell);
  const native = probe.join();
  return { js, native, ring };
}

async function jsToNative(capacity: number, total: number, seed: number, maxChunk: number, maxWrite: number, startIndex = 0) {
  const { ring, bell, probe } = setup(capacity);
  const writer = new ByteRingWriter(ring, { startIndex });
  probe.consume(total, seed, maxChunk);
  const js = await writeToProbe(probe, writer, bell, total, { seed, max: maxWrite });
  await probeFinished(probe, bell);
  const native = probe.join();
  return { js, native, ring };
}

describe('JS ring ends without a native peer', () => {
  it('ByteRingWriter to ByteRingReader moves bytes in order across the wrap of data and counters', () => {
    const ring = allocateRing(64);
    const w = new ByteRingWriter(ring, { startIndex: 2 ** 32 - 37 });
    const r = new ByteRingReader(ring);
    const pattern = streamPattern(7, 100);
    let wrote = 0;
    let read = 0;
    const out: number[] = [];
    for (let i = 0; i < 200 && read < 5000; i++) {
      wrote += w.write(pattern.subarray(wrote, wrote + 1 + (i % 90)));
      expect(w.free()).toBe(64 - (wrote - read));
      const got = r.read(1 + ((i * 7) % 50));
      out.push(...got);
      read += got.length;
    }
    expect(read).toBeGreaterThan(1000);
    expect(Buffer.from(out).equals(Buffer.from(pattern.subarray(0, read)))).toBe(true);
    expect(u32(ring, RING_HEAD)).toBe((2 ** 32 - 37 + wrote) % 2 ** 32);
  });

  it('ByteRingWriter rejects a buffer that is not 128 + 2^k bytes and a bad start index', () => {
    expect(() => new ByteRingWriter(new SharedArrayBuffer(128 + 100))).toThrow(RangeError);
    expect(() => new ByteRingWriter(new SharedArrayBuffer(128 + 32))).toThrow(RangeError);
    expect(() => new ByteRingWriter(allocateRing(64), { startIndex: 2 ** 32 })).toThrow(RangeError);
    expect(() => new ByteRingWriter(allocateRing(64), { startIndex: -1 })).toThrow(RangeError);
  });
});

describe('native producer to JS reader', () => {
  for (const [capacity, maxChunk, maxRead] of [
    [4096, 3000, 5000],
    [65536, 40000, 70000],
  ] as const) {
    it(`delivers 64 MiB through a ${capacity / 1024} KiB ring intact, with random chunk and read sizes`, async () => {
      const total = 64 * MiB;
      const { js, native } = await nativeToJs(capacity, total, 0x5eed + capacity, maxChunk, maxRead);
      expect(native.bytes).toBe(total);
      expect(js.bytes).toBe(total);
      expect(js.mismatchAt).toBe(-1);
      expect(js.checksum).toBe(native.checksum);
      expect(native.checksum).toBe(expectedChecksum(0x5eed + capacity, total));
    });
  }
});

describe('JS writer to native consumer', () => {
  for (const [capacity, maxChunk, maxWrite] of [
    [4096, 3000, 5000],
    [65536, 40000, 70000],
  ] as const) {
    it(`delivers 64 MiB through a ${capacity / 1024} KiB ring intact, with random write and pop sizes`, async () => {
      const total = 64 * MiB;
      const { js, native } = await jsToNative(capacity, total, 0xfeed + capacity, maxChunk, maxWrite);
      expect(js.bytes).toBe(total);
      expect(native.bytes).toBe(total);
      expect(native.mismatchAt).toBe(-1);
      expect(native.checksum).toBe(js.checksum);
      expect(js.checksum).toBe(expectedChecksum(0xfeed + capacity, total));
    });
  }
});

describe('native producer to native consumer', () => {
  it('delivers 64 MiB through a 4 KiB ring intact, both ends sleeping instead of spinning', async () => {
    const { bell, probe } = setup(4096);
    const total = 64 * MiB;
    probe.pipe(total, 42, 3000);
    await probeFinished(probe, bell);
    const r = probe.join();
    expect(r.bytes).toBe(total);
    expect(r.mismatchAt).toBe(-1);
    expect(r.consumerChecksum).toBe(r.producerChecksum);
    expect(r.consumerChecksum).toBe(expectedChecksum(42, total));
  });
});

describe('full-ring back-pressure', () => {
  it('a native producer facing a slow JS reader on a 64-byte ring waits, and loses or repeats nothing', async () => {
    const { ring, bell, probe } = setup(64);
    const total = 16 * 1024;
    probe.produce(total, 9, 200);
    let turns = 0;
    // Slow: at most 16 bytes per event-loop turn.
    const js = await readFromProbe(probe, new ByteRingReader(ring), bell, total, {
      seed: 9,
      max: 16,
      pace: () => (++turns % 4 === 0 ? new Promise<void>((r) => setImmediate(r)) : undefined),
    });
    await probeFinished(probe, bell);
    const native = probe.join();
    expect(js.bytes).toBe(total);
    expect(js.mismatchAt).toBe(-1);
    expect(js.checksum).toBe(native.checksum);
    expect(native.producerWaits).toBeGreaterThan(0);
  });

  it('a JS writer facing a slow native consumer on a 64-byte ring waits, and loses or repeats nothing', async () => {
    const { bell, probe, ring } = setup(64);
    const writer = new ByteRingWriter(ring);
    const total = 256 * 1024;
    probe.consume(total, 10, 3); // pops of 1..3 bytes
    const js = await writeToProbe(probe, writer, bell, total, { seed: 10, max: 200 });
    await probeFinished(probe, bell);
    const native = probe.join();
    expect(native.bytes).toBe(total);
    expect(native.mismatchAt).toBe(-1);
    expect(native.checksum).toBe(js.checksum);
    expect(js.sleeps).toBeGreaterThan(0);
  });

  it('native to native on a 64-byte ring: the producer waits, and nothing is lost or repeated', async () => {
    const { bell, probe } = setup(64);
    const total = 4 * MiB;
    probe.pipe(total, 11, 1000);
    await probeFinished(probe, bell);
    const r = probe.join();
    expect(r.bytes).toBe(total);
    expect(r.mismatchAt).toBe(-1);
    expect(r.consumerChecksum).toBe(expectedChecksum(11, total));
    expect(r.producerWaits).toBeGreaterThan(0);
  });
});

describe('u32 wrap-around of head and tail', () => {
  const start = 2 ** 32 - 5000;
  const total = 4 * MiB;
  for (const capacity of [64, 4096]) {
    it(`native to JS through a ${capacity}-byte ring starting ${2 ** 32 - start} bytes below 2^32`, async () => {
      const { js, native, ring } = await nativeToJs(capacity, total, 3, 300, 500, start);
      expect(js.bytes).toBe(total);
      expect(js.mismatchAt).toBe(-1);
      expect(js.checksum).toBe(native.checksum);
      expect(u32(ring, RING_HEAD)).toBe((start + total) % 2 ** 32);
      expect(u32(ring, RING_TAIL)).toBe((start + total) % 2 ** 32);
    });

    it(`JS to native through a ${capacity}-byte ring starting ${2 ** 32 - start} bytes below 2^32`, async () => {
      const { js, native, ring } = await jsToNative(capacity, total, 4, 300, 500, start);
      expect(native.bytes).toBe(total);
      expect(native.mismatchAt).toBe(-1);
      expect(native.checksum).toBe(js.checksum);
      expect(u32(ring, RING_TAIL)).toBe((start + total) % 2 ** 32);
    });
  }

  it('native to native through a 64-byte ring starting just below 2^32', async () => {
    const { bell, probe, ring } = setup(64);
    probe.pipe(total, 5, 100, { startIndex: start });
    await probeFinished(probe, bell);
    const r = probe.join();
    expect(r.bytes).toBe(total);
    expect(r.mismatchAt).toBe(-1);
    expect(r.consumerChecksum).toBe(r.producerChecksum);
    expect(u32(ring, RING_TAIL)).toBe((start + total) % 2 ** 32);
  });
});

describe('RingProbe argument and state checks', () => {
  const ringBytes = () => new Uint8Array(allocateRing(64));
  const bad = (make: () => unknown) => expect(make);

  it('rejects a missing or wrongly typed ring or doorbell with TypeError', () => {
    const Ctor = RingProbe as unknown as new (...a: unknown[]) => RingProbe;
    bad(() => new Ctor()).toThrow(TypeError);
    bad(() => new Ctor(ringBytes())).toThrow(TypeError);
    bad(() => new Ctor(new Uint16Array(allocateRing(64)), () => {})).toThrow(TypeError);
    bad(() => new Ctor(new SharedArrayBuffer(192), () => {})).toThrow(TypeError);
    bad(() => new Ctor(ringBytes(), 'bell')).toThrow(TypeError);
  });

  it('rejects a ring of the wrong size or alignment with RangeError', () => {
    bad(() => new RingProbe(new Uint8Array(new SharedArrayBuffer(128 + 100)), () => {})).toThrow(RangeError);
    bad(() => new RingProbe(new Uint8Array(new SharedArrayBuffer(128 + 32)), () => {})).toThrow(RangeError);
    bad(() => new RingProbe(new Uint8Array(new SharedArrayBuffer(130 + 64), 2), () => {})).toThrow(RangeError);
  });

  it('rejects bad run arguments with TypeError or RangeError and stays usable', async () => {
    const { bell, probe } = setup(64);
    const p = probe as unknown as { produce(...a: unknown[]): void; consume(...a: unknown[]): void; pipe(...a: unknown[]): void };
    bad(() => p.produce()).toThrow(TypeError);
    bad(() => p.produce('1', 1, 1)).toThrow(TypeError);
    bad(() => p.produce(1, 1n, 1)).toThrow(TypeError);
    bad(() => p.produce(-1, 1, 1)).toThrow(RangeError);
    bad(() => p.produce(1.5, 1, 1)).toThrow(RangeError);
    bad(() => p.produce(2 ** 53, 1, 1)).toThrow(RangeError);
    bad(() => p.produce(1, 2 ** 32, 1)).toThrow(RangeError);
    bad(() => p.produce(1, 1, 0)).toThrow(RangeError);
    bad(() => p.produce(1, 1, 2 ** 20 + 1)).toThrow(RangeError);
    bad(() => p.produce(1, 1, 1, { startIndex: 2 ** 32 })).toThrow(RangeError);
    bad(() => p.produce(1, 1, 1, { startIndex: '0' })).toThrow(TypeError);
    bad(() => p.produce(1, 1, 1, 5)).toThrow(TypeError);
    bad(() => p.pipe(1, 1, 1, { check: 1 })).toThrow(TypeError);
    bad(() => p.pipe(1, 1, 1, { fixedChunk: 'yes' })).toThrow(TypeError);
    bad(() => p.consume(1, 1, 1, { startIndex: 0 })).toThrow(TypeError);
    bad(() => p.pipe(1, 1, NaN)).toThrow(RangeError);
    bad(() => p.consume(1, 1, 1)).toThrow(/not initialised/); // no ByteRingWriter yet
    expect(probe.result()).toBeNull();
    probe.pipe(1000, 1, 10);
    await probeFinished(probe, bell);
    expect(probe.join().bytes).toBe(1000);
  });

  it('refuses a second run or a join while running, and any run after close', async () => {
    const { probe, ring } = setup(64);
    probe.produce(1000, 1, 100); // nobody reads: the producer sleeps on the full ring
    for (let i = 0; i < 100 && new ByteRingReader(ring).available() < 64; i++) await new Promise((r) => setTimeout(r, 1));
    expect(probe.done()).toBe(false);
    expect(probe.result()).toBeNull();
    expect(() => probe.join()).toThrow(/running/);
    expect(() => probe.pipe(10, 1, 1)).toThrow(/running/);
    probe.close(); // wakes and joins the sleeping producer
    expect(() => probe.produce(10, 1, 1)).toThrow(/closed/);
    probe.close();
  });
});

describe('RingProbe teardown', () => {
  const addonRoot = fileURLToPath(new URL('../..', import.meta.url));
  const script = (exit: string) => `
    const addon = require(${JSON.stringify(TEST_ADDON_PATH)});
    const sab = new SharedArrayBuffer(128 + 64);
    const probe = new addon.RingProbe(new Uint8Array(sab), () => {});
    probe.produce(1e6, 1, 100); // nobody reads: the producer sleeps on the full ring
    setTimeout(() => { ${exit} }, 20);
  `;

  it('a process exiting mid-run joins the sleeping producer and exits cleanly', () => {
    const r = spawnSync(process.execPath, ['-e', script('process.exit(0)')], { cwd: addonRoot, timeout: 30_000, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('a probe collected mid-run stops and joins its threads (the process then exits by itself)', () => {
    const gc = `
      const addon = require(${JSON.stringify(TEST_ADDON_PATH)});
      for (let i = 0; i < 20; i++) {
        const probe = new addon.RingProbe(new Uint8Array(new SharedArrayBuffer(128 + 64)), () => {});
        if (i % 2) probe.produce(1e6, 1, 100); else probe.pipe(1e4, 1, 10); // never joined
      }
      global.gc();
      setTimeout(() => global.gc(), 20);
    `;
    const r = spawnSync(process.execPath, ['--expose-gc', '-e', gc], { cwd: addonRoot, timeout: 30_000, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('a worker terminated mid-run joins the sleeping producer', async () => {
    const w = new Worker(script('require("worker_threads").parentPort.postMessage("running")'), { eval: true });
    await new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
    });
    expect(await w.terminate()).toBe(1);
  });
});
