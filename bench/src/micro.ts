// tinybench micro-benchmarks of the interpreter's hot paths, run in their own process by main.ts:
//   node micro.js [--quick]
// Prints JSON lines on stdout: {"progress": name} while running, then {"results": MicroResult[]}.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Bench, type Task } from 'tinybench';
import { Machine } from 'lockstep';
import { GUEST_BIN } from './paths.js';
import { CODE_BASE, programs } from './programs.js';
import { interpreterUnlessAsked } from './engine.js';

interpreterUnlessAsked();

export interface MicroResult {
  name: string;
  what: string;
  /** Guest instructions per iteration (0 for tasks that are not instruction loops). */
  instructionsPerIteration: number;
  /** Iteration latency in ms: median, mean, relative margin of error (%), samples. */
  p50Ms: number;
  meanMs: number;
  rme: number;
  samples: number;
  /** instructionsPerIteration / p50 latency, in millions per second (undefined for non-loop tasks). */
  mips?: number;
}

const quick = process.argv.includes('--quick');
const budget = quick ? 1_000_000 : 4_000_000;
const bench = new Bench({ time: quick ? 300 : 1500, warmupTime: quick ? 50 : 200, iterations: 5 });
const emit = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + '\n');

const machines: Machine[] = [];
const meta = new Map<string, { what: string; instructions: number }>();

async function loopMachine(code: Uint8Array): Promise<Machine> {
  const m = new Machine({ memory: 4 << 20, clock: 'virtual' });
  m.on('console', () => {});
  m.writeMemory(CODE_BASE, code);
  m.pc = CODE_BASE;
  machines.push(m);
  return m;
}

for (const p of programs) {
  const instructions = p.name === 'uart output' ? budget / 8 : budget;
  const m = await loopMachine(p.code);
  // Sanity: the loop must run the whole budget without trapping.
  const r = await m.run({ maxInstructions: 10_000 });
  if (r.kind !== 'budget' || r.instret !== 10_000n) {
    throw new Error(`micro program ${p.name} did not run its budget: ${JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
  }
  meta.set(p.name, { what: p.what, instructions });
  bench.add(p.name, async () => {
    await m.run({ maxInstructions: instructions });
  });
}

{
  const m = await loopMachine(programs[0]!.code);
  meta.set('run() round trip', { what: 'run({ maxInstructions: 1 }): JS → vCPU thread → doorbell → promise', instructions: 0 });
  bench.add('run() round trip', async () => {
    await m.run({ maxInstructions: 1 });
  });
}

const hello = readFileSync(join(GUEST_BIN, 'hello.elf'));
meta.set('create + load', { what: 'new Machine (64 MiB) + load(hello.elf) + close()', instructions: 0 });
bench.add('create + load', () => {
  const m = new Machine({ memory: 64 << 20 });
  m.load(hello);
  m.close();
});
meta.set('hello.elf end to end', { what: 'new Machine + load + run hello.elf to its exit + close', instructions: 0 });
bench.add('hello.elf end to end', async () => {
  const m = new Machine({ memory: 64 << 20 });
  m.on('console', () => {});
  m.load(hello);
  await m.run();
  m.close();
});

bench.addEventListener('cycle', (e) => {
  const task = (e as unknown as { task?: Task }).task;
  if (task) emit({ progress: task.name });
});
await bench.run();
for (const m of machines) m.close();

const results: MicroResult[] = [];
for (const task of bench.tasks) {
  const r = task.result;
  const info = meta.get(task.name)!;
  if (r.state !== 'completed') throw new Error(`micro task ${task.name}: ${r.state}${'error' in r ? `: ${String(r.error)}` : ''}`);
  const out: MicroResult = {
    name: task.name,
    what: info.what,
    instructionsPerIteration: info.instructions,
    p50Ms: r.latency.p50,
    meanMs: r.latency.mean,
    rme: r.latency.rme,
    samples: r.latency.samplesCount,
  };
  if (info.instructions > 0) out.mips = info.instructions / r.latency.p50 / 1000;
  results.push(out);
}
emit({ results });
