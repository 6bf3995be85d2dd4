// Whether a `lockstep cluster migrate` request can be carried out now, and where to: the CLI checks it
// before writing the request (nothing written when refused), the leading manager again, on its own
// snapshot, before acting. No I/O: a function of the pair views and a placement snapshot.
import { Placement, PlacementInputError, type ClusterSnapshot } from '../placement/index.js';
import type { PairView } from './inventory.js';
import type { MigrateRequest } from './layout.js';

/** Why a migration is refused (stable codes, for `--json` and tests). */
export type MigrationRefusal =
  /** The VM is not in the desired state. */
  | 'unknown-vm'
  /** The target host is not one the cluster knows. */
  | 'unknown-host'
  /** `--secondary` of a VM without FT: it has none. */
  | 'no-ft-migration'
  /** A VM without FT that is not running now (starting, down, a migration of it under way). */
  | 'not-running'
  /** An FT VM whose secondary is not in lockstep: a migration would leave it unprotected. */
  | 'not-protected'
  /** The target (or every host, without one) breaks a hard rule, a capacity or an FT cap. */
  | 'invalid-target';

/** Answer of {@link checkMigration}. */
export type MigrationCheck =
  | { ok: true; vm: string; role: 'primary' | 'secondary'; from: string; to: string; message: string }
  | { ok: false; vm: string; code: MigrationRefusal; reason: string };

/**
 * Checks a migration request against the VM's pair and the placement rules. A primary of an FT VM
 * moves by live migration with its secondary following (no protection gap), a secondary by a gap-free
 * move (a new one cloned before the old one leaves); both need the VM protected. A VM without FT moves
 * by live migration of its one instance (a key made for the migration, no restart); it needs to be
 * running, and has no secondary to move.
 */
export function checkMigration(views: readonly PairView[], snapshot: ClusterSnapshot, req: Pick<MigrateRequest, 'vm' | 'role' | 'to'>): MigrationCheck {
  const { vm, role } = req;
  const no = (code: MigrationRefusal, reason: string): MigrationCheck => ({ ok: false, vm, code, reason });
  const v = views.find((x) => x.vm === vm);
  if (v?.desired === undefined) return no('unknown-vm', `no VM ${vm} in the cluster (VMs: ${views.filter((x) => x.desired !== undefined).map((x) => x.vm).join(', ') || 'none'})`);
  if (!v.desired.ft && role === 'secondary') return no('no-ft-migration', `${vm} runs without FT: it has no secondary to migrate (migrate the VM itself, without --secondary)`);
  if (!v.desired.ft && (v.status !== 'running' || v.others.length > 0)) return no('not-running', `${vm} (FT off) is not running now (${v.text}${v.others.length > 0 ? '; an operation on it is still ending' : ''}): try again once it runs`);
  if (v.desired.ft && !v.protected) return no('not-protected', `${vm} is not protected (${v.text}): a live migration needs its secondary in lockstep, or it would leave the VM unprotected; try again once it is Protected`);
  if (req.to !== undefined && !snapshot.hosts.some((h) => h.id === req.to)) {
    return no('unknown-host', `no host ${req.to} in the cluster (live hosts: ${snapshot.hosts.filter((h) => h.connected !== false).map((h) => h.id).sort().join(', ') || 'none'})`);
  }
  let r;
  try {
    r = new Placement(snapshot).migrate(vm, role, req.to);
  } catch (err) {
    if (err instanceof PlacementInputError) return no('invalid-target', err.message);
    throw err;
  }
  if (r.kind !== 'half-migration') return no('invalid-target', r.reason);
  return { ok: true, vm, role, from: r.from, to: r.to, message: r.message };
}
