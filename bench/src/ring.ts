// Ring throughput: bytes per second through the SPSC byte ring (1 MiB ring, 64 KiB pushes and pops)
// native → JS, JS → native and native → native, against the 1 Gbit/s logging budget (125 MB/s) and
// the issue's target of 20x it (2.5 GB/s). Standalone, not part of main.ts's run:
//   npx tsc -p bench/tsconfig.json && node bench/build/bench/src/ring.js [--trials N] [--quick] [--json PATH]
// Prints a table; writes bench/results/ring.json unless --json '' is given.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { ByteRingReader, ByteRingWriter, allocateRing } from '../../src/native/ring.js';
import { ringProbeClass, type RingProbe } from '../../test/helpers/ring-probe.js';
import { Doorbell, probeFinished, readFromProbe, writeToProbe } from '../../test/helpers/ring-stream.js';
import { RESULTS_DIR } from './paths.js';
import { fmt, max, median, min } from './stats.js';

const BUDGET_BYTES_PER_S = 125e6; // 1 Gbit/s
const TARGET_BYTES_PER_S = 20 * BUDGET_BYTES_PER_S;
const RING_BYTES = 1 << 20;
const CHUNK = 64 << 10;
const GiB = 2 ** 30;

const { values: opts } = parseArgs({
  options: {
    trials: { type: 'string', default: '5' },
    quick: { type: 'boolean', default: false },
    json: { type: 'string', default: join(RESULTS_DIR, 'ring.json') },
  },
});
const trials = opts.quick ? 1 : Number(opts.trials);
if (!Number.isInteger(trials) || trials < 1) throw new Error(`--trials must be a positive integer, got ${opts.trials}`);
const scale = opts.quick ? 1 / 8 : 1;

interface Scenario {
  name: string;
  what: string;
  bytes: number;
  run(probe: RingProbe, ring: SharedArrayBuffer, bell: Doorbell, bytes: number): Promise<void>;
}

const scenarios: Scenario[] = [
  {
    name: 'native → JS',
    what: 'native producer thread pushes 64 KiB; JS readInto() 64 KiB on the doorbell, kick() after each read',
    bytes: 2 * GiB,
    async run(probe, ring, bell, bytes) {
      probe.produce(bytes, 1, CHUNK, { fixedChunk: true, check: false });
      const js = await readFromProbe(probe, new ByteRingReader(ring), bell, bytes, { seed: 1, max: CHUNK, fixed: true, check: false });
      if (js.bytes !== bytes) throw new Error(`native → JS moved ${js.bytes} of ${bytes} bytes`);
    },
  },
  {
    name: 'JS → native',
    what: 'JS write() 64 KiB, kick() after each write; native consumer thread pops 64 KiB',
    bytes: 2 * GiB,
    async run(probe, ring, bell, bytes) {
      const writer = new ByteRingWriter(ring);
      probe.consume(bytes, 2, CHUNK, { fixedChunk: true, check: false });
      const js = await writeToProbe(probe, writer, bell, bytes, { seed: 2, max: CHUNK, fixed: true, check: false });
      if (js.bytes !== bytes) throw new Error(`JS → native moved ${js.bytes} of ${bytes} bytes`);
    },
  },
  {
    name: 'native → native',
    what: 'producer and consumer threads, 64 KiB pushes and pops (the FT logging path)',
    bytes: 8 * GiB,
    async run(probe, _ring, _bell, bytes) {
      probe.pipe(bytes, 3, CHUNK, { fixedChunk: true, check: false });
    },
  },
  {
    name: 'native → native, verified',
    what: 'as above, plus the lane hash on both ends and a compare with the stream on the consumer',
    bytes: 4 * GiB,
    async run(probe, _ring, _bell, bytes) {
      probe.pipe(bytes, 4, CHUNK, { fixedChunk: true, check: true });
    },
  },
];

export interface RingBenchResult {
  name: string;
  what: string;
  bytesPerTrial: number;
  /** Bytes per second of each trial, from starting the run to both ends finishing. */
  samples: number[];
  medianBytesPerS: number;
  /** medianBytesPerS / 125 MB/s. */
  budgetMultiple: number;
  meetsTarget: boolean;
}

const RingProbe = ringProbeClass();
const results: RingBenchResult[] = [];
for (const s of scenarios) {
  const bytes = Math.round((s.bytes * scale) / CHUNK) * CHUNK;
  const samples: number[] = [];
  for (let t = 0; t < trials; t++) {
    const ring = allocateRing(RING_BYTES);
    const bell = new Doorbell();
    const probe = new RingProbe(new Uint8Array(ring), bell.ring);
    try {
      const t0 = performance.now();
      await s.run(probe, ring, bell, bytes);
      await probeFinished(probe, bell);
      const seconds = (performance.now() - t0) / 1000;
      const r = probe.join();
      if (r.bytes !== bytes || r.mismatchAt !== -1) throw new Error(`${s.name}: native end moved ${r.bytes} bytes, mismatch at ${r.mismatchAt}`);
      samples.push(bytes / seconds);
    } finally {
      probe.close();
    }
  }
  const m = median(samples);
  results.push({
    name: s.name,
    what: s.what,
    bytesPerTrial: bytes,
    samples,
    medianBytesPerS: m,
    budgetMultiple: m / BUDGET_BYTES_PER_S,
    meetsTarget: m >= TARGET_BYTES_PER_S,
  });
}

const GB = (x: number): string => fmt(x / 1e9, 2);
const pad = (x: string, n: number): string => x.padEnd(n);
process.stdout.write(
  `ring throughput: ${RING_BYTES >> 20} MiB ring, ${CHUNK >> 10} KiB chunks, ${trials} trial(s); ` +
    `budget 1 Gbit/s = 125 MB/s, target 20x = 2.5 GB/s\n\n` +
    `${pad('direction', 28)}${pad('median GB/s', 13)}${pad('min..max', 14)}${pad('x budget', 10)}target\n`,
);
for (const r of results) {
  process.stdout.write(
    `${pad(r.name, 28)}${pad(GB(r.medianBytesPerS), 13)}${pad(`${GB(min(r.samples))}..${GB(max(r.samples))}`, 14)}` +
      `${pad(fmt(r.budgetMultiple, 0) + 'x', 10)}${r.meetsTarget ? 'met' : 'MISSED'}\n`,
  );
}

if (opts.json) {
  mkdirSync(dirname(opts.json), { recursive: true });
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  writeFileSync(
    opts.json,
    JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu, cpus: os.cpus().length, ringBytes: RING_BYTES, chunkBytes: CHUNK, trials, quick: opts.quick, results }, null, 2) + '\n',
  );
}
