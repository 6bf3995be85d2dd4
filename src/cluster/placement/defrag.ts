// Defragmentation: a VM that runs nowhere, or the new secondary of an FT primary that runs alone, that no
// host can take only for want of room (capacity, the FT caps) gets a plan of live migrations of other
// VMs' halves (primaries migrated, secondaries moved) that make room for it. Pure: answers, never acts;
// every move is checked against every rule in the state left by the moves before it.
import { PlacementInputError } from './errors.js';
import type { MigrateMove, MoveSecondaryMove } from './balance.js';
import { type Cluster, type PlacementMode, type Role, vmArg } from './model.js';
import { type HalfSpec, freshSpec, scan, valid } from './place.js';
import type { Rejection } from './rules.js';
import { State } from './state.js';

/** Rejections that moving other halves away can lift. */
const ROOM: ReadonlySet<Rejection['code']> = new Set(['capacity', 'ft-vm-cap', 'ft-vcpu-cap']);

/**
 * One move of a defragmentation: a VM without FT or an FT primary live-migrated (`migrate`; an FT
 * primary's secondary stays where it is and follows), or an FT secondary moved (`move-secondary`).
 */
export type DefragMove = MigrateMove | MoveSecondaryMove;

/** Answer of {@link defragment}. */
export type DefragResult =
  | {
      kind: 'defrag';
      vm: string;
      mode: PlacementMode;
      /**
       * The moves, in order; after them `place(vm)` puts it where `placement` says (re-protection:
       * `placeSecondary(vm)` puts the secondary on `placement.secondaryHost`, the primary staying on
       * `placement.host`).
       */
      moves: DefragMove[];
      placement: { host: string; secondaryHost?: string };
      message: string;
    }
  | {
      kind: 'defrag-impossible';
      vm: string;
      mode: PlacementMode;
      /** `placeable`: no moves needed; `rules`: a half is refused for more than room; `no-room`: no moves make room. */
      code: 'placeable' | 'rules' | 'no-room';
      reason: string;
    };

/** Options of {@link defragment}. */
export interface DefragOptions {
  /** Most moves in a plan (default 8). */
  maxMoves?: number;
}

/** Whether a running half of another VM may be moved to make room (as the balancer would move it). */
function movable(c: Cluster, s: State, vm: number, secondary: boolean): boolean {
  if (!s.running(vm, secondary)) return false;
  if (!c.ft[vm]) return true;
  return c.mode === 'integrated' && s.running(vm, !secondary);
}

/** A trial's moves on one host, and the bytes they copy (the memory of the halves moved). */
interface Trial {
  h: number;
  planned: DefragMove[];
  bytes: number;
}

/**
 * The moves that make room on host `h` for the half `spec` describes (applied to a clone of `s`), or
 * undefined when no moves within `budget` do. The cheapest single move first — the smallest half whose
 * move alone makes room (least memory copied) —, otherwise halves leave largest first (fewest moves),
 * each to the best host that takes it; `keep` are hosts not to move onto (those kept for the VM's halves).
 */
function trialOn(c: Cluster, s: State, vm: number, spec: HalfSpec, h: number, keep: readonly number[], budget: number): Trial | undefined {
  const candidates = [...s.onHost[h]!].filter((x) => (x >> 1) !== vm && movable(c, s, x >> 1, (x & 1) === 1));
  const moveOf = (trial: State, x: number): { move: DefragMove; to: number } | undefined => {
    const other = x >> 1;
    const secondary = (x & 1) === 1;
    const partner = c.ft[other] ? trial.hostOf(other, !secondary) : -1;
    const ospec: HalfSpec = { vm: other, secondary, freed: h, partner, ignore: -1 };
    // Not onto a host kept for the VM's halves, when that would take the room they need there.
    const to = scan(c, trial, ospec, { accept: (t) => t !== h && !keep.includes(t) }).best;
    if (to < 0) return undefined;
    const move: DefragMove = secondary
      ? { kind: 'move-secondary', vm: c.vmIds[other]!, from: c.hostIds[h]!, to: c.hostIds[to]!, primaryHost: c.hostIds[partner]! }
      : { kind: 'migrate', vm: c.vmIds[other]!, from: c.hostIds[h]!, to: c.hostIds[to]! };
    return { move, to };
  };
  // One move, the smallest half that is enough; ties by VM id (canonical order), primary before secondary.
  const ascending = [...candidates].sort((a, b) => c.mem[a >> 1]! - c.mem[b >> 1]! || c.mips[a >> 1]! - c.mips[b >> 1]! || a - b);
  for (const x of ascending) {
    const trial = s.clone();
    const m = moveOf(trial, x);
    if (m === undefined) continue;
    trial.move(x >> 1, (x & 1) === 1, m.to);
    if (valid(c, trial, spec, h, null)) return { h, planned: [m.move], bytes: c.mem[x >> 1]! };
  }
  if (budget < 2) return undefined;
  // Several: the largest halves first (fewest moves); ties by VM id, primary before secondary.
  const trial = s.clone();
  const planned: DefragMove[] = [];
  let bytes = 0;
  const descending = [...candidates].sort((a, b) => c.mem[b >> 1]! - c.mem[a >> 1]! || c.mips[b >> 1]! - c.mips[a >> 1]! || a - b);
  for (const x of descending) {
    if (planned.length >= budget || valid(c, trial, spec, h, null)) break;
    const m = moveOf(trial, x);
    if (m === undefined) continue;
    trial.move(x >> 1, (x & 1) === 1, m.to);
    planned.push(m.move);
    bytes += c.mem[x >> 1]!;
  }
  return valid(c, trial, spec, h, null) ? { h, planned, bytes } : undefined;
}

/**
 * A plan of moves that makes room for `vmId`: a VM that runs nowhere (each of its halves, the primary
 * first, is placed where it fits), or an FT VM whose primary runs alone and finds no host for a new
 * secondary (room is made for the secondary; the primary stays). A half no host takes is given the host
 * whose only objections are room (CPU, memory, log bandwidth, the FT caps) and that the fewest moves of
 * other VMs' halves empty enough — then the least memory copied, then the host id —: on each such host
 * the cheapest single move is tried first (the smallest half that is enough), then halves leave largest
 * first, each to the best host that takes it. Primaries (and VMs without FT) are live-migrated, FT
 * secondaries moved; a half of an FT VM is moved only while both halves run. A half refused anywhere for
 * a rule, or no host that can be emptied enough within `maxMoves`, answers `defrag-impossible`.
 */
export function defragment(c: Cluster, vmId: string, options: DefragOptions = {}): DefragResult {
  const maxMoves = options.maxMoves ?? 8;
  if (!Number.isSafeInteger(maxMoves) || maxMoves < 1) throw new PlacementInputError('defrag.maxMoves', `must be a positive integer, got ${String(maxMoves)}`);
  const vm = vmArg(c, vmId);
  const id = c.vmIds[vm]!;
  const s = State.initial(c);
  // Re-protection: an FT primary that runs without a secondary gets room for one.
  const reprotect = c.ft[vm]! && s.running(vm, false) && !s.running(vm, true);
  if (!reprotect && (s.running(vm, false) || s.running(vm, true))) {
    throw new PlacementInputError('vm', `"${id}" runs already: defragmentation makes room for a VM that runs nowhere, or for the secondary of an FT primary that runs alone`);
  }
  const hosts: number[] = [];
  if (reprotect) {
    s.remove(vm, true);
    hosts.push(s.hostOf(vm, false));
  } else {
    s.remove(vm, false);
    s.remove(vm, true);
  }
  const no = (code: 'placeable' | 'rules' | 'no-room', reason: string): DefragResult => ({ kind: 'defrag-impossible', vm: id, mode: c.mode, code, reason });
  const moves: DefragMove[] = [];
  const halves: Array<{ secondary: boolean; role: Role }> = reprotect
    ? [{ secondary: true, role: 'secondary' }]
    : c.ft[vm]
      ? [{ secondary: false, role: 'primary' }, { secondary: true, role: 'secondary' }]
      : [{ secondary: false, role: 'vm' }];
  for (const half of halves) {
    const spec: HalfSpec = half.secondary ? { vm, secondary: true, freed: -1, partner: hosts[0]!, ignore: -1 } : freshSpec(c, vm);
    const sc = scan(c, s, spec);
    if (sc.best >= 0) {
      s.add(vm, half.secondary, sc.best);
      hosts.push(sc.best);
      continue;
    }
    let best: Trial | undefined;
    for (let h = 0; h < c.hostIds.length; h++) {
      const out: Rejection[] = [];
      if (valid(c, s, spec, h, out) || !out.every((r) => ROOM.has(r.code))) continue;
      const t = trialOn(c, s, vm, spec, h, hosts, maxMoves - moves.length);
      if (t !== undefined && (best === undefined || t.planned.length < best.planned.length || (t.planned.length === best.planned.length && t.bytes < best.bytes))) best = t;
    }
    if (best !== undefined) {
      // Adopt the best trial: replay its moves on the working state.
      for (const m of best.planned) s.move(c.vmIndex.get(m.vm)!, m.kind === 'move-secondary', c.hostIndex.get(m.to)!);
      moves.push(...best.planned);
      s.add(vm, half.secondary, best.h);
      hosts.push(best.h);
      continue;
    }
    const what = half.role === 'vm' ? id : `the ${half.role} of ${id}`;
    const roomOnly = c.hostIds.some((_, h) => {
      const out: Rejection[] = [];
      return !valid(c, s, spec, h, out) && out.length > 0 && out.every((r) => ROOM.has(r.code));
    });
    return roomOnly
      ? no('no-room', `no host can be emptied enough for ${what} with at most ${maxMoves} move(s) of other VMs' halves`)
      : no('rules', `${what} is refused by every host for more than room (a rule, a compat id, maintenance): moving other VMs cannot help`);
  }
  if (moves.length === 0) return no('placeable', reprotect ? `a secondary of ${id} can be placed as things are: nothing to move` : `${id} can be placed as things are: nothing to move`);
  const placement = { host: c.hostIds[hosts[0]!]!, ...(hosts.length > 1 ? { secondaryHost: c.hostIds[hosts[1]!]! } : {}) };
  const said = moves.map((m) => (m.kind === 'migrate' ? `migrate ${m.vm} ${m.from} → ${m.to}` : `move the secondary of ${m.vm} ${m.from} → ${m.to}`)).join(', ');
  return {
    kind: 'defrag',
    vm: id,
    mode: c.mode,
    moves,
    placement,
    message: reprotect
      ? `${said} makes room for a secondary of ${id} on ${placement.secondaryHost!} (its primary runs on ${placement.host})`
      : `${said} makes room for ${id} on ${placement.host}${placement.secondaryHost !== undefined ? ` (its secondary on ${placement.secondaryHost})` : ''}`,
  };
}
