// Fault-tolerance benchmark: FT (record + ship + ack + output rule) against a plain run of the same guest
// in the same run — CPU workloads and kvserver under load — plus log bandwidth against the 1 Gbit/s
// budget, output-rule delay and secondary lag percentiles, failover outage over repeated SIGKILLs of the
// primary process, and the clone pause for 64 and 256 MiB guests.
import diagnostics from 'node:diagnostics_channel';
import { randomBytes } from 'node:crypto';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FileArbiter, FtPrimary, FtSecondary, KvClient, LoadGenerator, Machine, attachVmNetwork, createVmMachine, parseElf, type VmSpec } from 'lockstep';
import { ROOT as root } from './paths.js';

// The CLI's process launcher, from the built package (the benchmark drives real `lockstep` processes).
const { launch, launch: launchCli, freeUdpPort } = (await import(pathToFileURL(join(root, 'dist', 'cluster', 'agent', 'cli-process.js')).href)) as typeof import('../../src/cluster/agent/cli-process.js');
const { callControl } = (await import(pathToFileURL(join(root, 'dist', 'ft', 'control-client.js')).href)) as typeof import('../../src/ft/control-client.js');
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

type DataPath = 'native' | 'js';

/** An in-process pair around `spec` (the secondary in this process too: two vCPU threads). */
async function pair(spec: VmSpec, onPrimary: (p: FtPrimary) => void = () => {}, prepare: (m: Machine) => void = () => {}, dataPath: DataPath = 'native') {
  const dir = join(tmp, `arb-${pairs++}`);
  mkdirSync(dir);
  const machine = createVmMachine(spec);
  machine.load(readFileSync(spec.guest!));
  prepare(machine);
  const arbiter = new FileArbiter({ dir });
  const primary = new FtPrimary({ machine, vmId: 'bench', key, arbiter, hashInterval: 2 ** 26, dataPath });
  onPrimary(primary);
  const cloned = new Promise<void>((r) => primary.once('cloned', () => r()));
  const addr = await primary.start();
  const secondary = new FtSecondary({ vmId: 'bench', key, arbiter: new FileArbiter({ dir }), join: addr, dataPath, createMachine: () => createVmMachine(spec) });
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

async function kv(ft: DataPath | false, seconds: number, clients: number, valueSize = 32, setRatio = 0.5) {
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
    }, undefined, ft);
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
  const load = new LoadGenerator({ endpoints: [{ host: '127.0.0.1', port }], clients, setRatio, keys: 100, keyPrefix: 'k', valueSize, durationMs: seconds * 1000, timeoutMs: 500, retries: 5 });
  const before = stats().logBytes;
  const res = await load.run();
  // Read once the last batches are in (the stats count what was framed).
  await new Promise((r) => setTimeout(r, 300));
  const logBytes = stats().logBytes - before;
  await close();
  // What the guest received: one Ethernet frame per request datagram (14 + 20 + 8 bytes of headers).
  const frameBytes = (key: string, op: 'set' | 'get') => 42 + 8 + (op === 'set' ? Buffer.byteLength(`set ${key} 0 0 ${valueSize}\r\n\r\n`) + valueSize : Buffer.byteLength(`get ${key}\r\n`));
  const avgKey = 'k' + '0'.repeat(2);
  const inputBytes = res.clientCounters.datagramsSent * (setRatio * frameBytes(avgKey, 'set') + (1 - setRatio) * frameBytes(avgKey, 'get'));
  return { rate: res.acknowledged / (res.elapsedMs / 1000), p50: res.latency.p50Ms, p99: res.latency.p99Ms, logBytesPerSecond: logBytes / (res.elapsedMs / 1000), logBytes, inputBytes, releases, acks, lags };
}

/** A kvserver VM config (disk image, free UDP port, file arbiter) in a fresh directory. */
async function kvConfig(name: string, disk = true, diskMode: DiskMode = 'shared'): Promise<{ cfg: string; image: string; port: number }> {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'arbiter'), { recursive: true });
  const image = join(dir, 'kv.img');
  writeFileSync(image, Buffer.alloc(4 << 20));
  const port = await freeUdpPort();
  const cfg = join(dir, 'vm.json');
  writeFileSync(cfg, JSON.stringify({ vm: { id: 'kv', guest: guest('kvserver'), ramMiB: 16, clock: 'real', ...(disk ? {} : { append: 'kvserver.storage=memory' }), devices: { ...(disk ? { disk: { path: image, mode: diskMode } } : {}), net: { backend: 'udp', hostPort: port, guestPort: 11211 } } }, ft: { listen: '127.0.0.1:0', keyHex: key.toString('hex'), arbiter: { backend: 'file', dir: join(dir, 'arbiter') } } }));
  return { cfg, image, port };
}

/** Clock ticks per second of /proc/<pid>/stat's CPU times. */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
/** CPU time of process `pid` so far (user + system, all its threads, exited ones included), µs. */
function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK; // fields 14 (utime) and 15 (stime)
}
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
const pin = (core: number) => (hasTaskset ? ['taskset', '-c', String(core)] : []);

type Mode = 'plain' | DataPath;
/** shared: one image, the primary's writes are outputs; separate: each half its own image (the secondary's filled by the clone). */
type DiskMode = 'shared' | 'separate';
/**
 * kvserver with each side in its own process (as on separate hosts), the load in this one: throughput
 * and the CPU each process spends per acknowledged request, from /proc/<pid>/stat over the measured
 * window. The primary (or the plain VM) runs pinned to core 0; the secondary and this load generator to
 * core 1, so the primary's figures are its own.
 */
async function kvProcesses(mode: Mode, seconds: number, clients: number, disk: boolean, ratePerSecond?: number, diskMode: DiskMode = 'shared') {
  const { cfg, image, port } = await kvConfig(`kvp-${mode}-${clients}-${disk}-${pairs++}`, disk, diskMode);
  if (mode !== 'plain') {
    const json = JSON.parse(readFileSync(cfg, 'utf8')) as { ft: Record<string, unknown> };
    json.ft.dataPath = mode;
    writeFileSync(cfg, JSON.stringify(json));
  }
  const procs: { name: string; child: import('node:child_process').ChildProcess }[] = [];
  if (mode !== 'plain') {
    const a = launch('primary', ['primary', cfg], () => {}, { prefix: pin(0) });
    procs.push({ name: 'primary', child: a.child });
    const l = await a.wait('listening');
    const own = `${image}.secondary`;
    if (disk && diskMode === 'separate') writeFileSync(own, Buffer.alloc(4 << 20)); // blank: the clone fills it
    const b = launch('secondary', ['secondary', cfg, '--join', `127.0.0.1:${String(l.port)}`, ...(disk && diskMode === 'separate' ? ['--disk', own] : [])], () => {}, { prefix: pin(1) });
    procs.push({ name: 'secondary', child: b.child });
    await a.wait('status', (e) => e.protected === true);
  } else {
    const args = [join(root, 'dist', 'cli', 'main.js'), 'run', guest('kvserver'), '--clock', 'real', ...(disk ? ['--disk', image] : ['--append', 'kvserver.storage=memory']), '--net', `udp:${port}:11211`];
    const pre = pin(0);
    const child = spawn(pre[0] ?? process.execPath, [...pre.slice(1), ...(pre.length > 0 ? [process.execPath] : []), ...args], { stdio: 'ignore' });
    procs.push({ name: 'plain', child });
    const c = new KvClient({ endpoints: [{ host: '127.0.0.1', port }], timeoutMs: 100, retries: 100 });
    await c.version();
    await c.close();
  }
  const options = { endpoints: [{ host: '127.0.0.1', port }], clients, setRatio: 0.5, keys: 100, timeoutMs: 500, retries: 5, ratePerSecond };
  await new LoadGenerator({ ...options, durationMs: 500 }).run(); // warm up (JIT, caches, the first acks)
  const before = procs.map((p) => cpuMicros(p.child.pid!));
  const self0 = process.cpuUsage();
  const res = await new LoadGenerator({ ...options, durationMs: seconds * 1000 }).run();
  const after = procs.map((p) => cpuMicros(p.child.pid!));
  const self = process.cpuUsage(self0);
  for (const p of procs) p.child.kill('SIGKILL');
  const cpuPerRequest: Record<string, number> = {};
  procs.forEach((p, i) => (cpuPerRequest[p.name] = (after[i]! - before[i]!) / res.acknowledged));
  cpuPerRequest.load = (self.user + self.system) / res.acknowledged;
  return { rate: res.acknowledged / (res.elapsedMs / 1000), p50: res.latency.p50Ms, p99: res.latency.p99Ms, failed: res.failed, cpuPerRequest };
}

/**
 * Client-visible outage of a fault: a client sets one key in a loop; `inject` is called after a short
 * random while, `recovered` resolves when the new primary is live. The outage is the longest silence
 * between two answers after the injection (a request in flight then may still be answered by the old
 * primary). Closes the client.
 */
/** Where the last measureOutage's longest silence lay, wall clock ms (to place it among event lines' `t`). */
let lastSilence = { from: 0, to: 0 };
/** Verbose: every retry of the measured client (wall clock ms, attempt, endpoint port). */
const retries: Array<{ t: number; attempt: number; port: number }> = [];
if (process.env.LOCKSTEP_BENCH_VERBOSE) {
  diagnostics.subscribe('lockstep:client:retry', (m) => {
    const r = m as { attempt: number; endpoint: { port: number } };
    retries.push({ t: Date.now(), attempt: r.attempt, port: r.endpoint.port });
  });
}

/** Every answer the last measureOutage's client got: wall clock ms and the endpoint (index) that answered. */
let lastAnswers: Array<{ t: number; endpoint: number }> = [];
/** The last measureOutage's longest silence before the injection (the machine's own, for comparison), ms. */
let lastIdleSilence = 0;

async function measureOutage(c: KvClient, inject: () => void, recovered: () => Promise<unknown>): Promise<number> {
  let stop = false;
  let at = 0;
  let outage = 0;
  let last = performance.now();
  const wallOffset = Date.now() - performance.now();
  lastAnswers = [];
  lastIdleSilence = 0;
  const begun = performance.now();
  const loop = (async () => {
    while (!stop) {
      await c.set('k', 'v');
      const now = performance.now();
      lastAnswers.push({ t: now + wallOffset, endpoint: c.preferredEndpoint });
      if (at === 0 && now - begun > 100 && now - last > lastIdleSilence) lastIdleSilence = now - last;
      if (at > 0 && now > at && now - last > outage) {
        outage = now - last;
        lastSilence = { from: last + wallOffset, to: now + wallOffset };
      }
      last = now;
    }
  })();
  // Long enough before the injection to see the machine's own silences (lastIdleSilence).
  await new Promise((r) => setTimeout(r, 800 + Math.random() * 300));
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

type MigrationKind = 'ft-off' | 'no-arbiter' | 'move-secondary' | 'ft-primary';
/**
 * One live migration (or move of the secondary) of kvserver with 64 MiB of RAM, under a client that sets
 * one key in a loop with both hosts' UDP ports as endpoints (each side serves its own, as two hosts
 * would): the client-visible outage (longest silence between answers), the whole operation's time from
 * the target's join, and how long the guest was held for a move's switch-over.
 */
async function migration(kind: MigrationKind, i: number, before?: string) {
  // Another checkout's CLI (LOCKSTEP_BENCH_BEFORE: its root, built), for a before/after in one run.
  const viaBefore = before === undefined ? {} : { prefix: ['sh', '-c', 'shift; exec "$0" "$LOCKSTEP_BENCH_CLI" "$@"'], env: { LOCKSTEP_BENCH_CLI: join(before, 'dist', 'cli', 'main.js') } };
  const launch = (name: string, args: string[]) => launchCli(name, args, () => {}, viaBefore);
  const { cfg, port: sourcePort } = await kvConfig(`migrate-${kind}-${i}${before === undefined ? '' : '-before'}`);
  const json = JSON.parse(readFileSync(cfg, 'utf8')) as { vm: { ramMiB: number; devices: { net: { hostPort: number } } }; ft: Record<string, unknown> };
  json.vm.ramMiB = 64;
  // A planned migration's outage does not depend on the failure timeout; the 600 ms default only made
  // a trial on a machine at load 10 end in a false failure (a pre-copy stalled the source that long).
  json.ft.timeoutMs = 3000;
  if (kind === 'ft-off' || kind === 'no-arbiter') json.ft.enabled = false;
  // FT off without an arbiter or a key in the configuration: the key comes from --key-file on each side.
  const keyArgs: string[] = [];
  if (kind === 'no-arbiter') {
    delete json.ft.arbiter;
    delete json.ft.keyHex;
    const keyFile = cfg.replace(/vm\.json$/, 'migration.key');
    writeFileSync(keyFile, Buffer.concat([key, Buffer.from('\n')])); // one trailing newline is dropped: a key ending in 0x0a stays whole
    keyArgs.push('--key-file', keyFile);
  }
  writeFileSync(cfg, JSON.stringify(json));
  const targetPort = await freeUdpPort();
  json.vm.devices.net.hostPort = targetPort;
  const cfgB = cfg.replace(/vm\.json$/, 'vm-b.json');
  writeFileSync(cfgB, JSON.stringify(json));
  const a = launch('source', ['primary', cfg, '--control', '127.0.0.1:0', ...keyArgs]);
  const l = await a.wait('listening');
  const control = String((await a.wait('control')).url);
  const joinArgs = ['--join', `127.0.0.1:${String(l.port)}`, ...keyArgs];
  const procs = [a];
  if (kind !== 'ft-off' && kind !== 'no-arbiter') {
    procs.push(launch('secondary', ['secondary', cfgB, ...joinArgs]));
    await a.wait('status', (e) => e.protected === true);
  }
  const c = new KvClient({ endpoints: [{ host: '127.0.0.1', port: sourcePort }, { host: '127.0.0.1', port: targetPort }], timeoutMs: 20, retries: 1000, backoff: { initialMs: 0, maxMs: 0 } });
  let target: ReturnType<typeof launch> | undefined;
  const op = kind === 'move-secondary' ? 'migrate-secondary' : 'migrate';
  const outage = await measureOutage(
    c,
    () => {
      void callControl(control, key, 'POST', `/ft/${op}`).then(() => {
        target = launch('target', ['secondary', cfgB, ...joinArgs]);
        procs.push(target);
      });
    },
    async () => {
      await until(() => target !== undefined);
      if (kind === 'move-secondary') await a.wait('moved', undefined, 120_000);
      else await target!.wait('listening', undefined, 120_000);
    },
  );
  const done = a.events.find((e) => e.event === (kind === 'move-secondary' ? 'moved' : 'migrated'));
  const moved = a.events.find((e) => e.event === 'moved');
  for (const p of procs) p.child.kill('SIGKILL');
  const live = target?.events.find((e) => e.event === 'go-live');
  const handed = a.events.find((e) => e.event === 'migrated');
  const followed = target?.events.find((e) => e.event === 'followed');
  // The switch-over, on both ends (wall clock ms from the guest held at the source): GO_LIVE sent, the
  // target given GO_LIVE (its go-live began), live (claimed, port bound), the follower resumed, and the
  // client's answers around it — the last one before the hold and the first one after.
  let breakdown: Breakdown | undefined;
  // An older CLI (LOCKSTEP_BENCH_BEFORE) says no heldAt: its event's time less the hand-over and the wait after it.
  const heldAt = handed === undefined ? undefined : handed.heldAt !== undefined ? Number(handed.heldAt) : handed.steps !== undefined ? Number(handed.t) - Number(handed.handOverMs) - Number((handed.steps as Record<string, number>).followMs ?? 0) : undefined;
  if (handed !== undefined && heldAt !== undefined) {
    const h = heldAt;
    const steps = (handed.steps ?? {}) as Record<string, number>;
    const rel = (x: unknown) => (x === undefined ? undefined : Number(x) - h);
    const liveAt = rel(live?.t);
    // The switch-over's silence: the longest gap between two answers that ends after the hold and begins
    // before the target was live (an answer can still come from the source just after the hold: a
    // request it finished before it stopped).
    const liveWall = liveAt === undefined ? h : h + liveAt;
    let before: { t: number } | undefined;
    let after: { t: number } | undefined;
    for (let k = 1; k < lastAnswers.length; k++) {
      const a = lastAnswers[k - 1]!;
      const b = lastAnswers[k]!;
      if (b.t > h && a.t < liveWall && (before === undefined || b.t - a.t > after!.t - before.t)) {
        before = a;
        after = b;
      }
    }
    const goLiveMs = live === undefined ? undefined : Number(live.ms);
    // Before the target joined, its process was starting on this same 2-core machine (on two hosts it
    // would not take the source's CPU): a silence then is the bench's, not the migration's.
    const joinedAt = Number(target?.events.find((e) => e.event === 'joined')?.t ?? NaN);
    const silenceAt = lastSilence.to <= h ? (lastSilence.to <= joinedAt ? 'target-start' : 'pre-copy') : lastSilence.from >= h + 1 ? 'after' : 'switch-over';
    breakdown = {
      goLiveSentMs: (steps.stopMs ?? 0) + (steps.drainMs ?? 0) + (steps.copyMs ?? 0),
      targetGotGoLiveMs: liveAt !== undefined && goLiveMs !== undefined ? liveAt - goLiveMs : undefined,
      targetLiveMs: liveAt,
      targetSteps: live?.steps as Record<string, number> | undefined,
      netBoundMs: rel(target?.events.find((e) => e.event === 'net')?.t),
      followerResumedMs: rel(followed?.t),
      lastAnswerMs: before === undefined ? undefined : before.t - h,
      firstAnswerMs: after === undefined ? undefined : after.t - h,
      switchOverOutageMs: before !== undefined && after !== undefined ? after.t - before.t : NaN,
      longestSilenceAt: silenceAt,
      targetJoinedMs: joinedAt - h,
      claimWaitMs: handed.claimWaitMs === undefined ? undefined : Number(handed.claimWaitMs),
      precopy: { rounds: Number(handed.rounds), pages: Number(handed.pages), bytes: Number(handed.bytes), finalPages: Number(handed.finalPages), ms: Number(handed.totalMs) - Number(handed.handOverMs) - (steps.followMs ?? 0) },
    };
  }
  if (process.env.LOCKSTEP_BENCH_VERBOSE) {
    for (const w of a.events.filter((e) => e.event === 'warning')) process.stderr.write(`\n  warning: ${String(w.message)}`);
    if (moved) process.stderr.write(`\n  steps ${JSON.stringify(moved.steps)} pages ${String(moved.pages)}\n`);
    if (heldAt !== undefined) {
      const t0 = heldAt;
      const rel = (x: number) => `${(x - t0).toFixed(0)}`;
      const inSilence = retries.filter((r) => r.t >= lastSilence.from && r.t <= lastSilence.to).map((r) => `${rel(r.t)}:${r.port === targetPort ? 'T' : 'S'}${r.attempt}`);
      process.stderr.write(`\n  retries in the longest silence: ${inSilence.join(' ')}`);
      // The secondary that follows a migrated primary: when it had drained and restored the hand-over
      // state (following) and when the target took it on (rejoined), from the hold.
      const sec = procs.find((p) => p !== a && p !== target);
      const at = (ev: string) => sec?.events.find((e) => e.event === ev)?.t;
      if (sec !== undefined) process.stderr.write(`\n  follower: following ${at('following') === undefined ? '-' : rel(Number(at('following')))} ms, rejoined ${at('rejoined') === undefined ? '-' : rel(Number(at('rejoined')))} ms; target listening ${target?.events.find((e) => e.event === 'listening')?.t === undefined ? '-' : rel(Number(target!.events.find((e) => e.event === 'listening')!.t))} ms`);
      process.stderr.write(`\n  longest silence from ${rel(lastSilence.from)} to ${rel(lastSilence.to)} ms (${breakdown?.longestSilenceAt ?? '?'}) around the hold (0)`);
      process.stderr.write(`\n  ${JSON.stringify(breakdown, (_k, v: unknown) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v))}`);
    }
    if (live) process.stderr.write(`\n  hand-over ${String(handed?.handOverMs)} ms at the source ${JSON.stringify(handed?.steps ?? {})}; target go-live ${String(live.ms)} ms ${JSON.stringify(live.steps ?? {})}${followed ? `; the secondary resumed ${String(followed.waitedMs)} ms after it` : ''}\n`);
  }
  return { outageMs: outage, idleSilenceMs: lastIdleSilence, totalMs: Number(done?.totalMs ?? NaN), heldMs: moved ? Number(moved.pauseMs) : undefined, breakdown };
}

/** One migration's switch-over, ms from the guest held at the source (see {@link migration}). */
interface Breakdown {
  goLiveSentMs: number;
  targetGotGoLiveMs: number | undefined;
  targetLiveMs: number | undefined;
  targetSteps: Record<string, number> | undefined;
  netBoundMs: number | undefined;
  followerResumedMs: number | undefined;
  targetJoinedMs: number;
  /** FT off: the pre-copy's wait, after its catch-up, for the claim made in the target's name. */
  claimWaitMs: number | undefined;
  lastAnswerMs: number | undefined;
  firstAnswerMs: number | undefined;
  /** From the client's last answer before the hold to its first after it: the migration's own outage. */
  switchOverOutageMs: number;
  /**
   * Where the trial's longest silence lay: ending before the target joined (its process starting on this
   * machine), in the pre-copy, across the hold, or after it.
   */
  longestSilenceAt: 'target-start' | 'pre-copy' | 'switch-over' | 'after';
  precopy: { rounds: number; pages: number; bytes: number; finalPages: number; ms: number };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
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
const ALL_SECTIONS = ['cpu', 'kv', 'input', 'kvp', 'lag', 'failover', 'hostloss', 'clone', 'migrate'];
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
const median = (xs: number[]) => pct(xs, 50);
if (sections.has('kv')) {
const kvRuns: Record<string, unknown>[] = [];
const TRIALS = Number(process.env.LOCKSTEP_BENCH_TRIALS ?? 3);
for (const clients of [4, 32]) {
  console.log(`kvserver under load, both halves in this process (${clients} closed-loop clients, 50 % sets, 3 s; median of ${TRIALS} interleaved trials)`);
  const by: Record<Mode, Awaited<ReturnType<typeof kv>>[]> = { plain: [], js: [], native: [] };
  for (let t = 0; t < TRIALS; t++) {
    for (const mode of ['plain', 'js', 'native'] as const) {
      by[mode].push(await kv(mode === 'plain' ? false : mode, 3, clients));
      process.stderr.write(`\r  trial ${t + 1}/${TRIALS} ${mode}    `);
    }
  }
  process.stderr.write('\n');
  const rate = (m: Mode) => median(by[m].map((r) => r.rate));
  const all = (m: Mode, f: (r: Awaited<ReturnType<typeof kv>>) => number[]) => by[m].flatMap(f);
  const row: Record<string, unknown> = { clients, plainRate: rate('plain') };
  for (const m of ['js', 'native'] as const) {
    const rel = all(m, (r) => r.releases);
    row[m] = {
      rate: rate(m),
      ratio: median(by[m].map((r, i) => r.rate / by.plain[i]!.rate)),
      p50Ms: median(by[m].map((r) => r.p50)),
      p99Ms: median(by[m].map((r) => r.p99)),
      logBytesPerSecond: median(by[m].map((r) => r.logBytesPerSecond)),
      outputRuleDelayMs: { p50: pct(rel, 50), p99: pct(rel, 99), n: rel.length },
      ackLatencyMs: { p50: pct(all(m, (r) => r.acks), 50), p99: pct(all(m, (r) => r.acks), 99) },
      lagMs: { p50: pct(all(m, (r) => r.lags), 50), p99: pct(all(m, (r) => r.lags), 99) },
    };
    const r = row[m] as { rate: number; ratio: number; p50Ms: number; logBytesPerSecond: number; outputRuleDelayMs: { p50: number; p99: number } };
    console.log(
      `  ${m.padEnd(6)} data path: ${r.rate.toFixed(0)} req/s (plain ${rate('plain').toFixed(0)}), ratio ${r.ratio.toFixed(3)}; p50 ${r.p50Ms.toFixed(3)} ms (plain ${median(by.plain.map((x) => x.p50)).toFixed(3)}); output-rule delay p50 ${(r.outputRuleDelayMs.p50 * 1000).toFixed(0)} µs p99 ${(r.outputRuleDelayMs.p99 * 1000).toFixed(0)} µs; log ${(r.logBytesPerSecond / 1e6).toFixed(2)} MB/s = ${((100 * r.logBytesPerSecond) / BUDGET).toFixed(2)} % of budget`,
    );
  }
  kvRuns.push(row);
}
results.kvserver = kvRuns;
}
if (sections.has('input')) {
  // Large requests: how much log a byte of guest network input costs (VMware FT: about 1.2). Each batch
  // has a header (about 19 bytes in log format 3, 48 before), so the ratio falls as more requests share a batch.
  const rows: Record<string, unknown>[] = [];
  for (const clients of [4, 32]) {
    const r = await kv('native', 3, clients, 1360, 1);
    rows.push({ clients, valueSize: 1360, logBytes: r.logBytes, inputBytes: r.inputBytes, ratio: r.logBytes / r.inputBytes, rate: r.rate });
    console.log(`log per guest input, 1400-byte request datagrams (1360-byte sets), ${clients} clients: log ${(r.logBytes / 1e6).toFixed(2)} MB for ${(r.inputBytes / 1e6).toFixed(2)} MB of frames received = ${(r.logBytes / r.inputBytes).toFixed(3)} × the guest's input`);
  }
  results.input = rows;
}
if (sections.has('kvp')) {
const procRuns: Record<string, unknown>[] = [];
const TRIALS = Number(process.env.LOCKSTEP_BENCH_TRIALS ?? 3);
if (!hasTaskset) console.log('  (taskset not found: processes are not pinned)');
// The load generator shares core 1 with the secondary; the primary (or the plain VM) has core 0.
if (hasTaskset) spawnSync('taskset', ['-pc', '1', String(process.pid)], { stdio: 'ignore' });
// CPU per request depends on the request rate (an idle vCPU sleeps and wakes per request; a busy one
// takes several per wake-up), and a closed loop runs FT and plain at different rates. The last row
// therefore offers all three the same rate: 60 % of the slower closed-loop rate of the 32-client run.
let equalRate = 0;
for (const [clients, disk, paced, diskMode] of [[4, false, false, 'shared'], [32, false, false, 'shared'], [32, true, false, 'shared'], [32, true, false, 'separate'], [32, false, true, 'shared']] as const) {
  const rate = paced ? equalRate : undefined;
  const by: Record<Mode, Awaited<ReturnType<typeof kvProcesses>>[]> = { plain: [], js: [], native: [] };
  for (let t = 0; t < TRIALS; t++) {
    for (const mode of ['plain', 'js', 'native'] as const) {
      by[mode].push(await kvProcesses(mode, 4, clients, disk, rate, diskMode));
      process.stderr.write(`\r  ${clients} clients ${disk ? `disk (${diskMode})` : 'memory'}${paced ? ` at ${equalRate} req/s` : ''}: trial ${t + 1}/${TRIALS} ${mode}    `);
    }
  }
  process.stderr.write('\n');
  const cpu = (m: Mode, who: string) => median(by[m].map((r) => r.cpuPerRequest[who] ?? NaN));
  const plainCpu = cpu('plain', 'plain');
  if (clients === 32 && !disk && !paced) equalRate = Math.round((0.6 * Math.min(...(['plain', 'js', 'native'] as const).map((m) => median(by[m].map((r) => r.rate))))) / 100) * 100;
  const row: Record<string, unknown> = { clients, disk, ...(disk ? { diskMode } : {}), offeredRate: rate, plain: { rate: median(by.plain.map((r) => r.rate)), cpuUsPerRequest: plainCpu, loadCpuUsPerRequest: cpu('plain', 'load') } };
  console.log(`kvserver ${disk ? `with its WAL on disk (sync writes, ${diskMode === 'shared' ? 'one shared image' : 'an image per half'})` : 'in memory'}, each side its own process (primary on core 0, secondary + load on core 1), ${clients} clients${paced ? `, all offered ${rate} req/s` : ''}; median of ${TRIALS}:`);
  console.log(`  plain          ${median(by.plain.map((r) => r.rate)).toFixed(0).padStart(6)} req/s   CPU/request: VM ${plainCpu.toFixed(1)} µs`);
  for (const m of ['js', 'native'] as const) {
    const rate = median(by[m].map((r) => r.rate));
    const ratio = median(by[m].map((r, i) => r.rate / by.plain[i]!.rate));
    const p = cpu(m, 'primary');
    const sec = cpu(m, 'secondary');
    const primaryRatio = median(by[m].map((r, i) => (r.cpuPerRequest.primary ?? NaN) / (by.plain[i]!.cpuPerRequest.plain ?? NaN)));
    const secondaryRatio = median(by[m].map((r, i) => (r.cpuPerRequest.secondary ?? NaN) / (by.plain[i]!.cpuPerRequest.plain ?? NaN)));
    row[m] = { rate, ratio, p50Ms: median(by[m].map((r) => r.p50)), primaryCpuUsPerRequest: p, secondaryCpuUsPerRequest: sec, primaryCpuRatio: primaryRatio, secondaryCpuRatio: secondaryRatio };
    console.log(
      `  FT, ${m.padEnd(6)} path ${rate.toFixed(0).padStart(6)} req/s (×${ratio.toFixed(3)})   CPU/request: primary ${p.toFixed(1)} µs (×${primaryRatio.toFixed(2)} plain), secondary ${sec.toFixed(1)} µs (×${secondaryRatio.toFixed(2)} plain)`,
    );
  }
  procRuns.push(row);
}
if (hasTaskset) spawnSync('taskset', ['-pc', '0-1023', String(process.pid)], { stdio: 'ignore' });
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
if (sections.has('migrate')) {
  const n = Number(process.env.LOCKSTEP_BENCH_MIGRATIONS ?? 5);
  // LOCKSTEP_BENCH_STRESS_CPU=<n>: the section runs beside `stress-ng --cpu <n>` (the load the figures
  // are also stated under).
  const stressCpus = Number(process.env.LOCKSTEP_BENCH_STRESS_CPU ?? 0);
  const stress = stressCpus > 0 ? spawn('stress-ng', ['--cpu', String(stressCpus), '--quiet'], { stdio: 'ignore' }) : undefined;
  const load0 = loadavg()[0]!;
  console.log(`live migration and moves of the secondary, kvserver with 64 MiB, ${n} each${stress ? `, beside stress-ng --cpu ${stressCpus}` : ''} (load average ${load0.toFixed(1)}). Outage: the client's silence across the switch-over (its last answer before the guest was held at the source to its first after), for a client using both hosts' ports with a 20 ms time-out; longest silence: the longest anywhere after the request (pre-copy stalls included)`);
  const rows: Record<string, unknown>[] = [];
  const kinds = (process.env.LOCKSTEP_BENCH_MIGRATE_KINDS ?? 'ft-off,no-arbiter,move-secondary,ft-primary').split(',') as MigrationKind[];
  // LOCKSTEP_BENCH_BEFORE=<another checkout, built>: each kind also runs with that checkout's CLI
  // (`<kind>@before`), trials interleaved with this one's so both see the same load.
  const before = process.env.LOCKSTEP_BENCH_BEFORE;
  const variants = kinds.flatMap((kind) => [{ kind, label: kind as string, before: undefined as string | undefined }, ...(before ? [{ kind, label: `${kind}@before`, before }] : [])]);
  const samples = new Map(variants.map((v) => [v.label, { o: [] as number[], idle: [] as number[], sw: [] as number[], total: [] as number[], held: [] as number[], b: [] as Breakdown[] }]));
  for (let i = 0; i < n; i++) {
    for (const v of variants) {
      const r = await migration(v.kind, i, v.before);
      const x = samples.get(v.label)!;
      x.o.push(r.outageMs);
      x.idle.push(r.idleSilenceMs);
      x.total.push(r.totalMs);
      if (r.heldMs !== undefined) x.held.push(r.heldMs);
      if (r.breakdown) {
        x.b.push(r.breakdown);
        x.sw.push(r.breakdown.switchOverOutageMs);
      }
      process.stderr.write(`\r  ${v.label} ${i + 1}/${n}: outage ${r.breakdown?.switchOverOutageMs.toFixed(1) ?? '?'} ms, longest silence ${r.outageMs.toFixed(1)} ms (${r.breakdown?.longestSilenceAt ?? '?'}), total ${r.totalMs.toFixed(0)} ms   `);
    }
  }
  stress?.kill('SIGTERM');
  process.stderr.write('\n');
  const med = (b: Breakdown[], f: (x: Breakdown) => number | undefined) => {
    const xs = b.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
    return xs.length ? Math.round(pct(xs, 50) * 10) / 10 : undefined;
  };
  for (const { label: kind } of variants) {
    const { o, idle, sw, total, held, b } = samples.get(kind)!;
    const where = { 'target-start': 0, 'pre-copy': 0, 'switch-over': 0, after: 0 };
    for (const x of b) where[x.longestSilenceAt]++;
    const breakdownP50 = b.length
      ? {
          goLiveSentMs: med(b, (x) => x.goLiveSentMs),
          targetGotGoLiveMs: med(b, (x) => x.targetGotGoLiveMs),
          targetLiveMs: med(b, (x) => x.targetLiveMs),
          claimMs: med(b, (x) => x.targetSteps?.claimMs),
          bindMs: med(b, (x) => x.targetSteps?.beforeLiveMs),
          followerResumedMs: med(b, (x) => x.followerResumedMs),
          lastAnswerMs: med(b, (x) => x.lastAnswerMs),
          firstAnswerMs: med(b, (x) => x.firstAnswerMs),
          precopyMs: med(b, (x) => x.precopy.ms),
          claimWaitMs: med(b, (x) => x.claimWaitMs),
          precopyPages: med(b, (x) => x.precopy.pages),
          precopyRounds: med(b, (x) => x.precopy.rounds),
          finalPages: med(b, (x) => x.precopy.finalPages),
        }
      : undefined;
    const row = {
      kind,
      n,
      ...(sw.length ? { outageMs: { p50: pct(sw, 50), p99: pct(sw, 99), max: Math.max(...sw) } } : {}),
      longestSilenceMs: { p50: pct(o, 50), p99: pct(o, 99), max: Math.max(...o), where },
      // The same client's longest silence in the ~1 s before the migration was asked for: the machine's own.
      idleSilenceMs: { p50: pct(idle, 50), p99: pct(idle, 99) },
      totalMs: { p50: pct(total, 50), max: Math.max(...total) },
      ...(held.length ? { heldMs: { p50: pct(held, 50), max: Math.max(...held) } } : {}),
      ...(breakdownP50 ? { breakdownP50 } : {}),
      samples: { outage: sw, longestSilence: o, idleSilence: idle, total, held, breakdown: b },
    };
    rows.push(row);
    console.log(
      `  ${kind.padEnd(22)} ${sw.length ? `outage p50 ${pct(sw, 50).toFixed(1)} ms, p99 ${pct(sw, 99).toFixed(1)} ms; ` : ''}longest silence p50 ${pct(o, 50).toFixed(1)} ms, p99 ${pct(o, 99).toFixed(1)} ms (target start ${where['target-start']}, pre-copy ${where['pre-copy']}, switch-over ${where['switch-over']}, after ${where.after}); before the request p50 ${pct(idle, 50).toFixed(1)} ms, p99 ${pct(idle, 99).toFixed(1)} ms; total p50 ${pct(total, 50).toFixed(0)} ms${held.length ? `; guest held p50 ${pct(held, 50).toFixed(1)} ms` : ''}`,
    );
    if (breakdownP50) console.log(`    p50 from the hold, ms: ${JSON.stringify(breakdownP50)}`);
  }
  results.migrate = rows;
  results.migrateLoad = { stressCpus, loadAverageAtStart: load0, loadAverageAtEnd: loadavg()[0] };
}
// LOCKSTEP_BENCH_RESULTS=<file name> writes to bench/results/<file name> instead (a kept run of a section).
writeFileSync(join(root, 'bench', 'results', process.env.LOCKSTEP_BENCH_RESULTS ?? (ALL_SECTIONS.every((x) => sections.has(x)) ? 'ft.json' : 'ft-partial.json')), `${JSON.stringify(results, null, 2)}\n`);
rmSync(tmp, { recursive: true, force: true });
process.exit(0);
