// `npm run fuzz`: runs the fuzz targets of test/fuzz/ (through vitest, which compiles them) for a count
// or a time budget. A finding exits non-zero and prints the seed and the command that repeats it.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HELP = `Usage: npm run fuzz -- [options]

Fuzzes lockstep's input surfaces with seeded, repeatable inputs derived from the seed corpora in
test/fuzz/corpus/. Targets: elf (ELF loader), log (log reader, checkLog, replay), snapshot (restore),
frame (channel frames and messages), config (JSON/YAML configuration), device (generated guest
programs against every device), or all.

Options:
  --target <name|all>    which target (default all)
  --iterations <n>       iterations per target (default: the smoke counts in test/fuzz/fuzz.test.ts)
  --seconds <s>          a time budget per target instead of a count
  --seed <n>             run seed (default 1); every iteration derives its own input from it
  --start <n>            first iteration number (repeat a finding: --start <i> --iterations 1)
  --write-seeds          regenerate the generated seed corpora (after a format change)
  -h, --help             this help

Exit status: 0 no finding; 1 a finding (the report names target, seed, iteration and the command to
repeat it); 64 usage error.
`;

let values;
try {
  ({ values } = parseArgs({
    options: {
      target: { type: 'string' },
      iterations: { type: 'string' },
      seconds: { type: 'string' },
      seed: { type: 'string' },
      start: { type: 'string' },
      'write-seeds': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (err) {
  process.stderr.write(`fuzz: ${err.message}\n${HELP}`);
  process.exit(64);
}
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const targets = ['all', 'elf', 'log', 'snapshot', 'frame', 'config', 'device'];
const count = (name) => {
  const v = values[name];
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || (name !== 'start' && name !== 'seed' && Number(v) === 0)) {
    process.stderr.write(`fuzz: --${name} must be a ${name === 'start' || name === 'seed' ? 'non-negative' : 'positive'} integer, got '${v}'\n`);
    process.exit(64);
  }
  return v;
};
if (values.target !== undefined && !targets.includes(values.target)) {
  process.stderr.write(`fuzz: unknown target '${values.target}' (one of ${targets.join(', ')})\n`);
  process.exit(64);
}
if (values.iterations !== undefined && values.seconds !== undefined) {
  process.stderr.write('fuzz: give --iterations or --seconds, not both\n');
  process.exit(64);
}
const env = { ...process.env };
const set = (key, value) => {
  if (value !== undefined) env[key] = value;
};
set('LOCKSTEP_FUZZ_TARGET', values.target);
set('LOCKSTEP_FUZZ_ITERATIONS', count('iterations'));
set('LOCKSTEP_FUZZ_SECONDS', count('seconds'));
set('LOCKSTEP_FUZZ_SEED', count('seed'));
set('LOCKSTEP_FUZZ_START', count('start'));
if (values['write-seeds']) env.LOCKSTEP_FUZZ_WRITE_SEEDS = '1';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const progress = join(tmpdir(), `lockstep-fuzz-progress-${process.pid}.json`);
env.LOCKSTEP_FUZZ_PROGRESS = progress;
const r = spawnSync(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'test/fuzz/fuzz.test.ts'], { cwd: root, env, stdio: 'inherit' });
if (r.status !== 0 && existsSync(progress)) {
  // A finding that took the test process down (a crash, out of memory) could not report itself.
  const last = JSON.parse(readFileSync(progress, 'utf8'));
  process.stderr.write(
    `fuzz: the last iteration started was target '${last.target}', seed ${last.seed}, iteration ${last.iteration}; if the run died there, ` +
      `repeat it with: npm run fuzz -- --target ${last.target} --seed ${last.seed} --start ${last.iteration} --iterations 1\n`,
  );
}
rmSync(progress, { force: true });
process.exit(r.status ?? 1);
