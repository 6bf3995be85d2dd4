// `npm run bench -- startup`: how long a new user waits for a guest to start. Spawn to the guest's first
// console byte of `lockstep run hello.elf`, beside the same for `qemu-system-riscv32` and spawn to exit
// of `node -e 0` (the floor any Node CLI pays); interleaved trials, medians, one run.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Progress } from './progress.js';
import { QEMU, qemuArgs, qemuVersion } from './qemu.js';
import { GUEST_BIN, RESULTS_DIR, ROOT } from './paths.js';
import { median } from './stats.js';

const opts = parseArgs({ options: { trials: { type: 'string', default: '15' } } }).values;
const trials = Number(opts.trials);
const hello = join(GUEST_BIN, 'hello.elf');

/** Milliseconds from spawn to the first stdout byte (or to exit when `toExit`); the child is then killed. */
function timeTo(cmd: string, args: string[], toExit = false): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    const ms = () => Number(process.hrtime.bigint() - start) / 1e6;
    let done = false;
    child.stdout.once('data', () => {
      if (toExit || done) return;
      done = true;
      resolve(ms());
      child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (done) return;
      done = true;
      if (toExit && code === 0) resolve(ms());
      else reject(new Error(`${cmd} ${args.join(' ')} ended (${code ?? signal}) before its first output`));
    });
  });
}

const haveQemu = qemuVersion() !== undefined;
const rows: Record<string, number[]> = { node: [], lockstep: [], qemu: [] };
const progress = new Progress(trials);
for (let t = 1; t <= trials; t++) {
  progress.step(`trial ${t}/${trials}`);
  rows.node!.push(await timeTo(process.execPath, ['-e', '0'], true));
  rows.lockstep!.push(await timeTo(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'run', hello]));
  if (haveQemu) rows.qemu!.push(await timeTo(QEMU, qemuArgs(hello)));
}
progress.log('');
const m = { node: median(rows.node!), lockstep: median(rows.lockstep!), qemu: haveQemu ? median(rows.qemu!) : undefined };
console.log(`startup, median of ${trials} interleaved trials (load average ${(await import('node:os')).loadavg()[0]!.toFixed(2)}):`);
console.log(`  node -e 0 (spawn to exit)                       ${m.node.toFixed(1).padStart(7)} ms`);
console.log(`  lockstep run hello.elf (spawn to first output)  ${m.lockstep.toFixed(1).padStart(7)} ms  (${(m.lockstep - m.node).toFixed(1)} ms over node -e 0; goal ≤ 100 ms)`);
if (m.qemu !== undefined) console.log(`  ${QEMU} hello.elf (spawn to first output) ${m.qemu.toFixed(1).padStart(7)} ms`);
else console.log(`  ${QEMU}: not found`);
writeFileSync(join(RESULTS_DIR, 'startup.json'), `${JSON.stringify({ trials, medianMs: m, samplesMs: rows }, null, 2)}\n`);
