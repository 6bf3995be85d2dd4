// One whole-guest lockstep trial, run in its own process by bench/src/main.ts:
//   node trial.js <elf> [maxInstructions]
// Prints one JSON line (TrialResult) on stdout. Only the run() call is timed.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Machine } from 'lockstep';
import { interpreterUnlessAsked } from './engine.js';

interpreterUnlessAsked();

export interface TrialResult {
  kind: string;
  code?: number;
  instret: string;
  branches: string;
  /** Wall seconds of the awaited run() call. */
  seconds: number;
  mips: number;
  /** Wall milliseconds of `new Machine` and of `load`. */
  createMs: number;
  loadMs: number;
  consoleBytes: number;
  consoleSha256: string;
}

const [elfPath, maxArg] = process.argv.slice(2);
if (elfPath === undefined) {
  process.stderr.write('usage: trial.js <elf> [maxInstructions]\n');
  process.exit(2);
}
const elf = readFileSync(elfPath);

const t0 = process.hrtime.bigint();
const m = new Machine({ memory: 64 << 20, clock: 'virtual' });
const t1 = process.hrtime.bigint();
m.load(elf);
const t2 = process.hrtime.bigint();
const hash = createHash('sha256');
let consoleBytes = 0;
m.on('console', (chunk) => {
  hash.update(chunk);
  consoleBytes += chunk.length;
});

const start = process.hrtime.bigint();
const r = await m.run(maxArg === undefined ? {} : { maxInstructions: BigInt(maxArg) });
const end = process.hrtime.bigint();
m.close();

const seconds = Number(end - start) / 1e9;
const result: TrialResult = {
  kind: r.kind,
  instret: r.instret.toString(),
  branches: r.branches.toString(),
  seconds,
  mips: Number(r.instret) / seconds / 1e6,
  createMs: Number(t1 - t0) / 1e6,
  loadMs: Number(t2 - t1) / 1e6,
  consoleBytes,
  consoleSha256: hash.digest('hex'),
};
if (r.kind === 'exit') result.code = r.code;
process.stdout.write(JSON.stringify(result) + '\n');
