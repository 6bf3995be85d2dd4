// Where one running half may be live-migrated to: the operator's `cluster migrate` and the manager's
// gap-free application of a balancing move check the target here. Pure: answers, never acts.
import { type Cluster, type PlacementMode, type Role, hostArg, vmArg } from './model.js';
import { type HalfSpec, type Candidate, type HostScore, type Unplaceable, scan, whyRejected } from './place.js';
import { type SoftViolation, softDetails } from './rules.js';
import { State } from './state.js';

/**
 * A live migration of one half, checked: the primary (or a VM without FT) moves from `from` to `to`
 * while an FT VM's secondary stays on `partnerHost`; or the secondary moves while the primary stays.
 */
export interface HalfMigration {
  kind: 'half-migration';
  vm: string;
  mode: PlacementMode;
  role: Role;
  from: string;
  to: string;
  /** Host of the other half of an FT pair, which stays where it is; absent without one. */
  partnerHost?: string;
  score: HostScore;
  /** Soft rules the half still breaks on `to`. */
  soft: SoftViolation[];
  /** Every host, in id order (`from` is valid: the half is there). */
  candidates: Candidate[];
  message: string;
}

/** Answer of {@link migrateHalf}. */
export type MigrationResult = HalfMigration | Unplaceable;

/**
 * Checks a live migration of the primary (role `primary`: the VM itself when it has no FT) or of the
 * secondary of `vmId` to host `to`, or chooses the best valid host other than its own when `to` is
 * absent (fewest soft rules broken, then the smallest imbalance). Every hard rule, capacity and FT cap
 * is checked with the half's usage freed from its current host, and its partner fixed where it is. An
 * invalid target answers `unplaceable` whose reason names each broken rule or cap.
 */
export function migrateHalf(c: Cluster, vmId: string, role: Role, to?: string): MigrationResult {
  const vm = vmArg(c, vmId);
  const id = c.vmIds[vm]!;
  const secondary = role === 'secondary';
  const target = to === undefined ? -1 : hostArg(c, to, 'to');
  const s = State.initial(c);
  const refuse = (reason: string, candidates: Candidate[] = []): Unplaceable => ({ kind: 'unplaceable', vm: id, mode: c.mode, role, reason, candidates });
  if (secondary && !c.ft[vm]) return refuse(`${id} has no FT, so no secondary to migrate`);
  const from = s.hostOf(vm, secondary);
  if (from < 0 || !s.running(vm, secondary)) return refuse(`the ${secondary ? 'secondary' : c.ft[vm] ? 'primary' : 'VM'} of ${id} does not run on a connected host: there is nothing to migrate`);
  const partner = c.ft[vm] && s.running(vm, !secondary) ? s.hostOf(vm, !secondary) : -1;
  const what = `the ${secondary ? 'secondary' : c.ft[vm] ? 'primary' : 'VM'} of ${id}`;
  if (target === from) return refuse(`${what} already runs on ${c.hostIds[from]!}`);
  const spec: HalfSpec = { vm, secondary, freed: from, partner, ignore: -1 };
  const sc = scan(c, s, spec, { report: true, accept: (h) => h !== from && (target < 0 || h === target) });
  if (target >= 0) {
    const cand = sc.candidates.find((k) => k.host === c.hostIds[target]!)!;
    if (!cand.ok) return refuse(`${c.hostIds[target]!} cannot take ${what}: ${cand.rejections.map((r) => r.message).join('; ')}`, sc.candidates);
  } else if (sc.best < 0) {
    return refuse(`no other host can take ${what} (${whyRejected(sc.candidates.filter((k) => k.host !== c.hostIds[from]!), partner >= 0 ? c.hostIds[partner]! : '')})`, sc.candidates);
  }
  const h = target >= 0 ? target : sc.best;
  const score = (sc.candidates.find((k) => k.ok && k.host === c.hostIds[h]!) as Extract<Candidate, { ok: true }>).score;
  const soft = softDetails(c, s, vm, secondary, h);
  const out: HalfMigration = {
    kind: 'half-migration',
    vm: id,
    mode: c.mode,
    role,
    from: c.hostIds[from]!,
    to: c.hostIds[h]!,
    score,
    soft,
    candidates: sc.candidates,
    message: `migrate ${what} ${c.hostIds[from]!} → ${c.hostIds[h]!}${partner >= 0 ? ` (its ${secondary ? 'primary' : 'secondary'} stays on ${c.hostIds[partner]!})` : ''}${soft.length > 0 ? `; soft rules still broken there: ${soft.map((v) => v.message).join('; ')}` : ''}`,
  };
  if (partner >= 0) out.partnerHost = c.hostIds[partner]!;
  return out;
}
