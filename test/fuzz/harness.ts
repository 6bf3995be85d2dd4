// The fuzz loop: runs a target for a number of iterations or a time budget, each iteration from its own
// PRNG seed (run seed, target, iteration number), so a finding names the one command that repeats it.
import { writeFileSync } from 'node:fs';
import type { Machine, RunOptions, RunResult } from '../../src/index.js';
import { prng } from '../cpu/prng.js';
import { iterationSeed, type Rnd } from './mutate.js';

/** One thing to fuzz: it derives an input from its seed corpus and the PRNG, and throws on a finding. */
export interface FuzzTarget {
  readonly name: string;
  /** What the target feeds and what it checks (for --help and the report). */
  readonly about: string;
  /** Reads the seed corpus and prepares scratch files; called once before the first iteration. */
  setup(): Promise<void> | void;
  /** One iteration. Anything it throws is a finding. */
  iterate(rnd: Rnd, iteration: number): Promise<void> | void;
  /** Removes scratch files. */
  teardown?(): void;
}

/** How long a run goes on. */
export interface FuzzRun {
  seed: number;
  /** First iteration number (to repeat one finding: its number, with iterations 1). */
  start: number;
  iterations?: number;
  /** Wall-clock budget instead of a count: the loop stops starting iterations after this many seconds. */
  seconds?: number;
}

/** A fuzzer finding: which target, iteration and seed, what went wrong, and how to repeat it. */
export class FuzzFinding extends Error {
  constructor(
    readonly target: string,
    readonly seed: number,
    readonly iteration: number,
    cause: unknown,
  ) {
    const what = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(
      `fuzz finding in target '${target}', seed ${seed}, iteration ${iteration}: ${what}\n` +
        `  repeat it with: npm run fuzz -- --target ${target} --seed ${seed} --start ${iteration} --iterations 1`,
      { cause },
    );
    this.name = 'FuzzFinding';
  }
}

/**
 * Where the iteration in progress is noted (env LOCKSTEP_FUZZ_PROGRESS, set by `npm run fuzz`): a finding
 * that kills the process (a native crash, running out of memory) cannot report itself, so run.mjs reads
 * this file afterwards and names the iteration that was running.
 */
const progressFile = process.env.LOCKSTEP_FUZZ_PROGRESS;

/** Runs `target`; resolves with the number of iterations done, or rejects with a {@link FuzzFinding}. */
export async function runTarget(target: FuzzTarget, run: FuzzRun): Promise<number> {
  if (run.iterations === undefined && run.seconds === undefined) throw new RangeError('a fuzz run needs iterations or seconds');
  await target.setup();
  const deadline = run.seconds === undefined ? Infinity : Date.now() + run.seconds * 1000;
  const end = run.iterations === undefined ? Infinity : run.start + run.iterations;
  let i = run.start;
  try {
    for (; i < end && Date.now() < deadline; i++) {
      const rnd = prng(iterationSeed(run.seed, target.name, i));
      if (progressFile) writeFileSync(progressFile, JSON.stringify({ target: target.name, seed: run.seed, iteration: i }));
      try {
        await target.iterate(rnd, i);
      } catch (err) {
        throw new FuzzFinding(target.name, run.seed, i, err);
      }
    }
  } finally {
    target.teardown?.();
  }
  return i - run.start;
}

/** Throws unless `cond`: an invariant a target checks. */
export function check(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Error(`invariant broken: ${what}`);
}

/**
 * Runs `m`, calling stop() if the run is still going after `patienceMs` (a guest may wait in WFI for
 * input or for a real-clock timer set far ahead: its right, not worth waiting for). A run that stop()
 * does not end within `graceMs` more is a finding: the host has lost control of the machine.
 */
export async function runWithPatience(m: Machine, options: RunOptions, patienceMs: number, graceMs = 30_000): Promise<RunResult> {
  let lost: (() => void) | undefined;
  const control = new Promise<never>((_, reject) => {
    lost = () => reject(new Error(`stop() did not end the run within ${graceMs} ms: the host lost control of the machine`));
  });
  let watch: NodeJS.Timeout | undefined;
  const patience = setTimeout(() => {
    m.stop();
    watch = setTimeout(() => lost?.(), graceMs);
  }, patienceMs);
  try {
    return await Promise.race([m.run(options), control]);
  } finally {
    clearTimeout(patience);
    clearTimeout(watch);
  }
}
