// Working state of one placement operation: where every half runs, per-host usage, per-rule counts and
// the sums behind the load spread, updated incrementally. A private copy per operation; never shared.
import type { Cluster } from './model.js';

/** Spread of normalised host load over the hosts that take part in balancing. */
export interface Spread {
  /** Standard deviation of CPU load (demand / capacity) across hosts. */
  cpu: number;
  /** Standard deviation of memory load across hosts. */
  memory: number;
  /** √((cpu² + memory²) / 2): the figure balancing minimises. */
  combined: number;
  /** Hosts counted: connected, not in maintenance, not being evacuated. */
  hosts: number;
}

/**
 * Mutable placement of every half. A half is coded `vm * 2 + (secondary ? 1 : 0)`; a non-FT VM has
 * only half 0. A half "runs" when it has a host and that host is connected: only running halves use
 * capacity and count in rules.
 */
export class State {
  readonly c: Cluster;
  /** Host of the VM / the FT primary, -1 for none. */
  readonly pri: Int32Array;
  /** Host of the FT secondary, -1 for none. */
  readonly sec: Int32Array;
  readonly usedMips: Float64Array;
  readonly usedMem: Float64Array;
  readonly usedLog: Float64Array;
  readonly ftVms: Int32Array;
  readonly ftVcpus: Int32Array;
  /** Running halves per host, ascending. */
  readonly onHost: number[][];
  /** Per VM-VM rule: host → number of members whose primary runs there. */
  readonly ruleCount: Map<number, number>[];
  /** Per VM-VM rule: members whose primary runs somewhere. */
  readonly rulePlaced: Int32Array;
  /** 1 for hosts in the spread population. */
  readonly pop: Uint8Array;
  /** The host being evacuated (not a target, not in the population), or -1. */
  readonly excluded: number;
  /** Population size and the sums of CPU and memory load over it. */
  n: number;
  s1c: number;
  s1m: number;
  readonly #scratch = new Float64Array(4);

  private constructor(c: Cluster, excluded: number, src?: State) {
    this.c = c;
    this.excluded = excluded;
    const H = c.hostIds.length;
    const V = c.vmIds.length;
    if (src) {
      this.pri = src.pri.slice();
      this.sec = src.sec.slice();
      this.usedMips = src.usedMips.slice();
      this.usedMem = src.usedMem.slice();
      this.usedLog = src.usedLog.slice();
      this.ftVms = src.ftVms.slice();
      this.ftVcpus = src.ftVcpus.slice();
      this.onHost = src.onHost.map((l) => l.slice());
      this.ruleCount = src.ruleCount.map((m) => new Map(m));
      this.rulePlaced = src.rulePlaced.slice();
      this.pop = src.pop;
      this.n = src.n;
      this.s1c = src.s1c;
      this.s1m = src.s1m;
      return;
    }
    this.pri = new Int32Array(V).fill(-1);
    this.sec = new Int32Array(V).fill(-1);
    this.usedMips = new Float64Array(H);
    this.usedMem = new Float64Array(H);
    this.usedLog = new Float64Array(H);
    this.ftVms = new Int32Array(H);
    this.ftVcpus = new Int32Array(H);
    this.onHost = Array.from({ length: H }, () => []);
    this.ruleCount = c.vmRules.map(() => new Map());
    this.rulePlaced = new Int32Array(c.vmRules.length);
    this.pop = new Uint8Array(H);
    this.n = 0;
    this.s1c = 0;
    this.s1m = 0;
    for (let h = 0; h < H; h++) {
      if (c.alive[h] && !c.maintenance[h] && h !== excluded) {
        this.pop[h] = 1;
        this.n++;
      }
    }
  }

  /** The snapshot's own placement; `excluded` is a host being evacuated. */
  static initial(c: Cluster, excluded = -1): State {
    const s = new State(c, excluded);
    for (let v = 0; v < c.vmIds.length; v++) {
      if (c.initialPrimary[v]! >= 0) s.add(v, false, c.initialPrimary[v]!);
      if (c.initialSecondary[v]! >= 0) s.add(v, true, c.initialSecondary[v]!);
    }
    return s;
  }

  /** An independent copy (for trial moves that may have to be rolled back). */
  clone(): State {
    return new State(this.c, this.excluded, this);
  }

  /** Host of a half, -1 for none. */
  hostOf(vm: number, secondary: boolean): number {
    return secondary ? this.sec[vm]! : this.pri[vm]!;
  }

  /** Whether the half has a connected host. */
  running(vm: number, secondary: boolean): boolean {
    const h = this.hostOf(vm, secondary);
    return h >= 0 && this.c.alive[h] === 1;
  }

  /** Whether the host may receive a half. */
  isTarget(h: number): boolean {
    return this.c.alive[h] === 1 && this.c.maintenance[h] === 0 && h !== this.excluded;
  }

  /** CPU load of host h: MIPS demand of its running halves / MIPS capacity. */
  cpu(h: number): number {
    return this.usedMips[h]! / this.c.capMips[h]!;
  }

  /** Memory load of host h: memory of its running halves / memory capacity. */
  memory(h: number): number {
    return this.usedMem[h]! / this.c.capMem[h]!;
  }

  /** Puts a half on host `h` (which must hold no half of it yet). */
  add(vm: number, secondary: boolean, h: number): void {
    const c = this.c;
    if (secondary) this.sec[vm] = h;
    else this.pri[vm] = h;
    if (!c.alive[h]) return;
    this.usedMips[h]! += c.mips[vm]!;
    this.usedMem[h]! += c.mem[vm]!;
    this.usedLog[h]! += c.log[vm]!;
    if (this.pop[h]) {
      this.s1c += c.mips[vm]! / c.capMips[h]!;
      this.s1m += c.mem[vm]! / c.capMem[h]!;
    }
    if (c.ft[vm]) {
      this.ftVms[h]! += 1;
      this.ftVcpus[h]! += c.vcpus[vm]!;
    }
    insertSorted(this.onHost[h]!, vm * 2 + (secondary ? 1 : 0));
    if (!secondary) this.countRules(vm, h, 1);
  }

  /** Takes a half off its host. */
  remove(vm: number, secondary: boolean): void {
    const c = this.c;
    const h = this.hostOf(vm, secondary);
    if (h < 0) return;
    if (secondary) this.sec[vm] = -1;
    else this.pri[vm] = -1;
    if (!c.alive[h]) return;
    this.usedMips[h]! -= c.mips[vm]!;
    this.usedMem[h]! -= c.mem[vm]!;
    this.usedLog[h]! -= c.log[vm]!;
    if (this.pop[h]) {
      this.s1c -= c.mips[vm]! / c.capMips[h]!;
      this.s1m -= c.mem[vm]! / c.capMem[h]!;
    }
    if (c.ft[vm]) {
      this.ftVms[h]! -= 1;
      this.ftVcpus[h]! -= c.vcpus[vm]!;
    }
    removeSorted(this.onHost[h]!, vm * 2 + (secondary ? 1 : 0));
    if (!secondary) this.countRules(vm, h, -1);
  }

  /** Moves a half to host `to`. */
  move(vm: number, secondary: boolean, to: number): void {
    this.remove(vm, secondary);
    this.add(vm, secondary, to);
  }

  /**
   * Controlled switch of an FT pair: the secondary's host becomes the primary's, the old primary stops
   * and a new secondary starts on `newSecondary` (which may be the old primary's host).
   */
  switchPrimary(vm: number, newSecondary: number): void {
    const oldSec = this.sec[vm]!;
    this.remove(vm, false);
    this.remove(vm, true);
    this.add(vm, false, oldSec);
    this.add(vm, true, newSecondary);
  }

  private countRules(vm: number, h: number, d: number): void {
    for (const r of this.c.vmRulesOf[vm]!) {
      const m = this.ruleCount[r]!;
      const n = (m.get(h) ?? 0) + d;
      if (n === 0) m.delete(h);
      else m.set(h, n);
      this.rulePlaced[r]! += d;
    }
  }

  /**
   * Change of the imbalance I = Σ_hosts ((cpu − mean)² + (mem − mean)²) / 2 if a VM's demand left
   * host `from` and arrived on host `to` (either may be -1 or outside the population).
   * O(1): ΔI = ΔΣx² − (2·Σx·ΔΣx + (ΔΣx)²) / n per dimension.
   */
  deltaImbalance(vm: number, from: number, to: number): number {
    this.leaveTerms(vm, from, this.#scratch);
    return this.deltaTo(vm, to, this.#scratch);
  }

  /**
   * The part of {@link deltaImbalance} that depends on the host left: t = [ΔΣx², ΔΣx] for CPU then
   * memory. Lets the balancer price one VM against many destinations without recomputing it.
   */
  leaveTerms(vm: number, from: number, t: Float64Array): void {
    const c = this.c;
    t.fill(0);
    if (from < 0 || !this.pop[from]) return;
    const x = this.cpu(from);
    const d = -c.mips[vm]! / c.capMips[from]!;
    t[0] = 2 * x * d + d * d;
    t[1] = d;
    const y = this.memory(from);
    const e = -c.mem[vm]! / c.capMem[from]!;
    t[2] = 2 * y * e + e * e;
    t[3] = e;
  }

  /** {@link deltaImbalance} from precomputed {@link leaveTerms} and the host arrived on. */
  deltaTo(vm: number, to: number, t: Float64Array): number {
    const c = this.c;
    const n = this.n;
    if (n === 0) return 0;
    let dc2 = t[0]!;
    let dc1 = t[1]!;
    let dm2 = t[2]!;
    let dm1 = t[3]!;
    if (to >= 0 && this.pop[to]) {
      const x = this.usedMips[to]! / c.capMips[to]!;
      const d = c.mips[vm]! / c.capMips[to]!;
      dc2 += 2 * x * d + d * d;
      dc1 += d;
      const y = this.usedMem[to]! / c.capMem[to]!;
      const e = c.mem[vm]! / c.capMem[to]!;
      dm2 += 2 * y * e + e * e;
      dm1 += e;
    }
    const di = dc2 - (2 * this.s1c * dc1 + dc1 * dc1) / n + (dm2 - (2 * this.s1m * dm1 + dm1 * dm1) / n);
    return di / 2;
  }

  /** Spread of load over the population, recomputed from usage (no incremental drift). */
  spread(): Spread {
    const H = this.c.hostIds.length;
    let n = 0;
    let sc = 0;
    let sm = 0;
    for (let h = 0; h < H; h++) {
      if (!this.pop[h]) continue;
      n++;
      sc += this.cpu(h);
      sm += this.memory(h);
    }
    if (n === 0) return { cpu: 0, memory: 0, combined: 0, hosts: 0 };
    const mc = sc / n;
    const mm = sm / n;
    let vc = 0;
    let vm = 0;
    for (let h = 0; h < H; h++) {
      if (!this.pop[h]) continue;
      vc += (this.cpu(h) - mc) ** 2;
      vm += (this.memory(h) - mm) ** 2;
    }
    vc /= n;
    vm /= n;
    return { cpu: Math.sqrt(vc), memory: Math.sqrt(vm), combined: Math.sqrt((vc + vm) / 2), hosts: n };
  }
}

function insertSorted(a: number[], x: number): void {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  a.splice(lo, 0, x);
}

function removeSorted(a: number[], x: number): void {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  if (a[lo] === x) a.splice(lo, 1);
}

/**
 * Hosts of the population sorted by one load figure (then by index), kept sorted as loads change:
 * the balancer reads the most and least loaded hosts from its ends without scanning every host.
 *
 *   order: [ least loaded … most loaded ]   key[h]: the figure h is filed under
 */
export class LoadIndex {
  readonly order: Int32Array;
  readonly key: Float64Array;
  private readonly keyOf: (h: number) => number;

  /** Files the population hosts (those `filter` accepts, when given) under `keyOf`. */
  constructor(s: State, keyOf: (h: number) => number, filter?: (h: number) => boolean) {
    const H = s.c.hostIds.length;
    this.keyOf = keyOf;
    this.key = new Float64Array(H);
    const hosts: number[] = [];
    for (let h = 0; h < H; h++) {
      if (!s.pop[h] || (filter && !filter(h))) continue;
      hosts.push(h);
      this.key[h] = keyOf(h);
    }
    hosts.sort((a, b) => this.key[a]! - this.key[b]! || a - b);
    this.order = Int32Array.from(hosts);
  }

  get size(): number {
    return this.order.length;
  }

  /** First position in [lo, hi) whose (key, host) is not less than (k, h). */
  private lowerBound(k: number, h: number, lo: number, hi: number): number {
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const o = this.order[mid]!;
      const ko = this.key[o]!;
      if (ko < k || (ko === k && o < h)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Re-files host `h` (in the population) under its current figure, shifting only the hosts it passes. */
  update(h: number): void {
    const k = this.keyOf(h);
    const old = this.key[h]!;
    if (k === old) return;
    const o = this.order;
    const from = this.lowerBound(old, h, 0, o.length);
    this.key[h] = k;
    if (k > old) {
      const to = this.lowerBound(k, h, from + 1, o.length) - 1;
      o.copyWithin(from, from + 1, to + 1);
      o[to] = h;
    } else {
      const to = this.lowerBound(k, h, 0, from);
      o.copyWithin(to + 1, to, from);
      o[to] = h;
    }
  }

  /** The `k` least loaded hosts. */
  lowest(k: number): number[] {
    return Array.from(this.order.subarray(0, Math.min(k, this.order.length)));
  }

  /** The `k` most loaded hosts. */
  highest(k: number): number[] {
    return Array.from(this.order.subarray(Math.max(0, this.order.length - k)));
  }
}
