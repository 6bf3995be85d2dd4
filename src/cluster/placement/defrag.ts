// Defragmentation: a VM that runs nowhere and that no host can take only for want of room (capacity, the
// FT caps) gets a plan of live migrations of other VMs' halves that make room for it. Pure: answers,
// never acts; every move is checked against every rule in the state left by the moves before it.
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
      /** The moves, in order; after them `place(vm)` puts it where `placement` says. */
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

/**
 * A plan of moves that makes room for `vmId`, which must run nowhere: each of its halves (the primary
 * first) is placed where it fits; a half no host takes is given the first host, in id order, whose only
 * objections are room (CPU, memory, log bandwidth, the FT caps), emptied of other halves — the largest
 * first, each to the best host that takes it — until the half fits there. A half refused anywhere for a
 * rule, or a host that cannot be emptied enough within `maxMoves`, answers `defrag-impossible`.
 */
export function defragment(c: Cluster, vmId: string, options: DefragOptions = {}): DefragResult {
  const maxMoves = options.maxMoves ?? 8;
  if (!Number.isSafeInteger(maxMoves) || maxMoves < 1) throw new PlacementInputError('defrag.maxMoves', `must be a positive integer, got ${String(maxMoves)}`);
  const vm = vmArg(c, vmId);
  const id = c.vmIds[vm]!;
  const s = State.initial(c);
  if (s.running(vm, false) || s.running(vm, true)) throw new PlacementInputError('vm', `"${id}" runs already: defragmentation makes room for a VM that runs nowhere`);
  s.remove(vm, false);
  s.remove(vm, true);
  const no = (code: 'placeable' | 'rules' | 'no-room', reason: string): DefragResult => ({ kind: 'defrag-impossible', vm: id, mode: c.mode, code, reason });
  const moves: DefragMove[] = [];
  const hosts: number[] = [];
  const halves: Array<{ secondary: boolean; role: Role }> = c.ft[vm] ? [{ secondary: false, role: 'primary' }, { secondary: true, role: 'secondary' }] : [{ secondary: false, role: 'vm' }];
  for (const half of halves) {
    const spec: HalfSpec = half.secondary ? { vm, secondary: true, freed: -1, partner: hosts[0]!, ignore: -1 } : freshSpec(c, vm);
    const sc = scan(c, s, spec);
    if (sc.best >= 0) {
      s.add(vm, half.secondary, sc.best);
      hosts.push(sc.best);
      continue;
    }
    let placedOn = -1;
    for (let h = 0; h < c.hostIds.length && placedOn < 0; h++) {
      const out: Rejection[] = [];
      if (valid(c, s, spec, h, out) || !out.every((r) => ROOM.has(r.code))) continue;
      const trial = s.clone();
      const planned: DefragMove[] = [];
      // The largest halves first: fewest moves; ties by VM id (canonical order), primary before secondary.
      const here = [...trial.onHost[h]!]
        .filter((x) => (x >> 1) !== vm && movable(c, trial, x >> 1, (x & 1) === 1))
        .sort((a, b) => c.mem[b >> 1]! - c.mem[a >> 1]! || c.mips[b >> 1]! - c.mips[a >> 1]! || a - b);
      for (const x of here) {
        if (moves.length + planned.length >= maxMoves || valid(c, trial, spec, h, null)) break;
        const other = x >> 1;
        const secondary = (x & 1) === 1;
        const partner = c.ft[other] ? trial.hostOf(other, !secondary) : -1;
        const ospec: HalfSpec = { vm: other, secondary, freed: h, partner, ignore: -1 };
        // Not onto the host kept for the VM's other half, when that would take the room it needs there.
        const to = scan(c, trial, ospec, { accept: (t) => t !== h && !hosts.includes(t) }).best;
        if (to < 0) continue;
        trial.move(other, secondary, to);
        planned.push(
          secondary
            ? { kind: 'move-secondary', vm: c.vmIds[other]!, from: c.hostIds[h]!, to: c.hostIds[to]!, primaryHost: c.hostIds[partner]! }
            : { kind: 'migrate', vm: c.vmIds[other]!, from: c.hostIds[h]!, to: c.hostIds[to]! },
        );
      }
      if (!valid(c, trial, spec, h, null)) continue;
      // Adopt the trial: replay its moves on the working state.
      for (const m of planned) {
        const o = c.vmIndex.get(m.vm)!;
        s.move(o, m.kind === 'move-secondary', c.hostIndex.get(m.to)!);
      }
      moves.push(...planned);
      s.add(vm, half.secondary, h);
      hosts.push(h);
      placedOn = h;
    }
    if (placedOn >= 0) continue;
    const what = half.role === 'vm' ? id : `the ${half.role} of ${id}`;
    const roomOnly = c.hostIds.some((_, h) => {
      const out: Rejection[] = [];
      return !valid(c, s, spec, h, out) && out.length > 0 && out.every((r) => ROOM.has(r.code));
    });
    return roomOnly
      ? no('no-room', `no host can be emptied enough for ${what} with at most ${maxMoves} move(s) of other VMs' halves`)
      : no('rules', `${what} is refused by every host for more than room (a rule, a compat id, maintenance): moving other VMs cannot help`);
  }
  if (moves.length === 0) return no('placeable', `${id} can be placed as things are: nothing to move`);
  const placement = { host: c.hostIds[hosts[0]!]!, ...(hosts.length > 1 ? { secondaryHost: c.hostIds[hosts[1]!]! } : {}) };
  const said = moves.map((m) => (m.kind === 'migrate' ? `migrate ${m.vm} ${m.from} → ${m.to}` : `move the secondary of ${m.vm} ${m.from} → ${m.to}`)).join(', ');
  return {
    kind: 'defrag',
    vm: id,
    mode: c.mode,
    moves,
    placement,
    message: `${said} makes room for ${id} on ${placement.host}${placement.secondaryHost !== undefined ? ` (its secondary on ${placement.secondaryHost})` : ''}`,
  };
}
