// Load-balancing recommendations: moves that repair broken rules, then greedy moves that shrink the
// spread of host load, each worth more than its migration cost. Recommends only; never breaks a hard
// rule or a capacity limit, and never moves an FT VM in legacy mode.
import { PlacementInputError } from './errors.js';
import { formatBytes, formatFigure, formatLoad, gib } from './format.js';
import type { Cluster, PlacementMode } from './model.js';
import { type HalfSpec, type HostScore, scan, valid } from './place.js';
import {
  type HardViolation,
  type Overcommit,
  type Rejection,
  type SoftFinding,
  type SoftViolation,
  breaksHardRule,
  checkRules,
  hardViolationsOf,
  overcommits,
  partnerOf,
  ruleFindings,
  softDetails,
  softHostScore,
  softScore,
  softVmScore,
} from './rules.js';
import { LoadIndex, type Spread, State } from './state.js';

/** A live migration of a non-FT VM (or of an FT primary that has no secondary, in an evacuation). */
export interface MigrateMove {
  kind: 'migrate';
  vm: string;
  from: string;
  to: string;
}

/** The secondary of an FT pair re-created on another host (FT VMotion / a new clone). */
export interface MoveSecondaryMove {
  kind: 'move-secondary';
  vm: string;
  from: string;
  to: string;
  /** Host of the primary, which stays put. */
  primaryHost: string;
}

/**
 * A controlled switch: the primary on `from` stops, its secondary on `newPrimaryHost` goes live, and a
 * new secondary is cloned onto `newSecondaryHost` (which may be `from`, a plain role swap). This is how
 * a primary "moves": its load leaves `from` and arrives on `newSecondaryHost`.
 */
export interface SwitchPrimaryMove {
  kind: 'switch-primary';
  vm: string;
  from: string;
  newPrimaryHost: string;
  newSecondaryHost: string;
}

/** A recommended change, to be applied in order. */
export type Move = MigrateMove | MoveSecondaryMove | SwitchPrimaryMove;

/** Why a move is recommended. */
export type MoveReason =
  | {
      code: 'balance';
      /** Reduction of the imbalance. */
      benefit: number;
      /** Migration cost: costPerGiB × memory. */
      cost: number;
      /** What the benefit had to reach: minBenefit + cost. */
      required: number;
    }
  | { code: 'fix-hard-rule'; broken: Rejection[] }
  | { code: 'fix-soft-rule'; softBefore: number; softAfter: number; broken: SoftViolation[] };

/** Load of a host before and after a move. */
export interface HostLoadChange {
  host: string;
  cpuBefore: number;
  cpuAfter: number;
  memoryBefore: number;
  memoryAfter: number;
}

/** One recommendation with the numbers that decided it. */
export interface Recommendation {
  move: Move;
  reason: MoveReason;
  /** The host the load leaves and the host it arrives on (equal for a pure role swap). */
  source: HostLoadChange;
  destination: HostLoadChange;
  /** Combined spread before and after this move (after the moves listed before it). */
  spreadBefore: number;
  spreadAfter: number;
  message: string;
}

/** An FT VM the balancer leaves alone, and why. */
export interface FrozenVm {
  vm: string;
  reason: 'legacy-disabled' | 'not-protected';
  message: string;
}

/** Why the balancer stopped. */
export type BalanceStop =
  | { code: 'max-moves'; maxMoves: number; message: string }
  | {
      code: 'below-threshold';
      /** The best move found, which was not worth its cost. */
      best: { move: Move; benefit: number; cost: number; required: number };
      message: string;
    }
  | { code: 'no-beneficial-move'; message: string };

/** Answer of {@link balance}. */
export interface BalanceResult {
  kind: 'balance';
  mode: PlacementMode;
  recommendations: Recommendation[];
  spreadBefore: Spread;
  spreadAfter: Spread;
  stop: BalanceStop;
  frozen: FrozenVm[];
  /** What is still broken after the recommended moves. */
  remaining: { hard: HardViolation[]; soft: SoftFinding[]; overcommitted: Overcommit[] };
  /** The options in force. */
  options: Required<BalanceOptions>;
}

/** Tuning of {@link balance}. */
export interface BalanceOptions {
  /** Net imbalance reduction (benefit − cost) a balancing move must reach. Default 0.001. */
  minBenefit?: number;
  /** Migration cost per GiB of the VM's memory, in imbalance units. Default 0.0002. */
  costPerGiB?: number;
  /** Most moves recommended in one answer (repairs included). Default 1000. */
  maxMoves?: number;
  /**
   * Destination hosts: this many least loaded by CPU and as many by memory (for FT halves in integrated
   * mode, among the hosts of the baseline id). Default 16.
   */
  window?: number;
  /** When no move is worth it, the window doubles up to this before the balancer stops. Default 64. */
  maxWindow?: number;
  /** Recommend moves that repair broken hard VM-VM/VM-host/compat rules and soft rules. Default true. */
  fixRules?: boolean;
}

/** Defaults of {@link BalanceOptions}. */
export const DEFAULT_BALANCE_OPTIONS: Readonly<Required<BalanceOptions>> = Object.freeze({
  minBenefit: 0.001,
  costPerGiB: 0.0002,
  maxMoves: 1000,
  window: 16,
  maxWindow: 64,
  fixRules: true,
});

function resolveOptions(o: BalanceOptions): Required<BalanceOptions> {
  const r = { ...DEFAULT_BALANCE_OPTIONS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) };
  const num = (k: 'minBenefit' | 'costPerGiB'): void => {
    if (typeof r[k] !== 'number' || !Number.isFinite(r[k]) || r[k] < 0) throw new PlacementInputError(`balance.${k}`, `must be a non-negative number, got ${String(r[k])}`);
  };
  const int = (k: 'maxMoves' | 'window' | 'maxWindow', min: number): void => {
    if (!Number.isSafeInteger(r[k]) || r[k] < min) throw new PlacementInputError(`balance.${k}`, `must be an integer ≥ ${min}, got ${String(r[k])}`);
  };
  num('minBenefit');
  num('costPerGiB');
  int('maxMoves', 0);
  int('window', 1);
  int('maxWindow', 1);
  if (typeof r.fixRules !== 'boolean') throw new PlacementInputError('balance.fixRules', `must be true or false, got ${String(r.fixRules)}`);
  if (r.minBenefit === 0) {
    // A zero threshold could trade float noise back and forth; keep every accepted move a real gain.
    r.minBenefit = Number.MIN_VALUE;
  }
  return r;
}

/** A candidate move in internal indices. */
interface Cand {
  kind: 'migrate' | 'move-secondary' | 'switch-primary';
  vm: number;
  /** Host the load leaves. */
  from: number;
  /** Host the load arrives on (the new secondary's host for a switch). */
  to: number;
  /** Switch only: the secondary's host, which becomes the primary's. */
  via: number;
  dI: number;
  cost: number;
  dSoft: number;
}

/**
 * Whether a candidate with net benefit `net` should replace the best so far: a larger net wins; on an
 * exact tie a secondary move or migration wins over a switch (which also fails the primary over).
 */
function improves(net: number, bestNet: number, best: Cand | undefined, isSwitch: boolean): boolean {
  if (net !== bestNet) return net > bestNet;
  return best !== undefined && best.kind === 'switch-primary' && !isSwitch;
}

/** Whether the balancer may move this half at all. */
function movable(c: Cluster, s: State, vm: number, secondary: boolean): boolean {
  if (!s.running(vm, secondary)) return false;
  if (!c.ft[vm]) return true;
  return c.mode === 'integrated' && s.running(vm, !secondary);
}

function toMove(c: Cluster, s: State, m: Cand): Move {
  const H = c.hostIds;
  const vm = c.vmIds[m.vm]!;
  if (m.kind === 'migrate') return { kind: 'migrate', vm, from: H[m.from]!, to: H[m.to]! };
  if (m.kind === 'move-secondary') return { kind: 'move-secondary', vm, from: H[m.from]!, to: H[m.to]!, primaryHost: H[s.pri[m.vm]!]! };
  return { kind: 'switch-primary', vm, from: H[m.from]!, newPrimaryHost: H[m.via]!, newSecondaryHost: H[m.to]! };
}

/** One line naming a move. */
export function describeMove(m: Move): string {
  switch (m.kind) {
    case 'migrate':
      return `migrate ${m.vm} ${m.from} → ${m.to}`;
    case 'move-secondary':
      return `move the secondary of ${m.vm} ${m.from} → ${m.to} (primary stays on ${m.primaryHost})`;
    case 'switch-primary':
      return m.newSecondaryHost === m.from
        ? `switch ${m.vm}: the secondary on ${m.newPrimaryHost} goes live, a new secondary starts on ${m.from} (roles swapped)`
        : `switch ${m.vm}: the primary on ${m.from} stops, the secondary on ${m.newPrimaryHost} goes live, a new secondary starts on ${m.newSecondaryHost}`;
  }
}

/** Applies a candidate to the state. */
function applyCand(s: State, m: Cand): void {
  if (m.kind === 'migrate') s.move(m.vm, false, m.to);
  else if (m.kind === 'move-secondary') s.move(m.vm, true, m.to);
  else s.switchPrimary(m.vm, m.to);
}

function loadOf(c: Cluster, s: State, h: number): { cpu: number; memory: number } {
  return { cpu: s.cpu(h), memory: s.memory(h) };
}

/**
 * Best repair of one half that breaks a rule: a move to a valid host (any host in id order) where it
 * breaks fewer soft rules (`mode` soft) or no hard rule (`mode` hard). Returns undefined when none.
 */
function repairOf(c: Cluster, s: State, vm: number, secondary: boolean, mode: 'hard' | 'soft', costPerGiB: number): Cand | undefined {
  const a = s.hostOf(vm, secondary);
  const cost = costPerGiB * gib(c.mem[vm]!);
  if (!c.ft[vm] || secondary) {
    const spec: HalfSpec = { vm, secondary, freed: a, partner: partnerOf(s, vm, secondary), ignore: -1 };
    const sc = scan(c, s, spec);
    if (sc.best < 0 || sc.best === a) return undefined;
    const before = softScore(c, s, vm, secondary, a);
    const sco: HostScore = sc.score!;
    if (mode === 'soft') {
      // Among the hosts that break the fewest soft rules, the scan picked the smallest imbalance.
      if (sco.soft >= before) return undefined;
    }
    return { kind: secondary ? 'move-secondary' : 'migrate', vm, from: a, to: sc.best, via: -1, dI: sco.imbalanceDelta, cost, dSoft: sco.soft - before };
  }
  // A primary moves by a switch: it goes live on its secondary's host, a new secondary starts on T.
  const sHost = s.sec[vm]!;
  if (!s.isTarget(sHost) || !checkRules(c, s, vm, false, sHost, -1, -1, null)) return undefined;
  const spec: HalfSpec = { vm, secondary: true, freed: a, partner: sHost, ignore: -1 };
  const vmDelta = softVmScore(c, s, vm, sHost) - softVmScore(c, s, vm, a);
  let best: Cand | undefined;
  for (let t = 0; t < c.hostIds.length; t++) {
    if (!valid(c, s, spec, t, null)) continue;
    const dSoft = vmDelta + softHostScore(c, vm, t) - softHostScore(c, vm, a);
    if (mode === 'soft' && dSoft >= 0) continue;
    const dI = t === a ? 0 : s.deltaImbalance(vm, a, t);
    if (!best || dSoft < best.dSoft || (dSoft === best.dSoft && dI < best.dI)) best = { kind: 'switch-primary', vm, from: a, to: t, via: sHost, dI, cost, dSoft };
  }
  return best;
}

/**
 * Load-balancing recommendations for the snapshot, in the order to apply them. First repairs: halves
 * that break a hard rule (e.g. after a failover the new primary sits beside a VM it must avoid) move to
 * a valid host, then halves that break soft rules move where they break fewer. Then balancing, one
 * move at a time: every allowed move of a half to one of the least loaded hosts (by CPU and by memory)
 * is scored by the reduction of the imbalance I = Σ((cpu − mean)² + (mem − mean)²)/2, and the best
 * one is taken if that benefit exceeds its cost (costPerGiB × memory) by minBenefit. Each host's best
 * move is cached (a lazy greedy), so a move re-prices a few hosts, not all; before stopping every host
 * is re-priced and the destination window widened up to maxWindow. Moves never break a hard rule, a
 * capacity or FT cap, and never raise the number of broken soft rules. In legacy mode FT VMs stay
 * where they are.
 */
export function balance(c: Cluster, options: BalanceOptions = {}): BalanceResult {
  const opts = resolveOptions(options);
  const s = State.initial(c);
  const spreadBefore = s.spread();
  let imbalance = spreadBefore.combined ** 2 * spreadBefore.hosts;
  const recs: Recommendation[] = [];
  const frozen: FrozenVm[] = [];
  for (let vm = 0; vm < c.vmIds.length; vm++) {
    if (!c.ft[vm]) continue;
    const id = c.vmIds[vm]!;
    if (c.mode === 'legacy') {
      frozen.push({ vm: id, reason: 'legacy-disabled', message: `${id}: FT VM disabled for load balancing (legacy mode: no compatibility baseline)` });
    } else if (s.running(vm, false) !== s.running(vm, true)) {
      frozen.push({ vm: id, reason: 'not-protected', message: `${id}: only one half runs; place a secondary (placeSecondary) before it can be moved` });
    }
  }

  const record = (m: Cand, reason: MoveReason): void => {
    const fromBefore = loadOf(c, s, m.from);
    const toBefore = loadOf(c, s, m.to);
    const move = toMove(c, s, m);
    applyCand(s, m);
    const before = Math.sqrt(imbalance / Math.max(1, s.n));
    imbalance += m.dI;
    // The running sum drifts by rounding; below this it is a perfectly even cluster, not a figure.
    if (imbalance < 1e-12) imbalance = 0;
    const after = Math.sqrt(imbalance / Math.max(1, s.n));
    const source: HostLoadChange = { host: c.hostIds[m.from]!, cpuBefore: fromBefore.cpu, memoryBefore: fromBefore.memory, cpuAfter: s.cpu(m.from), memoryAfter: s.memory(m.from) };
    const destination: HostLoadChange = { host: c.hostIds[m.to]!, cpuBefore: toBefore.cpu, memoryBefore: toBefore.memory, cpuAfter: s.cpu(m.to), memoryAfter: s.memory(m.to) };
    recs.push({ move, reason, source, destination, spreadBefore: before, spreadAfter: after, message: recommendationMessage(move, reason, source, destination, before, after, c.mem[m.vm]!) });
  };

  // Repairs: hard rules first, then soft ones; one pass each, in VM order.
  if (opts.fixRules) {
    for (let vm = 0; vm < c.vmIds.length && recs.length < opts.maxMoves; vm++) {
      for (const secondary of c.ft[vm] ? [false, true] : [false]) {
        if (recs.length >= opts.maxMoves) break;
        if (!movable(c, s, vm, secondary) || !breaksHardRule(c, s, vm, secondary)) continue;
        const broken = hardViolationsOf(c, s, vm, secondary);
        const m = repairOf(c, s, vm, secondary, 'hard', opts.costPerGiB);
        if (m) record(m, { code: 'fix-hard-rule', broken });
      }
    }
    for (let vm = 0; vm < c.vmIds.length && recs.length < opts.maxMoves; vm++) {
      for (const secondary of c.ft[vm] ? [false, true] : [false]) {
        if (recs.length >= opts.maxMoves) break;
        if (!movable(c, s, vm, secondary) || breaksHardRule(c, s, vm, secondary)) continue;
        const h = s.hostOf(vm, secondary);
        const softBefore = softScore(c, s, vm, secondary, h);
        if (softBefore === 0) continue;
        const broken = softDetails(c, s, vm, secondary, h);
        const m = repairOf(c, s, vm, secondary, 'soft', opts.costPerGiB);
        if (m) record(m, { code: 'fix-soft-rule', softBefore, softAfter: softBefore + m.dSoft, broken });
      }
    }
  }

  // Balancing: a lazy greedy. Every host's best move (its halves priced against the destination
  // window) is cached in a max-heap. The top entry is recomputed if anything moved since it was
  // priced; if it is still on top and worth its cost it is applied. Other moves only fill the
  // destinations, so a cached figure is (nearly always) an upper bound and most hosts are never
  // re-priced. Before stopping, every host is priced afresh (and the window widened) to be sure.
  let stop: BalanceStop | undefined;
  const byCpu = new LoadIndex(s, (h) => s.cpu(h));
  const byMem = new LoadIndex(s, (h) => s.memory(h));
  const ftOnly = c.mode === 'integrated' && c.baseline !== undefined;
  const ftCpu = ftOnly ? new LoadIndex(s, (h) => s.cpu(h), (h) => c.compat[h] === c.baseline) : undefined;
  const ftMem = ftOnly ? new LoadIndex(s, (h) => s.memory(h), (h) => c.compat[h] === c.baseline) : undefined;
  let width = opts.window;
  const windowOf = (a: LoadIndex, b: LoadIndex): number[] => [...new Set([...a.lowest(width), ...b.lowest(width)])].sort((x, y) => x - y);
  let dests = windowOf(byCpu, byMem);
  let ftDests = ftCpu && ftMem ? windowOf(ftCpu, ftMem) : dests;
  const terms = new Float64Array(4);

  /** The best move of the halves on host a into the destination windows, or undefined. */
  const priceHost = (a: number): { cand: Cand; net: number } | undefined => {
    let best: Cand | undefined;
    let bestNet = -Infinity;
    for (const half of s.onHost[a]!) {
      const vm = half >> 1;
      const secondary = (half & 1) === 1;
      if (!movable(c, s, vm, secondary)) continue;
      const cost = opts.costPerGiB * gib(c.mem[vm]!);
      const targets = c.ft[vm] ? ftDests : dests;
      s.leaveTerms(vm, a, terms);
      if (!c.ft[vm] || secondary) {
        const spec: HalfSpec = { vm, secondary, freed: a, partner: partnerOf(s, vm, secondary), ignore: -1 };
        let softHere = -1;
        for (const b of targets) {
          if (b === a) continue;
          const dI = s.deltaTo(vm, b, terms);
          const net = -dI - cost;
          if (dI >= 0 || !improves(net, bestNet, best, false)) continue;
          if (!valid(c, s, spec, b, null)) continue;
          if (softHere < 0) softHere = softScore(c, s, vm, secondary, a);
          const dSoft = softScore(c, s, vm, secondary, b) - softHere;
          if (dSoft > 0) continue;
          best = { kind: secondary ? 'move-secondary' : 'migrate', vm, from: a, to: b, via: -1, dI, cost, dSoft };
          bestNet = net;
        }
      } else {
        const sHost = s.sec[vm]!;
        let primaryOk: boolean | undefined;
        const spec: HalfSpec = { vm, secondary: true, freed: a, partner: sHost, ignore: -1 };
        for (const t of targets) {
          if (t === a || t === sHost) continue;
          const dI = s.deltaTo(vm, t, terms);
          const net = -dI - cost;
          if (dI >= 0 || !improves(net, bestNet, best, true)) continue;
          primaryOk ??= s.isTarget(sHost) && checkRules(c, s, vm, false, sHost, -1, -1, null);
          if (!primaryOk) break;
          if (!valid(c, s, spec, t, null)) continue;
          const dSoft = softVmScore(c, s, vm, sHost) - softVmScore(c, s, vm, a) + softHostScore(c, vm, t) - softHostScore(c, vm, a);
          if (dSoft > 0) continue;
          best = { kind: 'switch-primary', vm, from: a, to: t, via: sHost, dI, cost, dSoft };
          bestNet = net;
        }
      }
    }
    return best ? { cand: best, net: bestNet } : undefined;
  };

  // Max-heap of hosts by cached net benefit (ties: smaller host index first).
  const H = c.hostIds.length;
  const cachedNet = new Float64Array(H).fill(-Infinity);
  const cachedCand: (Cand | undefined)[] = new Array<Cand | undefined>(H);
  const pricedAt = new Int32Array(H).fill(-1);
  let version = 0;
  const heap: number[] = [];
  const inHeap = new Uint8Array(H);
  const isSwitch = (h: number): number => (cachedCand[h]?.kind === 'switch-primary' ? 1 : 0);
  // Larger net first; on a tie a host whose move is not a switch, then the smaller host index.
  const above = (x: number, y: number): boolean =>
    cachedNet[x]! > cachedNet[y]! || (cachedNet[x] === cachedNet[y] && (isSwitch(x) - isSwitch(y) || x - y) < 0);
  const push = (h: number): void => {
    inHeap[h] = 1;
    heap.push(h);
    for (let i = heap.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!above(heap[i]!, heap[p]!)) break;
      [heap[i], heap[p]] = [heap[p]!, heap[i]!];
      i = p;
    }
  };
  const pop = (): number => {
    const top = heap[0]!;
    inHeap[top] = 0;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && above(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && above(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  };
  const price = (h: number): void => {
    const p = priceHost(h);
    cachedNet[h] = p ? p.net : -Infinity;
    cachedCand[h] = p?.cand;
    pricedAt[h] = version;
  };
  /** Prices every host afresh and rebuilds the heap. */
  const priceAll = (): void => {
    heap.length = 0;
    inHeap.fill(0);
    for (let h = 0; h < H; h++) {
      if (!s.pop[h] || s.onHost[h]!.length === 0) continue;
      price(h);
      if (cachedNet[h]! > -Infinity) push(h);
    }
  };
  priceAll();
  let freshAt = version;
  while (!stop) {
    if (recs.length >= opts.maxMoves) {
      stop = { code: 'max-moves', maxMoves: opts.maxMoves, message: `stopped after ${opts.maxMoves} moves (maxMoves); balancing again may find more` };
      break;
    }
    const top = heap.length > 0 ? heap[0]! : -1;
    if (top >= 0 && pricedAt[top] !== version) {
      pop();
      price(top);
      if (cachedNet[top]! > -Infinity) push(top);
      continue;
    }
    if (top >= 0 && cachedNet[top]! >= opts.minBenefit) {
      const best = cachedCand[top]!;
      record(best, { code: 'balance', benefit: -best.dI, cost: best.cost, required: opts.minBenefit + best.cost });
      version++;
      for (const h of [best.from, best.to, best.via]) {
        if (h < 0 || !s.pop[h]) continue;
        byCpu.update(h);
        byMem.update(h);
        if (ftCpu && ftMem && c.compat[h] === c.baseline) {
          ftCpu.update(h);
          ftMem.update(h);
        }
      }
      dests = windowOf(byCpu, byMem);
      ftDests = ftCpu && ftMem ? windowOf(ftCpu, ftMem) : dests;
      // A host that was not in the heap (nothing to move) may have gained a half: have it priced soon.
      for (const h of [best.to, best.via]) {
        if (h < 0 || !s.pop[h] || inHeap[h]) continue;
        cachedNet[h] = Infinity;
        push(h);
      }
      continue;
    }
    // The top is exact and not worth its cost. Make sure: price every host afresh, then widen.
    if (freshAt !== version) {
      priceAll();
      freshAt = version;
      continue;
    }
    if (width < opts.maxWindow && width < s.n) {
      width = Math.min(opts.maxWindow, width * 2);
      dests = windowOf(byCpu, byMem);
      ftDests = ftCpu && ftMem ? windowOf(ftCpu, ftMem) : dests;
      version++;
      priceAll();
      freshAt = version;
      continue;
    }
    if (top >= 0) {
      const b = cachedCand[top]!;
      const move = toMove(c, s, b);
      const required = opts.minBenefit + b.cost;
      stop = {
        code: 'below-threshold',
        best: { move, benefit: -b.dI, cost: b.cost, required },
        message: `best remaining move (${describeMove(move)}) reduces the imbalance by ${formatFigure(-b.dI)}, less than its cost ${formatFigure(b.cost)} (${formatBytes(c.mem[b.vm]!)}) + threshold ${formatFigure(opts.minBenefit)}`,
      };
    } else {
      stop = {
        code: 'no-beneficial-move',
        message: s.n < 2 ? 'fewer than two hosts take part in balancing' : `no allowed move to the ${Math.min(width, s.n)} least loaded hosts reduces the imbalance`,
      };
    }
  }

  const findings = ruleFindings(c, s);
  return {
    kind: 'balance',
    mode: c.mode,
    recommendations: recs,
    spreadBefore,
    spreadAfter: s.spread(),
    stop,
    frozen,
    remaining: { hard: findings.hard, soft: findings.soft, overcommitted: overcommits(c, s) },
    options: opts,
  };
}

function recommendationMessage(
  move: Move,
  reason: MoveReason,
  src: HostLoadChange,
  dst: HostLoadChange,
  before: number,
  after: number,
  mem: number,
): string {
  const load = (l: HostLoadChange): string =>
    `${l.host} cpu ${formatLoad(l.cpuBefore)} → ${formatLoad(l.cpuAfter)}, mem ${formatLoad(l.memoryBefore)} → ${formatLoad(l.memoryAfter)}`;
  const loads = src.host === dst.host ? '' : `; ${load(src)}; ${load(dst)}`;
  let why: string;
  if (reason.code === 'balance') {
    why = `balance: imbalance −${formatFigure(reason.benefit)} ≥ cost ${formatFigure(reason.cost)} (${formatBytes(mem)}) + threshold ${formatFigure(reason.required - reason.cost)}`;
  } else if (reason.code === 'fix-hard-rule') {
    why = `repairs a broken hard rule: ${reason.broken.map((r) => r.message).join('; ')}`;
  } else {
    why = `breaks fewer soft rules (${reason.softBefore} → ${reason.softAfter}): ${reason.broken.map((r) => r.message).join('; ')}`;
  }
  return `${describeMove(move)} — ${why}${loads}; spread ${formatFigure(before)} → ${formatFigure(after)}`;
}
