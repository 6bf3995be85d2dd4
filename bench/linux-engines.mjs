// Both engines on the committed Linux guest, interleaved in one process: a boot to the user-space marker
// and power-off (`lockstep.run=` empty), or a boot plus one CPU workload run as a Linux process
// (`lockstep.run=<w>`), as bench/src/linux-trial.ts `count` runs them (64 MiB, virtual clock, so both
// engines retire the same instructions; the script checks that, and the state hash). Each round runs
// every workload under the interpreter, then the block compiler. Needs dist/ (npm run build:ts).
//   node bench/linux-engines.mjs [--rounds N] [--workloads ,sort,hash] [--out file.json]
// Reported: medians of process CPU time (user + system: the vCPU thread and node) and of wall time per
// run, and the share of instructions retired by compiled code (jitStats().instructions / instret).
import { writeFileSync } from 'node:fs';
import { loadavg, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { Machine, committedLinux, COMMITTED_LINUX_APPEND } = await import(join(root, 'dist', 'index.js'));
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, workloads: { type: 'string', default: ',sort,hash,crc32,recurse,mixed' }, out: { type: 'string' } } });
const rounds = Number(values.rounds);
const workloads = values.workloads.split(',');
const ENGINES = ['interp', 'jit'];
const loadStart = loadavg();

async function trial(workload, engine) {
  const m = new Machine({ memory: 64 << 20, clock: 'virtual', engine });
  try {
    m.loadLinux({ ...committedLinux(), append: `${COMMITTED_LINUX_APPEND} quiet lockstep.run=${workload}` });
    let text = '';
    m.on('console', (c) => { text += Buffer.from(c).toString('latin1'); });
    const cpu0 = process.cpuUsage();
    const wall0 = process.hrtime.bigint();
    const r = await m.run();
    const wall = Number(process.hrtime.bigint() - wall0) / 1e6;
    const cpu = process.cpuUsage(cpu0);
    const done = workload === '' ? 'lockstep-linux: init ready' : `lockstep-linux: ${workload} exited 0`;
    if (r.kind !== 'exit' || r.code !== 0 || !text.includes(done)) throw new Error(`${workload || 'boot'} on ${engine}: ${r.kind}; console: ${text.slice(-300)}`);
    const s = m.jitStats();
    return { instret: Number(r.instret), hash: m.stateHash().toString(), cpuMs: (cpu.user + cpu.system) / 1000, wallMs: wall, compiled: s ? s.instructions / Number(r.instret) : 0 };
  } finally {
    m.close();
  }
}

const runs = {};
for (let round = 1; round <= rounds; round++) {
  for (const w of workloads) {
    for (const e of ENGINES) {
      const t = await trial(w, e);
      (runs[`${w}/${e}`] ??= []).push(t);
      process.stderr.write(`round ${round}/${rounds} ${w || 'boot'} ${e}: ${t.cpuMs.toFixed(0)} ms\n`);
    }
  }
}
const median = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
const rows = workloads.map((w) => {
  const [i, j] = ENGINES.map((e) => runs[`${w}/${e}`]);
  if (i[0].instret !== j[0].instret || i[0].hash !== j[0].hash) throw new Error(`${w || 'boot'}: the engines disagree (instret ${i[0].instret} vs ${j[0].instret})`);
  const ic = median(i.map((t) => t.cpuMs)), jc = median(j.map((t) => t.cpuMs));
  const iw = median(i.map((t) => t.wallMs)), jw = median(j.map((t) => t.wallMs));
  return { workload: w || 'boot', instret: i[0].instret, interpCpuMs: ic, jitCpuMs: jc, cpuRatio: ic / jc, interpWallMs: iw, jitWallMs: jw, wallRatio: iw / jw, compiled: j[0].compiled };
});
console.log('| run (boot included) | guest instructions | interp | jit | jit / interp | run compiled |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.workload} | ${(r.instret / 1e6).toFixed(1)} M | ${r.interpCpuMs.toFixed(0)} ms | ${r.jitCpuMs.toFixed(0)} ms | ${r.cpuRatio.toFixed(2)}× | ${(100 * r.compiled).toFixed(1)} % |`);
const meta = { rounds, cpu: cpus()[0]?.model, cores: cpus().length, loadStart, loadEnd: loadavg(), node: process.version, date: new Date().toISOString() };
console.log(`\n${rounds} interleaved rounds (medians of CPU time); ${meta.cpu} x${meta.cores}; load ${loadStart.map((l) => l.toFixed(2)).join(' ')} at start, ${meta.loadEnd.map((l) => l.toFixed(2)).join(' ')} at end; ${meta.date}`);
if (values.out) writeFileSync(values.out, `${JSON.stringify({ ...meta, rows }, null, 2)}\n`);
