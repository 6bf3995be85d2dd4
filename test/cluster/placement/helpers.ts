// Fixtures for the placement tests: small builders, a seeded PRNG, random clusters, and an oracle that
// re-checks hard rules and capacity from the snapshot alone — written apart from the engine's rules.ts
// so that a bug there cannot hide itself.
import type { ClusterSnapshot, HostSpec, Move, PlacementRule, VmSpec } from '../../../src/cluster/placement/index.js';

export const GiB = 1024 ** 3;
export const MB = 1e6;

/** A host with round capacities; override anything. */
export function host(id: string, over: Partial<HostSpec> & { mips?: number; memGiB?: number; logMB?: number } = {}): HostSpec {
  const { mips = 10_000, memGiB = 64, logMB = 125, ...rest } = over;
  return { id, capacity: { mips, memoryBytes: memGiB * GiB, logBandwidth: logMB * MB }, ftCompatId: 'rv32imac-v1', ...rest };
}

/** A VM; override anything. */
export function vm(id: string, over: Partial<VmSpec> & { mips?: number; memGiB?: number; logMB?: number } = {}): VmSpec {
  const { mips = 1000, memGiB = 4, logMB = 0, ...rest } = over;
  return { id, demand: { mips, memoryBytes: Math.round(memGiB * GiB), logBandwidth: Math.round(logMB * MB) }, ...rest };
}

/** An FT VM (10 MB/s of log by default). */
export function ftVm(id: string, over: Partial<VmSpec> & { mips?: number; memGiB?: number; logMB?: number } = {}): VmSpec {
  return vm(id, { logMB: 10, ...over, ft: true });
}

/** sfc32: a small, fast, seedable PRNG (no dependency), uniform in [0, 1). */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  constructor(seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.next();
  }
  next(): number {
    const a = this.#a;
    const b = this.#b;
    const c = this.#c;
    const d = this.#d;
    const t = (((a + b) | 0) + d) | 0;
    this.#d = (d + 1) | 0;
    this.#a = b ^ (b >>> 9);
    this.#b = (c + (c << 3)) | 0;
    this.#c = (((c << 21) | (c >>> 11)) + t) | 0;
    return (t >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)]!;
  }
  shuffle<T>(xs: readonly T[]): T[] {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
}

/** A random cluster with random rules. VMs are unplaced unless `placeRandomly`. */
export function randomCluster(rng: Rng, opts: { placeRandomly?: boolean; maxHosts?: number; maxVms?: number } = {}): ClusterSnapshot {
  const nh = rng.int(2, opts.maxHosts ?? 9);
  const compatIds = ['rv32imac-v1', 'rv32imac-v2'];
  const groupNames = ['g1', 'g2', 'g3'];
  const hosts: HostSpec[] = [];
  for (let i = 0; i < nh; i++) {
    const h: HostSpec = {
      id: `host-${String.fromCharCode(97 + rng.int(0, 25))}${i}`,
      capacity: { mips: rng.int(2, 16) * 1000, memoryBytes: rng.int(8, 64) * GiB, logBandwidth: rng.pick([0, 50, 125, 125, 125]) * MB },
      ftCompatId: rng.chance(0.75) ? compatIds[0]! : compatIds[1]!,
    };
    const gs = groupNames.filter(() => rng.chance(0.35));
    if (gs.length) h.groups = gs;
    if (rng.chance(0.1)) h.maintenance = true;
    if (rng.chance(0.08)) h.connected = false;
    if (rng.chance(0.1)) h.maxFtVms = rng.int(0, 3);
    if (rng.chance(0.1)) h.maxFtVcpus = rng.int(1, 6);
    hosts.push(h);
  }
  const nv = rng.int(0, opts.maxVms ?? 24);
  const vms: VmSpec[] = [];
  for (let i = 0; i < nv; i++) {
    const ft = rng.chance(0.35);
    const v: VmSpec = {
      id: `vm-${i}`,
      demand: { mips: rng.int(1, 30) * 100, memoryBytes: rng.int(1, 16) * (GiB / 2), logBandwidth: ft ? rng.int(1, 40) * MB : 0 },
    };
    if (rng.chance(0.3)) v.vcpus = rng.int(1, 4);
    if (ft) {
      v.ft = true;
      if (rng.chance(0.85)) v.registeredHost = rng.pick(hosts).id;
      if (rng.chance(0.1)) v.ftCompatId = rng.pick(compatIds);
    }
    vms.push(v);
  }
  const rules: PlacementRule[] = [];
  const usedGroups = [...new Set(hosts.flatMap((h) => h.groups ?? []))];
  const nr = nv < 2 ? 0 : rng.int(0, 5);
  for (let i = 0; i < nr; i++) {
    const members = rng.shuffle(vms.map((v) => v.id)).slice(0, rng.int(1, Math.min(3, nv)));
    if (rng.chance(0.5) && usedGroups.length) {
      rules.push({ kind: 'vm-host', id: `r${i}`, type: rng.pick(['must', 'must-not', 'should', 'should-not'] as const), vms: members, hostGroup: rng.pick(usedGroups) });
    } else if (members.length >= 2) {
      rules.push({ kind: 'vm-vm', id: `r${i}`, type: rng.pick(['affinity', 'anti-affinity'] as const), hard: rng.chance(0.5), vms: members });
    }
  }
  const snap: ClusterSnapshot = { hosts, vms, rules };
  if (rng.chance(0.5)) snap.compatBaseline = compatIds[0]!;
  if (rng.chance(0.3)) snap.options = { overcommit: { mips: 1.5 } };
  if (rng.chance(0.2)) snap.options = { ...snap.options, maxFtVmsPerHost: rng.int(1, 4) };
  if (opts.placeRandomly) {
    for (const v of vms) {
      if (rng.chance(0.15)) continue;
      v.host = rng.pick(hosts).id;
      if (v.ft && rng.chance(0.8)) {
        const other = hosts.filter((h) => h.id !== v.host);
        if (other.length) v.secondaryHost = rng.pick(other).id;
      }
    }
  }
  return snap;
}

/** The snapshot with hosts, VMs and rules (and rule members) listed in another order. */
export function shuffled(rng: Rng, s: ClusterSnapshot): ClusterSnapshot {
  return {
    ...s,
    hosts: rng.shuffle(s.hosts),
    vms: rng.shuffle(s.vms),
    rules: rng.shuffle(s.rules ?? []).map((r) => ({ ...r, vms: rng.shuffle(r.vms) })),
  };
}

// ---- Oracle: hard rules and limits, straight from the snapshot -------------------------------------

const alive = (h: HostSpec | undefined): boolean => h !== undefined && h.connected !== false;

/** Every hard rule or limit the snapshot breaks, as text (empty when none). */
export function hardProblems(s: ClusterSnapshot): string[] {
  const problems: string[] = [];
  const hosts = new Map(s.hosts.map((h) => [h.id, h]));
  const runningOn = (id: string | undefined): HostSpec | undefined => {
    const h = id === undefined ? undefined : hosts.get(id);
    return alive(h) ? h : undefined;
  };
  const oc = s.options?.overcommit ?? {};
  const usage = new Map<string, { mips: number; mem: number; log: number; ft: number; vcpus: number }>();
  const use = (h: HostSpec, v: VmSpec): void => {
    const u = usage.get(h.id) ?? { mips: 0, mem: 0, log: 0, ft: 0, vcpus: 0 };
    u.mips += v.demand.mips;
    u.mem += v.demand.memoryBytes;
    u.log += v.demand.logBandwidth ?? 0;
    if (v.ft) {
      u.ft += 1;
      u.vcpus += v.vcpus ?? 1;
    }
    usage.set(h.id, u);
  };
  for (const v of s.vms) {
    const p = runningOn(v.host);
    const q = v.ft ? runningOn(v.secondaryHost) : undefined;
    if (p) use(p, v);
    if (q) use(q, v);
    if (v.ft && v.host !== undefined && v.host === v.secondaryHost) problems.push(`${v.id}: primary and secondary on ${v.host}`);
    for (const h of [p, q]) {
      if (!h) continue;
      if (v.ftCompatId !== undefined && h.ftCompatId !== v.ftCompatId) problems.push(`${v.id}: ${h.id} compat ≠ required`);
      if (v.ft && s.compatBaseline !== undefined && h.ftCompatId !== s.compatBaseline) problems.push(`${v.id}: ${h.id} compat ≠ baseline`);
    }
    if (p && q && p.ftCompatId !== q.ftCompatId) problems.push(`${v.id}: halves on hosts of different compat ids`);
  }
  for (const [id, u] of usage) {
    const h = hosts.get(id)!;
    const eps = 1e-9;
    if (u.mips > h.capacity.mips * (oc.mips ?? 1) * (1 + eps)) problems.push(`${id}: CPU overcommitted`);
    if (u.mem > h.capacity.memoryBytes * (oc.memory ?? 1) * (1 + eps)) problems.push(`${id}: memory overcommitted`);
    if (u.log > h.capacity.logBandwidth * (oc.logBandwidth ?? 1) * (1 + eps)) problems.push(`${id}: log bandwidth overcommitted`);
    // A cap of 0 is no limit (as vSphere's das.maxftvmsperhost).
    const vmCap = h.maxFtVms ?? s.options?.maxFtVmsPerHost ?? 4;
    const cpuCap = h.maxFtVcpus ?? s.options?.maxFtVcpusPerHost ?? 8;
    if (vmCap !== 0 && u.ft > vmCap) problems.push(`${id}: FT VM cap`);
    if (cpuCap !== 0 && u.vcpus > cpuCap) problems.push(`${id}: FT vCPU cap`);
  }
  const vms = new Map(s.vms.map((v) => [v.id, v]));
  for (const r of s.rules ?? []) {
    if (r.kind === 'vm-host') {
      if (r.type !== 'must' && r.type !== 'must-not') continue;
      for (const id of r.vms) {
        const v = vms.get(id)!;
        for (const h of [runningOn(v.host), v.ft ? runningOn(v.secondaryHost) : undefined]) {
          if (!h) continue;
          const inside = (h.groups ?? []).includes(r.hostGroup);
          if (inside !== (r.type === 'must')) problems.push(`${id}: rule ${r.id} (${r.type} ${r.hostGroup}) broken on ${h.id}`);
        }
      }
    } else if (r.kind === 'ft-split') {
      for (const id of r.vms) {
        const v = vms.get(id)!;
        const sites = (h: HostSpec | undefined) => (h === undefined ? undefined : r.hostGroups.filter((g) => (h.groups ?? []).includes(g)));
        const a = sites(runningOn(v.host));
        const b = v.ft ? sites(runningOn(v.secondaryHost)) : undefined;
        if (a?.length === 0 || b?.length === 0) problems.push(`${id}: rule ${r.id} (ft-split) broken: a half outside ${r.hostGroups.join(', ')}`);
        if (a !== undefined && b !== undefined && a.some((g) => b.includes(g))) problems.push(`${id}: rule ${r.id} (ft-split) broken: both halves in ${a.filter((g) => b.includes(g)).join(', ')}`);
      }
    } else if (r.hard) {
      const where = r.vms.map((id) => runningOn(vms.get(id)!.host)?.id).filter((x): x is string => x !== undefined);
      if (r.type === 'affinity' && new Set(where).size > 1) problems.push(`rule ${r.id}: affinity broken (${where.join(', ')})`);
      if (r.type === 'anti-affinity' && new Set(where).size < where.length) problems.push(`rule ${r.id}: anti-affinity broken (${where.join(', ')})`);
    }
  }
  return problems;
}

/** Applies one move to a snapshot (the test's own reading of the move semantics). */
export function applyMove(s: ClusterSnapshot, m: Move): ClusterSnapshot {
  const vms = s.vms.map((v) => {
    if (v.id !== m.vm) return v;
    if (m.kind === 'migrate') {
      if (v.host !== m.from) throw new Error(`stale migrate of ${m.vm}`);
      return { ...v, host: m.to };
    }
    if (m.kind === 'move-secondary') {
      if (v.secondaryHost !== m.from) throw new Error(`stale secondary move of ${m.vm}`);
      return { ...v, secondaryHost: m.to };
    }
    if (v.host !== m.from || v.secondaryHost !== m.newPrimaryHost) throw new Error(`stale switch of ${m.vm}`);
    return { ...v, host: m.newPrimaryHost, secondaryHost: m.newSecondaryHost };
  });
  return { ...s, vms };
}

/** Host ids that receive load in a move. */
export function destinations(m: Move): string[] {
  return m.kind === 'switch-primary' ? [m.newPrimaryHost, m.newSecondaryHost] : [m.to];
}

/** Standard deviation of normalised CPU / memory load over connected, non-maintenance hosts. */
export function oracleSpread(s: ClusterSnapshot): number {
  const pop = s.hosts.filter((h) => h.connected !== false && !h.maintenance);
  if (pop.length === 0) return 0;
  const cpu = new Map(pop.map((h) => [h.id, 0]));
  const mem = new Map(pop.map((h) => [h.id, 0]));
  for (const v of s.vms) {
    for (const id of [v.host, v.ft ? v.secondaryHost : undefined]) {
      if (id === undefined || !cpu.has(id)) continue;
      cpu.set(id, cpu.get(id)! + v.demand.mips);
      mem.set(id, mem.get(id)! + v.demand.memoryBytes);
    }
  }
  const sd = (xs: number[]): number => {
    const m = xs.reduce((a, b) => a + b, 0) / xs.length;
    return xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length;
  };
  const vc = sd(pop.map((h) => cpu.get(h.id)! / h.capacity.mips));
  const vm = sd(pop.map((h) => mem.get(h.id)! / h.capacity.memoryBytes));
  return Math.sqrt((vc + vm) / 2);
}
