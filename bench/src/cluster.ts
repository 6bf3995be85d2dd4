// `node bench/build/bench/src/cluster.js`: time from a host's death to every affected FT VM being
// protected again. A real etcd, four agent processes (one four times the others' size), one manager, FT
// kvserver VMs under a write load; each repetition SIGKILLs the process group of an agent, measures until every VM is Protected with both halves on other live hosts (store polled every
// 20 ms), and brings the host back before the next one. Repetitions alternate between a host holding a
// primary (its secondary goes live, then gets a secondary) and one holding only secondaries. Writes
// bench/results/cluster.json.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KvClient } from '../../src/index.js';
import type { EtcdStore } from '../../src/cluster/store/etcd-store.js';
import { etcdAvailability, startEtcd } from '../../test/helpers/etcd.js';
import { allProtected, killGroups, kvVmConfig, look, openEtcd, runCli, startAgent, startManager, tokenFile, until, type GroupProc } from '../../test/helpers/cluster.js';
import { HOST_TTL_MS, INSTANCE_TTL_MS } from '../../src/cluster/manager/layout.js';
import { RESULTS_DIR } from './paths.js';
import { fmt, max, median, min } from './stats.js';

const { values: opts } = parseArgs({
  options: {
    reps: { type: 'string', default: '8' },
    vms: { type: 'string', default: '2' },
    results: { type: 'string', default: 'cluster.json' },
    standby: { type: 'string', default: 'on' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write('Usage: node bench/build/bench/src/cluster.js [--reps 8] [--vms 2] [--results cluster.json] [--standby on|off|mixed]\n');
  process.exit(0);
}
const REPS = Number(opts.reps);
const VMS = Number(opts.vms);
if (!Number.isInteger(REPS) || REPS < 1 || REPS > 50) throw new Error('--reps: 1..50');
const STANDBY = opts.standby;
if (STANDBY !== 'on' && STANDBY !== 'off' && STANDBY !== 'mixed') throw new Error('--standby: on, off or mixed');
if (!Number.isInteger(VMS) || VMS < 1 || VMS > 4) throw new Error('--vms: 1..4 (four hosts, at most four FT halves each)');

const avail = etcdAvailability();
if (!avail.ok) {
  process.stderr.write(`bench cluster: ${avail.why}\n`);
  process.exit(1);
}

/** Writes to one VM without pause; records when each write was acknowledged. */
function writer(port: number) {
  const client = new KvClient({ endpoints: [{ host: '127.0.0.1', port }], timeoutMs: 50, retries: 400 });
  const acks: number[] = [];
  let stop = false;
  const done = (async () => {
    for (let n = 0; !stop && n < 10_000_000; n++) {
      try {
        if ((await client.set(`k${n % 64}`, `v${n}`)) === 'stored') acks.push(performance.now());
      } catch {
        // unanswered through all retries: shows as a long gap
      }
    }
  })();
  return {
    /** Longest time without an acknowledgement between `from` and `to`. */
    longestGap(from: number, to: number): number {
      let last = from;
      let gap = 0;
      for (const t of acks) {
        if (t < from) continue;
        if (t > to) break;
        gap = Math.max(gap, t - last);
        last = t;
      }
      return Math.max(gap, to - last);
    },
    trim(before: number) {
      while (acks.length > 0 && acks[0]! < before) acks.shift();
    },
    async close() {
      stop = true;
      await done;
      await client.close();
    },
  };
}

interface Rep {
  victim: string;
  lost: string[];
  primaryLost: boolean;
  /** SIGKILL to every VM protected again off the victim. */
  reprotectMs: number;
  /** SIGKILL to each affected VM protected again. */
  perVmMs: Record<string, number>;
  /** Where each affected VM's new secondary runs, and whether that agent kept a standby process. */
  newSecondary: Record<string, { host: string; standby: boolean }>;
  /** Longest time without an acknowledged write, per affected VM, around the failure. */
  clientGapMs: Record<string, number>;
  /** SIGKILL to the manager's start-secondary event for each affected VM (detection and decision). */
  decisionMs: Record<string, number>;
  /** The machine's 1-minute load average at the kill. */
  load: number;
}

/** Nearest-rank percentile (`q` in 0..1) of `xs`. */
function percentile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-bench-cluster-'));
const etcd = await startEtcd();
const procs: GroupProc[] = [];
let store: EtcdStore | undefined;
const writers: Array<ReturnType<typeof writer>> = [];
const reps: Rep[] = [];
try {
  store = await openEtcd(etcd.endpoint);
  const spec = `etcd:${etcd.endpoint}`;
  const tok = tokenFile(tmp);
  const agents = new Map<string, GroupProc>();
  /** Whether each agent (as last started) keeps a standby process: --standby mixed alternates per start. */
  const standbyOf = new Map<string, boolean>();
  let generation = 0;
  const startHost = async (id: string) => {
    const size = id === 'h1' ? 4 : 1;
    const standby = STANDBY === 'mixed' ? generation % 2 === 0 : STANDBY === 'on';
    standbyOf.set(id, standby);
    const p = await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, `${id}-${generation++}`), mips: 1000 * size, memoryMiB: 1024 * size, ...(standby ? {} : { extra: ['--no-standby'] }) });
    procs.push(p);
    agents.set(id, p);
  };
  await Promise.all(['h1', 'h2', 'h3', 'h4'].map(startHost));
  // Manual automation, as these figures were first measured: balancing between trials would change
  // which hosts hold what, and the figure is re-protection, not DRS.
  procs.push(await startManager('m1', spec, tok.path, ['--automation', 'manual']));
  const ports: Record<string, number> = {};
  for (let i = 1; i <= VMS; i++) {
    const vm = await kvVmConfig(tmp, `kv${i}`, etcd.endpoint);
    ports[`kv${i}`] = vm.udpPort;
    const r = await runCli(['cluster', 'create-vm', vm.path, '--store', spec]);
    if (r.code !== 0) throw new Error(`create-vm: ${r.stderr}`);
  }
  await until('every VM protected', 60_000, async () => {
    const { inv, views } = await look(store!);
    return views.length === VMS && allProtected(inv, views) ? true : undefined;
  });
  const writerOf = new Map(Object.entries(ports).map(([vm, port]) => [vm, writer(port)]));
  writers.push(...writerOf.values());

  for (let rep = 0; rep < REPS; rep++) {
    await new Promise((r) => setTimeout(r, 1_000));
    const before = await look(store);
    const halves = (h: string) => before.views.filter((v) => v.primary?.host === h || v.secondary?.host === h).length;
    const primaries = (h: string) => before.views.filter((v) => v.primary?.host === h).length;
    // Odd repetitions kill the busiest host holding a primary, even ones the busiest holding only secondaries.
    const wantPrimary = rep % 2 === 0;
    const hosts = [...before.inv.hosts.keys()].filter((h) => halves(h) > 0);
    const fitting = hosts.filter((h) => (primaries(h) > 0) === wantPrimary);
    const victim = (fitting.length > 0 ? fitting : hosts).sort((a, b) => halves(b) - halves(a) || (a < b ? -1 : 1))[0]!;
    const lost = before.views.filter((v) => v.primary?.host === victim || v.secondary?.host === victim).map((v) => v.vm);
    const primaryLost = primaries(victim) > 0;
    const load = loadavg()[0]!;
    const t0 = performance.now();
    const wall0 = Date.now();
    agents.get(victim)!.killGroup('SIGKILL');
    const perVmMs: Record<string, number> = {};
    const newSecondary: Rep['newSecondary'] = {};
    const dead = new Set([victim]);
    // Bounded: 60 s at 20 ms.
    await until('every VM protected again', 60_000, async () => {
      const { inv, views } = await look(store!);
      for (const v of views) {
        const ok = v.protected && v.primary !== undefined && v.secondary !== undefined && v.primary.host !== v.secondary.host && !dead.has(v.primary.host) && !dead.has(v.secondary.host);
        if (perVmMs[v.vm] === undefined && lost.includes(v.vm) && ok) {
          perVmMs[v.vm] = performance.now() - t0;
          newSecondary[v.vm] = { host: v.secondary!.host, standby: standbyOf.get(v.secondary!.host) === true };
        }
      }
      return allProtected(inv, views, dead) ? true : undefined;
    }, 20);
    const reprotectMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 500));
    const clientGapMs: Record<string, number> = {};
    for (const vm of lost) clientGapMs[vm] = writerOf.get(vm)!.longestGap(t0 - 500, t0 + reprotectMs + 500);
    for (const w of writers) w.trim(performance.now() - 1_000);
    const events = (await look(store)).inv.events;
    const decisionMs: Record<string, number> = {};
    for (const vm of lost) {
      const e = events.find((x) => x.kind === 'start-secondary' && x.vm === vm && x.t >= wall0);
      if (e !== undefined) decisionMs[vm] = e.t - wall0;
    }
    reps.push({ victim, lost, primaryLost, reprotectMs, perVmMs, newSecondary, clientGapMs, decisionMs, load });
    process.stdout.write(
      `rep ${rep + 1}/${REPS}: SIGKILL ${victim} (${before.views.filter((v) => lost.includes(v.vm)).map((v) => `${v.vm} ${v.primary?.host === victim ? 'primary' : 'secondary'}`).join(', ')}): all protected after ${fmt(reprotectMs)} ms at load ${load.toFixed(1)}; per VM ${lost.map((vm) => `${vm} ${fmt(perVmMs[vm])} ms on ${newSecondary[vm]?.host ?? '?'}${newSecondary[vm]?.standby ? ' (standby)' : ''}`).join(', ')} (new secondaries ordered after ${Object.values(decisionMs).map((x) => fmt(x)).join('/')} ms); longest client gap ${fmt(max(Object.values(clientGapMs)))} ms\n`,
    );
    // The host comes back (after its old records expired) for the next repetition.
    await until(`${victim}'s host record expires`, 15_000, async () => ((await look(store!)).inv.hosts.has(victim) ? undefined : true));
    await startHost(victim);
  }
} finally {
  for (const w of writers) await w.close().catch(() => undefined);
  await killGroups(procs);
  await store?.close();
  await etcd.dispose();
  rmSync(tmp, { recursive: true, force: true });
}

const all = reps.map((r) => r.reprotectMs);
const withPrimary = reps.filter((r) => r.primaryLost).map((r) => r.reprotectMs);
const secondaryOnly = reps.filter((r) => !r.primaryLost).map((r) => r.reprotectMs);
const gaps = reps.flatMap((r) => Object.values(r.clientGapMs));
/** Kill → one VM protected again, over the VMs whose new secondary's agent had (or had not) a standby. */
function perVm(standby: boolean) {
  const xs = reps.flatMap((r) => Object.entries(r.perVmMs).filter(([vm]) => r.newSecondary[vm]?.standby === standby).map(([, ms]) => ms));
  return { n: xs.length, p50: median(xs), p90: percentile(xs, 0.9), max: max(xs) };
}
const summary = {
  reps: reps.length,
  reprotectMs: { p50: median(all), p90: percentile(all, 0.9), p99: percentile(all, 0.99), min: min(all), max: max(all) },
  perVmMsWithStandby: perVm(true),
  perVmMsWithoutStandby: perVm(false),
  load: { min: min(reps.map((r) => r.load)), p50: median(reps.map((r) => r.load)), max: max(reps.map((r) => r.load)) },
  reprotectMsPrimaryLost: { n: withPrimary.length, p50: median(withPrimary) },
  reprotectMsSecondaryOnly: { n: secondaryOnly.length, p50: median(secondaryOnly) },
  clientGapMs: { p50: median(gaps), max: max(gaps) },
  decisionMs: { p50: median(reps.flatMap((r) => Object.values(r.decisionMs))) },
};
process.stdout.write(
  `\nhost death → all affected VMs protected again: p50 ${fmt(summary.reprotectMs.p50)} ms, p90 ${fmt(summary.reprotectMs.p90)} ms, p99 ${fmt(summary.reprotectMs.p99)} ms (min ${fmt(summary.reprotectMs.min)}, max ${fmt(summary.reprotectMs.max)}) over ${reps.length} repetitions at load ${summary.load.min.toFixed(1)}–${summary.load.max.toFixed(1)}; ` +
    `with a primary lost p50 ${fmt(summary.reprotectMsPrimaryLost.p50)} ms (${withPrimary.length}), secondaries only p50 ${fmt(summary.reprotectMsSecondaryOnly.p50)} ms (${secondaryOnly.length}); ` +
    `per VM, new secondary on an agent with a standby p50 ${fmt(summary.perVmMsWithStandby.p50)} ms (${summary.perVmMsWithStandby.n}), without p50 ${fmt(summary.perVmMsWithoutStandby.p50)} ms (${summary.perVmMsWithoutStandby.n}); ` +
    `new secondary ordered p50 ${fmt(summary.decisionMs.p50)} ms after the kill; longest client gap p50 ${fmt(summary.clientGapMs.p50)} ms, max ${fmt(summary.clientGapMs.max)} ms\n`,
);
mkdirSync(RESULTS_DIR, { recursive: true });
writeFileSync(
  join(RESULTS_DIR, opts.results),
  `${JSON.stringify(
    {
      benchmark: 'cluster: host death to all affected FT VMs protected again',
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, loadavg: loadavg() },
      setup: {
        hosts: 'four agent processes on one machine (h1 4000 MIPS / 4 GiB, the others 1000 / 1 GiB), real etcd on loopback, one manager (integrated, manual)',
        standby: STANDBY === 'mixed' ? 'mixed: each agent start alternates between a standby process and none' : STANDBY,
        vms: `${VMS} FT kvserver VMs (16 MiB), a write load each; FT timeout 5000 ms (host deaths close sockets), heartbeat 100 ms`,
        failure: 'SIGKILL of the process group of an agent (alternately the busiest with a primary, the busiest with only secondaries); the host comes back after its record expired',
        ttls: `instance records ${INSTANCE_TTL_MS / 1000} s, host records ${HOST_TTL_MS / 1000} s, election 2 s`,
      },
      summary,
      reps,
    },
    null,
    2,
  )}\n`,
);
process.stdout.write(`wrote ${join(RESULTS_DIR, opts.results)}\n`);
