// Initial placement of a VM or an FT pair, placement of a new secondary after a failure, and batch
// power-on of every VM that runs nowhere. Pure functions of the snapshot; they answer, never act.
import { PlacementInputError } from './errors.js';
import { type Cluster, type PlacementMode, type Role, vmArg } from './model.js';
import {
  type Rejection,
  type SoftViolation,
  checkHost,
  checkRules,
  softDetails,
  softScore,
} from './rules.js';
import { LoadIndex, type Spread, State } from './state.js';

/** How good a valid host is for a half: fewer broken soft rules first, then a smaller imbalance. */
export interface HostScore {
  host: string;
  /** Weight of soft rules broken there (0 is best). */
  soft: number;
  /** Change of the imbalance Σ((cpu − mean)² + (mem − mean)²)/2 over hosts; negative is better. */
  imbalanceDelta: number;
  /** CPU load (demand / capacity) of the host with the half on it. */
  cpuAfter: number;
  /** Memory load of the host with the half on it. */
  memoryAfter: number;
}

/** One host considered for a half: valid with its score, or rejected with every reason. */
export type Candidate = { host: string; ok: true; score: HostScore } | { host: string; ok: false; rejections: Rejection[] };

/** A non-FT VM placed. */
export interface PlacedVm {
  kind: 'placed';
  vm: string;
  mode: PlacementMode;
  host: string;
  score: HostScore;
  /** Soft rules it still breaks there (the best any valid host allowed). */
  soft: SoftViolation[];
  /** Every host, in id order. */
  candidates: Candidate[];
  spreadAfter: Spread;
}

/** Where one half of an FT pair went. */
export interface HalfPlacement {
  host: string;
  score: HostScore;
  soft: SoftViolation[];
}

/** An FT pair placed: the primary first (as vSphere does), then the secondary given the primary. */
export interface PlacedPair {
  kind: 'placed-pair';
  vm: string;
  mode: PlacementMode;
  primary: HalfPlacement;
  secondary: HalfPlacement;
  candidates: { primary: Candidate[]; secondary: Candidate[] };
  spreadAfter: Spread;
}

/** No valid host: `candidates` lists every host with all its rejection reasons. */
export interface Unplaceable {
  kind: 'unplaceable';
  vm: string;
  mode: PlacementMode;
  /** The half that found no host. */
  role: Role;
  /** The secondary case: the primary's host the candidates were checked against. */
  primaryHost?: string;
  reason: string;
  candidates: Candidate[];
}

/** Answer of {@link place}. */
export type PlaceResult = PlacedVm | PlacedPair | Unplaceable;

/** A new secondary placed (after a failover when the primary's host was lost). */
export interface SecondaryPlaced {
  kind: 'secondary-placed';
  vm: string;
  mode: PlacementMode;
  /** Host of the primary: fixed, not chosen. */
  primaryHost: string;
  host: string;
  score: HostScore;
  soft: SoftViolation[];
  /** Present when the primary's host was lost: the secondary there went live and is now the primary. */
  failover?: { lostHost: string; newPrimaryHost: string };
  candidates: Candidate[];
  spreadAfter: Spread;
}

/** Both halves already run: nothing to place. */
export interface AlreadyProtected {
  kind: 'already-protected';
  vm: string;
  mode: PlacementMode;
  primaryHost: string;
  secondaryHost: string;
}

/** Neither half runs: the VM must be restarted as a pair with {@link place}. */
export interface NoLiveHalf {
  kind: 'no-live-half';
  vm: string;
  mode: PlacementMode;
  reason: string;
}

/** Answer of {@link placeSecondary}. */
export type SecondaryResult = SecondaryPlaced | AlreadyProtected | NoLiveHalf | Unplaceable;

/** One VM of a batch power-on. */
export interface PlanEntry {
  vm: string;
  host: string;
  /** FT only. */
  secondaryHost?: string;
  soft: number;
  imbalanceDelta: number;
  /** `window`: chosen among the least loaded hosts; `all`: every host was scored. */
  searched: 'window' | 'all';
}

/** Answer of {@link placeAll}: every VM that ran nowhere, in the order they were placed. */
export interface PlacementPlan {
  kind: 'placement-plan';
  mode: PlacementMode;
  placements: PlanEntry[];
  unplaceable: Unplaceable[];
  spreadBefore: Spread;
  spreadAfter: Spread;
}

/** Options of {@link placeAll}. */
export interface PlaceAllOptions {
  /**
   * Hosts scored per VM: this many least loaded by CPU and as many by memory (default 32). A VM with
   * soft rules, or one no window host can take, is scored against every host. 0 scores every host
   * for every VM (exact, O(hosts) per VM).
   */
  window?: number;
}

/** What a scan needs to know about the half it places. */
export interface HalfSpec {
  vm: number;
  secondary: boolean;
  /** Host the half leaves (its usage there is freed), -1 for none. */
  freed: number;
  /** Host of the other half of the pair, -1 for none. */
  partner: number;
  /** Host whose VM-VM mates leave too (evacuation), -1 for none. */
  ignore: number;
  /** Further hard check (legacy registered host). */
  extra?: (h: number, out: Rejection[] | null) => boolean;
}

/** Result of a scan: the best valid host (-1 if none) and, when asked for, every candidate. */
export interface Scan {
  /** Best valid host that the scan's `accept` filter also takes, -1 when none. */
  best: number;
  score: HostScore | undefined;
  /** Best valid host ignoring `accept`, -1 when none. */
  bestValid: number;
  /** Number of valid hosts (ignoring `accept`). */
  validCount: number;
  /** Every host with its reasons or score (only when a report was asked for). */
  candidates: Candidate[];
  /** Valid hosts with their scores, in host order (only when asked for). */
  valid: { h: number; score: HostScore }[];
}

/** Options of {@link scan}. */
export interface ScanOptions {
  /** Also list every host with its rejection reasons or score. */
  report?: boolean;
  /** Only these hosts (all hosts in id order when absent). */
  hosts?: readonly number[];
  /** A further filter for the best host (not a rejection: the host stays valid in the report). */
  accept?: (h: number) => boolean;
  /** Also collect every valid host with its score. */
  collectValid?: boolean;
}

/** Score of a valid host, given its soft weight and imbalance change. */
function scoreOf(c: Cluster, s: State, spec: HalfSpec, h: number, soft: number, imbalanceDelta: number): HostScore {
  const own = h === spec.freed;
  return {
    host: c.hostIds[h]!,
    soft,
    imbalanceDelta,
    cpuAfter: (s.usedMips[h]! + (own ? 0 : c.mips[spec.vm]!)) / c.capMips[h]!,
    memoryAfter: (s.usedMem[h]! + (own ? 0 : c.mem[spec.vm]!)) / c.capMem[h]!,
  };
}

/** Strict "a is better than b": fewer soft, then smaller imbalance change (ties: earlier host wins). */
export function better(a: HostScore, b: HostScore | undefined): boolean {
  if (b === undefined) return true;
  if (a.soft !== b.soft) return a.soft < b.soft;
  return a.imbalanceDelta < b.imbalanceDelta;
}

/** Whether host `h` is valid for the half (all hard rules and capacity). */
export function valid(c: Cluster, s: State, spec: HalfSpec, h: number, out: Rejection[] | null): boolean {
  let ok = true;
  if (spec.extra && !spec.extra(h, out)) {
    ok = false;
    if (!out) return false;
  }
  if (!checkHost(c, s, spec.vm, h, spec.freed, out)) {
    ok = false;
    if (!out) return false;
    // A disconnected or unavailable host gets one reason; the rules are moot there.
    const last = out[out.length - 1]!;
    if (last.code === 'host-disconnected' || last.code === 'host-maintenance' || last.code === 'host-unavailable' || last.code === 'host-evacuating') return false;
  }
  if (!checkRules(c, s, spec.vm, spec.secondary, h, spec.partner, spec.ignore, out)) ok = false;
  return ok;
}

/**
 * Scores hosts for a half (all hosts in id order, or the given ones) and picks the best valid one;
 * with `report`, also every rejection reason of every host. Allocates a score object only for a host
 * that is reported, collected, or better than the best so far.
 */
export function scan(c: Cluster, s: State, spec: HalfSpec, options: ScanOptions = {}): Scan {
  const { report = false, hosts, accept, collectValid = false } = options;
  const candidates: Candidate[] = [];
  const validHosts: { h: number; score: HostScore }[] = [];
  let best = -1;
  let bestScore: HostScore | undefined;
  let bestValid = -1;
  let bestValidSoft = 0;
  let bestValidDelta = 0;
  let validCount = 0;
  const n = hosts ? hosts.length : c.hostIds.length;
  for (let i = 0; i < n; i++) {
    const h = hosts ? hosts[i]! : i;
    if (report) {
      const out: Rejection[] = [];
      if (!valid(c, s, spec, h, out)) {
        candidates.push({ host: c.hostIds[h]!, ok: false, rejections: out });
        continue;
      }
    } else if (!valid(c, s, spec, h, null)) continue;
    validCount++;
    const soft = softScore(c, s, spec.vm, spec.secondary, h, spec.ignore);
    const delta = h === spec.freed ? 0 : s.deltaImbalance(spec.vm, spec.freed, h);
    const beatsValid = bestValid < 0 || soft < bestValidSoft || (soft === bestValidSoft && delta < bestValidDelta);
    if (beatsValid) {
      bestValid = h;
      bestValidSoft = soft;
      bestValidDelta = delta;
    }
    const accepted = accept === undefined || accept(h);
    const beats = accepted && (bestScore === undefined || soft < bestScore.soft || (soft === bestScore.soft && delta < bestScore.imbalanceDelta));
    if (!report && !collectValid && !beats) continue;
    const score = scoreOf(c, s, spec, h, soft, delta);
    if (report) candidates.push({ host: c.hostIds[h]!, ok: true, score });
    if (collectValid) validHosts.push({ h, score });
    if (beats) {
      best = h;
      bestScore = score;
    }
  }
  return { best, score: bestScore, bestValid, validCount, candidates, valid: validHosts };
}

function legacyPrimaryCheck(c: Cluster, vm: number): (h: number, out: Rejection[] | null) => boolean {
  const reg = c.registered[vm]!;
  return (h, out) => {
    if (h === reg) return true;
    const host = c.hostIds[h]!;
    out?.push({
      code: 'legacy-registered-host',
      host,
      registeredHost: reg >= 0 ? c.hostIds[reg]! : undefined,
      message:
        reg >= 0
          ? `legacy mode: an FT primary powers on only on its registered host ${c.hostIds[reg]!}`
          : `legacy mode: an FT primary powers on only on its registered host, and ${c.vmIds[vm]!} has none`,
    });
    return false;
  };
}

/** Spec of the primary (or non-FT VM) half for a fresh placement. */
export function freshSpec(c: Cluster, vm: number): HalfSpec {
  const spec: HalfSpec = { vm, secondary: false, freed: -1, partner: -1, ignore: -1 };
  if (c.ft[vm] && c.mode === 'legacy') spec.extra = legacyPrimaryCheck(c, vm);
  return spec;
}

/**
 * Filter for primary hosts that leave at least one valid secondary host with the same compat id
 * (among `hosts`, all when undefined). A secondary's validity depends on the primary only through
 * "not the same host" and "same compat id", so one pass counts the secondary-capable hosts per id.
 */
function secondaryFilter(c: Cluster, s: State, vm: number, hosts?: readonly number[]): (h: number) => boolean {
  const secSpec: HalfSpec = { vm, secondary: true, freed: -1, partner: -1, ignore: -1 };
  const perCompat = new Map<string, number>();
  const capable = new Set<number>();
  const n = hosts ? hosts.length : c.hostIds.length;
  for (let i = 0; i < n; i++) {
    const h = hosts ? hosts[i]! : i;
    if (!valid(c, s, secSpec, h, null)) continue;
    capable.add(h);
    perCompat.set(c.compat[h]!, (perCompat.get(c.compat[h]!) ?? 0) + 1);
  }
  // An FT split (Metro) rule makes the secondary's validity depend on the primary's groups too: check
  // the capable hosts against each primary host (O(hosts) per candidate, for these VMs only).
  const splits = c.splitRulesOf[vm]!;
  if (splits.length > 0) {
    const list = [...capable];
    return (h) => list.some((x) => x !== h && c.compat[x] === c.compat[h] && splits.every((r) => (c.splitRules[r]!.sites[x]! & c.splitRules[r]!.sites[h]!) === 0));
  }
  return (h) => (perCompat.get(c.compat[h]!) ?? 0) - (capable.has(h) ? 1 : 0) > 0;
}

function notRunningGuard(c: Cluster, s: State, vm: number): void {
  const id = c.vmIds[vm]!;
  if (s.running(vm, false))
    throw new PlacementInputError('vm', `"${id}" already runs on ${c.hostIds[s.pri[vm]!]!}${c.ft[vm] ? '; use placeSecondary() for a missing secondary' : ''}`);
  if (c.ft[vm] && s.running(vm, true))
    throw new PlacementInputError('vm', `the secondary of "${id}" runs on ${c.hostIds[s.sec[vm]!]!}; use placeSecondary() to fail over and protect it`);
}

/**
 * Initial placement of a VM or an FT pair that runs nowhere (never placed, or its hosts were lost).
 * Every host is checked against every hard rule; among valid hosts the one with the fewest broken soft
 * rules, then the smallest increase of load imbalance, then the smallest id wins. An FT pair: the
 * primary first (in legacy mode only on its registered host), then the secondary on another host with
 * the same compat id.
 */
export function place(c: Cluster, vmId: string): PlaceResult {
  const vm = vmArg(c, vmId);
  const s = State.initial(c);
  notRunningGuard(c, s, vm);
  s.remove(vm, false);
  s.remove(vm, true);
  return placeIn(c, s, vm);
}

/** {@link place} on a working state in which the VM runs nowhere; adds it there when placed. */
function placeIn(c: Cluster, s: State, vm: number): PlaceResult {
  const id = c.vmIds[vm]!;
  const pspec = freshSpec(c, vm);
  if (!c.ft[vm]) {
    const ps = scan(c, s, pspec, { report: true });
    if (ps.best < 0) return unplaceable(c, vm, 'vm', `no host can run ${id}: all ${c.hostIds.length} rejected`, ps.candidates);
    const soft = softDetails(c, s, vm, false, ps.best);
    s.add(vm, false, ps.best);
    return { kind: 'placed', vm: id, mode: c.mode, host: c.hostIds[ps.best]!, score: ps.score!, soft, candidates: ps.candidates, spreadAfter: s.spread() };
  }
  const ps = scan(c, s, pspec, { report: true, accept: secondaryFilter(c, s, vm) });
  if (ps.validCount === 0) return unplaceable(c, vm, 'primary', `no host can run the primary of ${id}: all ${c.hostIds.length} rejected`, ps.candidates);
  if (ps.best < 0) {
    // Report the secondary's rejections against the best primary host.
    const sspec: HalfSpec = { vm, secondary: true, freed: -1, partner: ps.bestValid, ignore: -1 };
    s.add(vm, false, ps.bestValid);
    const ss = scan(c, s, sspec, { report: true });
    s.remove(vm, false);
    const r = unplaceable(
      c,
      vm,
      'secondary',
      `${ps.validCount} host(s) can run the primary of ${id}, but no other host can run its secondary (${whyRejected(ss.candidates, c.hostIds[ps.bestValid]!)})`,
      ss.candidates,
    );
    r.primaryHost = c.hostIds[ps.bestValid]!;
    return r;
  }
  const p = ps.best;
  const pScore = ps.score!;
  const pSoft = softDetails(c, s, vm, false, p);
  s.add(vm, false, p);
  const sspec: HalfSpec = { vm, secondary: true, freed: -1, partner: p, ignore: -1 };
  const ss = scan(c, s, sspec, { report: true });
  if (ss.best < 0) {
    // secondaryFilter guarantees a secondary host; reaching here would be an engine bug, reported plainly.
    s.remove(vm, false);
    const r = unplaceable(c, vm, 'secondary', `no host can run the secondary of ${id} beside its primary on ${c.hostIds[p]!}`, ss.candidates);
    r.primaryHost = c.hostIds[p]!;
    return r;
  }
  const sSoft = softDetails(c, s, vm, true, ss.best);
  s.add(vm, true, ss.best);
  return {
    kind: 'placed-pair',
    vm: id,
    mode: c.mode,
    primary: { host: c.hostIds[p]!, score: pScore, soft: pSoft },
    secondary: { host: c.hostIds[ss.best]!, score: ss.score!, soft: sSoft },
    candidates: { primary: ps.candidates, secondary: ss.candidates },
    spreadAfter: s.spread(),
  };
}

/** Hosts named one by one in {@link whyRejected}; the rest are counted. */
const WHY_HOSTS = 4;

/**
 * The real causes of a rejection list, in one line: each rejected host (the partner's own host left out)
 * with the first reason it was rejected for (the FT VM cap, a compat id, maintenance, …).
 */
export function whyRejected(list: readonly Candidate[], partnerHost: string): string {
  const rejected = list.filter((k): k is Extract<Candidate, { ok: false }> => !k.ok && k.host !== partnerHost);
  if (rejected.length === 0) return 'there is no other host';
  const named = rejected.slice(0, WHY_HOSTS).map((k) => {
    const m = k.rejections[0]!.message;
    return m.startsWith(`${k.host} `) ? m : `${k.host}: ${m}`;
  });
  return `${named.join('; ')}${rejected.length > WHY_HOSTS ? `; and ${rejected.length - WHY_HOSTS} more host(s) rejected` : ''}`;
}

function unplaceable(c: Cluster, vm: number, role: Role, reason: string, candidates: Candidate[]): Unplaceable {
  return { kind: 'unplaceable', vm: c.vmIds[vm]!, mode: c.mode, role, reason, candidates };
}

/**
 * A new secondary for an FT VM that lost its own: the primary's host is fixed. When the primary's host
 * is the one lost and the secondary still runs, the secondary goes live first (failover) and the new
 * secondary is placed beside it. Works in both modes (in legacy mode too the secondary is placed
 * automatically).
 */
export function placeSecondary(c: Cluster, vmId: string): SecondaryResult {
  const vm = vmArg(c, vmId);
  const id = c.vmIds[vm]!;
  if (!c.ft[vm]) throw new PlacementInputError('vm', `"${id}" is not an FT VM`);
  const s = State.initial(c);
  const priRun = s.running(vm, false);
  const secRun = s.running(vm, true);
  if (priRun && secRun)
    return { kind: 'already-protected', vm: id, mode: c.mode, primaryHost: c.hostIds[s.pri[vm]!]!, secondaryHost: c.hostIds[s.sec[vm]!]! };
  if (!priRun && !secRun) {
    const where = s.pri[vm]! >= 0 ? `its primary's host ${c.hostIds[s.pri[vm]!]!} is not connected` : 'it has no primary host';
    const sec = s.sec[vm]! >= 0 ? `, its secondary's host ${c.hostIds[s.sec[vm]!]!} is not connected` : ', it has no secondary';
    return { kind: 'no-live-half', vm: id, mode: c.mode, reason: `neither half of ${id} runs (${where}${sec}): restart the pair with place()` };
  }
  let failover: SecondaryPlaced['failover'];
  if (!priRun) {
    const lost = s.pri[vm]!;
    const live = s.sec[vm]!;
    s.remove(vm, false);
    s.remove(vm, true);
    s.add(vm, false, live);
    failover = { lostHost: c.hostIds[lost]!, newPrimaryHost: c.hostIds[live]! };
  } else {
    s.remove(vm, true);
  }
  const p = s.pri[vm]!;
  const spec: HalfSpec = { vm, secondary: true, freed: -1, partner: p, ignore: -1 };
  const sc = scan(c, s, spec, { report: true });
  if (sc.best < 0) {
    const r = unplaceable(c, vm, 'secondary', `no host can run a new secondary of ${id} beside its primary on ${c.hostIds[p]!} (${whyRejected(sc.candidates, c.hostIds[p]!)})`, sc.candidates);
    r.primaryHost = c.hostIds[p]!;
    return r;
  }
  const soft = softDetails(c, s, vm, true, sc.best);
  s.add(vm, true, sc.best);
  const out: SecondaryPlaced = {
    kind: 'secondary-placed',
    vm: id,
    mode: c.mode,
    primaryHost: c.hostIds[p]!,
    host: c.hostIds[sc.best]!,
    score: sc.score!,
    soft,
    candidates: sc.candidates,
    spreadAfter: s.spread(),
  };
  if (failover) out.failover = failover;
  return out;
}

function hasSoftRules(c: Cluster, vm: number): boolean {
  for (const r of c.hostRulesOf[vm]!) if (!c.hostRules[r]!.hard) return true;
  for (const r of c.vmRulesOf[vm]!) if (!c.vmRules[r]!.hard) return true;
  return false;
}

/**
 * Powers on every VM that runs nowhere (FT pairs first, then by memory, largest first), each placed
 * as {@link place} would given the ones placed before it. To scale, a VM without soft rules is scored
 * against a window of the least loaded hosts it could use (those of its compat id, for FT halves);
 * when nothing in the window fits, against every host.
 */
export function placeAll(c: Cluster, options: PlaceAllOptions = {}): PlacementPlan {
  const window = options.window ?? 32;
  if (!Number.isSafeInteger(window) || window < 0) throw new PlacementInputError('window', `must be a non-negative integer, got ${window}`);
  const s = State.initial(c);
  const spreadBefore = s.spread();
  const todo: number[] = [];
  for (let vm = 0; vm < c.vmIds.length; vm++) {
    if (s.running(vm, false) || (c.ft[vm] && s.running(vm, true))) continue;
    s.remove(vm, false);
    s.remove(vm, true);
    todo.push(vm);
  }
  todo.sort((a, b) => c.ft[b]! - c.ft[a]! || c.mem[b]! - c.mem[a]! || a - b);

  // Least-loaded orders over all hosts (key '') and per compat id, built on first use: an FT half can
  // only use hosts of one id, and a window full of hosts it cannot use would send it to a full scan.
  const indexes = new Map<string, { cpu: LoadIndex; mem: LoadIndex }>();
  const indexFor = (key: string): { cpu: LoadIndex; mem: LoadIndex } => {
    let ix = indexes.get(key);
    if (!ix) {
      const filter = key === '' ? undefined : (h: number): boolean => c.compat[h] === key;
      ix = { cpu: new LoadIndex(s, (h) => s.cpu(h), filter), mem: new LoadIndex(s, (h) => s.memory(h), filter) };
      indexes.set(key, ix);
    }
    return ix;
  };
  const touch = (h: number): void => {
    if (!s.pop[h]) return;
    for (const key of ['', c.compat[h]!]) {
      const ix = indexes.get(key);
      if (!ix) continue;
      ix.cpu.update(h);
      ix.mem.update(h);
    }
  };
  const windowHosts = (key: string): number[] => {
    const ix = indexFor(key);
    const set = new Set<number>([...ix.cpu.lowest(window), ...ix.mem.lowest(window)]);
    return [...set].sort((a, b) => a - b);
  };
  /** The compat id whose hosts an FT VM's halves may use, or '' when it is not fixed in advance. */
  const ftKey = (vm: number): string => {
    const req = c.required[vm];
    if (req !== undefined) return req;
    if (c.baseline !== undefined) return c.baseline;
    const reg = c.registered[vm]!;
    return reg >= 0 ? c.compat[reg]! : '';
  };

  const placements: PlanEntry[] = [];
  const failed: Unplaceable[] = [];
  for (const vm of todo) {
    const id = c.vmIds[vm]!;
    const tryWindow = window > 0 && !hasSoftRules(c, vm);
    const pspec = freshSpec(c, vm);
    if (!c.ft[vm]) {
      let sc = tryWindow ? scan(c, s, pspec, { hosts: windowHosts(c.required[vm] ?? '') }) : undefined;
      let searched: PlanEntry['searched'] = 'window';
      if (!sc || sc.best < 0) {
        sc = scan(c, s, pspec);
        searched = 'all';
      }
      if (sc.best < 0) {
        failed.push(placeIn(c, s.clone(), vm) as Unplaceable);
        continue;
      }
      s.add(vm, false, sc.best);
      touch(sc.best);
      placements.push({ vm: id, host: c.hostIds[sc.best]!, soft: sc.score!.soft, imbalanceDelta: sc.score!.imbalanceDelta, searched });
      continue;
    }
    // FT pair: in legacy mode the primary's only candidate is its registered host.
    let chosen: { p: number; sec: number; pScore: HostScore; sScore: HostScore; searched: PlanEntry['searched'] } | undefined;
    const attempt = (hosts: readonly number[] | undefined, searched: PlanEntry['searched']): void => {
      const primaryHosts = hosts && c.mode === 'legacy' ? (c.registered[vm]! >= 0 ? [c.registered[vm]!] : []) : hosts;
      const ps = scan(c, s, pspec, { hosts: primaryHosts, accept: secondaryFilter(c, s, vm, hosts) });
      if (ps.best < 0) return;
      const p = ps.best;
      s.add(vm, false, p);
      const ss = scan(c, s, { vm, secondary: true, freed: -1, partner: p, ignore: -1 }, { hosts });
      if (ss.best < 0) {
        s.remove(vm, false);
        return;
      }
      s.add(vm, true, ss.best);
      chosen = { p, sec: ss.best, pScore: ps.score!, sScore: ss.score!, searched };
    };
    if (tryWindow) attempt(windowHosts(ftKey(vm)), 'window');
    if (!chosen) attempt(undefined, 'all');
    if (!chosen) {
      failed.push(placeIn(c, s.clone(), vm) as Unplaceable);
      continue;
    }
    touch(chosen.p);
    touch(chosen.sec);
    placements.push({
      vm: id,
      host: c.hostIds[chosen.p]!,
      secondaryHost: c.hostIds[chosen.sec]!,
      soft: chosen.pScore.soft + chosen.sScore.soft,
      imbalanceDelta: chosen.pScore.imbalanceDelta + chosen.sScore.imbalanceDelta,
      searched: chosen.searched,
    });
  }
  return { kind: 'placement-plan', mode: c.mode, placements, unplaceable: failed, spreadBefore, spreadAfter: s.spread() };
}
