// Both engines beside QEMU on the same ELFs, interleaved: each round runs every workload under the
// interpreter, the block compiler and qemu-system-riscv32 (TCG), each in its own process, one after the
// other, so the three see the same machine load. Needs dist/ (npm run build:ts) and the addon.
//   node bench/engines.mjs [--rounds N] [--workloads a,b] [--out file.json]
// lockstep MIPS: instret / the run() call's wall time. QEMU MIPS: lockstep's instret / (QEMU's whole
// process time less its startup, the median time of hello.elf in the same run).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Workloads around code nobody here wrote: Debian's picolibc and the Linux kernel's lib/ (guest/README.md).
const FOREIGN = ['libc', 'klib-lz4', 'klib-zlib', 'klib-sha256', 'klib-aes', 'klib-xxhash', 'klib-sort', 'klib-rbtree'];
// The programs the committed Linux guest's init can run as processes (lockstep.run=<w>).
const LINUX_WORKLOADS = ['hash', 'sort', 'crc32', 'recurse', 'mixed'];
const WORKLOADS = ['hash', 'sort', 'crc32', 'recurse', 'mixed', 'matmult', 'fsm', 'softfloat', 'libc', 'klib-lz4', 'klib-zlib', 'klib-sha256', 'klib-aes', 'klib-xxhash', 'klib-sort', 'klib-rbtree'];
const HELP = `Usage: npm run bench -- engines [options]   (or node bench/engines.mjs [options])

Runs each CPU workload under the interpreter, the block compiler and qemu-system-riscv32 -M virt (TCG),
interleaved round by round, checks that both engines end at the same instruction count and state hash,
and prints MIPS per workload and their geomean (medians over the rounds).

Options:
  --rounds N        rounds (default 3)
  --workloads a,b   workloads from guest/bin (default: ${WORKLOADS.join(',')})
  --out FILE        also write the figures and every trial as JSON
  --svg FILE        also draw them: MIPS per workload, the three side by side (not with --linux)
  --linux           instead: the first five workloads as processes of the committed Linux guest (paged
                    code, S- and U-mode), timed from the console's 'run <w>' line to its '<w> exited 0'
                    line on each engine and under QEMU TCG booting the same kernel (real clock); needs
                    bench/build (npm run bench compiles it)
  -h, --help        this help

Exit status: 0 done; 1 a run failed or the engines disagreed; 64 usage error.
`;
function usage(message) {
  process.stderr.write(`engines: ${message}\n\n${HELP}`);
  process.exit(64);
}
let values;
try {
  ({ values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, workloads: { type: 'string' }, out: { type: 'string' }, svg: { type: 'string' }, linux: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
} catch (e) {
  usage(e.message);
}
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) usage(`--rounds must be a positive integer, not ${values.rounds}`);
const workloads = values.workloads?.split(',') ?? (values.linux ? LINUX_WORKLOADS : WORKLOADS);
for (const w of workloads) {
  if (values.linux ? !LINUX_WORKLOADS.includes(w) : !existsSync(join(root, 'guest', 'bin', `${w}.elf`))) {
    usage(values.linux ? `no Linux workload ${w} (the guest's init runs ${LINUX_WORKLOADS.join(', ')})` : `no workload ${w} (guest/bin/${w}.elf)`);
  }
}
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

if (values.linux) {
  await linuxMode();
  process.exit(0);
}
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
// The same over the workloads around code nobody here wrote (picolibc, the kernel's lib/), when the run has some.
const foreign = rows.filter((r) => FOREIGN.includes(r.workload));
if (foreign.length > 0 && foreign.length < rows.length) {
  const f = { interp: geomean(foreign.map((r) => r.interp)), jit: geomean(foreign.map((r) => r.jit)), qemu: geomean(foreign.map((r) => r.qemu)) };
  g.foreign = f;
  console.log(line([`geomean of the ${foreign.length} nobody here wrote`, f.interp.toFixed(0), f.jit.toFixed(0), f.qemu.toFixed(0), (f.jit / f.interp).toFixed(2), (f.jit / f.qemu).toFixed(2), (f.interp / f.qemu).toFixed(2)]));
}
const qv = spawnSync(QEMU, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
console.log(`\n${rounds} interleaved rounds (medians); QEMU startup ${(qs * 1000).toFixed(0)} ms subtracted; ${qv}; ${cpus()[0]?.model} x${cpus().length}; load average ${load0.map((l) => l.toFixed(2)).join(' ')} at start, ${load1.map((l) => l.toFixed(2)).join(' ')} at end; node ${process.version}; ${new Date().toISOString()}`);
if (values.svg) {
  mkdirSync(dirname(values.svg), { recursive: true });
  writeFileSync(values.svg, chart(rows, g, `${cpus()[0]?.model.trim()} x${cpus().length} · load ${load0[0].toFixed(1)}–${load1[0].toFixed(1)} · ${rounds} rounds · ${new Date().toISOString().slice(0, 10)}`));
}
if (values.out) {
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, JSON.stringify({ date: new Date().toISOString(), qemu: qv, qemuStartupSeconds: qs, loadavg: { start: load0, end: load1 }, rounds, rows, geomean: g }, null, 2) + '\n');
}

// --linux: the workloads as Linux processes, on both engines and under QEMU booting the same kernel,
// interleaved per round; seconds between the console lines that bracket the process.
async function linuxMode() {
  const trial = join(root, 'bench', 'build', 'bench', 'src', 'linux-trial.js');
  if (!existsSync(trial)) usage(`${trial} is missing: run npm run bench -- engines --linux (it compiles bench/), or npx tsc -p bench/tsconfig.json`);
  const { committedLinux, COMMITTED_LINUX_APPEND } = await import(join(root, 'dist', 'index.js'));
  const tmp = mkdtempSync(join(tmpdir(), 'lockstep-engines-'));
  const linux = committedLinux();
  writeFileSync(join(tmp, 'Image'), linux.kernel);
  writeFileSync(join(tmp, 'rootfs.cpio'), linux.initrd);
  // QEMU's hart trimmed to lockstep's (guest/linux/README.md), so the kernel takes the same paths.
  const cpu = 'rv32,f=off,d=off,h=off,zba=off,zbb=off,zbc=off,zbs=off,sstc=off,Zihintpause=off';
  const qemuLinux = (w) => new Promise((resolve, reject) => {
    const args = ['-M', 'virt', '-cpu', cpu, '-m', '64M', '-nographic', '-monitor', 'none', '-serial', 'stdio', '-bios', join(root, 'guest', 'firmware', 'bin', 'firmware.elf'),
      '-kernel', join(tmp, 'Image'), '-initrd', join(tmp, 'rootfs.cpio'), '-append', `${COMMITTED_LINUX_APPEND} quiet lockstep.run=${w}`];
    const c = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    let begin, end;
    c.stdout.on('data', (d) => {
      const now = process.hrtime.bigint();
      out += d.toString('latin1').replaceAll('\r', ''); // CR LF (a chunk may end between them)
      if (begin === undefined && out.includes(`lockstep-linux: run ${w}\n`)) begin = now;
      if (end === undefined && out.includes(`lockstep-linux: ${w} exited 0\n`)) end = now;
    });
    c.on('error', reject);
    c.on('exit', () => (begin !== undefined && end !== undefined ? resolve(Number(end - begin) / 1e9) : reject(new Error(`qemu linux ${w}: no run/exit lines; console: ${out.slice(-400)}`))));
  });
  const ours = (w, engine) => {
    const r = spawnSync(process.execPath, [trial, 'cpu', w], { encoding: 'utf8', env: { ...process.env, LOCKSTEP_ENGINE: engine } });
    if (r.status !== 0) throw new Error(`linux ${w} ${engine}: ${r.stderr}`);
    const o = JSON.parse(r.stdout);
    if (o.engine !== engine) throw new Error(`linux ${w}: asked for ${engine}, ran ${o.engine}`);
    return o.seconds;
  };
  const load0 = loadavg();
  const t = new Map(workloads.map((w) => [w, { interp: [], jit: [], qemu: [] }]));
  try {
    for (let r = 1; r <= rounds; r++) {
      for (const w of workloads) {
        const x = t.get(w);
        x.interp.push(ours(w, 'interp'));
        x.jit.push(ours(w, 'jit'));
        x.qemu.push(await qemuLinux(w));
        process.stderr.write(`round ${r}/${rounds} ${w} as a Linux process: interp ${x.interp.at(-1).toFixed(3)} s, jit ${x.jit.at(-1).toFixed(3)} s, qemu ${x.qemu.at(-1).toFixed(3)} s\n`);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const load1 = loadavg();
  const rows = workloads.map((w) => {
    const x = t.get(w);
    return { workload: w, interp: median(x.interp), jit: median(x.jit), qemu: median(x.qemu), trials: x };
  });
  const g = { jitOverInterp: geomean(rows.map((r) => r.interp / r.jit)), jitOverQemu: geomean(rows.map((r) => r.qemu / r.jit)), interpOverQemu: geomean(rows.map((r) => r.qemu / r.interp)) };
  const line = (c) => `| ${c.join(' | ')} |`;
  console.log(line(['Workload (Linux process)', 'interp s', 'jit s', 'QEMU TCG s', 'jit speed / interp', 'jit speed / QEMU', 'interp speed / QEMU']));
  console.log(line(['---', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const r of rows) console.log(line([r.workload, r.interp.toFixed(3), r.jit.toFixed(3), r.qemu.toFixed(3), (r.interp / r.jit).toFixed(2), (r.qemu / r.jit).toFixed(2), (r.qemu / r.interp).toFixed(2)]));
  console.log(line(['**geomean**', '', '', '', g.jitOverInterp.toFixed(2), g.jitOverQemu.toFixed(2), g.interpOverQemu.toFixed(2)]));
  const qv = spawnSync(QEMU, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
  console.log(`\n${rounds} interleaved rounds (medians); console line to console line, real clock; ${qv}; ${cpus()[0]?.model} x${cpus().length}; load average ${load0.map((l) => l.toFixed(2)).join(' ')} at start, ${load1.map((l) => l.toFixed(2)).join(' ')} at end; node ${process.version}; ${new Date().toISOString()}`);
  if (values.out) {
    mkdirSync(dirname(values.out), { recursive: true });
    writeFileSync(values.out, JSON.stringify({ date: new Date().toISOString(), mode: 'linux', qemu: qv, loadavg: { start: load0, end: load1 }, rounds, rows, geomean: g }, null, 2) + '\n');
  }
}

// A grouped bar chart (SVG): per workload and for the geomeans, the interpreter, the block compiler and
// QEMU TCG in MIPS; bars above the scale (set by the compiler's and QEMU's geomeans) are cut and labelled.
function chart(rows, g, subtitle) {
  const groups = [...rows.map((r) => ({ label: r.workload, v: [r.interp, r.jit, r.qemu] })), { label: 'geomean', v: [g.interp, g.jit, g.qemu], bold: true }];
  if (g.foreign) groups.push({ label: 'nobody-here', v: [g.foreign.interp, g.foreign.jit, g.foreign.qemu], bold: true });
  const colors = ['#7a9cc6', '#1f4fa8', '#a0a0a0'];
  const names = ['interpreter', 'block compiler (jit)', 'qemu-system-riscv32 TCG'];
  const H = 420, left = 56, right = 20, top = 60, bottom = 86;
  const gw = 62, W = Math.max(720, left + right + groups.length * gw), plotH = H - top - bottom;
  const peak = Math.max(g.jit, g.qemu) * 2.2;
  const step = peak > 6000 ? 1000 : 500;
  const yMax = Math.ceil(peak / step) * step;
  const y = (v) => top + plotH - (Math.min(v, yMax) / yMax) * plotH;
  const esc = (t) => String(t).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const s = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`, `<rect width="${W}" height="${H}" fill="#fff"/>`];
  s.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">lockstep's engines and QEMU TCG: MIPS per workload (higher is better)</text>`);
  s.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`);
  for (let v = 0; v <= yMax; v += step) {
    s.push(`<line x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}" stroke="#e4e4e4"/><text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#444">${v}</text>`);
  }
  const bw = 16;
  const slot = (W - left - right) / groups.length;
  groups.forEach((grp, i) => {
    const cx = left + slot * i + slot / 2;
    grp.v.forEach((v, j) => {
      const x = cx - 1.5 * bw + j * bw;
      s.push(`<rect x="${x}" y="${y(v).toFixed(1)}" width="${bw - 2}" height="${(y(0) - y(v)).toFixed(1)}" fill="${colors[j]}"/>`);
      if (v > yMax) s.push(`<text x="${x + bw / 2 - 1}" y="${y(yMax) - 3}" text-anchor="middle" font-size="9">${Math.round(v)}</text>`);
    });
    s.push(`<text transform="translate(${cx + 4} ${y(0) + 10}) rotate(40)" fill="#222"${grp.bold ? ' font-weight="bold"' : ''}>${esc(grp.label)}</text>`);
  });
  s.push(`<line x1="${left}" x2="${W - right}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`);
  names.forEach((n, j) => s.push(`<rect x="${left + j * 190}" y="${H - 20}" width="12" height="12" fill="${colors[j]}"/><text x="${left + j * 190 + 17}" y="${H - 10}">${esc(n)}</text>`));
  s.push('</svg>');
  return s.join('\n') + '\n';
}
