// `npm run bench -- linux`: the committed Linux guest. Boot time to the user-space marker, lockstep
// against QEMU TCG in the same run (each boot its own process, interleaved); the CPU workloads as Linux
// processes against the same programs on bare metal (interleaved trials, one process each); idle Linux's
// log bytes per timer tick; the clone pause of a running 64 MiB and 256 MiB Linux guest; and, with
// `--sections …,callgrind` (valgrind, about 20 minutes), the CPU workloads' host instructions as Linux
// processes against bare metal, which no load on the machine changes; with `--sections service` (root),
// kvd over TCP and UDP plain, recorded, as an FT pair and against memcached (linux-service.ts). Writes
// bench/results/linux.json and README-linux-table.md (the service: linux-service-<date>.txt and .json).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, getPriority, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { COMMITTED_LINUX_APPEND, FileArbiter, FtPrimary, FtSecondary, committedLinux, createVmMachine, type Machine, type VmSpec } from 'lockstep';
import type { LinuxCountTrial, LinuxCpuTrial, LinuxIdleTrial } from './linux-trial.js';
import { BUILD_DIR, GUEST_BIN, RESULTS_DIR, ROOT } from './paths.js';
import { Progress } from './progress.js';
import { QEMU, qemuVersion } from './qemu.js';
import { SERVICE_SECTION_TITLE, serviceBench, serviceSteps } from './linux-service.js';
import { median } from './stats.js';
import type { TrialResult } from './trial.js';

const WORKLOADS = ['hash', 'sort', 'crc32', 'recurse', 'mixed'];
const MARKER = 'lockstep-linux: init ready';
/** QEMU's hart trimmed to lockstep's (guest/linux/README.md), so the kernel takes the same paths. */
const QEMU_CPU = 'rv32,f=off,d=off,h=off,zba=off,zbb=off,zbc=off,zbs=off,sstc=off,Zihintpause=off';
/** Boot to the marker, then power off at once (no program to run). */
const BOOT_APPEND = `${COMMITTED_LINUX_APPEND} lockstep.run=`;
const IDLE_SECONDS = 5;
let pairs = 0; // names each clone's arbiter directory

const { values: opts } = parseArgs({
  args: process.argv.slice(2),
  options: { trials: { type: 'string', default: '3' }, quick: { type: 'boolean' }, sections: { type: 'string' } },
});
const trials = opts.quick ? 1 : Number(opts.trials);
if (!Number.isInteger(trials) || trials < 1) throw new Error(`--trials must be a positive integer, got ${opts.trials}`);
const sections = new Set((opts.sections ?? 'boot,cpu,idle,clone').split(','));
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-bench-linux-'));
const progress = new Progress(
  (sections.has('boot') ? 2 * trials : 0) + (sections.has('cpu') ? 2 * trials * WORKLOADS.length : 0) + (sections.has('idle') ? 1 : 0) + (sections.has('clone') ? 4 * trials : 0) + (sections.has('callgrind') ? 1 + 2 * WORKLOADS.length : 0) + (sections.has('service') ? serviceSteps(trials) : 0),
);

/** Spawns `cmd`, returns the wall seconds from spawn to the first console line containing the marker, and the exit code. */
function timeToMarker(cmd: string, args: string[]): Promise<{ seconds: number; exitCode: number | null }> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let seconds: number | undefined;
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString('latin1');
      if (seconds === undefined && out.includes(MARKER)) seconds = Number(process.hrtime.bigint() - start) / 1e9;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (seconds === undefined) return reject(new Error(`${cmd}: no marker (exit ${code}); console tail: ${out.slice(-500)}`));
      resolve({ seconds, exitCode: code });
    });
  });
}

let callgrindRuns = 0;
/**
 * Runs a trial script under `valgrind --tool=callgrind`: its JSON line, and the host instructions of
 * `Cpu::run` (inclusive: the interpreter, the MMU, devices; not node's startup or the JS side).
 */
function callgrindJson<T>(script: string, ...args: string[]): { result: T; hostInstructions: number } {
  const out = join(tmp, `callgrind-${callgrindRuns++}.out`);
  const r = spawnSync('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, join(BUILD_DIR, script), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 3_600_000 });
  if (r.status !== 0) throw new Error(`valgrind ${script} ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  const a = spawnSync('callgrind_annotate', ['--inclusive=yes', out], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const line = a.stdout.split('\n').find((l) => l.includes('lockstep::Cpu::run(unsigned long)'));
  if (a.status !== 0 || line === undefined) throw new Error(`callgrind_annotate ${out}: no Cpu::run in the profile: ${a.stderr}`);
  return { result: JSON.parse(r.stdout.trim().split('\n').pop()!) as T, hostInstructions: Number(line.trim().split(/\s+/)[0]!.replaceAll(',', '')) };
}

function trialJson<T>(script: string, ...args: string[]): T {
  const r = spawnSync(process.execPath, [join(BUILD_DIR, script), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${script} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

const results: Record<string, unknown> = { date: new Date().toISOString(), machine: `${cpus()[0]?.model ?? '?'}, ${cpus().length} cores`, trials };
const rows: string[] = [];
const notes: string[] = [];
try {
  if (sections.has('boot')) {
    const image = join(tmp, 'Image');
    const initrd = join(tmp, 'rootfs.cpio');
    const linux = committedLinux();
    writeFileSync(image, linux.kernel);
    writeFileSync(initrd, linux.initrd);
    const qemu = ['-M', 'virt', '-cpu', QEMU_CPU, '-m', '64M', '-nographic', '-monitor', 'none', '-serial', 'stdio', '-bios', join(ROOT, 'guest', 'firmware', 'bin', 'firmware.elf'), '-kernel', image, '-initrd', initrd, '-append', BOOT_APPEND];
    const lockstep = [join(ROOT, 'dist', 'cli', 'main.js'), 'run', '--linux', '--clock', 'real', '--append', BOOT_APPEND];
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let t = 1; t <= trials; t++) {
      progress.step(`boot ${t}/${trials}: lockstep`);
      ours.push((await timeToMarker(process.execPath, lockstep)).seconds);
      progress.step(`boot ${t}/${trials}: QEMU`);
      theirs.push((await timeToMarker(QEMU, qemu)).seconds);
    }
    const boot = { lockstepSeconds: ours, qemuSeconds: theirs, lockstepMedian: median(ours), qemuMedian: median(theirs), ratio: median(ours) / median(theirs), qemu: qemuVersion() };
    results.boot = boot;
    progress.log(`boot to the marker: lockstep ${boot.lockstepMedian.toFixed(3)} s, QEMU ${boot.qemuMedian.toFixed(3)} s (lockstep/QEMU ${boot.ratio.toFixed(2)}×)`);
    rows.push(`| Boot to \`${MARKER}\` (spawn to the console line; 64 MiB, real clock) | lockstep ${boot.lockstepMedian.toFixed(2)} s | QEMU TCG ${boot.qemuMedian.toFixed(2)} s | ${boot.ratio.toFixed(2)}× the time |`);
  }

  if (sections.has('cpu')) {
    const cpuRows: Record<string, unknown>[] = [];
    for (const w of WORKLOADS) {
      const bare: number[] = [];
      const linux: number[] = [];
      for (let t = 1; t <= trials; t++) {
        progress.step(`${w} ${t}/${trials}: bare metal`);
        const b = trialJson<TrialResult>('trial.js', join(GUEST_BIN, `${w}.elf`));
        if (b.kind !== 'exit') throw new Error(`${w}: bare-metal run ended with ${b.kind}`);
        bare.push(b.seconds);
        progress.step(`${w} ${t}/${trials}: Linux process`);
        linux.push(trialJson<LinuxCpuTrial>('linux-trial.js', 'cpu', w).seconds);
      }
      const ratio = median(bare) / median(linux);
      cpuRows.push({ workload: w, bareSeconds: bare, linuxSeconds: linux, ratio });
      progress.log(`  ${w.padEnd(8)} bare ${median(bare).toFixed(3)} s, as a Linux process ${median(linux).toFixed(3)} s: ${ratio.toFixed(2)}× the speed`);
    }
    results.cpu = cpuRows;
    const ratios = cpuRows.map((r) => r.ratio as number);
    rows.push(`| CPU workloads as Linux processes vs bare metal (wall time of the same program; goal ≥ 0.8×) | ${cpuRows.map((r) => `${String(r.workload)} ${(r.ratio as number).toFixed(2)}×`).join(', ')} | median ${median(ratios).toFixed(2)}× | |`);
  }

  if (sections.has('idle')) {
    progress.step(`idle Linux: ${IDLE_SECONDS} s at the shell, recorded`);
    const idle = trialJson<LinuxIdleTrial>('linux-trial.js', 'idle', String(IDLE_SECONDS));
    const perTick = idle.ticks > 0 ? idle.logBytes / idle.ticks : NaN;
    results.idle = { ...idle, bytesPerTick: perTick, ticksPerSecond: idle.ticks / idle.seconds, bytesPerSecond: idle.logBytes / idle.seconds };
    progress.log(`idle: ${idle.logBytes} B in ${idle.seconds.toFixed(1)} s, ${idle.ticks} ticks, ${idle.clockReads} clock reads: ${perTick.toFixed(0)} B per tick`);
    rows.push(`| Idle Linux at the shell, recorded (real clock) | ${perTick.toFixed(0)} B of log per timer tick | ${(idle.ticks / idle.seconds).toFixed(1)} ticks/s, ${(idle.logBytes / idle.seconds).toFixed(0)} B/s | VMware FT 180–340 B; bare echo guest 92 B |`);
  }

  if (sections.has('clone')) {
    const clones: Record<string, unknown>[] = [];
    for (const busy of [false, true]) {
      for (const mib of [64, 256]) {
        const runs: { pauseMs: number; pages: number; rounds: number; totalMs: number }[] = [];
        for (let t = 1; t <= trials; t++) {
          progress.step(`clone of a ${busy ? 'busy' : 'idle'} ${mib} MiB Linux guest ${t}/${trials}`);
          runs.push(await clonePause(mib, busy));
        }
        const pauses = runs.map((r) => r.pauseMs);
        clones.push({ mib, busy, pauseMs: median(pauses), maxPauseMs: Math.max(...pauses), runs });
        progress.log(`  ${mib} MiB, ${busy ? 'running sort' : 'idle at the shell'}: pause median ${median(pauses).toFixed(2)} ms, max ${Math.max(...pauses).toFixed(2)} ms (${pauses.map((p) => p.toFixed(1)).join(' ')}), ${runs[0]!.pages} pages in ${runs[0]!.rounds} rounds`);
      }
    }
    results.clone = clones;
    const cell = (mib: number) =>
      clones
        .filter((c) => c.mib === mib)
        .map((c) => `${(c.pauseMs as number).toFixed(1)} ms (max ${(c.maxPauseMs as number).toFixed(1)}) ${c.busy ? 'running sort' : 'idle'}`)
        .join(', ');
    rows.push(`| Clone pause of a running Linux guest (goal < 100 ms) | 64 MiB: ${cell(64)} | 256 MiB: ${cell(256)} | |`);
  }
  if (sections.has('callgrind')) {
    // The whole program as a process (exec, page faults, timer ticks, exit: the Linux run less a boot
    // that powers off at the marker) against the whole program on bare metal, both with the virtual
    // clock, so the kernel sees the tick rate of a full-speed run however slowly valgrind goes.
    progress.step('callgrind: Linux boot alone');
    const boot = callgrindJson<LinuxCountTrial>('linux-trial.js', 'count');
    const cgRows: { workload: string; bareGuestInstructions: number; bareHostInstructions: number; linuxGuestInstructions: number; linuxHostInstructions: number; ratio: number }[] = [];
    for (const w of WORKLOADS) {
      progress.step(`callgrind: ${w} on bare metal`);
      const bare = callgrindJson<TrialResult>('trial.js', join(GUEST_BIN, `${w}.elf`));
      progress.step(`callgrind: ${w} as a Linux process`);
      const linux = callgrindJson<LinuxCountTrial>('linux-trial.js', 'count', w);
      const linuxHost = linux.hostInstructions - boot.hostInstructions;
      const linuxGuest = Number(BigInt(linux.result.instret) - BigInt(boot.result.instret));
      const row = {
        workload: w,
        bareGuestInstructions: Number(bare.result.instret),
        bareHostInstructions: bare.hostInstructions,
        linuxGuestInstructions: linuxGuest,
        linuxHostInstructions: linuxHost,
        ratio: bare.hostInstructions / linuxHost,
      };
      cgRows.push(row);
      progress.log(`  ${w.padEnd(8)} bare ${(row.bareHostInstructions / row.bareGuestInstructions).toFixed(2)}, as a Linux process ${(linuxHost / linuxGuest).toFixed(2)} host instructions per guest instruction (${linuxGuest} guest instructions, bare ${row.bareGuestInstructions}): ${row.ratio.toFixed(2)}× the speed`);
    }
    results.callgrind = { boot: { guestInstructions: Number(boot.result.instret), hostInstructions: boot.hostInstructions }, workloads: cgRows };
    const ratios = cgRows.map((r) => r.ratio);
    rows.push(`| CPU workloads as Linux processes vs bare metal (host instructions of the whole program, callgrind; goal ≥ 0.8×) | ${cgRows.map((r) => `${r.workload} ${r.ratio.toFixed(2)}×`).join(', ')} | median ${median(ratios).toFixed(2)}× | |`);
    rows.push(`| Linux boot to \`${MARKER}\` and power-off (virtual clock, callgrind) | ${(boot.hostInstructions / Number(boot.result.instret)).toFixed(1)} host instructions per guest instruction | ${boot.result.instret} guest instructions | |`);
  }
  if (sections.has('service')) {
    const loadBefore = loadavg();
    const service = await serviceBench({ trials, quick: opts.quick === true, tmp, progress });
    progress.end();
    const day = new Date().toISOString().slice(0, 10);
    const note = `Measured on ${String(results.machine)}, ${day}, ${trials} round${trials === 1 ? '' : 's'} (medians; ratios against plain from the same round), windows of ${service.meta.windowMs / 1000} s after ${service.meta.warmupMs / 1000} s of warm-up, ${service.meta.pinned ? 'the VM, the primary and memcached pinned to core 0, the secondary and the load generator to core 1 (taskset)' : 'nothing pinned (no taskset)'}, niceness ${getPriority()}; load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${loadavg().map((x) => x.toFixed(2)).join(' ')} after.`;
    const text = `${SERVICE_SECTION_TITLE}\n\n${service.tables.join('\n\n')}\n\n${note}\n`;
    process.stdout.write(`\n${text}`);
    results.service = { ...service, loadavgBefore: loadBefore, loadavgAfter: loadavg() };
    if (!opts.quick) {
      writeFileSync(join(RESULTS_DIR, `linux-service-${day}.txt`), text);
      writeFileSync(join(RESULTS_DIR, 'linux-service.json'), `${JSON.stringify(results.service, null, 2)}\n`);
    }
  }
  progress.end();
  results.loadavg = loadavg();
  notes.push(
    `Measured on ${String(results.machine)}, load average ${loadavg()[0]!.toFixed(2)}, ${trials} trial${trials === 1 ? '' : 's'} per figure (medians), ${new Date().toISOString().slice(0, 10)}; ${QEMU}: ${qemuVersion() ?? 'not found'}.`,
  );
  const table = ['| Linux | lockstep | against | |', '|---|---|---|---|', ...rows].join('\n');
  if (rows.length > 0) process.stdout.write(`\n${table}\n\n${notes.join('\n')}\n`);
  const partial = !['boot', 'cpu', 'idle', 'clone'].every((s) => sections.has(s)) || opts.quick;
  writeFileSync(join(RESULTS_DIR, partial ? 'linux-partial.json' : 'linux.json'), `${JSON.stringify(results, null, 2)}\n`);
  if (!partial) writeFileSync(join(RESULTS_DIR, 'README-linux-table.md'), `${table}\n\n${notes.join('\n')}\n`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);

/**
 * An in-process FT pair around a running Linux guest (the secondary in this process too): the primary
 * boots alone to the shell (or into `sort`, repeated), then the secondary joins and the clone's final
 * pause is reported.
 */
async function clonePause(mib: number, busy: boolean) {
  const dir = join(tmp, `arb-${pairs++}`);
  mkdirSync(dir);
  const append = busy ? `${COMMITTED_LINUX_APPEND} quiet lockstep.run=${Array(20).fill('sort').join(',')}` : COMMITTED_LINUX_APPEND;
  const spec: VmSpec = { id: 'bench', memory: mib << 20, clock: 'real', append };
  const machine: Machine = createVmMachine(spec);
  machine.loadLinux({ ...committedLinux(), append });
  let out = '';
  const ready = new Promise<void>((resolve) =>
    machine.on('console', (c) => {
      out += Buffer.from(c).toString('latin1');
      if (out.includes(busy ? 'lockstep-linux: run sort' : '\n# ')) resolve();
    }),
  );
  const key = randomBytes(32);
  const primary = new FtPrimary({ machine, vmId: 'bench', key, arbiter: new FileArbiter({ dir }), hashInterval: 2 ** 26 });
  const addr = await primary.start();
  await ready;
  const cloned = new Promise<{ pauseMs: number; pages: number; rounds: number; totalMs: number }>((r) => primary.once('cloned', r));
  const secondary = new FtSecondary({ vmId: 'bench', key, arbiter: new FileArbiter({ dir }), join: addr, createMachine: () => createVmMachine(spec) });
  await secondary.start();
  const report = await cloned;
  if (busy && !out.includes('lockstep-linux: run sort')) throw new Error('the guest was not running sort');
  await primary.stop();
  await secondary.stop();
  machine.close();
  secondary.machine?.close();
  return report;
}
