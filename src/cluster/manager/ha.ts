// HA admission control over the cluster's inventory: the placement engine's slot policy fed with the
// store's HA settings, for the manager (before it powers a VM on) and `lockstep cluster` (create-vm,
// status). Pure functions of an inventory; no I/O.
import { Placement, type AdmissionResult, type ClusterSnapshot } from '../placement/index.js';
import { buildSnapshot, pairViews, type Inventory } from './inventory.js';
import type { DesiredVm } from './layout.js';

/**
 * Admission of `vm` (a VM in `snapshot` that runs nowhere) under `hostFailures`; undefined when the
 * policy is off (0). The snapshot is the manager's working one, so starts already decided count.
 */
export function admitVm(snapshot: ClusterSnapshot, hostFailures: number, vm: string): AdmissionResult | undefined {
  if (hostFailures === 0) return undefined;
  return new Placement(snapshot).admission({ hostFailures, vm });
}

/**
 * The cluster's failover capacity for its desired VMs, and — when `candidate` is given — with that VM
 * added to them. Without the manager's compatibility baseline, every host counts for FT halves
 * (the manager checks again with its own before it starts anything). Throws PlacementInputError when
 * the inventory is not a valid snapshot.
 */
export function clusterAdmission(inv: Inventory, candidate?: DesiredVm): AdmissionResult {
  let source = inv;
  if (candidate !== undefined) {
    const desired = new Map(inv.desired);
    desired.set(candidate.id, candidate);
    // As a VM that runs nowhere yet: instances of an old VM of the same id do not count for it.
    const instances = new Map(inv.instances);
    instances.delete(candidate.id);
    source = { ...inv, desired, instances };
  }
  const views = pairViews(source);
  const { snapshot } = buildSnapshot(source, new Map(views.map((v) => [v.vm, v])));
  return new Placement(snapshot).admission({ hostFailures: inv.ha.hostFailures, ...(candidate !== undefined ? { vm: candidate.id } : {}) });
}
