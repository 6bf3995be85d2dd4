// Fault-tolerance benchmark: FT (record + ship + ack + output rule) against a plain run of the same guest
// in the same run — CPU workloads and kvserver under load — plus log bandwidth against the 1 Gbit/s
// budget, output-rule delay and secondary lag percentiles, failover outage over repeated SIGKILLs of the
// primary process, and the clone pause for 64 and 256 MiB guests.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FileArbiter, FtPrimary, FtSecondary, KvClient, LoadGenerator, Machine, attachVmNetwork, createVmMachine, parseElf, type VmSpec } from 'lockstep';
import { ROOT as root } from './paths.js';

// The CLI's process launcher, from the built package (the benchmark drives real `lockstep` processes).
const { launch, freeUdpPort } = (await import(pathToFileURL(join(root, 'dist', 'cluster', 'agent', 'cli-process.js')).href)) as typeof import('../../src/cluster/agent/cli-process.js');
const guest = (n: string) => join(root, 'guest', 'bin', `${n}.elf`);
const BUDGET = 125e6;
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-bench-ft-'));
const key = randomBytes(32);
const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
let pairs = 0;

/** An in-process pair around `spec` (the secondary in this process too: two vCPU threads). */
async function pair(spec: VmSpec, onPrimary: (p: FtPrimary) => void = () => {}, prepare: (m: Machine) => void = () => {}) {
  const dir = join(tmp, `arb-${pairs++}`);
  mkdirSync(dir);
  const machine = createVmMachine(spec);
  machine.load(readFileSync(spec.guest!));
  prepare(machine);
  const arbiter = new FileArbiter({ dir });
  const primary = new FtPrimary({ machine, vmId: 'bench', key, arbiter, hashInterval: 2 ** 26 });
  onPrimary(primary);
  const cloned = new Promise<void>((r) => primary.once('cloned', () => r()));
  const addr = await primary.start();
  const secondary = new FtSecondary({ vmId: 'bench', key, arbiter: new FileArbiter({ dir }), join: addr, createMachine: () => createVmMachine(spec) });
  await secondary.start();
  await cloned;
  return { primary, secondary, machine };
}

async function cpu(name: string) {
  const spec: VmSpec = { id: 'bench', guest: guest(name), memory: 64 << 20, clock: 'real' };
  const plain = createVmMachine(spec);
  plain.load(readFileSync(spec.guest!));
  let t = performance.now();
  const r0 = await plain.run();
  const plainMs = performance.now() - t;
  const instret = Number(r0.kind === 'exit' ? r0.instret : 0n);
  plain.close();
  // FT: the pair is formed before the guest has run far (the clone happens at start), then timed to the end.
  t = performance.now();
  const { primary, secondary, machine } = await pair(spec);
  const ended = new Promise<void>((r) => primary.once('ended', () => r()));
  await ended;
  const ftMs = performance.now() - t;
  const bytes = primary.stats().logBytes;
  await primary.stop();
  await secondary.stop();
  machine.close();
  secondary.machine?.close();
  return { name, instret, plainMips: instret / plainMs / 1000, ftMips: instret / ftMs / 1000, ratio: plainMs / ftMs, logBytesPerSecond: (bytes / ftMs) * 1000 };
}

async function kv(ft: boolean, seconds: number, clients: number) {
  // No disk: kvserver serves from memory only when told so.
  const spec: VmSpec = { id: 'bench', guest: guest('kvserver'), memory: 16 << 20, clock: 'real', append: 'kvserver.storage=memory', net: { backend: 'udp', hostPort: 0, guestPort: 11211 } };
  const releases: number[] = [];
  const acks: number[] = [];
  const lags: number[] = [];
  let close: () => Promise<void>;
  let port: number;
  let stats = () => ({ logBytes: 0 });
  if (ft) {
    const { primary, secondary, machine } = await pair(spec, (p) => {
      p.on('release', (ms) => releases.push(ms));
      p.on('ack', (ms) => acks.push(ms));
    });
    const net = await attachVmNetwork(machine, spec);
    port = net.port!;
    const timer = setInterval(() => lags.push(primary.stats().lagSeconds * 1000), 50);
    stats = () => primary.stats();
    close = async () => {
      clearInterval(timer);
      net.close();
      await primary.stop();
      await secondary.stop();
      machine.close();
      secondary.machine?.close();
    };
  } else {
    const machine = createVmMachine(spec);
    machine.load(readFileSync(spec.guest!));
    const net = await attachVmNetwork(machine, spec);
    port = net.port!;
    const run = machine.run();
    close = async () => {
      net.close();
      machine.stop();
      await run;
      machine.close();
    };
  }
  const load = new LoadGenerator({ endpoints: [{ host: '127.0.0.1', port }], clients, setRatio: 0.5, keys: 100, durationMs: seconds * 1000, timeoutMs: 500, retries: 5 });
  const before = stats().logBytes;
  const res = await load.run();
  const logBytes = stats().logBytes - before;
  await close();
  return { rate: res.acknowledged / (res.elapsedMs / 1000), p50: res.latency.p50Ms, p99: res.latency.p99Ms, logBytesPerSecond: logBytes / (res.elapsedMs / 1000), releases, acks, lags };
}

/** A kvserver VM config (disk image, free UDP port, file arbiter) in a fresh directory. */
async function kvConfig(name: string, disk = true): Promise<{ cfg: string; image: string; port: number }> {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'arbiter'), { recursive: true });
  const image = join(dir, 'kv.img');
  writeFileSync(image, Buffer.alloc(4 << 20));
  const port = await freeUdpPort();
  const cfg = join(dir, 'vm.json');
  writeFileSync(cfg, JSON.stringify({ vm: { id: 'kv', guest: guest('kvserver'), ramMiB: 16, clock: 'real', ...(disk ? {} : { append: 'kvserver.storage=memory' }), devices: { ...(disk ? { disk: { path: image } } : {}), net: { backend: 'udp', hostPort: port, guestPort: 11211 } } }, ft: { listen: '127.0.0.1:0', keyHex: key.toString('hex'), arbiter: { backend: 'file', dir: join(dir, 'arbiter') } } }));
  return { cfg, image, port };
}

/** kvserver throughput with each side in its own process (as on separate hosts), the load in this one. */
async function kvProcesses(ft: boolean, seconds: number, clients: number, disk: boolean) {
  const { cfg, image, port } = await kvConfig(`kvp-${ft}-${clients}-${disk}`, disk);
  const procs = [];
  if (ft) {
    const a = launch('a', ['primary', cfg]);
    procs.push(a);
    const l = await a.wait('listening');
    procs.push(launch('b', ['secondary', cfg, '--join', `127.0.0.1:${String(l.port)}`]));
    await a.wait('status', (e) => e.protected === true);
  } else {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'run', guest('kvserver'), '--clock', 'real', ...(disk ? ['--disk', image] : ['--append', 'kvserver.storage=memory']), '--net', `udp:${port}:11211`], { stdio: 'ignore' });
    procs.push({ child });
    const c = new KvClient({ endpoints: [{ host: '127.0.0.1', port }], timeoutMs: 100, retries: 100 });
    await c.version();
    await c.close();
  }
  const load = new LoadGenerator({ endpoints: [{ host: '127.0.0.1', port }], clients, setRatio: 0.5, keys: 100, durationMs: seconds * 1000, timeoutMs: 500, retries: 5 });
  const res = await load.run();
  for (const p of procs) p.child.kill('SIGKILL');
  return { rate: res.acknowledged / (res.elapsedMs / 1000), p50: res.latency.p50Ms, p99: res.latency.p99Ms };
}

/**
 * Client-visible outage of a fault: a client sets one key in a loop; `inject` is called after a short
 * random while, `recovered` resolves when the new primary is live. The outage is the longest silence
 * between two answers after the injection (a request in flight then may still be answered by the old
 * primary). Closes the client.
 */
async function measureOutage(c: KvClient, inject: () => void, recovered: () => Promise<unknown>): Promise<number> {
  let stop = false;
  let at = 0;
  let outage = 0;
  let last = performance.now();
  const loop = (async () => {
    while (!stop) {
      await c.set('k', 'v');
      const now = performance.now();
      if (at > 0 && now > at && now - last > outage) outage = now - last;
      last = now;
    }
  })();
  await new Promise((r) => setTimeout(r, 300 + Math.random() * 300));
  at = performance.now();
  inject();
  await recovered();
  await new Promise((r) => setTimeout(r, 200)); // answers from the new primary
  stop = true;
  await loop;
  await c.close();
  return outage;
}

/**
 * Host loss: the primary process is frozen (SIGSTOP: no heartbeat, no closed socket, as a dead host or a
 * cut cable), so only the detection timeout notices. Each side serves its own UDP port (the frozen one
 * keeps its port); the client fails over between the two.
 */
async function hostLossOutages(n: number, timeoutMs: number) {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const { cfg, port: pPort } = await kvConfig(`stop-${timeoutMs}-${i}`);
    const json = JSON.parse(readFileSync(cfg, 'utf8')) as { vm: { devices: { net: { hostPort: number } } }; ft: Record<string, unknown> };
    json.ft.timeoutMs = timeoutMs;
    json.ft.heartbeatMs = Math.max(10, Math.floor(timeoutMs / 6));
    writeFileSync(cfg, JSON.stringify(json));
    const { port: sPort } = await kvConfig(`stop-${timeoutMs}-${i}-port`);
    json.vm.devices.net.hostPort = sPort;
    const cfgB = cfg.replace(/vm\.json$/, 'vm-b.json');
    writeFileSync(cfgB, JSON.stringify(json));
    const a = launch('a', ['primary', cfg]);
    const l = await a.wait('listening');
    const b = launch('b', ['secondary', cfgB, '--join', `127.0.0.1:${String(l.port)}`]);
    await a.wait('status', (e) => e.protected === true);
    const c = new KvClient({ endpoints: [{ host: '127.0.0.1', port: pPort }, { host: '127.0.0.1', port: sPort }], timeoutMs: 20, retries: 1000, backoff: { initialMs: 0, maxMs: 0 } });
    const outage = await measureOutage(c, () => a.child.kill('SIGSTOP'), () => b.wait('go-live', undefined, 30_000));
    a.child.kill('SIGKILL');
    b.child.kill('SIGKILL');
    out.push(outage);
    process.stderr.write(`\r  host loss (timeout ${timeoutMs} ms) ${i + 1}/${n}: ${outage.toFixed(1)} ms   `);
  }
  process.stderr.write('\n');
  return out;
}

async function outages(n: number) {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const { cfg, port: s } = await kvConfig(`kill-${i}`);
    const a = launch('a', ['primary', cfg]);
    const l = await a.wait('listening');
    const b = launch('b', ['secondary', cfg, '--join', `127.0.0.1:${String(l.port)}`]);
    await a.wait('status', (e) => e.protected === true);
    const c = new KvClient({ endpoints: [{ host: '127.0.0.1', port: s }], timeoutMs: 20, retries: 500, backoff: { initialMs: 0, maxMs: 0 } });
    const outage = await measureOutage(c, () => a.child.kill('SIGKILL'), () => b.wait('go-live'));
    b.child.kill('SIGKILL');
    out.push(outage);
    process.stderr.write(`\r  failover ${i + 1}/${n}: ${outage.toFixed(1)} ms   `);
  }
  process.stderr.write('\n');
  return out;
}

/**
 * Lag control against a secondary that replays at a fifth of full speed (as on a host with four times
 * the load), target 50 ms, maximum 300 ms: the lockstep interval the primary measures and its throttle.
 * These wall-clock figures live here, not in the tests (test/ft/lag.test.ts asserts the mechanism).
 */
async function slowSecondaryLag() {
  const spec: VmSpec = { id: 'bench', guest: guest('mixed'), memory: 64 << 20, clock: 'real' };
  const dir = join(tmp, `arb-${pairs++}`);
  mkdirSync(dir);
  const machine = createVmMachine(spec);
  machine.load(readFileSync(spec.guest!));
  const primary = new FtPrimary({ machine, vmId: 'bench', key, arbiter: new FileArbiter({ dir }), lagTargetMs: 50, maxLagMs: 300, heartbeatMs: 20 });
  const cloned = new Promise<void>((r) => primary.once('cloned', () => r()));
  const addr = await primary.start();
  const secondary = new FtSecondary({ vmId: 'bench', key, arbiter: new FileArbiter({ dir }), join: addr, heartbeatMs: 20, replayThrottle: 0.8, createMachine: () => createVmMachine(spec) });
  await secondary.start();
  await cloned;
  const lags: number[] = [];
  const throttles: number[] = [];
  const timer = setInterval(() => {
    const st = primary.stats();
    if (!st.status.protected) return;
    lags.push(st.lagSeconds * 1000);
    throttles.push(st.throttle);
  }, 20);
  await new Promise<void>((r) => primary.once('ended', () => r()));
  clearInterval(timer);
  await primary.stop();
  await secondary.stop();
  machine.close();
  secondary.machine?.close();
  return { lagMs: { p50: pct(lags, 50), p90: pct(lags, 90), p99: pct(lags, 99) }, throttle: { p50: pct(throttles, 50), max: Math.max(...throttles) }, samples: lags.length };
}

async function clonePause(mib: number, workload: string) {
  // A guest that keeps writing memory while the clone runs: the pause covers its last dirty pages.
  // `mixed` dirties a few pages; `memtouch` a word of every page of 48 MiB, over and over (the worst case).
  const spec: VmSpec = { id: 'bench', guest: guest(workload), memory: mib << 20, clock: 'real' };
  let report: { pauseMs: number; pages: number; rounds: number; totalMs: number } | undefined;
  // memtouch runs until stopped here (its round count is a patchable variable).
  const endless = (m: Machine) => {
    const sym = parseElf(readFileSync(spec.guest!), { base: 0x8000_0000, size: spec.memory }).symbols.get('memtouch_rounds');
    if (sym !== undefined) m.writeMemory(sym, Uint8Array.of(0xff, 0xff, 0xff, 0x7f));
  };
  const { primary, secondary, machine } = await pair(spec, (p) => p.once('cloned', (r) => (report = r)), endless);
  await primary.stop();
  await secondary.stop();
  machine.close();
  secondary.machine?.close();
  return report!;
}

const results: Record<string, unknown> = { date: new Date().toISOString() };
// LOCKSTEP_BENCH_SECTIONS=cpu,kv,kvp,failover,clone runs a subset (results.json then holds only those).
const ALL_SECTIONS = ['cpu', 'kv', 'kvp', 'lag', 'failover', 'hostloss', 'clone'];
const sections = new Set((process.env.LOCKSTEP_BENCH_SECTIONS ?? ALL_SECTIONS.join(',')).split(','));
if (sections.has('cpu')) {
console.log('FT overhead, CPU-bound (primary and secondary on this 2-core machine)');
const cpuRows = [];
const TRIALS = Number(process.env.LOCKSTEP_BENCH_TRIALS ?? 5);
for (const w of ['hash', 'sort', 'crc32', 'mixed']) {
  // Plain and FT alternate, trial by trial, so both see the same machine; the median ratio is reported.
  const trials = [];
  for (let i = 0; i < TRIALS; i++) trials.push(await cpu(w));
  const ratios = trials.map((t) => t.ratio);
  const med = trials.find((t) => t.ratio === pct(ratios, 50))!;
  const r = { ...med, trials: ratios };
  cpuRows.push(r);
  console.log(
    `  ${w.padEnd(8)} plain ${r.plainMips.toFixed(0)} MIPS  FT ${r.ftMips.toFixed(0)} MIPS  ratio ${r.ratio.toFixed(3)} (median of ${TRIALS}: ${ratios.map((x) => x.toFixed(2)).join(' ')})  log ${(r.logBytesPerSecond / 1e3).toFixed(1)} kB/s = ${((100 * r.logBytesPerSecond) / BUDGET).toFixed(4)} % of budget`,
  );
}
results.cpu = cpuRows;
}
if (sections.has('kv')) {
const kvRuns: Record<string, unknown>[] = [];
for (const clients of [4, 32]) {
console.log(`kvserver under load (${clients} closed-loop clients, 50 % sets, 3 s)`);
const plainKv = await kv(false, 3, clients);
const ftKv = await kv(true, 3, clients);
kvRuns.push({
  clients,
  plainRate: plainKv.rate,
  ftRate: ftKv.rate,
  ratio: ftKv.rate / plainKv.rate,
  plainP50Ms: plainKv.p50,
  ftP50Ms: ftKv.p50,
  ftP99Ms: ftKv.p99,
  logBytesPerSecond: ftKv.logBytesPerSecond,
  outputRuleDelayMs: { p50: pct(ftKv.releases, 50), p99: pct(ftKv.releases, 99), n: ftKv.releases.length },
  ackLatencyMs: { p50: pct(ftKv.acks, 50), p99: pct(ftKv.acks, 99) },
  lagMs: { p50: pct(ftKv.lags, 50), p99: pct(ftKv.lags, 99) },
});
console.log(
  `  plain ${plainKv.rate.toFixed(0)} req/s  FT ${ftKv.rate.toFixed(0)} req/s  ratio ${(ftKv.rate / plainKv.rate).toFixed(3)}  log ${(ftKv.logBytesPerSecond / 1e6).toFixed(2)} MB/s = ${((100 * ftKv.logBytesPerSecond) / BUDGET).toFixed(2)} % of budget`,
);
console.log(`  latency p50 plain ${plainKv.p50.toFixed(3)} ms, FT ${ftKv.p50.toFixed(3)} ms; output-rule delay p50 ${pct(ftKv.releases, 50).toFixed(3)} ms p99 ${pct(ftKv.releases, 99).toFixed(3)} ms; secondary lag p50 ${pct(ftKv.lags, 50).toFixed(2)} ms p99 ${pct(ftKv.lags, 99).toFixed(2)} ms`);
}
results.kvserver = kvRuns;
}
if (sections.has('kvp')) {
const procRuns: Record<string, unknown>[] = [];
for (const [clients, disk] of [[4, true], [32, true], [4, false], [32, false]] as const) {
  const plain = await kvProcesses(false, 3, clients, disk);
  const withFt = await kvProcesses(true, 3, clients, disk);
  procRuns.push({ clients, disk, plainRate: plain.rate, ftRate: withFt.rate, ratio: withFt.rate / plain.rate, plainP50Ms: plain.p50, ftP50Ms: withFt.p50, ftP99Ms: withFt.p99 });
  console.log(
    `kvserver ${disk ? 'with its WAL on disk (sync writes)' : 'in memory'}, each side its own process, ${clients} clients: plain ${plain.rate.toFixed(0)} req/s, FT ${withFt.rate.toFixed(0)} req/s, ratio ${(withFt.rate / plain.rate).toFixed(3)}; p50 ${plain.p50.toFixed(3)} → ${withFt.p50.toFixed(3)} ms`,
  );
}
results.kvserverProcesses = procRuns;
}
if (sections.has('lag')) {
  console.log('lag control: a secondary replaying at 20 % speed (target 50 ms, maximum 300 ms)');
  const l = await slowSecondaryLag();
  results.lag = l;
  console.log(`  lockstep interval p50 ${l.lagMs.p50.toFixed(0)} ms p90 ${l.lagMs.p90.toFixed(0)} ms p99 ${l.lagMs.p99.toFixed(0)} ms; throttle p50 ${l.throttle.p50.toFixed(2)}, max ${l.throttle.max.toFixed(2)}`);
}
if (sections.has('failover')) {
const n = Number(process.env.LOCKSTEP_BENCH_KILLS ?? 10);
console.log(`failover outage over ${n} SIGKILLs of the primary process (default 600 ms detection timeout; a killed process closes its socket)`);
const o = await outages(n);
results.failover = { n, p50Ms: pct(o, 50), p99Ms: pct(o, 99), samples: o };
console.log(`  outage p50 ${pct(o, 50).toFixed(1)} ms  p99 ${pct(o, 99).toFixed(1)} ms`);
}
if (sections.has('hostloss')) {
  const rows: Record<string, unknown>[] = [];
  for (const timeoutMs of [600, 150]) {
    const o = await hostLossOutages(Number(process.env.LOCKSTEP_BENCH_KILLS ?? 10), timeoutMs);
    rows.push({ timeoutMs, p50Ms: pct(o, 50), p99Ms: pct(o, 99), samples: o });
    console.log(`host loss (primary frozen), detection timeout ${timeoutMs} ms: outage p50 ${pct(o, 50).toFixed(1)} ms  p99 ${pct(o, 99).toFixed(1)} ms`);
  }
  results.hostLoss = rows;
}
if (sections.has('clone')) {
console.log('clone of a running guest, iterative pre-copy');
const clones = [];
for (const workload of ['mixed', 'memtouch']) {
  for (const mib of [64, 256]) {
    const r = await clonePause(mib, workload);
    clones.push({ mib, workload, ...r });
    console.log(`  ${workload.padEnd(8)} ${String(mib).padStart(3)} MiB: pause ${r.pauseMs.toFixed(2)} ms, ${r.pages} pages in ${r.rounds} rounds, clone ${r.totalMs.toFixed(0)} ms`);
  }
}
results.clone = clones;
}
writeFileSync(join(root, 'bench', 'results', ALL_SECTIONS.every((x) => sections.has(x)) ? 'ft.json' : 'ft-partial.json'), `${JSON.stringify(results, null, 2)}\n`);
rmSync(tmp, { recursive: true, force: true });
process.exit(0);
