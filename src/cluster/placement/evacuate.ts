// Evacuation plan for a host entering maintenance mode: every half on it gets a step (a migration, a
// secondary moved, or a controlled switch for a primary) or a precise reason it cannot leave. Plans
// only; a step never breaks a hard rule or a capacity limit.
import { formatBytes, formatFigure } from './format.js';
import { type Cluster, type PlacementMode, type Role, hostArg } from './model.js';
import { type Candidate, type HalfSpec, type HostScore, scan } from './place.js';
import { type Rejection, checkRules, halfName, roleOf } from './rules.js';
import { describeMove, type Move } from './balance.js';
import { type Spread, State } from './state.js';

/** One step of an evacuation, to be carried out in order. */
export interface EvacuationStep {
  move: Move;
  /** Role of the half on the evacuated host this step serves. */
  role: Role;
  /** Score of the host that receives load (the new secondary's host for a switch). */
  score: HostScore;
  /** Memory copied by the step (one clone or migration). */
  copyBytes: number;
  /**
   * Steps with the same unit belong together: a hard affinity group leaving as one (its rule holds
   * again after the unit's last step), or a secondary moved so that the primary can switch to it.
   */
  unit: number;
  message: string;
}

/** A half that cannot leave the host, and exactly why. */
export interface BlockedHalf {
  vm: string;
  role: Role;
  reason: string;
  /** Every host considered for the half that would have to move, with its rejections. */
  candidates: Candidate[];
}

/** Answer of {@link evacuate}. */
export interface EvacuationPlan {
  kind: 'evacuation';
  mode: PlacementMode;
  host: string;
  steps: EvacuationStep[];
  blocked: BlockedHalf[];
  /** True when every half on the host has a step. */
  complete: boolean;
  /** Spread over the hosts other than the evacuated one, before and after the steps. */
  spreadBefore: Spread;
  spreadAfter: Spread;
}

/** Hosts tried as a relay for the secondary before a primary is declared stuck. */
const MAX_RELAY_TRIES = 16;

interface Item {
  vm: number;
  secondary: boolean;
}

/** VM-VM hard-affinity groups among the items (their members must leave together or not at all). */
function affinityGroups(c: Cluster, items: Item[]): Item[][] {
  const parent = new Map<number, number>();
  const find = (x: number): number => {
    while (parent.get(x)! !== x) x = parent.get(x)!;
    return x;
  };
  const primaries = items.filter((i) => !i.secondary);
  for (const i of primaries) parent.set(i.vm, i.vm);
  for (const i of primaries) {
    for (const r of c.vmRulesOf[i.vm]!) {
      const rule = c.vmRules[r]!;
      if (!rule.hard || rule.type !== 'affinity') continue;
      for (const m of rule.vms) {
        if (!parent.has(m)) continue;
        const a = find(i.vm);
        const b = find(m);
        if (a !== b) parent.set(Math.max(a, b), Math.min(a, b));
      }
    }
  }
  const groups = new Map<number, Item[]>();
  const out: Item[][] = [];
  for (const i of items) {
    if (i.secondary || !parent.has(i.vm)) {
      out.push([i]);
      continue;
    }
    const root = find(i.vm);
    let g = groups.get(root);
    if (!g) {
      g = [];
      groups.set(root, g);
      out.push(g);
    }
    g.push(i);
  }
  return out;
}

/**
 * Plan to empty host `hostId` for maintenance mode. Order: FT primaries, then FT secondaries, then
 * other VMs, each by memory (largest first). A secondary moves to the best valid host. A non-FT VM
 * migrates. A primary cannot simply move: its secondary goes live (controlled switch) and a new
 * secondary is placed; if the secondary's host cannot take the primary role (a hard VM-VM rule, say),
 * the secondary is moved first to a host that can. A primary without a running secondary migrates like
 * a non-FT VM (unprotected while it does). Members of a hard affinity group leave together or not at
 * all. In legacy mode FT VMs are moved too: maintenance is an operator's order, not load balancing.
 */
export function evacuate(c: Cluster, hostId: string): EvacuationPlan {
  const x = hostArg(c, hostId);
  const host = c.hostIds[x]!;
  let s = State.initial(c, x);
  const spreadBefore = s.spread();
  const steps: EvacuationStep[] = [];
  const blocked: BlockedHalf[] = [];
  const items: Item[] = s.onHost[x]!.map((half) => ({ vm: half >> 1, secondary: (half & 1) === 1 }));
  if (!c.alive[x]) {
    // Nothing runs on a disconnected host (its halves are lost, not evacuable); say so for each placed one.
    for (let vm = 0; vm < c.vmIds.length; vm++) {
      for (const secondary of c.ft[vm] ? [false, true] : [false]) {
        if (s.hostOf(vm, secondary) !== x) continue;
        blocked.push({
          vm: c.vmIds[vm]!,
          role: roleOf(c, vm, secondary),
          reason: `${host} is not connected: ${halfName(c, vm, secondary)} is not running there (restart it with place() or placeSecondary())`,
          candidates: [],
        });
      }
    }
    return { kind: 'evacuation', mode: c.mode, host, steps, blocked, complete: blocked.length === 0, spreadBefore, spreadAfter: s.spread() };
  }
  const rank = (i: Item): number => (c.ft[i.vm] ? (i.secondary ? 1 : 0) : 2);
  items.sort((a, b) => rank(a) - rank(b) || c.mem[b.vm]! - c.mem[a.vm]! || a.vm - b.vm);

  for (const group of affinityGroups(c, items)) {
    const saved = group.length > 1 ? s.clone() : s;
    const groupSteps: EvacuationStep[] = [];
    let failure: BlockedHalf | undefined;
    for (const item of group) {
      const r = evacuateHalf(c, s, x, item);
      if ('reason' in r) {
        failure = r;
        break;
      }
      groupSteps.push(...r);
    }
    if (!failure) {
      const unit = steps.length === 0 ? 0 : steps[steps.length - 1]!.unit + 1;
      for (const st of groupSteps) steps.push({ ...st, unit });
      continue;
    }
    if (group.length === 1) {
      blocked.push(failure);
      continue;
    }
    s = saved;
    const names = group.map((i) => c.vmIds[i.vm]!);
    for (const item of group) {
      const self = item.vm === c.vmIndex.get(failure.vm);
      blocked.push(
        self
          ? { ...failure, reason: `${failure.reason} (hard affinity group ${names.join(', ')} cannot leave together)` }
          : {
              vm: c.vmIds[item.vm]!,
              role: roleOf(c, item.vm, item.secondary),
              reason: `held by its hard affinity group ${names.join(', ')}: ${failure.vm} cannot leave ${host}`,
              candidates: [],
            },
      );
    }
  }
  return { kind: 'evacuation', mode: c.mode, host, steps, blocked, complete: blocked.length === 0, spreadBefore, spreadAfter: s.spread() };
}

function step(c: Cluster, move: Move, role: Role, score: HostScore, vm: number, note = ''): EvacuationStep {
  const mem = c.mem[vm]!;
  return {
    move,
    role,
    score,
    copyBytes: mem,
    unit: 0,
    message: `${describeMove(move)} — ${formatBytes(mem)} copied; ${score.host} after: cpu ${(score.cpuAfter * 100).toFixed(1)}%, mem ${(score.memoryAfter * 100).toFixed(1)}%, soft ${score.soft}, imbalance ${score.imbalanceDelta >= 0 ? '+' : ''}${formatFigure(score.imbalanceDelta)}${note}`,
  };
}

/** Steps that take one half off host x (applied to `s`), or why it cannot leave. */
function evacuateHalf(c: Cluster, s: State, x: number, item: Item): EvacuationStep[] | BlockedHalf {
  const { vm, secondary } = item;
  const id = c.vmIds[vm]!;
  const role = roleOf(c, vm, secondary);
  const H = c.hostIds;
  const blockedHalf = (reason: string, candidates: Candidate[]): BlockedHalf => ({ vm: id, role, reason, candidates });

  if (role === 'vm' || (role === 'primary' && !s.running(vm, true))) {
    const spec: HalfSpec = { vm, secondary: false, freed: x, partner: -1, ignore: x };
    const sc = scan(c, s, spec);
    if (sc.best < 0) {
      const full = scan(c, s, spec, { report: true });
      return blockedHalf(`no host can take ${halfName(c, vm, false)}: all ${H.length - 1} other hosts rejected`, full.candidates.filter((k) => k.host !== H[x]));
    }
    s.move(vm, false, sc.best);
    const note = role === 'primary' ? ' (no running secondary: migrated unprotected; place a secondary afterwards)' : '';
    return [step(c, { kind: 'migrate', vm: id, from: H[x]!, to: H[sc.best]! }, role, sc.score!, vm, note)];
  }

  if (secondary) {
    const p = s.pri[vm]!;
    if (!s.running(vm, false)) {
      return blockedHalf(`the primary's host ${H[p] ?? '(none)'} is not connected: ${id} must fail over to this secondary first (placeSecondary)`, []);
    }
    const spec: HalfSpec = { vm, secondary: true, freed: x, partner: p, ignore: -1 };
    const sc = scan(c, s, spec);
    if (sc.best < 0) {
      const full = scan(c, s, spec, { report: true });
      return blockedHalf(`no host can take the secondary of ${id} (primary on ${H[p]!})`, full.candidates.filter((k) => k.host !== H[x]));
    }
    s.move(vm, true, sc.best);
    return [step(c, { kind: 'move-secondary', vm: id, from: H[x]!, to: H[sc.best]!, primaryHost: H[p]! }, role, sc.score!, vm)];
  }

  // A primary with a running secondary on S: switch to S, new secondary on T.
  const sHost = s.sec[vm]!;
  const primaryAtS: Rejection[] = [];
  const sOk = s.isTarget(sHost) && checkRules(c, s, vm, false, sHost, -1, x, primaryAtS);
  if (!s.isTarget(sHost)) {
    const why = c.unavailable[sHost];
    primaryAtS.push(
      why !== undefined
        ? { code: 'host-unavailable', host: H[sHost]!, reason: why, message: `${H[sHost]!} takes no new VM half: ${why}` }
        : { code: 'host-maintenance', host: H[sHost]!, message: `${H[sHost]!} is in maintenance mode` },
    );
  }
  const tSpec: HalfSpec = { vm, secondary: true, freed: x, partner: sHost, ignore: -1 };
  if (sOk) {
    const sc = scan(c, s, tSpec);
    if (sc.best >= 0) {
      s.switchPrimary(vm, sc.best);
      return [step(c, { kind: 'switch-primary', vm: id, from: H[x]!, newPrimaryHost: H[sHost]!, newSecondaryHost: H[sc.best]! }, role, sc.score!, vm)];
    }
  }
  // Move the secondary first to a host S2 that can also take the primary role, then switch there.
  const s2Spec: HalfSpec = {
    vm,
    secondary: true,
    freed: sHost,
    partner: x,
    ignore: -1,
    // S2 must be another host, valid for the primary role too (hard VM-VM rules bind the primary only).
    extra: (h, out) => {
      if (h === sHost) {
        out?.push({ code: 'ft-anti-affinity', host: H[h]!, vm: id, otherRole: 'secondary', message: `already the secondary's host` });
        return false;
      }
      return checkRules(c, s, vm, false, h, -1, x, out);
    },
  };
  const s2 = scan(c, s, s2Spec, { collectValid: true });
  const order = [...s2.valid].sort((a, b) => a.score.soft - b.score.soft || a.score.imbalanceDelta - b.score.imbalanceDelta || a.h - b.h);
  // Each try is a full scan for T; the best MAX_RELAY_TRIES hosts for S2 are tried, not all of them.
  for (const cand of order.slice(0, MAX_RELAY_TRIES)) {
    s.move(vm, true, cand.h);
    const t = scan(c, s, { vm, secondary: true, freed: x, partner: cand.h, ignore: -1 });
    if (t.best < 0) {
      s.move(vm, true, sHost);
      continue;
    }
    s.switchPrimary(vm, t.best);
    return [
      step(c, { kind: 'move-secondary', vm: id, from: H[sHost]!, to: H[cand.h]!, primaryHost: H[x]! }, role, cand.score, vm, ' (so that it can take over the primary role)'),
      step(c, { kind: 'switch-primary', vm: id, from: H[x]!, newPrimaryHost: H[cand.h]!, newSecondaryHost: H[t.best]! }, role, t.score!, vm),
    ];
  }
  const tried = order.length > MAX_RELAY_TRIES ? ` (tried the best ${MAX_RELAY_TRIES} of ${order.length} hosts that could relay)` : '';
  if (!sOk) {
    const full = scan(c, s, s2Spec, { report: true });
    return blockedHalf(
      `the secondary's host ${H[sHost]!} cannot take the primary role (${primaryAtS.map((r) => r.message).join('; ')}), and no other host can take the secondary and then the primary role${tried}`,
      full.candidates.filter((k) => k.host !== H[x]),
    );
  }
  const full = scan(c, s, tSpec, { report: true });
  return blockedHalf(
    `${id} can switch to its secondary on ${H[sHost]!}, but no host can take the new secondary beside it (and no other host can take both roles in turn${tried})`,
    full.candidates.filter((k) => k.host !== H[x]),
  );
}

