// `npm run bench -- record`: the cost of recording. For each CPU workload, plain and recorded trials
// alternate (each its own process, real clock, state hash every 2^26 instructions), then the log is
// replayed; reports overhead, log bandwidth against the 1 Gbit/s budget and replay speed. An idle
// guest (echo: 1 ms timer ticks) gives the per-tick log cost.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BUILD_DIR, GUEST_BIN, RESULTS_DIR, ROOT } from './paths.js';
import { Progress } from './progress.js';
import type { RecordTrial } from './record-trial.js';
import { median } from './stats.js';

const WORKLOADS = ['hash', 'sort', 'crc32', 'recurse', 'mixed'];
const BUDGET = 125_000_000; // bytes/s: the 1 Gbit/s logging budget

const { values: opts } = parseArgs({
  args: process.argv.slice(2),
  options: { trials: { type: 'string', default: '3' }, quick: { type: 'boolean' } },
});
const trials = opts.quick ? 1 : Number(opts.trials);
const cap = opts.quick ? '50000000' : undefined;
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-bench-record-'));
const progress = new Progress(WORKLOADS.length * trials * 3 + 2);

function trial(mode: RecordTrial['mode'], elf: string, log: string, max?: string): RecordTrial {
  const args = [join(BUILD_DIR, 'record-trial.js'), mode, elf, log, ...(max ? [max] : [])];
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`record trial ${mode} ${elf} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as RecordTrial;
}

interface Row {
  workload: string;
  instructions: number;
  plainMips: number;
  recordMips: number;
  overheadPercent: number;
  replayMips: number;
  logBytes: number;
  logBytesPerSecond: number;
  budgetFraction: number;
  trials: RecordTrial[];
}

const rows: Row[] = [];
try {
  for (const w of WORKLOADS) {
    const elf = join(GUEST_BIN, `${w}.elf`);
    const all: RecordTrial[] = [];
    for (let t = 1; t <= trials; t++) {
      const log = join(tmp, `${w}-${t}.log`);
      progress.step(`${w} trial ${t}/${trials}: plain`);
      all.push(trial('plain', elf, log, cap));
      progress.step(`${w} trial ${t}/${trials}: recording`);
      const rec = trial('record', elf, log, cap);
      all.push(rec);
      progress.step(`${w} trial ${t}/${trials}: replaying`);
      const rep = trial('replay', elf, log);
      if (rep.hash !== rec.hash) throw new Error(`${w}: replay state hash ${rep.hash} differs from the recording's ${rec.hash}`);
      all.push(rep);
    }
    const of = (mode: string) => all.filter((x) => x.mode === mode);
    const plain = median(of('plain').map((x) => x.seconds));
    const recorded = median(of('record').map((x) => x.seconds));
    const rec0 = of('record')[0]!;
    const logBps = median(of('record').map((x) => x.logBytes / x.seconds));
    const row: Row = {
      workload: w,
      instructions: Number(rec0.instret),
      plainMips: median(of('plain').map((x) => x.mips)),
      recordMips: median(of('record').map((x) => x.mips)),
      overheadPercent: (recorded / plain - 1) * 100,
      replayMips: median(of('replay').map((x) => x.mips)),
      logBytes: rec0.logBytes,
      logBytesPerSecond: logBps,
      budgetFraction: logBps / BUDGET,
      trials: all,
    };
    rows.push(row);
    progress.log(`  ${w.padEnd(8)} plain ${row.plainMips.toFixed(0)} MIPS, recorded ${row.recordMips.toFixed(0)} MIPS (${row.overheadPercent >= 0 ? '+' : ''}${row.overheadPercent.toFixed(2)} %), replay ${row.replayMips.toFixed(0)} MIPS, log ${(logBps / 1e3).toFixed(2)} kB/s`);
  }
  // Idle: echo sleeps in WFI between 1 ms timer interrupts for 200 ms.
  progress.step('echo (idle, 1 ms ticks): recording');
  const echoLog = join(tmp, 'echo.log');
  const idle = trial('record', join(GUEST_BIN, 'echo.elf'), echoLog);
  progress.step('echo: replaying');
  const idleReplay = trial('replay', join(GUEST_BIN, 'echo.elf'), echoLog);
  if (idleReplay.hash !== idle.hash) throw new Error('echo: replay state hash differs');
  progress.end();

  const table = [
    '| Workload | Instructions | plain MIPS | recorded MIPS | recording overhead | replay MIPS | log | log bandwidth | of the 1 Gbit/s budget |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.workload} | ${(r.instructions / 1e6).toFixed(1)} M | ${r.plainMips.toFixed(0)} | ${r.recordMips.toFixed(0)} | ${r.overheadPercent >= 0 ? '+' : ''}${r.overheadPercent.toFixed(2)} % | ${r.replayMips.toFixed(0)} | ${r.logBytes} B | ${(r.logBytesPerSecond / 1e3).toFixed(2)} kB/s | ${(r.budgetFraction * 100).toFixed(5)} % |`,
    ),
    `| echo (idle, 200 × 1 ms ticks) | ${(Number(idle.instret) / 1e3).toFixed(1)} k | | | | | ${idle.logBytes} B | ${((idle.logBytes / idle.seconds) / 1e3).toFixed(2)} kB/s = ${((idle.logBytes * 8) / idle.seconds / 1e6).toFixed(3)} Mbit/s | ${((idle.logBytes / idle.seconds / BUDGET) * 100).toFixed(4)} % |`,
  ].join('\n');
  const note =
    `Real clock, a state hash every 2^26 instructions, each trial its own process; overhead = median recorded run time / median plain run time − 1 ` +
    `(${trials} trial${trials === 1 ? '' : 's'} each, interleaved). Every replay reproduced its recording's final state hash. ` +
    `Idle: ${(idle.logBytes / 200).toFixed(0)} bytes of log per 1 ms timer tick (VMware FT: 180–340). ` +
    `Machine: ${cpus()[0]?.model ?? '?'}, ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(2)}.`;
  process.stdout.write(`\n${table}\n\n${note}\n`);
  const name = opts.quick ? 'record-quick' : 'record';
  writeFileSync(join(RESULTS_DIR, `${name}.json`), JSON.stringify({ date: new Date().toISOString(), loadavg: loadavg(), trials, rows, idle, idleReplay }, null, 2) + '\n');
  if (!opts.quick) writeFileSync(join(RESULTS_DIR, 'README-record-table.md'), `${table}\n\n${note}\n`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
