// The fuzz targets as tests: in `npm test` (and the sanitizer run) a bounded smoke of each; through
// `npm run fuzz` (test/fuzz/run.mjs) any count, time budget, seed or starting iteration. A finding fails
// the test with the seed and the command that repeats it.
import { describe, expect, it } from 'vitest';
import { writeSeeds } from './corpus.js';
import { runTarget, type FuzzTarget } from './harness.js';
import { configTarget } from './targets/config.js';
import { deviceTarget } from './targets/device.js';
import { elfTarget } from './targets/elf.js';
import { frameTarget } from './targets/frame.js';
import { logTarget } from './targets/log.js';
import { snapshotTarget } from './targets/snapshot.js';

/** Iterations of each target in the smoke run (count-bounded: the same work on any machine). */
const SMOKE: Record<string, number> = { elf: 1000, log: 300, snapshot: 800, frame: 2000, config: 1500, device: 150 };
const TARGETS: FuzzTarget[] = [elfTarget, logTarget, snapshotTarget, frameTarget, configTarget, deviceTarget];

const env = process.env;
const only = env.LOCKSTEP_FUZZ_TARGET;
const seed = Number(env.LOCKSTEP_FUZZ_SEED ?? 1);
const start = Number(env.LOCKSTEP_FUZZ_START ?? 0);
const iterations = env.LOCKSTEP_FUZZ_ITERATIONS === undefined ? undefined : Number(env.LOCKSTEP_FUZZ_ITERATIONS);
const seconds = env.LOCKSTEP_FUZZ_SECONDS === undefined ? undefined : Number(env.LOCKSTEP_FUZZ_SECONDS);

if (env.LOCKSTEP_FUZZ_WRITE_SEEDS) {
  it('writes the seed corpora', async () => {
    await writeSeeds();
  }, 600_000);
} else {
  describe('fuzz', () => {
    for (const target of TARGETS) {
      if (only !== undefined && only !== 'all' && only !== target.name) continue;
      const count = seconds === undefined ? (iterations ?? SMOKE[target.name]!) : undefined;
      const what = seconds === undefined ? `${count} iterations` : `${seconds} s`;
      // A generous per-test bound: iterations are counted, never timed; this only ends a true hang.
      const timeout = seconds === undefined ? 900_000 : seconds * 1000 + 300_000;
      it(`${target.name}: ${target.about} (${what}, seed ${seed})`, async () => {
        const done = await runTarget(target, { seed, start, ...(count === undefined ? {} : { iterations: count }), ...(seconds === undefined ? {} : { seconds }) });
        if (count !== undefined) expect(done).toBe(count);
      }, timeout);
    }
  });
}
