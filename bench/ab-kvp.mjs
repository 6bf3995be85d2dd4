// Interleaved A/B of the FT data path's CPU cost: kvserver with each half its own `lockstep` process
// (primary pinned to core 0, secondary and this load generator to core 1), this checkout against
// another built checkout (--other), and this checkout's plain VM, all offered the same request rate.
// Per trial and variant: CPU µs per request of each process and of each of its threads (by name, from
// /proc/<pid>/task/*/stat), system calls and context switches per request (perf stat on the whole
// process, raw_syscalls:sys_enter and context-switches), and the clients' p50. Medians of the trials.
//
// --rate 0: closed-loop clients (each variant at its own rate).
//   node bench/ab-kvp.mjs --other /tmp/main-checkout [--rate 3000] [--clients 32] [--trials 5] [--seconds 4] [--disk [--disk-mode separate]]
// --disk-mode separate: each half has its own copy of the image (vm.devices.disk.mode separate; the
// secondary's copy is filled by the clone), so the primary's writes are not outputs.
//
// Needs `npm run build:ts` in both checkouts, taskset, and perf (without it the system call columns are empty).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    other: { type: 'string' },
    rate: { type: 'string', default: '3000' },
    clients: { type: 'string', default: '32' },
    trials: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '4' },
    disk: { type: 'boolean', default: false },
    'disk-mode': { type: 'string', default: 'shared' },
    variants: { type: 'string', default: 'other,this,plain' },
    trace: { type: 'boolean', default: false },
    record: { type: 'boolean', default: false },
    events: { type: 'string' },
  },
});
const { LoadGenerator, KvClient } = await import(pathToFileURL(join(root, 'dist', 'index.js')).href);
const { launch, freeUdpPort } = await import(pathToFileURL(join(root, 'dist', 'cluster', 'agent', 'cli-process.js')).href);

const rate = Number(opt.rate);
const clients = Number(opt.clients);
const trials = Number(opt.trials);
const seconds = Number(opt.seconds);
const disk = opt.disk;
const diskMode = opt['disk-mode'];
if (diskMode !== 'shared' && diskMode !== 'separate') throw new Error(`--disk-mode: shared or separate, got ${diskMode}`);
const variants = opt.variants.split(',').filter((v) => v !== 'other' || opt.other);
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-ab-'));
const key = randomBytes(32);
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const guest = join(root, 'guest', 'bin', 'kvserver.elf');
const hasPerf = spawnSync('perf', ['stat', '-e', 'context-switches', '-x,', '--', 'true']).status === 0;
spawnSync('taskset', ['-pc', '1', String(process.pid)], { stdio: 'ignore' });

/** CPU µs of each thread of `pid`, by thread name (threads of one name summed). */
function threadCpu(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // exited
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out[name] = (out[name] ?? 0) + ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
  }
  return out;
}
/** CPU µs of the whole process (exited threads included). */
function processCpu(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
}
function perfStart(pid, file) {
  if (!hasPerf) return undefined;
  // --trace: system calls per thread and kind (perf trace -s; it slows the process down: no CPU figures then).
  // --record: perf record (cpu-clock) of each process into the trial's directory, kept (printed path).
  if (opt.record) return spawn('perf', ['record', '-e', 'cpu-clock', '-F', '4000', '-g', '-o', file.replace(/csv$/, 'data'), '-p', String(pid)], { stdio: 'ignore' });
  if (opt.trace) return spawn('perf', ['trace', '-s', '-o', file.replace(/csv$/, 'trace.txt'), '-p', String(pid)], { stdio: 'ignore' });
  // --events a,b,c: those events per thread instead (printed per request, by thread name).
  if (opt.events) return spawn('perf', ['stat', '--per-thread', '-e', opt.events, '-x,', '-o', file, '-p', String(pid)], { stdio: 'ignore' });
  return spawn('perf', ['stat', '-e', 'raw_syscalls:sys_enter,context-switches', '-x,', '-o', file, '-p', String(pid)], { stdio: 'ignore' });
}
async function perfStop(p, file) {
  if (!p) return {};
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGINT');
  await done;
  const out = {};
  if (opt.record) {
    const keep = join(tmpdir(), `lockstep-ab-${process.pid}-${file.split('/').slice(-2).join('-').replace(/csv$/, 'data')}`);
    execFileSync('cp', [file.replace(/csv$/, 'data'), keep]);
    console.log(`perf data: ${keep}`);
    return out;
  }
  if (opt.trace) {
    const t = file.replace(/csv$/, 'trace.txt');
    console.log(`---- ${t}\n${readFileSync(t, 'utf8')}`);
    return out;
  }
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const f = line.split(',');
    if (opt.events && f.length > 4 && /^\d+$/.test(f[1])) out[`${f[0].replace(/-\d+$/, '')} ${f[3]}`] = (out[`${f[0].replace(/-\d+$/, '')} ${f[3]}`] ?? 0) + Number(f[1]);
    else if (f.length > 3 && /^\d+$/.test(f[0])) out[f[2]] = Number(f[0]);
  }
  return out;
}

let n = 0;
async function trial(variant) {
  const dir = join(tmp, `${variant}-${n++}`);
  mkdirSync(join(dir, 'arbiter'), { recursive: true });
  const image = join(dir, 'kv.img');
  writeFileSync(image, Buffer.alloc(4 << 20));
  const port = await freeUdpPort();
  const cfg = join(dir, 'vm.json');
  const devices = { ...(disk ? { disk: { path: image, mode: diskMode } } : {}), net: { backend: 'udp', hostPort: port, guestPort: 11211 } };
  writeFileSync(cfg, JSON.stringify({ vm: { id: 'kv', guest, ramMiB: 16, clock: 'real', ...(disk ? {} : { append: 'kvserver.storage=memory' }), devices }, ft: { listen: '127.0.0.1:0', keyHex: key.toString('hex'), arbiter: { backend: 'file', dir: join(dir, 'arbiter') }, dataPath: 'native' } }));
  const procs = [];
  if (variant === 'plain') {
    const args = [join(root, 'dist', 'cli', 'main.js'), 'run', guest, '--clock', 'real', ...(disk ? ['--disk', image] : ['--append', 'kvserver.storage=memory']), '--net', `udp:${port}:11211`];
    procs.push({ name: 'plain', child: spawn('taskset', ['-c', '0', process.execPath, ...args], { stdio: 'ignore' }) });
    const c = new KvClient({ endpoints: [{ host: '127.0.0.1', port }], timeoutMs: 100, retries: 100 });
    await c.version();
    await c.close();
  } else {
    // The other checkout's CLI through sh (exec: the pid stays the one perf and /proc look at).
    const via = (core) =>
      variant === 'other'
        ? { prefix: ['taskset', '-c', String(core), 'sh', '-c', 'shift; exec "$0" "$LOCKSTEP_AB_CLI" "$@"'], env: { LOCKSTEP_AB_CLI: join(opt.other, 'dist', 'cli', 'main.js') } }
        : { prefix: ['taskset', '-c', String(core)] };
    const a = launch('primary', ['primary', cfg], () => {}, via(0));
    procs.push({ name: 'primary', child: a.child });
    const l = await a.wait('listening');
    // A separate disk: the secondary's own image (blank; the clone copies the primary's into it).
    const own = join(dir, 'kv-secondary.img');
    if (disk && diskMode === 'separate') writeFileSync(own, Buffer.alloc(4 << 20));
    const b = launch('secondary', ['secondary', cfg, '--join', `127.0.0.1:${String(l.port)}`, ...(disk && diskMode === 'separate' ? ['--disk', own] : [])], () => {}, via(1));
    procs.push({ name: 'secondary', child: b.child });
    await a.wait('status', (e) => e.protected === true);
  }
  const options = { endpoints: [{ host: '127.0.0.1', port }], clients, setRatio: 0.5, keys: 100, timeoutMs: 500, retries: 5, ratePerSecond: rate > 0 ? rate : undefined };
  await new LoadGenerator({ ...options, durationMs: 500 }).run();
  const perf = procs.map((p, i) => perfStart(p.child.pid, join(dir, `perf-${i}.csv`)));
  await new Promise((r) => setTimeout(r, 300)); // perf attached
  const before = procs.map((p) => ({ all: processCpu(p.child.pid), threads: threadCpu(p.child.pid) }));
  const res = await new LoadGenerator({ ...options, durationMs: seconds * 1000 }).run();
  const after = procs.map((p) => ({ all: processCpu(p.child.pid), threads: threadCpu(p.child.pid) }));
  const counts = [];
  for (let i = 0; i < procs.length; i++) counts.push(await perfStop(perf[i], join(dir, `perf-${i}.csv`)));
  for (const p of procs) p.child.kill('SIGKILL');
  const req = res.acknowledged;
  if (opt.events) {
    for (let i = 0; i < procs.length; i++) {
      const lines = Object.entries(counts[i]).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${(v / req).toFixed(2)}`);
      console.log(`  ${variant} ${procs[i].name} per request: ${lines.join(', ')}`);
    }
  }
  const row = { variant, rate: req / (res.elapsedMs / 1000), p50: res.latency.p50Ms, failed: res.failed, procs: {} };
  procs.forEach((p, i) => {
    const threads = {};
    for (const [t, us] of Object.entries(after[i].threads)) threads[t] = (us - (before[i].threads[t] ?? 0)) / req;
    row.procs[p.name] = { cpu: (after[i].all - before[i].all) / req, threads, syscalls: (counts[i]['raw_syscalls:sys_enter'] ?? NaN) / req, cs: (counts[i]['context-switches'] ?? NaN) / req };
  });
  return row;
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const rows = Object.fromEntries(variants.map((v) => [v, []]));
for (let t = 0; t < trials; t++) {
  for (const v of variants) {
    rows[v].push(await trial(v));
    process.stderr.write(`\r  trial ${t + 1}/${trials} ${v}      `);
  }
}
process.stderr.write('\n');
const load = execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).trim();
console.log(`kvserver ${disk ? `WAL on disk (${diskMode})` : 'in memory'}, ${clients} clients ${rate > 0 ? `all offered ${rate} req/s` : 'closed loop'}, ${seconds} s windows, median of ${trials} interleaved trials (load average now ${load})`);
const plainCpu = variants.includes('plain') ? median(rows.plain.map((r) => r.procs.plain.cpu)) : NaN;
const summary = {};
for (const v of variants) {
  const r = rows[v];
  const names = Object.keys(r[0].procs);
  const line = [`  ${v.padEnd(6)} ${median(r.map((x) => x.rate)).toFixed(0)} req/s, p50 ${median(r.map((x) => x.p50)).toFixed(2)} ms`];
  summary[v] = { rate: median(r.map((x) => x.rate)), p50Ms: median(r.map((x) => x.p50)) };
  for (const p of names) {
    const cpu = median(r.map((x) => x.procs[p].cpu));
    const threads = {};
    for (const t of new Set(r.flatMap((x) => Object.keys(x.procs[p].threads)))) threads[t] = median(r.map((x) => x.procs[p].threads[t] ?? 0));
    const sys = median(r.map((x) => x.procs[p].syscalls));
    const cs = median(r.map((x) => x.procs[p].cs));
    summary[v][p] = { cpuUsPerRequest: cpu, ratioToPlain: cpu / plainCpu, syscallsPerRequest: sys, contextSwitchesPerRequest: cs, threads };
    line.push(`    ${p}: ${cpu.toFixed(1)} µs/request (×${(cpu / plainCpu).toFixed(2)} plain), system calls ${sys.toFixed(2)}, context switches ${cs.toFixed(2)} per request`);
    line.push(`      threads (µs/request): ${Object.entries(threads).filter(([, us]) => us >= 0.5).sort((a, b) => b[1] - a[1]).map(([t, us]) => `${t} ${us.toFixed(1)}`).join(', ')}`);
  }
  console.log(line.join('\n'));
}
writeFileSync(join(tmp, '..', `lockstep-ab-${process.pid}.json`), JSON.stringify({ rate, clients, disk, diskMode, trials, summary, rows }, null, 2));
console.log(`(all trials: ${join(tmp, '..', `lockstep-ab-${process.pid}.json`)})`);
rmSync(tmp, { recursive: true, force: true });
process.exit(0);
