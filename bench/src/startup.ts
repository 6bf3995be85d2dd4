// `npm run bench -- startup`: how long a new user waits for a guest to start. `lockstep run hello.elf`
// timed from spawn to the guest's first instruction (the CLI reports the moment with
// LOCKSTEP_STARTUP_TIMING=1) and to its first console byte, beside `qemu-system-riscv32` (spawn to first
// console byte) and `node -e 0` (spawn to exit: the floor any Node CLI pays); interleaved trials, medians
// and ratios, one run.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Progress } from './progress.js';
import { QEMU, qemuArgs, qemuVersion } from './qemu.js';
import { GUEST_BIN, RESULTS_DIR, ROOT } from './paths.js';
import { median } from './stats.js';

const opts = parseArgs({ options: { trials: { type: 'string', default: '15' } } }).values;
const trials = Number(opts.trials);
if (!Number.isInteger(trials) || trials < 1) throw new Error(`--trials: a positive integer, got ${opts.trials}`);
const hello = join(GUEST_BIN, 'hello.elf');
const GUEST_START = /lockstep: guest starts at ([\d.]+) ms after process start \(time origin ([\d.]+)\)/;

/** Epoch milliseconds with sub-millisecond resolution: comparable with a child's reported time origin. */
const epochMs = (): number => performance.timeOrigin + performance.now();

interface Timing {
  /** Spawn to the first stdout byte (or to exit with `toExit`). */
  ms: number;
  /** From the child's LOCKSTEP_STARTUP_TIMING line: spawn to the guest's start, and the child's own count from its process start. */
  guestStart?: { fromSpawnMs: number; fromProcessStartMs: number };
}

/** Times one child; with `toExit` until it exits (status 0), otherwise until its first stdout byte (then it is killed). */
function timeTo(cmd: string, args: string[], options: { toExit?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Timing> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    let firstOutputMs: number | undefined;
    let settled = false;
    const spawnedAt = epochMs();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    const finish = (ms: number) => {
      if (settled) return;
      settled = true;
      const m = GUEST_START.exec(stderr);
      resolve(m ? { ms, guestStart: { fromSpawnMs: Number(m[2]) + Number(m[1]) - spawnedAt, fromProcessStartMs: Number(m[1]) } } : { ms });
    };
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
      // The timing line comes before the first console byte; wait for both before killing the child.
      if (firstOutputMs !== undefined && GUEST_START.test(stderr)) {
        finish(firstOutputMs);
        child.kill('SIGKILL');
      }
    });
    child.stdout.once('data', () => {
      if (options.toExit) return;
      firstOutputMs = epochMs() - spawnedAt;
      if (options.env?.['LOCKSTEP_STARTUP_TIMING'] !== '1' || GUEST_START.test(stderr)) {
        finish(firstOutputMs);
        child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (settled) return;
      if (options.toExit && code === 0) return finish(epochMs() - spawnedAt);
      if (firstOutputMs !== undefined) return finish(firstOutputMs);
      settled = true;
      reject(new Error(`${cmd} ${args.join(' ')} ended (${code ?? signal}) before its first output: ${stderr.trim()}`));
    });
  });
}

const haveQemu = qemuVersion() !== undefined;
const lockstepEnv = { ...process.env, LOCKSTEP_STARTUP_TIMING: '1' };
const samples = { nodeExit: [] as number[], guestStart: [] as number[], guestStartInProcess: [] as number[], lockstepFirstOutput: [] as number[], qemuFirstOutput: [] as number[] };
const progress = new Progress(trials);
for (let t = 1; t <= trials; t++) {
  progress.step(`trial ${t}/${trials}`);
  samples.nodeExit.push((await timeTo(process.execPath, ['-e', '0'], { toExit: true })).ms);
  const l = await timeTo(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'run', hello], { env: lockstepEnv });
  if (!l.guestStart) throw new Error('lockstep run printed no "guest starts at" line with LOCKSTEP_STARTUP_TIMING=1');
  samples.guestStart.push(l.guestStart.fromSpawnMs);
  samples.guestStartInProcess.push(l.guestStart.fromProcessStartMs);
  samples.lockstepFirstOutput.push(l.ms);
  if (haveQemu) samples.qemuFirstOutput.push((await timeTo(QEMU, qemuArgs(hello))).ms);
}
progress.log('');
const m = {
  nodeExit: median(samples.nodeExit),
  guestStart: median(samples.guestStart),
  guestStartInProcess: median(samples.guestStartInProcess),
  lockstepFirstOutput: median(samples.lockstepFirstOutput),
  qemuFirstOutput: haveQemu ? median(samples.qemuFirstOutput) : undefined,
};
const ratios = {
  guestStartOverNodeExit: m.guestStart / m.nodeExit,
  firstOutputOverQemu: m.qemuFirstOutput === undefined ? undefined : m.lockstepFirstOutput / m.qemuFirstOutput,
};
const load = loadavg()[0]!;
const ms = (x: number) => `${x.toFixed(1).padStart(7)} ms`;
console.log(`startup, median of ${trials} interleaved trials (node ${process.version}, load average ${load.toFixed(2)}; goal: guest start ≤ 100 ms on a quiet machine):`);
console.log(`  node -e 0, spawn to exit                              ${ms(m.nodeExit)}`);
console.log(`  lockstep run hello.elf, spawn to first instruction    ${ms(m.guestStart)}  (×${ratios.guestStartOverNodeExit.toFixed(2)} node -e 0; ${m.guestStartInProcess.toFixed(1)} ms after its process start)`);
console.log(`  lockstep run hello.elf, spawn to first console byte   ${ms(m.lockstepFirstOutput)}`);
if (m.qemuFirstOutput !== undefined) {
  console.log(`  ${QEMU} hello.elf, spawn to first console byte ${ms(m.qemuFirstOutput)}  (lockstep ×${ratios.firstOutputOverQemu!.toFixed(2)} QEMU)`);
} else {
  console.log(`  ${QEMU}: not found`);
}
writeFileSync(
  join(RESULTS_DIR, 'startup.json'),
  `${JSON.stringify({ trials, node: process.version, loadAverage: load, goalGuestStartMs: 100, medianMs: m, ratios, samplesMs: samples }, null, 2)}\n`,
);
