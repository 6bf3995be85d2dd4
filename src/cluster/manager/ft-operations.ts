// `lockstep cluster ft`: which FT operations the VM's state allows, shared by the CLI (checked before
// anything is written) and the leading manager (checked again before it asks the primary). Pure.
import type { PairView } from './inventory.js';
import type { ClusterFtOperation } from './layout.js';

/** A primary's status while the operator has FT suspended (src/ft/control.ts: `Not Protected (FT suspended)`). */
export const FT_SUSPENDED = /\(FT suspended\)/;

/** Why `operation` cannot be done on `v` now (undefined: it can be asked of its primary). */
export function ftOperationRefusal(operation: ClusterFtOperation, v: PairView | undefined): string | undefined {
  if (v?.desired === undefined) return 'no such VM in the cluster';
  if (v.desired.ft !== true) return `${v.vm} runs without FT`;
  const p = v.primary;
  if (p === undefined || p.state !== 'running') return `the primary of ${v.vm} is not running (${v.status})`;
  const suspended = FT_SUSPENDED.test(p.status);
  if (operation === 'test-failover' && !p.protected) return `${v.vm} is not protected (${p.status}): a test failover needs a secondary in lockstep`;
  if (operation === 'restart-secondary' && v.secondary === undefined) return `${v.vm} has no secondary to restart (${p.status})`;
  if (operation === 'suspend' && suspended) return `FT is already suspended for ${v.vm}`;
  if (operation === 'resume' && !suspended) return `FT is not suspended for ${v.vm} (${p.status})`;
  return undefined;
}
