// An arbiter in front of a real one whose claims a test can let through, fail as unreachable, hold (a
// request already on the wire), or let land and then lose the answer of; it records every claim call.
import { ArbiterError, type Arbiter, type ArbiterKind, type ArbiterCallOptions, type ClaimResult, type EpochHolder } from '../../src/ft/arbiter.js';

export type GateMode =
  /** Straight through to the real arbiter. */
  | 'pass'
  /** Rejects with ERR_LOCKSTEP_ARBITER_UNAVAILABLE without touching storage. */
  | 'fail'
  /** Waits for {@link GatedArbiter.release}, then goes to storage whatever the caller's signal says. */
  | 'hold'
  /** Reaches storage, then rejects with ERR_LOCKSTEP_ARBITER_UNAVAILABLE (the answer was lost). */
  | 'lose-answer';

export interface ClaimCall {
  vmId: string;
  epoch: number;
  owner: string;
  /** Whether the call carried an AbortSignal. */
  hadSignal: boolean;
}

export class GatedArbiter implements Arbiter {
  readonly kind: ArbiterKind;
  readonly calls: ClaimCall[] = [];
  mode: GateMode = 'pass';
  readonly #inner: Arbiter;
  #held: Array<() => void> = [];
  /** Settled outcomes of held calls, once released (for tests that wait for them to land). */
  readonly landed: Array<Promise<ClaimResult>> = [];

  constructor(inner: Arbiter) {
    this.#inner = inner;
    this.kind = inner.kind;
  }

  /** Calls waiting in 'hold' mode. */
  get holding(): number {
    return this.#held.length;
  }

  /** Lets every held call go to storage (they then ignore their caller's signal, as a sent request would). */
  release(): void {
    const held = this.#held;
    this.#held = [];
    for (const go of held) go();
  }

  claim(vmId: string, epoch: number, owner: string, options?: ArbiterCallOptions): Promise<ClaimResult> {
    this.calls.push({ vmId, epoch, owner, hadSignal: options?.signal !== undefined });
    const unavailable = () => new ArbiterError('ERR_LOCKSTEP_ARBITER_UNAVAILABLE', `test gate: the arbiter is unreachable (${this.mode})`, { vmId });
    switch (this.mode) {
      case 'pass':
        return this.#inner.claim(vmId, epoch, owner, options);
      case 'fail':
        return Promise.reject(unavailable());
      case 'lose-answer':
        return this.#inner.claim(vmId, epoch, owner).then(() => Promise.reject(unavailable()));
      case 'hold': {
        const landed = new Promise<void>((resolve) => this.#held.push(resolve)).then(() => this.#inner.claim(vmId, epoch, owner));
        this.landed.push(landed);
        return landed;
      }
    }
  }

  current(vmId: string, options?: ArbiterCallOptions): Promise<EpochHolder | null> {
    return this.#inner.current(vmId, options);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
