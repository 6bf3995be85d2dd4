// Pure pieces of the fault-tolerant pair: failure detection, lag control and protection status. No
// timers, sockets or machines here: callers pass the time in, so every decision is testable.
import { OptionError } from '../errors.js';

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
  /**
   * While a secondary is being cloned, the silence either side tolerates: at least this, or `timeoutMs`
   * if longer. Copying a large guest stalls both event loops on a loaded host (600 ms of it ended
   * pairs before they were ever protected), and nothing depends on detecting a death quickly then: a
   * secondary never goes live from a clone, and the primary holds no output for it before the final state.
   */
  cloneTimeoutMs: 10_000,
} as const;

/**
 * A live migration without an arbiter (a VM with FT off): how many `timeoutMs` the source stays
 * reachable after it sent GO_LIVE without the target's confirmation, and a target that lost the source
 * before GO_LIVE keeps asking it how the hand-over stands (docs/fault-tolerance.md, "Live migration
 * without FT"). Above the failure detector's longest adaptive timeout (3 × timeoutMs), so that a target
 * whose detector stretched still finds the source listening.
 */
export const HANDOVER_RETRY_TIMEOUTS = 5;

/** @throws OptionError (`cloneTimeoutMs`) unless undefined or a finite number of ms, 0 or more. */
export function checkCloneTimeout(ms: number | undefined): void {
  if (ms !== undefined && !(Number.isFinite(ms) && ms >= 0)) throw new OptionError('cloneTimeoutMs', `cloneTimeoutMs must be a number of milliseconds, 0 or more; got ${String(ms)}`);
}

/** The hand-over's retry window for a pair with this `timeoutMs`, ms (see {@link HANDOVER_RETRY_TIMEOUTS}). */
export function handOverRetryMs(timeoutMs: number): number {
  return HANDOVER_RETRY_TIMEOUTS * timeoutMs;
}

/** Options of a {@link FailureDetector}. */
export interface FailureDetectorOptions {
  /**
   * How often the owner checks (its heartbeat tick), ms. A check that comes much later than this means
   * the owner itself was not running (a loaded host, a GC pause): that time is not the peer's silence.
   * Default: none (no compensation).
   */
  checkEveryMs?: number;
  /** The longest the adaptive timeout may grow to, ms. Default 3 × timeoutMs. */
  maxTimeoutMs?: number;
  /** A silence shorter than this never declares the peer dead until {@link FailureDetector.endGrace}, ms. Default 0. */
  graceMs?: number;
}

/**
 * Declares the peer dead after a silence longer than its timeout. Anything counts as hearing: a
 * heartbeat, a log batch, an ack.
 *
 * The timeout adapts to the gaps it has seen, so that a loaded host's stalls do not look like a death:
 * it is `timeoutMs`, or twice the longest gap between two hearings among the last
 * {@link FailureDetector.WINDOW}, whichever is longer, never more than `maxTimeoutMs`. A quiet link
 * keeps the configured timeout (detection time unchanged); one whose heartbeats have arrived 400 ms late
 * waits 800 ms. And the owner's own pauses do not count: a check that comes more than two check periods
 * late moves the last hearing forward by the excess (the owner could not have heard anything then, and
 * its peer's messages wait unread in a socket), so a detector never fires on the first check after its
 * own process was stopped. During a grace period (`graceMs`, while a secondary is cloned) a silence up
 * to `graceMs` is tolerated as well.
 */
export class FailureDetector {
  /** Gaps remembered for the adaptive timeout. */
  static readonly WINDOW = 256;
  readonly timeoutMs: number;
  readonly maxTimeoutMs: number;
  readonly #checkEveryMs: number | undefined;
  #last: number;
  #lastCheck: number;
  readonly #gaps: number[] = [];
  #next = 0;
  #longest = 0;
  #graceMs: number;

  constructor(timeoutMs: number, now: number, options: FailureDetectorOptions = {}) {
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, got ${timeoutMs}`);
    const max = options.maxTimeoutMs ?? 3 * timeoutMs;
    if (!(max >= timeoutMs)) throw new RangeError(`maxTimeoutMs must be at least timeoutMs (${timeoutMs}), got ${max}`);
    if (options.checkEveryMs !== undefined && !(options.checkEveryMs > 0)) throw new RangeError(`checkEveryMs must be positive, got ${options.checkEveryMs}`);
    if (options.graceMs !== undefined && !(options.graceMs >= 0)) throw new RangeError(`graceMs must be 0 or more, got ${options.graceMs}`);
    this.#graceMs = options.graceMs ?? 0;
    this.timeoutMs = timeoutMs;
    this.maxTimeoutMs = max;
    this.#checkEveryMs = options.checkEveryMs;
    this.#last = now;
    this.#lastCheck = now;
  }
  heard(now: number): void {
    if (now <= this.#last) return;
    this.#remember(now - this.#last);
    this.#last = now;
  }
  /** Milliseconds since the peer was last heard. */
  silence(now: number): number {
    return Math.max(0, now - this.#last);
  }
  /** The silence that declares the peer dead now (see the class). */
  get currentTimeoutMs(): number {
    return Math.max(this.#graceMs, Math.min(this.maxTimeoutMs, Math.max(this.timeoutMs, 2 * this.#longest)));
  }
  /** True until {@link endGrace}: a silence up to `graceMs` is tolerated. */
  get inGrace(): boolean {
    return this.#graceMs > 0;
  }
  /**
   * The end of the grace period (a clone finished): from here the configured timeout applies, and the
   * gaps heard during the grace are forgotten, so the stalls of a clone do not stretch the timeout after it.
   */
  endGrace(): void {
    if (this.#graceMs === 0) return;
    this.#graceMs = 0;
    this.#gaps.length = 0;
    this.#next = 0;
    this.#longest = 0;
  }
  /** The owner's periodic check (call it every `checkEveryMs`): is the peer dead? */
  expired(now: number): boolean {
    if (this.#checkEveryMs !== undefined) {
      const late = now - this.#lastCheck - 2 * this.#checkEveryMs;
      if (late > 0 && this.#last < now) this.#last = Math.min(now, this.#last + late);
    }
    this.#lastCheck = Math.max(this.#lastCheck, now);
    return this.silence(now) > this.currentTimeoutMs;
  }

  #remember(gap: number): void {
    // A ring of the last WINDOW gaps; the longest is recomputed only when it leaves the window.
    const old = this.#gaps.length < FailureDetector.WINDOW ? undefined : this.#gaps[this.#next];
    if (old === undefined) this.#gaps.push(gap);
    else this.#gaps[this.#next] = gap;
    this.#next = (this.#next + 1) % FailureDetector.WINDOW;
    if (gap >= this.#longest) this.#longest = gap;
    else if (old === this.#longest) this.#longest = Math.max(...this.#gaps);
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
