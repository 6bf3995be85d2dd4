// Public surface of the placement engine: the Placement class over one validated snapshot, and the
// types of its answers. Re-exports and thin wrappers only; no logic of its own.
import { type AdmissionResult, admission } from './admission.js';
import { type AuditResult, audit } from './audit.js';
import { type BalanceOptions, type BalanceResult, balance } from './balance.js';
import { type EvacuationPlan, evacuate } from './evacuate.js';
import { type ExplainOptions, type PlacementAnswer, explain } from './explain.js';
import { type Cluster, type ClusterSnapshot, type PlacementMode, type Role, buildCluster, vmArg } from './model.js';
import { PlacementInputError } from './errors.js';
import { type MigrationResult, migrateHalf } from './migrate.js';
import { type DefragOptions, type DefragResult, defragment } from './defrag.js';
import {
  type PlaceAllOptions,
  type PlaceResult,
  type PlacementPlan,
  type SecondaryResult,
  place,
  placeAll,
  placeSecondary,
} from './place.js';

/**
 * The placement engine (the DRS interplay of DESIGN §4) over one cluster snapshot. The constructor
 * validates the snapshot (throwing {@link PlacementInputError} naming the bad field) and indexes it in
 * canonical order; every method is then a pure function of that snapshot: same snapshot, same answer,
 * whatever order hosts and VMs were listed in. Methods answer; they never change the snapshot — use
 * {@link applyAnswer} to get the snapshot after an answer is carried out.
 *
 * ```ts
 * const p = new Placement(snapshot);
 * const r = p.place('vm-7');
 * if (r.kind === 'unplaceable') console.log(explain(r));
 * ```
 */
export class Placement {
  readonly #c: Cluster;

  constructor(snapshot: ClusterSnapshot) {
    this.#c = buildCluster(snapshot);
  }

  /** `integrated` with a compatibility baseline (FT pairs placed and balanced), `legacy` without. */
  get mode(): PlacementMode {
    return this.#c.mode;
  }

  /** Initial placement of a VM, or of both halves of an FT VM, that runs nowhere. */
  place(vm: string): PlaceResult {
    return place(this.#c, vm);
  }

  /** A new secondary for an FT VM that lost one half (failing over first if the primary was lost). */
  placeSecondary(vm: string): SecondaryResult {
    return placeSecondary(this.#c, vm);
  }

  /** Placement of every VM that runs nowhere (cluster power-on), one after another. */
  placeAll(options?: PlaceAllOptions): PlacementPlan {
    return placeAll(this.#c, options);
  }

  /** Load-balancing and rule-repair recommendations, in the order to apply them. */
  balance(options?: BalanceOptions): BalanceResult {
    return balance(this.#c, options);
  }

  /**
   * A live migration of one half checked against every hard rule, capacity and FT cap: to `to`, or to
   * the best other valid host when `to` is absent. The other half of an FT pair stays where it is.
   */
  migrate(vm: string, role: Role, to?: string): MigrationResult {
    return migrateHalf(this.#c, vm, role, to);
  }

  /**
   * Defragmentation: for a VM that runs nowhere and that no host can take only for want of room, the
   * moves of other VMs' halves (live migrations, secondary moves) that make room for it.
   */
  defragment(vm: string, options?: DefragOptions): DefragResult {
    return defragment(this.#c, vm, options);
  }

  /** Plan to empty a host for maintenance mode, with the halves that cannot leave and why. */
  evacuate(host: string): EvacuationPlan {
    return evacuate(this.#c, host);
  }

  /** What the current placement breaks, and the load spread. */
  audit(): AuditResult {
    return audit(this.#c);
  }

  /**
   * HA admission control ("host failures cluster tolerates"): whether every VM of the snapshot — the
   * VMs the cluster is to run, `vm` among them — could be restarted, and every FT VM re-protected, after
   * the loss of any `hostFailures` hosts. `hostFailures` 0 turns the check off (always admitted).
   */
  admission(options: { hostFailures: number; vm?: string }): AdmissionResult {
    const n = options.hostFailures;
    if (!Number.isSafeInteger(n) || n < 0) throw new PlacementInputError('hostFailures', `must be a non-negative integer, got ${String(n)}`);
    return admission(this.#c, n, options.vm === undefined ? -1 : vmArg(this.#c, options.vm));
  }

  /** Same as the module function {@link explain}. */
  explain(answer: PlacementAnswer, options?: ExplainOptions): string {
    return explain(answer, options);
  }
}

export { explain };
export type { ExplainOptions, PlacementAnswer };
export { applyAnswer, applyMoves } from './apply.js';
export type { ApplicableAnswer } from './apply.js';
export { PlacementInputError } from './errors.js';
export { DEFAULT_MAX_FT_VMS, DEFAULT_MAX_FT_VCPUS, compareIds } from './model.js';
export type {
  ClusterSnapshot,
  HostSpec,
  HostCapacity,
  VmSpec,
  VmDemand,
  PlacementRule,
  VmHostRule,
  VmHostRuleType,
  VmVmRule,
  FtSplitRule,
  PlacementOptions,
  PlacementMode,
  Role,
} from './model.js';
export type { Rejection, SoftViolation, HardViolation, SoftFinding, Overcommit } from './rules.js';
export type {
  PlaceResult,
  PlacedVm,
  PlacedPair,
  HalfPlacement,
  Unplaceable,
  SecondaryResult,
  SecondaryPlaced,
  AlreadyProtected,
  NoLiveHalf,
  PlacementPlan,
  PlanEntry,
  PlaceAllOptions,
  Candidate,
  HostScore,
} from './place.js';
export { DEFAULT_BALANCE_OPTIONS, describeMove } from './balance.js';
export type {
  BalanceOptions,
  BalanceResult,
  BalanceStop,
  Move,
  MigrateMove,
  MoveSecondaryMove,
  SwitchPrimaryMove,
  MoveReason,
  Recommendation,
  HostLoadChange,
  FrozenVm,
} from './balance.js';
export type { EvacuationPlan, EvacuationStep, BlockedHalf } from './evacuate.js';
export type { HalfMigration, MigrationResult } from './migrate.js';
export type { DefragMove, DefragOptions, DefragResult } from './defrag.js';
export type { AuditResult } from './audit.js';
export type { AdmissionResult, AdmissionHost, AdmissionCode } from './admission.js';
export type { Spread } from './state.js';
