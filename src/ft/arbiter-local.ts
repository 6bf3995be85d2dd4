// The arbiter of a VM without FT: no shared storage, the epochs live in this process only. Safe only
// where no other process can go live on its own: a VM with FT off, whose one other copy is a live
// migration's target that goes live on the source's GO_LIVE alone (docs/fault-tolerance.md).
import { publishClaim, validateEpoch, validateOwnerId, validateVmId, type Arbiter, type ClaimResult, type EpochHolder } from './arbiter.js';

/**
 * Epochs held in memory, per process. Claims follow the {@link Arbiter} contract (a higher epoch
 * wins, the same owner reclaims), so a primary and a promoted migration target run unchanged on it; but
 * nothing is shared, so it fences no one: FtPrimary refuses to turn FT on over it, and FtSecondary
 * over it never goes live except on GO_LIVE.
 */
export class LocalArbiter implements Arbiter {
  /** Always `'local'`. */
  readonly kind = 'local' as const;
  readonly #held = new Map<string, EpochHolder>();

  /** {@inheritDoc Arbiter.claim} */
  claim(vmId: string, epoch: number, ownerId: string): Promise<ClaimResult> {
    validateVmId(vmId);
    validateEpoch(epoch);
    validateOwnerId(ownerId);
    return publishClaim({ kind: this.kind, vmId, epoch, ownerId }, Promise.resolve(this.#claim(vmId, epoch, ownerId)));
  }

  #claim(vmId: string, epoch: number, ownerId: string): ClaimResult {
    const cur = this.#held.get(vmId);
    if (cur && cur.epoch > epoch) return { won: false, reason: 'stale', vmId, epoch, holder: { ...cur } };
    if (cur && cur.epoch === epoch) {
      const mine = cur.owner === ownerId;
      return { won: mine, reason: mine ? 'reclaimed' : 'taken', vmId, epoch, holder: { ...cur } };
    }
    const holder: EpochHolder = { vmId, epoch, owner: ownerId, claimedAt: null };
    this.#held.set(vmId, holder);
    return { won: true, reason: 'claimed', vmId, epoch, holder: { ...holder } };
  }

  /** {@inheritDoc Arbiter.current} */
  current(vmId: string): Promise<EpochHolder | null> {
    validateVmId(vmId);
    const cur = this.#held.get(vmId);
    return Promise.resolve(cur ? { ...cur } : null);
  }

  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
