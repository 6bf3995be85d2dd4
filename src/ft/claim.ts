// Claiming the next epoch, the one way both halves of a pair do it: the owner token that names a process
// incarnation, and a claim retried with capped backoff while the arbiter cannot answer, stopped at once
// when the caller halts. No storage I/O of its own (the back-ends do that).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { OptionError } from '../errors.js';
import { ArbiterError, validateOwnerId, type Arbiter, type ClaimResult } from './arbiter.js';

/** Linux's identity of the running kernel: new at every boot, the same for every container on the host. */
const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id';

let bootIdCache: string | undefined;

/** This host's boot id without dashes (32 hex digits), or `'noboot'` where the kernel does not offer one. */
function bootId(): string {
  if (bootIdCache === undefined) {
    try {
      const id = readFileSync(BOOT_ID_PATH, 'utf8').trim().replace(/-/g, '').toLowerCase();
      bootIdCache = /^[0-9a-f]{32}$/.test(id) ? id : 'noboot';
    } catch {
      bootIdCache = 'noboot';
    }
  }
  return bootIdCache;
}

/**
 * A new owner token for the arbiter: `<role>@<host>/<pid>#<boot id>.<128 random bits>`, e.g.
 * `secondary@node-b/1#6f1c…0e.9a7d…41` (hex). Host name and pid are there for people reading a status
 * or an error; they are not unique (containers, PID namespaces, hosts with equal names). What makes the
 * token unique is the boot id (a different kernel, i.e. a different host or boot) together with 128
 * random bits (a different process or object on the same kernel). Make one per incarnation of a side
 * and never share it: the arbiter counts a repeated claim by the same token as the same claimer's win.
 */
export function newOwnerId(role: string): string {
  if (typeof role !== 'string' || !/^[A-Za-z0-9._-]{1,32}$/.test(role)) {
    throw new OptionError('role', `${JSON.stringify(String(role)).slice(0, 40)} is not a role name: use 1-32 characters of A-Z a-z 0-9 . _ -`);
  }
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64) || 'host';
  return `${role}@${host}/${process.pid}#${bootId()}.${randomBytes(16).toString('hex')}`;
}

/** Options of {@link claimEpoch}. */
export interface ClaimEpochOptions {
  /**
   * Fires when the caller halts (or otherwise no longer wants the epoch): no further attempt is made,
   * the pending attempt's outcome is dropped, and the promise rejects with `ERR_LOCKSTEP_ARBITER_ABORTED`
   * at once. A win that lands after the signal is never reported as a win.
   */
  signal?: AbortSignal;
  /**
   * Attempts before giving up with the last error (default: unlimited — as in VMware FT, a side that
   * cannot reach the arbiter waits until it can; it never acts without it).
   */
  maxAttempts?: number;
  /** Pause after the first failed attempt, ms (default 50); doubled after each failure up to {@link maxDelayMs}. */
  initialDelayMs?: number;
  /** Longest pause between attempts, ms (default 1000). */
  maxDelayMs?: number;
  /** Time limit of each attempt, ms (default: the arbiter's own). */
  timeoutMs?: number;
  /** Told about each failed attempt that will be retried (for a warning). */
  onRetry?: (error: ArbiterError, attempt: number, delayMs: number) => void;
}

const DEFAULT_INITIAL_DELAY_MS = 50;
const DEFAULT_MAX_DELAY_MS = 1_000;

/**
 * Claim `epoch` of `vmId` for `owner`, retrying while the arbiter cannot be consulted.
 *
 * Resolves with the arbiter's answer, won or lost (a loss is final: it is never retried). Each retry uses
 * the same `owner`, so an attempt whose answer was lost but which reached the storage comes back as
 * `won: true, reason: 'reclaimed'`. Rejects with:
 * - `ERR_LOCKSTEP_ARBITER_ABORTED` once `signal` fires, before or during any attempt or pause;
 * - `ERR_LOCKSTEP_ARBITER_CLOSED` at once when the arbiter is closed (retrying cannot help);
 * - the last {@link ArbiterError} after `maxAttempts` failed attempts;
 * - an `OptionError` for an invalid VM id, epoch or owner, without retrying.
 * Every rejection means "not won".
 */
export async function claimEpoch(arbiter: Arbiter, vmId: string, epoch: number, owner: string, options: ClaimEpochOptions = {}): Promise<ClaimResult> {
  validateOwnerId(owner);
  const maxAttempts = options.maxAttempts ?? Infinity;
  if (maxAttempts !== Infinity && (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1)) throw new OptionError('maxAttempts', 'must be a positive integer (or Infinity)');
  const initialDelayMs = options.initialDelayMs ?? DEFAULT_INITIAL_DELAY_MS;
  const maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
  if (!Number.isFinite(initialDelayMs) || initialDelayMs < 0) throw new OptionError('initialDelayMs', 'must be a non-negative number of milliseconds');
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < initialDelayMs) throw new OptionError('maxDelayMs', 'must be a number of milliseconds not below initialDelayMs');
  const signal = options.signal;
  const aborted = () =>
    new ArbiterError(
      'ERR_LOCKSTEP_ARBITER_ABORTED',
      `the claim of epoch ${epoch} of VM ${vmId} by ${owner} was abandoned (${describeReason(signal?.reason)}); not won — an attempt already sent may still have taken the epoch`,
      { vmId },
    );
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw aborted();
    let result: ClaimResult;
    try {
      result = await untilAborted(
        arbiter.claim(vmId, epoch, owner, { ...(signal ? { signal } : {}), ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) }),
        signal,
      );
    } catch (err) {
      if (signal?.aborted) throw aborted();
      if (!(err instanceof ArbiterError) || err.code === 'ERR_LOCKSTEP_ARBITER_CLOSED' || err.code === 'ERR_LOCKSTEP_ARBITER_ABORTED') throw err;
      if (attempt >= maxAttempts) throw err;
      // Capped exponential backoff with jitter, so two sides retrying against one recovering store spread out.
      const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt - 1, 30));
      const delayMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
      options.onRetry?.(err, attempt, delayMs);
      await pause(delayMs, signal);
      continue;
    }
    // The answer and the abort may arrive in the same turn: a caller that has halted is never told it won.
    if (signal?.aborted) throw aborted();
    return result;
  }
}

/** `work`, or a rejection as soon as `signal` fires (the work goes on; its outcome is dropped). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** Resolves after `ms`, or at once when `signal` fires (the timer is cleared: nothing keeps the process up). */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

function describeReason(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  if (typeof reason === 'string') return reason;
  return 'aborted';
}
