// The benchmark driver behind `npm run bench`: whole-guest trials (one process each) of lockstep and
// of qemu-system-riscv32 on the CPU workloads, then the tinybench micro-benchmarks; prints a table
// and writes bench/results/<name>.json, mips.svg and README-table.md.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { MicroResult } from './micro.js';
import { BUILD_DIR, GUEST_BIN, RESULTS_DIR, ROOT } from './paths.js';
import { Progress } from './progress.js';
import { qemuArgs, qemuVersion, timeQemu, type QemuTiming } from './qemu.js';
import { consoleReport, markdownTable, svgChart, ANCHORS, LIBRISCV_CITATION, type Context, type Overall, type WorkloadSummary } from './report.js';
import { geomean, max, median, min } from './stats.js';
import type { TrialResult } from './trial.js';

/**
 * The CPU workloads: the five first ones, three written here to stress what CoreMark and Embench stress
 * and the first five do not (load/store-heavy matrix loops, table-driven state machines, soft-float), and
 * eight around library code nobody here wrote (libc: Debian's picolibc; klib-*: the Linux kernel's lib/, see
 * guest/Makefile's KLIB_EXAMPLES).
 */
const WORKLOADS = [
  'hash', 'sort', 'crc32', 'recurse', 'mixed',
  'matmult', 'fsm', 'softfloat', 'libc',
  'klib-lz4', 'klib-zlib', 'klib-sha256', 'klib-aes', 'klib-xxhash', 'klib-sort', 'klib-rbtree',
];
const QUICK_BUDGET = 100_000_000;
/** QEMU startup samples (hello.elf) per trial round: it is subtracted from every QEMU time, so it gets more samples. */
const HELLO_PER_TRIAL = 3;

const HELP = `Usage: npm run bench -- [options]

  --trials N         trials per workload, each in its own process (default 3)
  --quick            smoke test: 1 trial, lockstep capped at ${QUICK_BUDGET / 1e6} M instructions, short micro runs;
                     writes only bench/results/quick.json
  --workloads a,b    subset of ${WORKLOADS.join(',')}
  --name NAME        results file bench/results/NAME.json (default: latest)
  --no-qemu          skip the QEMU comparison
  --no-micro         skip the tinybench micro-benchmarks
  -h, --help         this text
`;

const { values: opts } = parseArgs({
  options: {
    trials: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false },
    workloads: { type: 'string' },
    name: { type: 'string' },
    'no-qemu': { type: 'boolean', default: false },
    'no-micro': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const quick = opts.quick;
const trials = quick ? 1 : Number(opts.trials);
if (!Number.isInteger(trials) || trials < 1) throw new Error(`--trials must be a positive integer, got ${opts.trials}`);
const workloads = opts.workloads?.split(',').map((w) => w.trim()).filter(Boolean) ?? WORKLOADS;
for (const w of workloads) if (!existsSync(join(GUEST_BIN, `${w}.elf`))) throw new Error(`no guest/bin/${w}.elf`);
const name = opts.name ?? (quick ? 'quick' : 'latest');
if (!/^[\w.-]+$/.test(name)) throw new Error(`--name must be a plain file name, got ${name}`);

const elfPath = (w: string): string => join(GUEST_BIN, `${w}.elf`);
const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

function git(...args: string[]): string | undefined {
  const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Spawns one lockstep trial process and parses its JSON line. */
function lockstepTrial(workload: string, maxInstructions: number | undefined): Promise<TrialResult> {
  const args = [join(BUILD_DIR, 'trial.js'), elfPath(workload)];
  if (maxInstructions !== undefined) args.push(String(maxInstructions));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`lockstep trial ${workload} exited ${code}: ${err.trim()}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as TrialResult);
      } catch (e) {
        reject(new Error(`lockstep trial ${workload}: bad output ${JSON.stringify(out)}: ${String(e)}`));
      }
    });
  });
}

/** Runs micro.js in its own process, forwarding its progress to `onProgress`. */
function microSuite(onProgress: (task: string) => void): Promise<MicroResult[]> {
  const args = [join(BUILD_DIR, 'micro.js'), ...(quick ? ['--quick'] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    let err = '';
    let results: MicroResult[] | undefined;
    child.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line) as { progress?: string; results?: MicroResult[] };
        if (msg.progress !== undefined) onProgress(msg.progress);
        if (msg.results !== undefined) results = msg.results;
      }
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 || results === undefined) reject(new Error(`micro-benchmarks exited ${code}: ${err.trim()}`));
      else resolve(results);
    });
  });
}

/** Full-run instruction counts from earlier result files, by ELF sha256 (quick mode's QEMU needs them). */
function knownInstret(): Map<string, number> {
  const known = new Map<string, number>();
  const path = join(RESULTS_DIR, 'latest.json');
  if (!existsSync(path)) return known;
  try {
    const prev = JSON.parse(readFileSync(path, 'utf8')) as { workloads?: { elfSha256: string; instret?: number }[] };
    for (const w of prev.workloads ?? []) if (w.instret !== undefined) known.set(w.elfSha256, w.instret);
  } catch {
    // an unreadable old result only costs the quick-mode QEMU column
  }
  return known;
}

// ---- run ------------------------------------------------------------------------------------------

const qemu = opts['no-qemu'] ? undefined : qemuVersion();
if (!opts['no-qemu'] && qemu === undefined) process.stderr.write('bench: qemu-system-riscv32 not found; skipping the QEMU comparison\n');
const startedAt = new Date();
const loadavgStart = os.loadavg();
const steps = trials * (workloads.length * (qemu ? 2 : 1) + (qemu ? 1 : 0)) + (opts['no-micro'] ? 0 : 1);
const progress = new Progress(steps);

const lock = new Map<string, TrialResult[]>(workloads.map((w) => [w, []]));
const qemuRuns = new Map<string, QemuTiming[]>(workloads.map((w) => [w, []]));
const hello: QemuTiming[] = [];

if (qemu) await timeQemu(elfPath('hello')); // warm the page cache; not recorded
for (let t = 1; t <= trials; t++) {
  if (qemu) {
    progress.step(`trial ${t}/${trials}: QEMU startup (hello.elf ×${HELLO_PER_TRIAL})`);
    for (let i = 0; i < HELLO_PER_TRIAL; i++) hello.push(await timeQemu(elfPath('hello')));
  }
  for (const w of workloads) {
    progress.step(`trial ${t}/${trials}: ${w} under lockstep`);
    const r = await lockstepTrial(w, quick ? QUICK_BUDGET : undefined);
    if (!(r.kind === 'exit' && r.code === 0) && !(quick && r.kind === 'budget')) {
      throw new Error(`${w}: lockstep ended with ${JSON.stringify(r)}`);
    }
    lock.get(w)!.push(r);
    progress.log(`  ${w.padEnd(11)} lockstep trial ${t}: ${r.mips.toFixed(0)} MIPS (${(Number(r.instret) / 1e6).toFixed(1)} M instructions in ${r.seconds.toFixed(3)} s)`);
    if (qemu) {
      progress.step(`trial ${t}/${trials}: ${w} under QEMU`);
      const q = await timeQemu(elfPath(w));
      if (q.exitCode !== 0) throw new Error(`${w}: QEMU exited ${q.exitCode} (${qemuArgs(elfPath(w)).join(' ')})`);
      qemuRuns.get(w)!.push(q);
      progress.log(`  ${w.padEnd(11)} QEMU     trial ${t}: ${q.seconds.toFixed(3)} s whole process`);
    }
  }
}

let micro: MicroResult[] | undefined;
if (!opts['no-micro']) {
  progress.step('micro-benchmarks (tinybench)');
  micro = await microSuite((task) => progress.log(`  micro: ${task} done`));
}
progress.end();
const loadavgEnd = os.loadavg();

// ---- summarise ------------------------------------------------------------------------------------

const qemuStartup = hello.length > 0 ? median(hello.map((h) => h.seconds)) : undefined;
const known = quick ? knownInstret() : new Map<string, number>();
const summaries: WorkloadSummary[] = [];
const perWorkload = workloads.map((w) => {
  const runs = lock.get(w)!;
  const elfSha256 = sha256(elfPath(w));
  const counts = new Set(runs.filter((r) => r.kind === 'exit').map((r) => r.instret));
  if (counts.size > 1) throw new Error(`${w}: instruction count differs between trials: ${[...counts].join(', ')}`);
  const instret = counts.size === 1 ? Number([...counts][0]) : known.get(elfSha256);
  const mips = runs.map((r) => r.mips);
  const q = qemuRuns.get(w)!;
  const qemuNet = qemuStartup === undefined ? [] : q.map((x) => x.seconds - qemuStartup);
  const qemuMipsTrials = instret === undefined ? [] : qemuNet.map((s) => instret / s / 1e6);
  const qemuMips = qemuMipsTrials.length > 0 ? median(qemuMipsTrials) : undefined;
  const lockMedian = median(mips);
  const outputMatches = quick || q.length === 0 ? undefined
    : runs.every((r) => q.every((x) => x.stdoutSha256 === r.consoleSha256));
  if (outputMatches === false) progress.log(`WARNING: ${w}: console output differs between lockstep and QEMU`);
  const capped = runs.find((r) => r.kind === 'budget');
  summaries.push({
    name: w,
    instret,
    ...(capped ? { capped: Number(capped.instret) } : {}),
    lockstep: { median: lockMedian, min: min(mips), max: max(mips) },
    qemuMips,
    ratio: qemuMips === undefined ? undefined : lockMedian / qemuMips,
    outputMatches,
  });
  return { name: w, elf: `guest/bin/${w}.elf`, elfSha256, instret, lockstepTrials: runs, qemuTrials: q, qemuNetSeconds: qemuNet, qemuMipsTrials };
});

const ratios = summaries.map((s) => s.ratio).filter((r): r is number => r !== undefined);
const qemuMedians = summaries.map((s) => s.qemuMips).filter((r): r is number => r !== undefined);
const overall: Overall = {
  lockstepMedian: median(summaries.map((s) => s.lockstep.median)),
  qemuMedian: qemuMedians.length === summaries.length ? median(qemuMedians) : undefined,
  ratioMedian: ratios.length === summaries.length ? median(ratios) : undefined,
  lockstepGeomean: geomean(summaries.map((s) => s.lockstep.median)),
  qemuGeomean: qemuMedians.length === summaries.length ? geomean(qemuMedians) : undefined,
  ratioGeomean: ratios.length === summaries.length ? geomean(ratios) : undefined,
};

const cpus = os.cpus();
const ctx: Context = {
  date: startedAt.toISOString(),
  trials,
  quick,
  cpu: cpus[0]?.model.trim() ?? 'unknown CPU',
  cores: cpus.length,
  node: process.version,
  qemu,
  qemuStartupSeconds: qemuStartup,
  loadavg: loadavgStart,
};

process.stdout.write('\n' + consoleReport(ctx, summaries, overall, micro) + '\n');

mkdirSync(RESULTS_DIR, { recursive: true });
const dirty = git('status', '--porcelain', '--', 'native', 'src', 'binding.gyp');
const json = {
  about: 'lockstep benchmark results; written by bench/run.mjs (npm run bench). See bench/README.md for what is measured.',
  date: ctx.date,
  finished: new Date().toISOString(),
  mode: quick ? 'quick' : 'full',
  trials,
  quickBudget: quick ? QUICK_BUDGET : undefined,
  machine: {
    cpu: ctx.cpu,
    cores: ctx.cores,
    memoryBytes: os.totalmem(),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    qemu,
    loadavgStart,
    loadavgEnd,
  },
  git: { commit: git('rev-parse', 'HEAD'), uncommittedChangesInNativeOrSrc: dirty === undefined ? undefined : dirty.length > 0 },
  anchors: { ...ANCHORS, libriscvCitation: LIBRISCV_CITATION, source: '/work/shared/ANCHORS.md (Interpreters), issues 2 and 16' },
  method: {
    lockstep: 'one node process per trial; MIPS = instret / wall seconds of the awaited Machine.run() call (counters on), 64 MiB RAM, virtual clock',
    qemu: `${qemu ?? 'qemu-system-riscv32'} ${qemuArgs('<elf>').join(' ')}; whole-process wall time minus the median wall time of hello.elf (QEMU startup); MIPS = lockstep instret / that`,
  },
  qemuStartupSeconds: qemuStartup,
  qemuHelloTrials: hello,
  summary: { workloads: summaries, overall },
  workloads: perWorkload,
  micro,
};
const jsonPath = join(RESULTS_DIR, `${name}.json`);
writeFileSync(jsonPath, JSON.stringify(json, null, 2) + '\n');
const written = [jsonPath];
if (!quick) {
  writeFileSync(join(RESULTS_DIR, 'mips.svg'), svgChart(ctx, summaries, overall));
  writeFileSync(join(RESULTS_DIR, 'README-table.md'), markdownTable(ctx, summaries, overall, micro));
  written.push(join(RESULTS_DIR, 'mips.svg'), join(RESULTS_DIR, 'README-table.md'));
}
process.stderr.write(`bench: wrote ${written.map((p) => p.slice(ROOT.length + 1)).join(', ')}\n`);
