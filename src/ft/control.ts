// Pure pieces of the fault-tolerant pair: failure detection, lag control and protection status. No
// timers, sockets or machines here: callers pass the time in, so every decision is testable.

/** Defaults of the pair's timing (see docs/fault-tolerance.md for the trade-offs). */
export const FT_DEFAULTS = {
  /** Heartbeat interval in both directions. */
  heartbeatMs: 100,
  /**
   * Silence after which the peer is declared dead. A dead process is noticed at once (its TCP connection
   * closes); a lost host or a partition only by this timeout. Shorter fails over faster but risks a
   * failover on a GC pause or a loaded host; 600 ms keeps the outage p99 under a second.
   */
  timeoutMs: 600,
  /** Execution lag (the "lockstep interval") the primary tries to stay under by slowing down. */
  lagTargetMs: 100,
  /** Lag at which the primary runs at its slowest (5 % of full speed). */
  maxLagMs: 1000,
  /** Log sent but not acknowledged beyond which the primary stops draining its ring (and so stalls). */
  maxUnackedBytes: 64 * 1024 * 1024,
  /**
   * How often a primary reads its VM's epoch from the arbiter: one that finds a newer epoch than its own
   * (claimed by a secondary that went live, or by a manager fencing a VM it is about to restart) halts.
   */
  epochCheckMs: 1000,
} as const;

/**
 * Declares the peer dead after `timeoutMs` without hearing from it. Anything counts as hearing: a
 * heartbeat, a log batch, an ack.
 */
export class FailureDetector {
  readonly timeoutMs: number;
  #last: number;

  constructor(timeoutMs: number, now: number) {
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, got ${timeoutMs}`);
    this.timeoutMs = timeoutMs;
    this.#last = now;
  }
  heard(now: number): void {
    if (now > this.#last) this.#last = now;
  }
  /** Milliseconds since the peer was last heard. */
  silence(now: number): number {
    return Math.max(0, now - this.#last);
  }
  expired(now: number): boolean {
    return this.silence(now) > this.timeoutMs;
  }
}

/**
 * Lag control: how much of each slice the primary's vCPU sleeps, from the secondary's execution lag.
 * Zero below the target; rises linearly to 0.95 at `maxLagMs`; smoothed so the guest slows down and
 * speeds up gradually rather than in steps.
 */
export class LagController {
  readonly targetMs: number;
  readonly maxMs: number;
  #ratio = 0;

  constructor(targetMs: number, maxMs: number) {
    if (!(targetMs > 0) || !(maxMs > targetMs)) throw new RangeError(`need 0 < lagTargetMs < maxLagMs, got ${targetMs}, ${maxMs}`);
    this.targetMs = targetMs;
    this.maxMs = maxMs;
  }
  /** The throttle ratio (0..0.95) for a measured lag in milliseconds. */
  update(lagMs: number): number {
    const want = lagMs <= this.targetMs ? 0 : Math.min(0.95, (0.95 * (lagMs - this.targetMs)) / (this.maxMs - this.targetMs));
    // Faster to brake than to release: a growing lag is corrected within a few ticks.
    const alpha = want > this.#ratio ? 0.5 : 0.2;
    this.#ratio += alpha * (want - this.#ratio);
    if (this.#ratio < 0.005) this.#ratio = 0;
    return this.#ratio;
  }
  get ratio(): number {
    return this.#ratio;
  }
}

/** Why a VM is not protected (the reasons vSphere shows). */
export type NotProtectedReason = 'starting' | 'needs-secondary' | 'disabled' | 'suspended' | 'vm-not-running';

/** Protection status as an operator sees it. */
export type ProtectionStatus = { protected: true } | { protected: false; reason: NotProtectedReason; detail?: string };

/** The text vSphere would show for a status. */
export function describeStatus(s: ProtectionStatus): string {
  if (s.protected) return 'Protected';
  const text: Record<NotProtectedReason, string> = {
    starting: 'Not Protected (starting)',
    'needs-secondary': 'Not Protected (need secondary VM)',
    disabled: 'Not Protected (disabled)',
    suspended: 'Not Protected (FT suspended)',
    'vm-not-running': 'Not Protected (VM not running)',
  };
  return s.detail ? `${text[s.reason]}: ${s.detail}` : text[s.reason];
}
