// Audit of a snapshot as it stands: broken hard and soft rules, overcommitted hosts, load spread,
// FT VMs that are unprotected or disabled. Reads only; recommends nothing.
import type { Cluster, PlacementMode } from './model.js';
import { type HardViolation, type Overcommit, type SoftFinding, overcommits, ruleFindings } from './rules.js';
import { type Spread, State } from './state.js';

/** Answer of {@link audit}. */
export interface AuditResult {
  kind: 'audit';
  mode: PlacementMode;
  /** Hard rules broken by running halves (possible after failovers, or in a hand-made snapshot). */
  hard: HardViolation[];
  soft: SoftFinding[];
  overcommitted: Overcommit[];
  spread: Spread;
  /** FT VMs with exactly one running half: they need {@link placeSecondary}. */
  unprotected: string[];
  /** FT VMs with no running half. */
  down: string[];
  /** Legacy mode: FT VMs disabled for load balancing (all of them). */
  disabled: string[];
}

/** What is wrong with the snapshot's current placement, if anything. */
export function audit(c: Cluster): AuditResult {
  const s = State.initial(c);
  const { hard, soft } = ruleFindings(c, s);
  const unprotected: string[] = [];
  const down: string[] = [];
  const disabled: string[] = [];
  for (let vm = 0; vm < c.vmIds.length; vm++) {
    if (!c.ft[vm]) continue;
    const p = s.running(vm, false);
    const q = s.running(vm, true);
    if (p !== q) unprotected.push(c.vmIds[vm]!);
    else if (!p) down.push(c.vmIds[vm]!);
    if (c.mode === 'legacy') disabled.push(c.vmIds[vm]!);
  }
  return { kind: 'audit', mode: c.mode, hard, soft, overcommitted: overcommits(c, s), spread: s.spread(), unprotected, down, disabled };
}
