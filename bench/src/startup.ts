// `npm run bench -- startup`: how long a new user waits for a guest to start. `lockstep run hello.elf`
// (the package's bin, dist/cli/lockstep.cjs) timed from spawn to the guest's first instruction (the CLI
// reports the moment and its CPU time so far with LOCKSTEP_STARTUP_TIMING=1) and to its first console
// byte; the same through the CLI's ES modules (`node dist/cli/main.js run`); beside `qemu-system-riscv32`
// (spawn to first console byte) and `node -e` (spawn to exit, and its CPU time at its one statement: the
// floor any Node CLI pays); interleaved trials, medians and ratios, one run.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
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
const GUEST_START = /lockstep: guest starts at ([\d.]+) ms after process start \(time origin ([\d.]+); ([\d.]+) ms of CPU\)/;
/** The `lockstep` executable as npm installs it. */
const BIN = join(ROOT, (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: { lockstep: string } }).bin.lockstep);
/** `node -e 0` that also says how much CPU the process used up to its statement (writeSync: no stream is opened). */
const NODE_FLOOR = "const c = process.cpuUsage(); require('node:fs').writeSync(2, `node cpu ${(c.user + c.system) / 1000}\\n`)";
const NODE_CPU = /node cpu ([\d.]+)/;

/** Epoch milliseconds with sub-millisecond resolution: comparable with a child's reported time origin. */
const epochMs = (): number => performance.timeOrigin + performance.now();

interface Timing {
  /** Spawn to the first stdout byte (or to exit with `toExit`). */
  ms: number;
  /** From the child's LOCKSTEP_STARTUP_TIMING line: spawn to the guest's start, the child's own count from its process start, its CPU time by then. */
  guestStart?: { fromSpawnMs: number; fromProcessStartMs: number; cpuMs: number };
  /** `node -e` NODE_FLOOR: its CPU time at its statement. */
  cpuMs?: number;
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
      const c = NODE_CPU.exec(stderr);
      resolve({
        ms,
        ...(m ? { guestStart: { fromSpawnMs: Number(m[2]) + Number(m[1]) - spawnedAt, fromProcessStartMs: Number(m[1]), cpuMs: Number(m[3]) } } : {}),
        ...(c ? { cpuMs: Number(c[1]) } : {}),
      });
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
const samples = {
  nodeExit: [] as number[],
  nodeCpu: [] as number[],
  guestStart: [] as number[],
  guestStartInProcess: [] as number[],
  guestStartCpu: [] as number[],
  lockstepFirstOutput: [] as number[],
  esmGuestStart: [] as number[],
  esmGuestStartCpu: [] as number[],
  qemuFirstOutput: [] as number[],
};
/** `lockstep run hello.elf` through `entry`, with its guest-start line. */
async function lockstepRun(entry: string): Promise<Timing & { guestStart: NonNullable<Timing['guestStart']> }> {
  const l = await timeTo(process.execPath, [entry, 'run', hello], { env: lockstepEnv });
  if (!l.guestStart) throw new Error(`${entry} run printed no "guest starts at" line with LOCKSTEP_STARTUP_TIMING=1`);
  return { ...l, guestStart: l.guestStart };
}
const progress = new Progress(trials);
for (let t = 1; t <= trials; t++) {
  progress.step(`trial ${t}/${trials}`);
  const n = await timeTo(process.execPath, ['-e', NODE_FLOOR], { toExit: true });
  if (n.cpuMs === undefined) throw new Error('node -e printed no CPU time');
  samples.nodeExit.push(n.ms);
  samples.nodeCpu.push(n.cpuMs);
  const l = await lockstepRun(BIN);
  samples.guestStart.push(l.guestStart.fromSpawnMs);
  samples.guestStartInProcess.push(l.guestStart.fromProcessStartMs);
  samples.guestStartCpu.push(l.guestStart.cpuMs);
  samples.lockstepFirstOutput.push(l.ms);
  const e = await lockstepRun(join(ROOT, 'dist', 'cli', 'main.js'));
  samples.esmGuestStart.push(e.guestStart.fromSpawnMs);
  samples.esmGuestStartCpu.push(e.guestStart.cpuMs);
  if (haveQemu) samples.qemuFirstOutput.push((await timeTo(QEMU, qemuArgs(hello))).ms);
}
progress.log('');
const m = {
  nodeExit: median(samples.nodeExit),
  nodeCpu: median(samples.nodeCpu),
  guestStart: median(samples.guestStart),
  guestStartInProcess: median(samples.guestStartInProcess),
  guestStartCpu: median(samples.guestStartCpu),
  lockstepFirstOutput: median(samples.lockstepFirstOutput),
  esmGuestStart: median(samples.esmGuestStart),
  esmGuestStartCpu: median(samples.esmGuestStartCpu),
  qemuFirstOutput: haveQemu ? median(samples.qemuFirstOutput) : undefined,
};
const ratios = {
  guestStartOverNodeExit: m.guestStart / m.nodeExit,
  guestStartCpuOverNodeCpu: m.guestStartCpu / m.nodeCpu,
  esmGuestStartOverNodeExit: m.esmGuestStart / m.nodeExit,
  firstOutputOverQemu: m.qemuFirstOutput === undefined ? undefined : m.lockstepFirstOutput / m.qemuFirstOutput,
};
const load = loadavg()[0]!;
const ms = (x: number) => `${x.toFixed(1).padStart(7)} ms`;
console.log(`startup, median of ${trials} interleaved trials (node ${process.version}, load average ${load.toFixed(2)}; goal: guest start ≤ 100 ms on a quiet machine):`);
console.log(`  node -e, spawn to exit                                 ${ms(m.nodeExit)}  (CPU ${m.nodeCpu.toFixed(1)} ms at its statement)`);
console.log(
  `  lockstep run hello.elf, spawn to first instruction     ${ms(m.guestStart)}  (×${ratios.guestStartOverNodeExit.toFixed(2)} node -e, +${(m.guestStart - m.nodeExit).toFixed(1)} ms; ${m.guestStartInProcess.toFixed(1)} ms after its process start; CPU ${m.guestStartCpu.toFixed(1)} ms, +${(m.guestStartCpu - m.nodeCpu).toFixed(1)})`,
);
console.log(`  lockstep run hello.elf, spawn to first console byte    ${ms(m.lockstepFirstOutput)}`);
console.log(
  `  node dist/cli/main.js run (ES modules), to first instr. ${ms(m.esmGuestStart)}  (×${ratios.esmGuestStartOverNodeExit.toFixed(2)} node -e, +${(m.esmGuestStart - m.nodeExit).toFixed(1)} ms; CPU ${m.esmGuestStartCpu.toFixed(1)} ms, +${(m.esmGuestStartCpu - m.nodeCpu).toFixed(1)})`,
);
if (m.qemuFirstOutput !== undefined) {
  console.log(`  ${QEMU} hello.elf, spawn to first console byte ${ms(m.qemuFirstOutput)}  (lockstep ×${ratios.firstOutputOverQemu!.toFixed(2)} QEMU)`);
} else {
  console.log(`  ${QEMU}: not found`);
}
writeFileSync(
  join(RESULTS_DIR, 'startup.json'),
  `${JSON.stringify({ trials, node: process.version, loadAverage: load, goalGuestStartMs: 100, medianMs: m, ratios, samplesMs: samples }, null, 2)}\n`,
);
