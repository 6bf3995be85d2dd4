// `node bench/build/bench/src/placement.js`: the placement engine at 100, 1 000 and 10 000 hosts with
// 10 VMs per host (10 % FT): power-on of the whole inventory, one placement into a full cluster, and
// load balancing of a skewed cluster (time, moves, spread before/after). Writes bench/results/placement.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import {
  type BalanceResult,
  type ClusterSnapshot,
  type HostSpec,
  Placement,
  type PlacementRule,
  type VmSpec,
  applyAnswer,
} from '../../src/cluster/placement/index.js';
import { RESULTS_DIR } from './paths.js';
import { median } from './stats.js';

const GiB = 1024 ** 3;
const MB = 1e6;
const BASELINE = 'rv32imac-v2';

const { values: opts } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100,1000,10000' },
    'max-moves': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write(`Usage: node bench/build/bench/src/placement.js [--sizes 100,1000,10000] [--max-moves N]
  --max-moves N   moves per balancing answer (default: 2 × hosts)
`);
  process.exit(0);
}
const sizes = opts.sizes.split(',').map(Number);
for (const n of sizes) if (!Number.isInteger(n) || n < 2) throw new Error(`--sizes: ${n} is not a host count ≥ 2`);

/** mulberry32: the bench's own seeded PRNG, so every run measures the same clusters. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CLASSES = [
  { mips: 16_000, mem: 128 * GiB },
  { mips: 24_000, mem: 256 * GiB },
  { mips: 32_000, mem: 384 * GiB },
];

/** H hosts (three sizes, 5 % of an older FT compat id, 20 racks) and 10 H unplaced VMs (10 % FT). */
function inventory(h: number, seed: number): ClusterSnapshot {
  const r = rng(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
  const pad = String(h - 1).length;
  const hosts: HostSpec[] = [];
  for (let i = 0; i < h; i++) {
    const c = CLASSES[int(0, 2)]!;
    hosts.push({
      id: `host-${String(i).padStart(pad, '0')}`,
      capacity: { mips: c.mips, memoryBytes: c.mem, logBandwidth: 125 * MB },
      ftCompatId: r() < 0.05 ? 'rv32imac-v1' : BASELINE,
      groups: [`rack-${i % 20}`],
    });
  }
  const vms: VmSpec[] = [];
  const vpad = String(10 * h - 1).length;
  for (let i = 0; i < 10 * h; i++) {
    const ft = r() < 0.1;
    vms.push({
      id: `vm-${String(i).padStart(vpad, '0')}`,
      demand: { mips: int(2, 24) * 100, memoryBytes: int(2, 20) * GiB, logBandwidth: ft ? int(1, 30) * MB : 0 },
      vcpus: ft ? int(1, 2) : int(1, 8),
      ft,
    });
  }
  // One hard anti-affinity pair per 100 VMs and one soft "should run in rack-0" rule per 100 VMs.
  const rules: PlacementRule[] = [];
  for (let k = 0; k + 1 < vms.length; k += 100) {
    rules.push({ kind: 'vm-vm', id: `apart-${k}`, type: 'anti-affinity', hard: true, vms: [vms[k]!.id, vms[k + 1]!.id] });
    rules.push({ kind: 'vm-host', id: `rack0-${k}`, type: 'should', vms: [vms[k + 2]!.id], hostGroup: 'rack-0' });
  }
  return { hosts, vms, rules, compatBaseline: BASELINE };
}

/**
 * The same inventory placed with a skew (host index ∝ u², so low-numbered hosts get far more), each
 * VM on the first host from its draw that fits capacity, FT caps, compat and the anti-affinity pairs:
 * a valid but badly balanced cluster for the balancer to work on.
 */
function skewed(inv: ClusterSnapshot, seed: number): ClusterSnapshot {
  const r = rng(seed);
  const hosts = inv.hosts;
  const H = hosts.length;
  const used = hosts.map(() => ({ mips: 0, mem: 0, log: 0, ft: 0, vcpus: 0 }));
  const mate = new Map<string, string>();
  for (const rule of inv.rules ?? []) {
    if (rule.kind === 'vm-vm') {
      mate.set(rule.vms[0]!, rule.vms[1]!);
      mate.set(rule.vms[1]!, rule.vms[0]!);
    }
  }
  const where = new Map<string, number>();
  const fits = (v: VmSpec, i: number, avoid: number): boolean => {
    const h = hosts[i]!;
    const u = used[i]!;
    if (i === avoid) return false;
    if (u.mips + v.demand.mips > h.capacity.mips || u.mem + v.demand.memoryBytes > h.capacity.memoryBytes) return false;
    if (u.log + (v.demand.logBandwidth ?? 0) > h.capacity.logBandwidth) return false;
    if (v.ft && (h.ftCompatId !== BASELINE || u.ft + 1 > 4 || u.vcpus + (v.vcpus ?? 1) > 8)) return false;
    const m = mate.get(v.id);
    return !(m !== undefined && where.get(m) === i);
  };
  const take = (v: VmSpec, i: number): void => {
    const u = used[i]!;
    u.mips += v.demand.mips;
    u.mem += v.demand.memoryBytes;
    u.log += v.demand.logBandwidth ?? 0;
    if (v.ft) {
      u.ft++;
      u.vcpus += v.vcpus ?? 1;
    }
  };
  const draw = (v: VmSpec, avoid: number): number => {
    for (let tries = 0; tries < 64; tries++) {
      const i = Math.floor(H * r() ** 2);
      if (fits(v, i, avoid)) return i;
    }
    for (let i = 0; i < H; i++) if (fits(v, i, avoid)) return i;
    return -1;
  };
  const vms = inv.vms.map((v) => {
    const p = draw(v, -1);
    if (p < 0) return { ...v };
    take(v, p);
    where.set(v.id, p);
    if (!v.ft) return { ...v, host: hosts[p]!.id };
    const s = draw(v, p);
    if (s < 0) return { ...v, host: hosts[p]!.id };
    take(v, s);
    return { ...v, host: hosts[p]!.id, secondaryHost: hosts[s]!.id };
  });
  return { ...inv, vms };
}

function time<T>(f: () => T): { ms: number; value: T } {
  const t0 = performance.now();
  const value = f();
  return { ms: performance.now() - t0, value };
}

interface BalanceRow {
  mode: 'integrated' | 'legacy';
  ms: number;
  moves: number;
  byKind: Record<string, number>;
  spreadBefore: number;
  spreadAfter: number;
  stop: string;
  hardAfter: number;
}

interface Row {
  hosts: number;
  vms: number;
  ftVms: number;
  buildMs: number;
  placeAll: { ms: number; placed: number; unplaceable: number; windowShare: number; spreadAfter: number; hardAfter: number };
  placeOneMs: { vm: number; ftPair: number };
  balance: BalanceRow[];
}

function balanceRow(snap: ClusterSnapshot, mode: 'integrated' | 'legacy', maxMoves: number): BalanceRow {
  const s = mode === 'legacy' ? { ...snap, compatBaseline: undefined } : snap;
  const { ms, value: r } = time((): BalanceResult => new Placement(s).balance({ maxMoves }));
  const byKind: Record<string, number> = {};
  for (const rec of r.recommendations) byKind[rec.move.kind] = (byKind[rec.move.kind] ?? 0) + 1;
  const after = new Placement(applyAnswer(s, r)).audit();
  return {
    mode,
    ms,
    moves: r.recommendations.length,
    byKind,
    spreadBefore: r.spreadBefore.combined,
    spreadAfter: after.spread.combined,
    stop: r.stop.code,
    hardAfter: after.hard.length + after.overcommitted.length,
  };
}

const rows: Row[] = [];
for (const h of sizes) {
  process.stderr.write(`placement bench: ${h} hosts…\n`);
  const inv = inventory(h, 1000 + h);
  const ftVms = inv.vms.filter((v) => v.ft).length;
  const build = time(() => new Placement(inv));
  const plan = time(() => build.value.placeAll());
  const placed = applyAnswer(inv, plan.value);
  const audit = new Placement(placed).audit();

  // One more VM and one more FT pair into the full cluster: median of 5 calls each.
  const probeVm: VmSpec = { id: 'probe-vm', demand: { mips: 1000, memoryBytes: 8 * GiB } };
  const probeFt: VmSpec = { id: 'probe-ft', demand: { mips: 1000, memoryBytes: 8 * GiB, logBandwidth: 10 * MB }, ft: true };
  const full = new Placement({ ...placed, vms: [...placed.vms, probeVm, probeFt] });
  const one = (id: string): number => median(Array.from({ length: 5 }, () => time(() => full.place(id)).ms));

  const maxMoves = opts['max-moves'] ? Number(opts['max-moves']) : 2 * h;
  const skew = skewed(inv, 2000 + h);
  rows.push({
    hosts: h,
    vms: inv.vms.length,
    ftVms,
    buildMs: build.ms,
    placeAll: {
      ms: plan.ms,
      placed: plan.value.placements.length,
      unplaceable: plan.value.unplaceable.length,
      windowShare: plan.value.placements.filter((p) => p.searched === 'window').length / Math.max(1, plan.value.placements.length),
      spreadAfter: plan.value.spreadAfter.combined,
      hardAfter: audit.hard.length + audit.overcommitted.length,
    },
    placeOneMs: { vm: one('probe-vm'), ftPair: one('probe-ft') },
    balance: [balanceRow(skew, 'integrated', maxMoves), balanceRow(skew, 'legacy', maxMoves)],
  });
}

// Report.
const pad = (cells: string[], widths: number[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
function table(header: string[], body: string[][]): string {
  const widths = header.map((x, i) => Math.max(x.length, ...body.map((r) => r[i]!.length)));
  return [pad(header, widths), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map((r) => pad(r, widths))].join('\n');
}
const f = (x: number, d = 1): string => x.toFixed(d);
const out: string[] = [];
out.push('Placement engine: 10 VMs per host (10 % FT), integrated mode unless noted.\n');
out.push(
  table(
    ['hosts', 'VMs', 'FT VMs', 'index ms', 'power-on ms', 'placed', 'unplaceable', 'window %', 'spread after', 'place 1 VM ms', 'place FT pair ms'],
    rows.map((r) => [
      String(r.hosts),
      String(r.vms),
      String(r.ftVms),
      f(r.buildMs),
      f(r.placeAll.ms),
      String(r.placeAll.placed),
      String(r.placeAll.unplaceable),
      f(r.placeAll.windowShare * 100),
      f(r.placeAll.spreadAfter, 4),
      f(r.placeOneMs.vm, 2),
      f(r.placeOneMs.ftPair, 2),
    ]),
  ),
);
out.push('');
out.push('Balancing a skewed cluster (moves capped at 2 × hosts per answer):\n');
out.push(
  table(
    ['hosts', 'mode', 'balance ms', 'moves', 'migrate', 'secondary', 'switch', 'spread before', 'spread after', 'stop', 'broken after'],
    rows.flatMap((r) =>
      r.balance.map((b) => [
        String(r.hosts),
        b.mode,
        f(b.ms),
        String(b.moves),
        String(b.byKind['migrate'] ?? 0),
        String(b.byKind['move-secondary'] ?? 0),
        String(b.byKind['switch-primary'] ?? 0),
        f(b.spreadBefore, 4),
        f(b.spreadAfter, 4),
        b.stop,
        String(b.hardAfter),
      ]),
    ),
  ),
);
process.stdout.write(out.join('\n') + '\n');

mkdirSync(RESULTS_DIR, { recursive: true });
const file = join(RESULTS_DIR, 'placement.json');
writeFileSync(
  file,
  JSON.stringify(
    {
      date: new Date().toISOString(),
      node: process.version,
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      loadavg: loadavg(),
      rows,
    },
    null,
    2,
  ) + '\n',
);
process.stderr.write(`wrote ${file}\n`);
