// Both engines beside QEMU on the same ELFs, interleaved: each round runs every workload under the
// interpreter, the block compiler and qemu-system-riscv32 (TCG), each in its own process, one after the
// other, so the three see the same machine load. Needs dist/ (npm run build:ts) and the addon.
//   node bench/engines.mjs [--rounds N] [--workloads a,b] [--out file.json]
// lockstep MIPS: instret / the run() call's wall time. QEMU MIPS: lockstep's instret / (QEMU's whole
// process time less its startup, the median time of hello.elf in the same run).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { loadavg, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const WORKLOADS = ['hash', 'sort', 'crc32', 'recurse', 'mixed', 'matmult', 'fsm', 'softfloat', 'klib-lz4', 'klib-zlib', 'klib-sha256', 'klib-aes', 'klib-xxhash', 'klib-sort', 'klib-rbtree'];
const HELP = `Usage: npm run bench -- engines [options]   (or node bench/engines.mjs [options])

Runs each CPU workload under the interpreter, the block compiler and qemu-system-riscv32 -M virt (TCG),
interleaved round by round, checks that both engines end at the same instruction count and state hash,
and prints MIPS per workload and their geomean (medians over the rounds).

Options:
  --rounds N        rounds (default 3)
  --workloads a,b   workloads from guest/bin (default: ${WORKLOADS.join(',')})
  --out FILE        also write the figures and every trial as JSON
  -h, --help        this help

Exit status: 0 done; 1 a run failed or the engines disagreed; 64 usage error.
`;
function usage(message) {
  process.stderr.write(`engines: ${message}\n\n${HELP}`);
  process.exit(64);
}
let values;
try {
  ({ values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, workloads: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }));
} catch (e) {
  usage(e.message);
}
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) usage(`--rounds must be a positive integer, not ${values.rounds}`);
const workloads = values.workloads?.split(',') ?? WORKLOADS;
for (const w of workloads) if (!existsSync(join(root, 'guest', 'bin', `${w}.elf`))) usage(`no workload ${w} (guest/bin/${w}.elf)`);
const QEMU = process.env.LOCKSTEP_QEMU ?? 'qemu-system-riscv32';
const elf = (w) => join(root, 'guest', 'bin', `${w}.elf`);

// One lockstep trial in a child process: prints { instret, seconds, jit }.
const TRIAL = `
import { Machine } from ${JSON.stringify(join(root, 'dist', 'index.js'))};
import { readFileSync } from 'node:fs';
const [path, engine] = process.argv.slice(1);
const m = new Machine({ memory: 64 << 20, clock: 'virtual', engine });
m.load(readFileSync(path));
const t = process.hrtime.bigint();
const r = await m.run();
const seconds = Number(process.hrtime.bigint() - t) / 1e9;
process.stdout.write(JSON.stringify({ kind: r.kind, instret: String(r.instret), hash: String(m.stateHash()), seconds, engine: m.engine }));
m.close();`;

function lockstep(w, engine) {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', TRIAL, elf(w), engine], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${w} ${engine}: ${r.stderr}`);
  const o = JSON.parse(r.stdout);
  if (o.engine !== engine) throw new Error(`${w}: asked for ${engine}, ran ${o.engine}`);
  return o;
}

function qemu(w) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const c = spawn(QEMU, ['-M', 'virt', '-bios', 'none', '-nographic', '-monitor', 'none', '-serial', 'stdio', '-kernel', elf(w)], { stdio: ['ignore', 'ignore', 'ignore'] });
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - start) / 1e9) : reject(new Error(`qemu ${w} exited ${code}`))));
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const geomean = (xs) => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);

const load0 = loadavg();
const runs = new Map(workloads.map((w) => [w, { interp: [], jit: [], qemu: [], instret: undefined, hash: undefined }]));
const startup = [];
await qemu('hello'); // page cache
for (let r = 1; r <= rounds; r++) {
  for (let i = 0; i < 3; i++) startup.push(await qemu('hello'));
  for (const w of workloads) {
    const x = runs.get(w);
    for (const engine of ['interp', 'jit']) {
      const o = lockstep(w, engine);
      if (x.instret !== undefined && (x.instret !== o.instret || x.hash !== o.hash)) throw new Error(`${w}: ${engine} ended elsewhere (${o.instret} ${o.hash} vs ${x.instret} ${x.hash})`);
      x.instret = o.instret;
      x.hash = o.hash;
      x[engine].push(Number(o.instret) / o.seconds / 1e6);
    }
    x.qemu.push(await qemu(w));
    process.stderr.write(`round ${r}/${rounds} ${w}: interp ${x.interp.at(-1).toFixed(0)}, jit ${x.jit.at(-1).toFixed(0)} MIPS, qemu ${x.qemu.at(-1).toFixed(3)} s\n`);
  }
}
const load1 = loadavg();
const qs = median(startup);
const rows = workloads.map((w) => {
  const x = runs.get(w);
  const qemuMips = x.qemu.map((s) => Number(x.instret) / Math.max(s - qs, 1e-3) / 1e6);
  return { workload: w, instret: Number(x.instret), interp: median(x.interp), jit: median(x.jit), qemu: median(qemuMips), trials: { interp: x.interp, jit: x.jit, qemuSeconds: x.qemu } };
});
const g = { interp: geomean(rows.map((r) => r.interp)), jit: geomean(rows.map((r) => r.jit)), qemu: geomean(rows.map((r) => r.qemu)) };
const line = (c) => `| ${c.join(' | ')} |`;
console.log(line(['Workload', 'interp MIPS', 'jit MIPS', 'QEMU TCG MIPS', 'jit / interp', 'jit / QEMU', 'interp / QEMU']));
console.log(line(['---', '---:', '---:', '---:', '---:', '---:', '---:']));
for (const r of rows) console.log(line([r.workload, r.interp.toFixed(0), r.jit.toFixed(0), r.qemu.toFixed(0), (r.jit / r.interp).toFixed(2), (r.jit / r.qemu).toFixed(2), (r.interp / r.qemu).toFixed(2)]));
console.log(line(['**geomean**', g.interp.toFixed(0), g.jit.toFixed(0), g.qemu.toFixed(0), (g.jit / g.interp).toFixed(2), (g.jit / g.qemu).toFixed(2), (g.interp / g.qemu).toFixed(2)]));
const qv = spawnSync(QEMU, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
console.log(`\n${rounds} interleaved rounds (medians); QEMU startup ${(qs * 1000).toFixed(0)} ms subtracted; ${qv}; ${cpus()[0]?.model} x${cpus().length}; load average ${load0.map((l) => l.toFixed(2)).join(' ')} at start, ${load1.map((l) => l.toFixed(2)).join(' ')} at end; node ${process.version}; ${new Date().toISOString()}`);
if (values.out) {
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, JSON.stringify({ date: new Date().toISOString(), qemu: qv, qemuStartupSeconds: qs, loadavg: { start: load0, end: load1 }, rounds, rows, geomean: g }, null, 2) + '\n');
}
